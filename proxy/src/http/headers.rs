//! Header handling on the proxy path: hop-by-hop stripping, what a client may not send a
//! backend, and `X-Forwarded-*`.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static HTTP: HeaderValue = HeaderValue::from_static("http");
static HTTPS: HeaderValue = HeaderValue::from_static("https");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Headers meaningful for one connection only (RFC 9110 §7.6.1, plus the usual extras;
/// `HTTP2-Settings` belongs to an `h2c` upgrade, which is never passed on).
fn hop_by_hop() -> [&'static HeaderName; 10] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
        &HTTP2_SETTINGS,
    ]
}

/// Forwarding headers that backends believe: set by the proxy or by a trusted front load
/// balancer, never by an untrusted client (`X-Original-URL` and `X-Rewrite-URL` make some
/// frameworks route on a path the proxy never judged).
fn is_forwarding(name: &HeaderName) -> bool {
    let n = name.as_str();
    n.starts_with("x-forwarded-")
        || n == "forwarded"
        || n == "x-real-ip"
        || n == "x-original-url"
        || n == "x-rewrite-url"
}

/// The fields the proxy sets on every request it passes on ([`Forwarded::fields`], in this
/// order): whatever the client sent by these names is dropped, also from a trusted peer
/// (whose values `forwarded` has read by then).
static PROXY_SET: [&HeaderName; 4] = [
    &X_FORWARDED_FOR,
    &X_FORWARDED_PROTO,
    &X_FORWARDED_HOST,
    &X_REAL_IP,
];

fn is_proxy_set(name: &HeaderName) -> bool {
    PROXY_SET.contains(&name)
}

/// Headers the proxy itself sets or relies on, and those a trusted front load balancer
/// adds: a client's `Connection` header cannot remove them.
fn protected(name: &HeaderName) -> bool {
    *name == header::HOST
        || is_forwarding(name)
        || *name == header::SET_COOKIE
        || *name == header::STRICT_TRANSPORT_SECURITY
        || *name == header::COOKIE
}

/// Removes what a client may not hand a backend: header names with an underscore (a
/// backend that folds `_` into `-`, as CGI-style stacks do, would read `X_Forwarded_For`
/// as `X-Forwarded-For`; nginx drops them too) unless `keep_underscores`, and, from a peer
/// that is not a trusted proxy, every forwarding header. The four the proxy sets itself
/// ([`Forwarded::fields`]) go from any peer: call it after `forwarded` has read them.
pub fn sanitize_request(headers: &mut HeaderMap, trusted_peer: bool, keep_underscores: bool) {
    let unwanted = |n: &HeaderName| {
        (!keep_underscores && n.as_str().contains('_'))
            || if trusted_peer {
                is_proxy_set(n)
            } else {
                is_forwarding(n)
            }
    };
    // The usual request has none: one pass over the names, nothing allocated.
    if !headers.keys().any(unwanted) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|n| unwanted(n)).cloned().collect();
    for name in names {
        headers.remove(&name);
    }
}

/// Removes hop-by-hop headers and those the `Connection` header names (never protected
/// ones). With `upgrade` set (a WebSocket handshake), `Connection: upgrade` and `Upgrade`
/// are kept so the next hop sees the handshake. `TE: trailers` is kept (gRPC needs it).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none of them: one pass over the names instead of a dozen hashed
    // lookups. (`Connection`, `Upgrade` and `TE` are in the list, so with none present
    // there is nothing named, nothing to keep and nothing to remove.)
    let hop = hop_by_hop();
    if !headers.keys().any(|n| hop.contains(&n)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| !protected(n))
        .collect();
    let upgrade_value = if upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    let te_trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    for name in named {
        headers.remove(&name);
    }
    for name in hop_by_hop() {
        headers.remove(name);
    }
    if let Some(u) = upgrade_value {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, u);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Whether a request asks for a WebSocket upgrade, the only protocol tunnelled. Any other
/// `Upgrade` (`h2c` above all: it would hand the client a raw HTTP/2 connection to the
/// backend, past every rule the proxy applies per request) is stripped as hop-by-hop and
/// the request goes on as an ordinary one.
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    let mut upgrades = headers.get_all(header::UPGRADE).iter();
    let websocket = match (upgrades.next(), upgrades.next()) {
        (Some(v), None) => v.as_bytes().eq_ignore_ascii_case(b"websocket"),
        _ => false,
    };
    websocket
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|n| n.contains(&ip))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The forwarding facts of one request, computed before any header is stripped. Values
/// are ready to send (two allocations for an untrusted peer, the usual case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The client as best known: the right-most untrusted address.
    pub client_ip: IpAddr,
    /// The peer is a trusted proxy: its forwarding headers are believed and kept.
    pub trusted_peer: bool,
    pub xff: HeaderValue,
    pub proto: &'static str,
    pub host: Option<HeaderValue>,
    /// `X-Real-IP`: the client.
    pub real_ip: HeaderValue,
}

