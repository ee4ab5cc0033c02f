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

pub mod upstream;

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ObjectKey, SharedSnapshot};

/// SNI → certificate, for one snapshot.
#[derive(Debug, Default, Clone)]
pub struct CertTable {
    pub exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix after `*.`.
    pub wildcard: HashMap<String, Arc<CertifiedKey>>,
    pub default: Option<Arc<CertifiedKey>>,
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

/// The rustls hook: looks the SNI up in the current snapshot.
#[derive(Debug)]
pub struct SniResolver {
    snapshot: SharedSnapshot,
}

impl SniResolver {
    pub fn new(snapshot: SharedSnapshot) -> Self {
        SniResolver { snapshot }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let cert = self
            .snapshot
            .load()
            .certs
            .resolve(client_hello.server_name());
        if cert.is_none() {
            tracing::debug!(
                sni = client_hello.server_name(),
                "no certificate for SNI and no default certificate"
            );
        }
        cert
    }
}

/// The server config for the HTTPS listener.
pub fn server_config(
    snapshot: SharedSnapshot,
    min_tls13: bool,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = if min_tls13 {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver::new(snapshot)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
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
