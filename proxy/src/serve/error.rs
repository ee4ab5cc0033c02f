//! Every way a proxied request can fail, turned into a response in one place.

use http::{HeaderValue, Response, StatusCode, header};

use crate::http::body::{Body, status_text};
use crate::http::target::{HostError, PathError};
use crate::upstream::client::ConnectError;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route for this host and path")]
    NotFound,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("bad request path: {0}")]
    BadPath(#[from] PathError),
    #[error("bad request host: {0}")]
    BadHost(#[from] HostError),
    #[error("request body larger than the limit")]
    PayloadTooLarge,
    #[error("host is not covered by the certificate chosen for this connection's SNI")]
    Misdirected,
    #[error("no endpoints available for {0}")]
    NoEndpoints(String),
    #[error("connect to upstream failed: {0}")]
    Connect(#[source] ConnectError),
    #[error("endpoint {0} is at its connection cap")]
    Saturated(std::net::SocketAddr),
    #[error("upstream did not answer within the request timeout")]
    Timeout,
    #[error("upstream request failed: {0}")]
    Upstream(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NotFound => StatusCode::NOT_FOUND,
            ProxyError::BadRequest(_) | ProxyError::BadPath(_) | ProxyError::BadHost(_) => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::NoEndpoints(_) | ProxyError::Saturated(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Connect(_) | ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Label for `portico_upstream_errors_total{kind}`; `None` for non-upstream errors.
    pub fn upstream_kind(&self) -> Option<&'static str> {
        match self {
            ProxyError::NoEndpoints(_) => Some("no_endpoints"),
            ProxyError::Saturated(_) => Some("saturated"),
            ProxyError::Connect(_) => Some("connect"),
            ProxyError::Timeout => Some("timeout"),
            ProxyError::Upstream(_) => Some("request"),
            _ => None,
        }
    }

    /// A short plain-text body; details stay in the logs.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let mut resp = status_text(status);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(ProxyError::NotFound.into_response().status(), 404);
        assert_eq!(
            ProxyError::NoEndpoints("x".into()).into_response().status(),
            503
        );
        assert_eq!(
            ProxyError::Connect(ConnectError::NoTlsConfig)
                .into_response()
                .status(),
            502
        );
        assert_eq!(
            ProxyError::Upstream("x".into()).into_response().status(),
            502
        );
        assert_eq!(ProxyError::Timeout.into_response().status(), 504);
        assert_eq!(ProxyError::Misdirected.into_response().status(), 421);
        assert_eq!(
            ProxyError::from(PathError::EncodedSlash)
                .into_response()
                .status(),
            400
        );
    }
}