/// An address as a header value, without copying its text again.
fn ip_value(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(ip.to_string()))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The peer as `X-Forwarded-For` names it, made once per connection.
pub fn peer_value(peer: IpAddr) -> HeaderValue {
    ip_value(canonical(peer))
}

/// Client-sent `X-Forwarded-*` are believed only when the peer is in `trusted`.
/// `peer_value` is [`peer_value`] of `peer`, when the caller has it already.
pub fn forwarded(
    headers: &HeaderMap,
    peer: IpAddr,
    tls: bool,
    host: Option<&HeaderValue>,
    peer_value: Option<&HeaderValue>,
    trusted: &[IpNet],
) -> Forwarded {
    let peer = canonical(peer);
    let own_proto = if tls { "https" } else { "http" };
    let host_value = || host.cloned();
    if !is_trusted(peer, trusted) {
        let xff = peer_value.cloned().unwrap_or_else(|| ip_value(peer));
        return Forwarded {
            client_ip: peer,
            trusted_peer: false,
            real_ip: xff.clone(),
            xff,
            proto: own_proto,
            host: host_value(),
        };
    }
    let prior: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    // Walk from the right: the first address not in a trusted range is the client.
    let client_ip = prior
        .iter()
        .rev()
        .filter_map(|s| s.parse::<IpAddr>().ok())
        .find(|ip| !is_trusted(*ip, trusted))
        .or_else(|| prior.first().and_then(|s| s.parse().ok()))
        .unwrap_or(peer);
    let mut xff = prior.join(", ");
    if !xff.is_empty() {
        xff.push_str(", ");
    }
    xff.push_str(&peer.to_string());
    let first = |name: &HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or("").trim())
    };
    let proto = match first(&X_FORWARDED_PROTO) {
        Some("http") => "http",
        Some("https") => "https",
        _ => own_proto,
    };
    let fwd_host = first(&X_FORWARDED_HOST)
        .filter(|h| !h.is_empty())
        .and_then(|h| HeaderValue::from_str(h).ok())
        .or_else(host_value);
    Forwarded {
        client_ip,
        trusted_peer: true,
        xff: HeaderValue::from_maybe_shared(bytes::Bytes::from(xff))
            .unwrap_or_else(|_| ip_value(peer)),
        proto,
        host: fwd_host,
        real_ip: ip_value(client_ip),
    }
}

impl Forwarded {
    /// `X-Forwarded-For/Proto/Host` and `X-Real-IP` as the backend gets them. The one list
    /// for both ways they are sent: written after the map's fields by the proxy's own
    /// HTTP/1.1 client (four inserts that grow the map cost more than the rest of the
    /// header work), or put in the map by [`apply_forwarded`].
    pub fn fields(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        let proto = if self.proto == "https" { &HTTPS } else { &HTTP };
        let values = [
            Some(&self.xff),
            Some(proto),
            self.host.as_ref(),
            Some(&self.real_ip),
        ];
        PROXY_SET
            .iter()
            .zip(values)
            .filter_map(|(&name, value)| value.map(|v| (name, v)))
    }
}

/// Sets `X-Forwarded-For/Proto/Host` and `X-Real-IP`, replacing whatever the client sent.
pub fn apply_forwarded(headers: &mut HeaderMap, f: &Forwarded) {
    if f.host.is_none() {
        headers.remove(&X_FORWARDED_HOST);
    }
    for (name, value) in f.fields() {
        // `insert` replaces every earlier value of the name.
        headers.insert(name.clone(), value.clone());
    }
}

