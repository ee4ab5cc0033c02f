//! TLS to backends (`appProtocol: https`): the SNI to send and how the backend's certificate
//! is checked, one config per backend, built from the judgement's `BackendTls`.
//!
//! ```text
//! Service annotations ─▶ portico_ingress::BackendTls { server_name, ca }
//!   ca: Secret or ConfigMap `ca.crt` ─▶ RootCertStore ─▶ verified against server_name
//!   no ca (allowed by the instance) ─▶ SNI sent, certificate not verified
//! ```
//!
//! A CA object that is missing or holds no certificate fails closed: the config verifies
//! against an empty root store, so every handshake fails (502) until the Secret is fixed.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// How to reach one backend over TLS.
pub struct UpstreamTls {
    pub server_name: ServerName<'static>,
    /// Part of the upstream pool key: connections made for one name never serve another.
    pub name: Arc<str>,
    pub connector: tokio_rustls::TlsConnector,
    pub verified: bool,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("name", &self.name)
            .field("verified", &self.verified)
            .finish()
    }
}

/// The certificates of a PEM CA bundle (`ca.crt`).
pub fn ca_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("ca.crt: {e}"))?;
    if certs.is_empty() {
        return Err("ca.crt: no certificate".into());
    }
    Ok(certs)
}

/// A config for `server_name`: verified against `ca` when given (`Some(Err)`, a broken or
/// missing bundle, verifies against nothing), unverified when `None`.
pub fn upstream_tls(
    server_name: &str,
    ca: Option<Result<Vec<CertificateDer<'static>>, String>>,
) -> Result<UpstreamTls, String> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| format!("server name {server_name:?}: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verified = ca.is_some();
    let mut cfg = match ca {
        Some(bundle) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in bundle.unwrap_or_default() {
                // A certificate rustls cannot use is left out; the rest still verify.
                let _ = roots.add(cert);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(UpstreamTls {
        server_name: name,
        name: Arc::from(server_name),
        connector: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
        verified,
    })
}

/// Accepts any certificate (the signature still has to match the key it names).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
