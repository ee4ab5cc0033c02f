//! Host patterns (exact, one-label wildcard `*.foo.com`, any host) come from
//! `portico-ingress`, which both binaries judge Ingresses by; request hosts are normalized here.

use std::borrow::Cow;

pub use portico_ingress::HostPattern;

/// Lowercases a request's Host/:authority and drops the port (and IPv6 brackets' port).
/// Borrows when the host is lowercase already (the usual case): no allocation per request.
pub fn normalize_request_host(host: &str) -> Cow<'_, str> {
    let host = host.trim();
    let without_port = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        }
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    let host = without_port.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_host_normalization() {
        assert_eq!(normalize_request_host("Foo.Com:8080"), "foo.com");
        assert_eq!(normalize_request_host("foo.com"), "foo.com");
        assert_eq!(normalize_request_host("foo.com."), "foo.com");
        assert_eq!(normalize_request_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_request_host("10.244.0.5:80"), "10.244.0.5");
    }
}
