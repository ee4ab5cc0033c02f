//! TLS clients for the traffic tests: the certificate a server sends for an SNI, and the
//! Warning Events the operator publishes on an Ingress.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use portico_tests::certs::Leaf;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A `kubernetes.io/tls` Secret.
pub async fn apply_tls_secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<()> {
    let data = json!({ "tls.crt": cert_pem, "tls.key": key_pem });
    apply_secret(client, ns, name, "kubernetes.io/tls", data).await
}

/// An Opaque Secret holding `string_data` (a JSON object of key → text): an htpasswd
/// file, a CA bundle.
pub async fn apply_opaque_secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
    string_data: serde_json::Value,
) -> Result<()> {
    apply_secret(client, ns, name, "Opaque", string_data).await
}

async fn apply_secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
    type_: &str,
    string_data: serde_json::Value,
) -> Result<()> {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": name, "namespace": ns },
        "type": type_,
        "stringData": string_data,
    }))?;
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply("portico-tests").force(),
            &Patch::Apply(&secret),
        )
        .await
        .with_context(|| format!("apply secret {ns}/{name}"))?;
    Ok(())
}

/// The DER of a leaf certificate, to compare with what a server sent.
pub fn der(leaf: &Leaf) -> Vec<u8> {
    CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())
        .map(|c| c.to_vec())
        .unwrap_or_default()
}

/// Accepts any certificate and remembers the one the server sent.
#[derive(Debug)]
struct Recorder {
    seen: Arc<Mutex<Option<Vec<u8>>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(end_entity.to_vec());
        }
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS connection to the proxy with SNI `host`; returns the stream and the server's leaf.
pub async fn tls_connect(
    addr: SocketAddr,
    host: &str,
    alpn: &[&[u8]],
) -> Result<(TlsStream<TcpStream>, Vec<u8>)> {
    tls_connect_as(addr, host, alpn, None).await
}

/// [`tls_connect`], presenting `client` (certificate and key) when the server asks.
pub async fn tls_connect_as(
    addr: SocketAddr,
    host: &str,
    alpn: &[&[u8]],
    client: Option<&Leaf>,
) -> Result<(TlsStream<TcpStream>, Vec<u8>)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let seen = Arc::new(Mutex::new(None));
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recorder {
            seen: seen.clone(),
            provider,
        }));
    let mut cfg = match client {
        None => cfg.with_no_client_auth(),
        Some(leaf) => {
            let chain = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()?;
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())?;
            cfg.with_client_auth_cert(chain, key)?
        }
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(host.to_string())?;
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
    )
    .await
    .context("TLS handshake timed out")??;
    let cert = seen
        .lock()
        .ok()
        .and_then(|s| s.clone())
        .context("no certificate seen")?;
    Ok((stream, cert))
}

/// The leaf certificate the proxy serves for SNI `host`.
pub async fn served_cert(addr: SocketAddr, host: &str) -> Result<Vec<u8>> {
    Ok(tls_connect(addr, host, &[b"http/1.1"]).await?.1)
}

/// Warning Events with `reason` on Ingress `ns/name`.
pub async fn warnings_on(c: &kube::Client, ns: &str, name: &str, reason: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.clone(), ns);
    let Ok(list) = events.list(&Default::default()).await else {
        return Vec::new();
    };
    list.items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.type_.as_deref() == Some("Warning")
                && e.regarding
                    .as_ref()
                    .is_some_and(|r| r.name.as_deref() == Some(name))
        })
        .filter_map(|e| e.note)
        .collect()
}
