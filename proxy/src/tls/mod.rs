//! TLS termination: certificates from `kubernetes.io/tls` Secrets, and our own SNI resolver.
//!
//! ```text
//! Secret ─▶ parse_secret (PEM chain + key, key must match) ─▶ CertCache (by resourceVersion)
//!        ─▶ CertTable in the Snapshot (exact host │ one-label wildcard │ default)
//! ClientHello(SNI) ─▶ SniResolver ─▶ snapshot.load().certs.resolve(sni) ─▶ cert or abort
//! ```
//!
//! rustls's `ResolvesServerCertUsingSni` has no wildcard, no default and no hot swap; ours
//! reads the current snapshot on every handshake, so a rotated Secret is served to the next
//! handshake while open connections keep their session.

pub mod client_auth;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::key::ObjectKey;

/// SNI → certificate, for one snapshot.
#[derive(Debug, Default, Clone)]
pub struct CertTable {
    pub exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix after `*.`.
    pub wildcard: HashMap<String, Arc<CertifiedKey>>,
    pub default: Option<Arc<CertifiedKey>>,
    /// SNI hosts whose handshake asks for a client certificate (some Ingress of the host
    /// has `auth-tls-secret`): exact names, suffixes after `*.`, or every host.
    pub ask_client_cert: HashSet<String>,
    pub ask_client_cert_wildcard: HashSet<String>,
    pub ask_client_cert_all: bool,
}

impl CertTable {
    /// Exact host, then one-label wildcard, then the default certificate.
    pub fn resolve(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = server_name {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(c) = self.exact.get(&name) {
                return Some(c.clone());
            }
            if let Some((_, suffix)) = name.split_once('.')
                && let Some(c) = self.wildcard.get(suffix)
            {
                return Some(c.clone());
            }
        }
        self.default.clone()
    }

    /// Whether a handshake for `server_name` asks for a client certificate.
    pub fn asks_client_cert(&self, server_name: Option<&str>) -> bool {
        if self.ask_client_cert_all {
            return true;
        }
        let Some(name) = server_name else {
            return false;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.ask_client_cert.contains(&name)
            || name
                .split_once('.')
                .is_some_and(|(_, suffix)| self.ask_client_cert_wildcard.contains(suffix))
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.default.is_none()
    }
}

/// Parses a `kubernetes.io/tls` Secret; the error says what is wrong, for the log.
pub fn parse_secret(secret: &Secret) -> Result<Arc<CertifiedKey>, String> {
    let type_ = secret.type_.as_deref().unwrap_or("Opaque");
    if type_ != "kubernetes.io/tls" {
        return Err(format!("type is {type_:?}, expected \"kubernetes.io/tls\""));
    }
    let data = secret.data.as_ref().ok_or("no data")?;
    let crt = data.get("tls.crt").ok_or("no tls.crt")?;
    let key = data.get("tls.key").ok_or("no tls.key")?;
    parse_pem(&crt.0, &key.0)
}

pub fn parse_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt: {e}"))?;
    if chain.is_empty() {
        return Err("tls.crt: no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("tls.key: {e}"))?;
    let provider = rustls::crypto::ring::default_provider();
    let ck = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| format!("certificate and key: {e}"))?;
    // from_der accepts "unknown" consistency; we want a certain match.
    ck.keys_match()
        .map_err(|e| format!("certificate and key: {e}"))?;
    Ok(Arc::new(ck))
}

/// Parsed Secrets by key, reused while their resourceVersion is unchanged.
#[derive(Debug, Default)]
pub struct CertCache {
    entries: HashMap<ObjectKey, (String, Result<Arc<CertifiedKey>, String>)>,
}

impl CertCache {
    pub fn get(&mut self, key: &ObjectKey, secret: &Secret) -> Result<Arc<CertifiedKey>, String> {
        let rv = secret.metadata.resource_version.clone().unwrap_or_default();
        if let Some((cached_rv, parsed)) = self.entries.get(key)
            && !rv.is_empty()
            && *cached_rv == rv
        {
            return parsed.clone();
        }
        let parsed = parse_secret(secret);
        self.entries.insert(key.clone(), (rv, parsed.clone()));
        parsed
    }