/// The value of one cookie from the `Cookie` header(s).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        m
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named() {
        let mut m = h(&[
            ("connection", "keep-alive, x-secret, x-forwarded-for, host"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "x"),
            ("host", "a.com"),
            ("x-app", "kept"),
            ("te", "gzip, trailers"),
        ]);
        strip_hop_by_hop(&mut m, false);
        assert!(m.get("connection").is_none());
        assert!(m.get("keep-alive").is_none());
        assert!(m.get("x-secret").is_none());
        assert!(m.get("transfer-encoding").is_none());
        assert!(m.get("proxy-authorization").is_none());
        assert_eq!(m.get("host").expect("host kept"), "a.com");
        assert_eq!(m.get("x-app").expect("x-app"), "kept");
        assert_eq!(m.get("te").expect("te"), "trailers");
    }

    #[test]
    fn connection_header_cannot_remove_proxy_set_headers() {
        let peer: IpAddr = "10.244.0.9".parse().expect("ip");
        let mut m = h(&[
            (
                "connection",
                "x-forwarded-for, x-real-ip, x-forwarded-proto, x-forwarded-host",
            ),
            ("host", "a.com"),
        ]);
        let f = forwarded(
            &m,
            peer,
            false,
            Some(&HeaderValue::from_static("a.com")),
            None,
            &[],
        );
        strip_hop_by_hop(&mut m, false);
        apply_forwarded(&mut m, &f);
        assert_eq!(m.get("x-forwarded-for").expect("xff"), "10.244.0.9");
        assert_eq!(m.get("x-real-ip").expect("real ip"), "10.244.0.9");
        assert_eq!(m.get("x-forwarded-proto").expect("proto"), "http");
        assert_eq!(m.get("x-forwarded-host").expect("host"), "a.com");
    }

    #[test]
    fn upgrade_is_kept_for_websocket() {
        let mut m = h(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        assert!(is_upgrade_request(&m));
        strip_hop_by_hop(&mut m, true);
        assert_eq!(m.get("connection").expect("connection"), "upgrade");
        assert_eq!(m.get("upgrade").expect("upgrade"), "websocket");
        assert!(m.get("sec-websocket-key").is_some());
    }

    #[test]
    fn only_websocket_upgrades_are_tunnelled() {
        let mut m = h(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
        ]);
        assert!(!is_upgrade_request(&m));
        strip_hop_by_hop(&mut m, false);
        assert!(m.is_empty(), "h2c upgrade stripped: {m:?}");
        let two = h(&[("connection", "upgrade"), ("upgrade", "websocket, h2c")]);
        assert!(!is_upgrade_request(&two));
        let ws = h(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ]);
        assert!(is_upgrade_request(&ws));
    }

    #[test]
    fn underscores_and_untrusted_forwarding_headers_are_dropped() {
        let all = [
            ("x_forwarded_for", "1.2.3.4"),
            ("x-user_id", "admin"),
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-prefix", "/admin"),
            ("x-original-url", "/admin"),
            ("x-rewrite-url", "/admin"),
            ("x-app", "kept"),
        ];
        let mut m = h(&all);
        sanitize_request(&mut m, false, false);
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m.get("x-app").expect("x-app"), "kept");

        let mut kept = h(&all);
        sanitize_request(&mut kept, true, true);
        assert_eq!(kept.len(), all.len(), "trusted peer, underscores kept");

        // The proxy's own four are replaced, never passed on, even from a trusted peer.
        let own = [
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-port", "443"),
        ];
        let mut from_trusted = h(&own);
        sanitize_request(&mut from_trusted, true, true);
        let left: Vec<&str> = from_trusted.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-forwarded-port"]);

        let mut trusted = h(&all);
        sanitize_request(&mut trusted, true, false);
        assert!(trusted.get("x_forwarded_for").is_none());
        assert_eq!(trusted.get("forwarded").expect("kept"), "for=1.2.3.4");
    }

    #[test]
    fn connection_cannot_remove_a_front_balancers_headers() {
        let mut m = h(&[
            (
                "connection",
                "forwarded, x-forwarded-port, x-forwarded-prefix, x-hop",
            ),
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-prefix", "/app"),
            ("x-hop", "1"),
        ]);
        strip_hop_by_hop(&mut m, false);
        assert!(m.get("forwarded").is_some());
        assert!(m.get("x-forwarded-port").is_some());
        assert!(m.get("x-forwarded-prefix").is_some());
        assert!(m.get("x-hop").is_none());
    }

    #[test]
    fn untrusted_peer_cannot_spoof() {
        let m = h(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.com"),
        ]);
        let f = forwarded(
            &m,
            "10.244.0.9".parse().expect("ip"),
            false,
            Some(&HeaderValue::from_static("a.com")),
            None,
            &[],
        );
        assert_eq!(f.client_ip.to_string(), "10.244.0.9");
        assert_eq!(f.xff, "10.244.0.9");
        assert_eq!(f.real_ip, "10.244.0.9");
        assert_eq!(f.proto, "http");
        assert_eq!(f.host.as_ref().and_then(|h| h.to_str().ok()), Some("a.com"));
    }

    #[test]
    fn trusted_peer_is_believed_and_appended() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let m = h(&[
            ("x-forwarded-for", "1.2.3.4, 10.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "orig.com"),
        ]);
        let f = forwarded(
            &m,
            "10.244.0.9".parse().expect("ip"),
            false,
            Some(&HeaderValue::from_static("a.com")),
            None,
            &trusted,
        );
        assert_eq!(f.client_ip.to_string(), "1.2.3.4", "right-most untrusted");
        assert_eq!(f.xff, "1.2.3.4, 10.1.1.1, 10.244.0.9");
        assert_eq!(f.real_ip, "1.2.3.4");
        assert_eq!(f.proto, "https");
        assert_eq!(
            f.host.as_ref().and_then(|h| h.to_str().ok()),
            Some("orig.com")
        );
    }

    #[test]
    fn cookies() {
        let m = h(&[("cookie", "a=1; portico-affinity=abc"), ("cookie", "b=2")]);
        assert_eq!(cookie(&m, "portico-affinity"), Some("abc"));
        assert_eq!(cookie(&m, "b"), Some("2"));
        assert_eq!(cookie(&m, "c"), None);
    }
}
