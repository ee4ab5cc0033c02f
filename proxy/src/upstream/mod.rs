//! Talking to backends: the protocol a Service port asks for, the connection pool
//! (`client`), HTTP/1.1 exchanges on it (`wire`), the response body (`body`) and TLS to backends (`tls`). Shared by the proxy path and by external auth,
//! which makes its subrequests on the same pool.

pub mod body;
pub mod client;
pub mod tls;
pub mod wire;

/// Upstream protocol, from the Service port's `appProtocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    Http1,
    /// `kubernetes.io/h2c`: HTTP/2 cleartext (prior knowledge).
    H2c,
    /// `https`: TLS to the backend, HTTP/1.1.
    Https,
}

impl UpstreamProtocol {
    pub fn from_app_protocol(app_protocol: Option<&str>) -> Self {
        match app_protocol.map(str::to_ascii_lowercase).as_deref() {
            Some("kubernetes.io/h2c") | Some("h2c") => UpstreamProtocol::H2c,
            Some("https") | Some("kubernetes.io/https") => UpstreamProtocol::Https,
            _ => UpstreamProtocol::Http1,
        }
    }
}