    pub fn retain(&mut self, keep: impl Fn(&ObjectKey) -> bool) {
        self.entries.retain(|k, _| keep(k));
    }
}

/// Where handshakes find the certificates in force now: the config's current snapshot
/// (`config` implements it; this module does not depend on `config`).
pub trait CurrentCerts: Send + Sync + std::fmt::Debug {
    /// [`CertTable::resolve`] on the table in force.
    fn resolve(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>>;
    /// [`CertTable::asks_client_cert`] on the table in force.
    fn asks_client_cert(&self, server_name: Option<&str>) -> bool;
}

/// The rustls hook: looks the SNI up in the certificates in force.
#[derive(Debug)]
pub struct SniResolver {
    certs: Arc<dyn CurrentCerts>,
}

impl SniResolver {
    pub fn new(certs: Arc<dyn CurrentCerts>) -> Self {
        SniResolver { certs }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let cert = self.certs.resolve(client_hello.server_name());
        if cert.is_none() {
            tracing::debug!(
                sni = client_hello.server_name(),
                "no certificate for SNI and no default certificate"
            );
        }
        cert
    }
}

/// The HTTPS listener's handshakes: the ClientHello is read first, so that hosts whose
/// Ingresses want client certificates get a config that asks for one
/// (client_auth.rs), and every other host one that does not.
#[derive(Debug, Clone)]
pub struct Acceptor {
    certs: Arc<dyn CurrentCerts>,
    plain: Arc<rustls::ServerConfig>,
    asking: Arc<rustls::ServerConfig>,
}

impl Acceptor {
    pub fn new(certs: Arc<dyn CurrentCerts>, min_tls13: bool) -> Result<Self, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&'static rustls::SupportedProtocolVersion] = if min_tls13 {
            &[&rustls::version::TLS13]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let resolver = Arc::new(SniResolver::new(certs.clone()));
        let mut plain = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        plain.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut asking = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)?
            .with_client_cert_verifier(Arc::new(client_auth::AskForCertificate::new(&provider)))
            .with_cert_resolver(resolver);
        asking.alpn_protocols = plain.alpn_protocols.clone();
        Ok(Acceptor {
            certs,
            plain: Arc::new(plain),
            asking: Arc::new(asking),
        })
    }

    /// The handshake on `stream` (the caller bounds its time).
    pub async fn accept<IO>(
        &self,
        stream: IO,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream)
                .await?;
        let asks = self
            .certs
            .asks_client_cert(start.client_hello().server_name());
        let config = if asks { &self.asking } else { &self.plain };
        start.into_stream(config.clone()).await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    pub(crate) fn self_signed(names: &[&str]) -> (String, String) {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .expect("rcgen");
        (ck.cert.pem(), ck.signing_key.serialize_pem())
    }

    pub(crate) fn tls_secret(ns: &str, name: &str, crt: &str, key: &str) -> Secret {
        Secret {
            metadata: kube::api::ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                resource_version: Some(format!("{}", fastrand::u32(..))),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(BTreeMap::from([
                ("tls.crt".to_string(), ByteString(crt.as_bytes().to_vec())),
                ("tls.key".to_string(), ByteString(key.as_bytes().to_vec())),
            ])),
            ..Default::default()
        }
    }

    #[test]
    fn parses_good_secret_and_rejects_bad_ones() {
        let (crt, key) = self_signed(&["a.example.com"]);
        assert!(parse_secret(&tls_secret("ns", "s", &crt, &key)).is_ok());
        let (_, other_key) = self_signed(&["b.example.com"]);
        let err = parse_secret(&tls_secret("ns", "s", &crt, &other_key)).expect_err("mismatch");
        assert!(err.contains("key"), "{err}");
        assert!(parse_secret(&tls_secret("ns", "s", "garbage", &key)).is_err());
        let mut opaque = tls_secret("ns", "s", &crt, &key);
        opaque.type_ = Some("Opaque".into());
        assert!(parse_secret(&opaque).expect_err("type").contains("type"));
    }

    #[test]
    fn resolve_order() {
        let (crt, key) = self_signed(&["x"]);
        let a = parse_pem(crt.as_bytes(), key.as_bytes()).expect("a");
        let (crt, key) = self_signed(&["y"]);
        let w = parse_pem(crt.as_bytes(), key.as_bytes()).expect("w");
        let (crt, key) = self_signed(&["z"]);
        let d = parse_pem(crt.as_bytes(), key.as_bytes()).expect("d");
        let mut t = CertTable::default();
        t.exact.insert("a.foo.com".into(), a.clone());
        t.wildcard.insert("foo.com".into(), w.clone());
        let same = |x: Option<Arc<CertifiedKey>>, y: &Arc<CertifiedKey>| {
            x.is_some_and(|x| Arc::ptr_eq(&x, y))
        };
        assert!(same(t.resolve(Some("A.foo.com")), &a));
        assert!(same(t.resolve(Some("b.foo.com")), &w));
        assert!(t.resolve(Some("c.b.foo.com")).is_none());
        assert!(t.resolve(None).is_none());
        t.default = Some(d.clone());
        assert!(same(t.resolve(Some("c.b.foo.com")), &d));
        assert!(same(t.resolve(None), &d));
    }
}
