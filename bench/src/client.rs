//! A minimal HTTP/1.1 client over TCP or TLS, cheap enough to sit next to the backend on the
//! load core: pre-formatted requests, `httparse` for the response head, `Content-Length` or
//! chunked bodies. Used by the fixed-rate load generator and by the propagation probes, which
//! read the `x-backend` header to tell which endpoint answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// TLS settings of a connection: the SNI name and a configuration that accepts any
/// certificate (the benchmark talks only to its own proxies and checks the certificate
/// itself where it matters, in the Secret-rotation probe).
#[derive(Clone)]
pub struct Tls {
    pub server_name: ServerName<'static>,
    pub config: Arc<ClientConfig>,
}

impl Tls {
    pub fn new(sni: &str, alpn_h1: bool) -> Result<Tls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth();
        if alpn_h1 {
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
        }
        // Every connection does a full handshake: the point of a TLS probe is to see the
        // certificate the proxy serves now.
        config.resumption = rustls::client::Resumption::disabled();
        let server_name = match sni.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(sni.to_string())?,
        };
        Ok(Tls {
            server_name,
            config: Arc::new(config),
        })
    }
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `GET <path> HTTP/1.1` with `Host`, formatted once.
pub fn format_get(host: &str, path: &str, close: bool) -> Vec<u8> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portico-bench\r\n{connection}\r\n")
        .into_bytes()
}

/// What the client needs from a response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// The `x-backend` header: the address of the endpoint that answered.
    pub backend: Option<String>,
    /// The server will close the connection after this response.
    pub close: bool,
}

/// One HTTP/1.1 connection.
pub struct Conn {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    /// The server's leaf certificate, for TLS connections.
    pub peer_cert: Option<Vec<u8>>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr, tls: Option<&Tls>, timeout: Duration) -> Result<Conn> {
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .context("connect timed out")?
            .with_context(|| format!("connect {addr}"))?;
        tcp.set_nodelay(true)?;
        match tls {
            None => Ok(Conn {
                stream: Box::new(tcp),
                buf: Vec::with_capacity(4096),
                peer_cert: None,
            }),
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let stream =
                    tokio::time::timeout(timeout, connector.connect(tls.server_name.clone(), tcp))
                        .await
                        .context("TLS handshake timed out")?
                        .context("TLS handshake")?;
                let peer_cert = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.to_vec());
                Ok(Conn {
                    stream: Box::new(stream),
                    buf: Vec::with_capacity(4096),
                    peer_cert,
                })
            }
        }
    }

    /// Sends one pre-formatted request and reads the whole response.
    pub async fn request(&mut self, request: &[u8], timeout: Duration) -> Result<Response> {
        tokio::time::timeout(timeout, self.exchange(request))
            .await
            .context("request timed out")?
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<Response> {
        self.stream.write_all(request).await?;
        self.buf.clear();
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&self.buf)? {
                httparse::Status::Complete(head_len) => {
                    let status = parsed.code.unwrap_or(0);
                    let mut content_length = None;
                    let mut chunked = false;
                    let mut close = parsed.version == Some(0);
                    let mut backend = None;
                    for h in parsed.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            content_length = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<usize>().ok());
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = h.value.eq_ignore_ascii_case(b"chunked");
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = h.value.eq_ignore_ascii_case(b"close");
                        } else if h.name.eq_ignore_ascii_case("x-backend") {
                            backend = Some(String::from_utf8_lossy(h.value).into_owned());
                        }
                    }
                    self.read_body(head_len, content_length, chunked, close)
                        .await?;
                    return Ok(Response {
                        status,
                        backend,
                        close,
                    });
                }
                httparse::Status::Partial => self.fill().await?,
            }
        }
    }

    async fn read_body(
        &mut self,
        head_len: usize,
        content_length: Option<usize>,
        chunked: bool,
        close: bool,
    ) -> Result<()> {
        if chunked {
            // Enough for the small bodies here: read until the last-chunk marker.
            while !self.buf[head_len..].windows(5).any(|w| w == b"0\r\n\r\n") {
                self.fill().await?;
            }
        } else if let Some(len) = content_length {
            while self.buf.len() < head_len + len {
                self.fill().await?;
            }
        } else if close {
            // Body delimited by the end of the connection.
            loop {
                let mut chunk = [0u8; 4096];
                if self.stream.read(&mut chunk).await? == 0 {
                    break;
                }
            }
        }
        Ok(())
    }

    async fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed before the response was complete");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}
