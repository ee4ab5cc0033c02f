//! ingress-nginx's client certificates (`auth-tls-*`), decided in two places:
//!
//! ```text
//! ClientHello(SNI) ─▶ a host some Ingress wants certificates for? ─▶ ServerConfig that asks
//!                     (not required; signatures checked, chain kept)  │ one that does not
//! request ─▶ route's ClientCertPolicy ─▶ the kept chain verified against *its* CA, mode,
//!            depth ─▶ ssl-client-verify / ssl-client-cert upstream │ 400 or auth-tls-error-page
//! ```
//!
//! The handshake only decides whether to ask (per SNI host: if any served Ingress of the
//! host has `auth-tls-secret`). Verification happens per request against the CA of the
//! Ingress whose path matched, so two Ingresses of one host that disagree (different CAs,
//! one `on` and one `off`) each get exactly what they said, and a request whose Host is
//! not its SNI, or that came over plain HTTP, has no certificate to show: it is refused
//! wherever one is required. Nothing is opened by a disagreement.

use std::sync::Arc;

use base64::Engine;
use http::HeaderValue;
use portico_ingress::auth::{ClientCert, Verify};
use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};

/// Asks every client for a certificate, requires none, and checks only that the client
/// holds the key of what it sent: the chain is judged per request (`ClientCertPolicy`).
#[derive(Debug)]
pub struct AskForCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AskForCertificate {
    pub fn new(provider: &CryptoProvider) -> Self {
        AskForCertificate {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for AskForCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// One Ingress's client-certificate rules, with its CA.
#[derive(Debug)]
pub struct ClientCertPolicy {
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    pub settings: ClientCert,
}

/// What a request's certificate came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Passed on: `ssl-client-verify` (and `ssl-client-cert` when asked for).
    Allow(Vec<(&'static str, HeaderValue)>),
    /// 400, or a 302 to `auth-tls-error-page`.
    Deny(&'static str),
}

impl ClientCertPolicy {
    /// The policy with the CA bundle in `ca_pem` (the Secret's `ca.crt`); `Err` says why
    /// it is unusable (the Ingress is then not served).
    pub fn new(settings: ClientCert, ca_pem: Option<&[u8]>) -> Result<Self, String> {
        if settings.verify == Verify::Off {
            return Ok(ClientCertPolicy {
                verifier: None,
                settings,
            });
        }
        let pem = ca_pem.ok_or("no ca.crt")?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("ca.crt: {e}"))?;
            roots.add(cert).map_err(|e| format!("ca.crt: {e}"))?;
        }
        if roots.is_empty() {
            return Err("ca.crt holds no certificate".into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("ca.crt: {e}"))?;
        Ok(ClientCertPolicy {
            verifier: Some(verifier),
            settings,
        })
    }

    /// Judges the chain the client sent on this connection (`None`: none, or plain HTTP).
    /// `optional_no_ca` never refuses; the verification result still goes upstream.
    pub fn judge(&self, chain: Option<&[CertificateDer<'static>]>) -> Outcome {
        let Some(verifier) = &self.verifier else {
            return Outcome::Allow(Vec::new());
        };
        let chain = chain.filter(|c| !c.is_empty());
        let verified: Result<(), String> = match chain {
            None => Err("NONE".into()),
            Some(c) if c.len() > usize::from(self.settings.depth) => Err(format!(
                "FAILED:a chain of {} certificates is deeper than {}",
                c.len(),
                self.settings.depth
            )),
            Some(c) => verifier
                .verify_client_cert(&c[0], &c[1..], UnixTime::now())
                .map(|_| ())
                .map_err(|e| format!("FAILED:{e}")),
        };
        match (self.settings.verify, &verified, chain.is_some()) {
            (Verify::On, Err(_), false) => {
                return Outcome::Deny("No required SSL certificate was sent");
            }
            (Verify::On | Verify::Optional, Err(_), true) => {
                return Outcome::Deny("The SSL certificate error");
            }
            _ => {}
        }
        let verify_value = match verified {
            Ok(()) => "SUCCESS".to_owned(),
            Err(reason) => reason.replace(['\r', '\n'], " "),
        };
        let mut headers = Vec::with_capacity(2);
        if let Ok(v) = HeaderValue::from_str(&verify_value) {
            headers.push(("ssl-client-verify", v));
        }
        if self.settings.pass_to_upstream
            && let Some(leaf) = chain.and_then(|c| c.first())
            && let Ok(v) = HeaderValue::from_str(&escaped_pem(leaf))
        {
            headers.push(("ssl-client-cert", v));
        }
        Outcome::Allow(headers)
    }
}

/// The leaf as URL-escaped PEM (nginx's `$ssl_client_escaped_cert`).
fn escaped_pem(der: &CertificateDer<'_>) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    crate::http::target::escape(&pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pki {
        ca_pem: String,
        good: CertificateDer<'static>,
        stranger: CertificateDer<'static>,
    }

    fn pki() -> Pki {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let ca = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().expect("key");
        let mut leaf_params = rcgen::CertificateParams::new(vec!["client".into()]).expect("leaf");
        leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let good = leaf_params.signed_by(&leaf_key, &issuer).expect("leaf");
        let stranger =
            rcgen::generate_simple_self_signed(vec!["client".to_string()]).expect("self");
        Pki {
            ca_pem: ca.pem(),
            good: good.der().clone(),
            stranger: stranger.cert.der().clone(),
        }
    }

    fn policy(verify: Verify, pki: &Pki) -> ClientCertPolicy {
        let settings = ClientCert {
            secret: "ca".into(),
            verify,
            depth: 1,
            pass_to_upstream: true,
            error_page: None,
        };
        ClientCertPolicy::new(settings, Some(pki.ca_pem.as_bytes())).expect("policy")
    }

    fn verify_header(o: &Outcome) -> Option<String> {
        match o {
            Outcome::Allow(h) => h
                .iter()
                .find(|(n, _)| *n == "ssl-client-verify")
                .map(|(_, v)| {
                    v.to_str()
                        .unwrap_or("")
                        .split(':')
                        .next()
                        .unwrap_or("")
                        .to_owned()
                }),
            Outcome::Deny(_) => None,
        }
    }

    #[test]
    fn each_mode_judges_a_good_a_foreign_and_no_certificate() {
        let pki = pki();
        let good = [pki.good.clone()];
        let stranger = [pki.stranger.clone()];
        let on = policy(Verify::On, &pki);
        assert_eq!(
            verify_header(&on.judge(Some(&good))).as_deref(),
            Some("SUCCESS")
        );
        assert!(matches!(on.judge(Some(&stranger)), Outcome::Deny(_)));
        assert!(matches!(on.judge(None), Outcome::Deny(_)));
        let optional = policy(Verify::Optional, &pki);
        assert_eq!(
            verify_header(&optional.judge(None)).as_deref(),
            Some("NONE")
        );
        assert!(matches!(optional.judge(Some(&stranger)), Outcome::Deny(_)));
        let no_ca = policy(Verify::OptionalNoCa, &pki);
        assert_eq!(
            verify_header(&no_ca.judge(Some(&stranger))).as_deref(),
            Some("FAILED")
        );
        assert_eq!(
            verify_header(&no_ca.judge(Some(&good))).as_deref(),
            Some("SUCCESS")
        );
        let off = policy(Verify::Off, &pki);
        assert_eq!(off.judge(Some(&stranger)), Outcome::Allow(vec![]));
        // The leaf goes upstream as escaped PEM when asked for.
        match on.judge(Some(&good)) {
            Outcome::Allow(h) => assert!(h.iter().any(|(n, v)| {
                *n == "ssl-client-cert"
                    && v.to_str()
                        .is_ok_and(|v| v.starts_with("-----BEGIN%20CERTIFICATE-----"))
            })),
            other => panic!("{other:?}"),
        }
        assert!(ClientCertPolicy::new(on.settings.clone(), Some(b"junk")).is_err());
        assert!(ClientCertPolicy::new(on.settings.clone(), None).is_err());
    }
}
