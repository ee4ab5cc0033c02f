//! The proxy's command line, exactly as `docs/contracts.md` lists it. Every flag has an
//! environment equivalent `PORTICO_<FLAG_IN_CAPS>`.

use std::net::IpAddr;
use std::time::Duration;

use clap::Parser;
use ipnet::IpNet;
use portico_ingress::EndpointPolicy;

use crate::config::ObjectKey;
use crate::lb::Policy;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "portico-proxy",
    version,
    about = "Portico proxy: serves the Ingresses of one IngressClass"
)]
pub struct Args {
    /// The IngressClass served.
    #[arg(long, env = "PORTICO_INGRESS_CLASS")]
    pub ingress_class: String,

    /// The served namespaces (computed by the operator).
    #[arg(
        long,
        env = "PORTICO_NAMESPACES",
        value_delimiter = ',',
        required = true
    )]
    pub namespaces: Vec<String>,

    #[arg(long, env = "PORTICO_HTTP_PORT", default_value_t = 80)]
    pub http_port: u16,

    #[arg(long, env = "PORTICO_HTTPS_PORT", default_value_t = 443)]
    pub https_port: u16,

    #[arg(long, env = "PORTICO_ADMIN_PORT", default_value_t = 9090)]
    pub admin_port: u16,

    /// Local runs give each "pod" its own 10.244.x.y address.
    #[arg(long, env = "PORTICO_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,

    /// `round-robin`, `least-request`, `cookie`, `client-ip`, `header:<Header-Name>`.
    #[arg(long, env = "PORTICO_LOAD_BALANCE", default_value = "round-robin", value_parser = parse_policy)]
    pub load_balance: Policy,

    #[arg(long, env = "PORTICO_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    #[arg(long, env = "PORTICO_REQUEST_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    #[arg(long, env = "PORTICO_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Retries of idempotent requests on connect failure, each on another endpoint.
    #[arg(long, env = "PORTICO_RETRIES", default_value_t = 2)]
    pub retries: u32,

    /// Whose `X-Forwarded-*` headers are kept.
    #[arg(long, env = "PORTICO_TRUSTED_PROXY_CIDRS", value_delimiter = ',')]
    pub trusted_proxy_cidrs: Vec<IpNet>,

    /// kubernetes.io/tls Secret (`NS/NAME`) served when SNI matches nothing.
    #[arg(long, env = "PORTICO_DEFAULT_CERTIFICATE", value_parser = parse_object_key)]
    pub default_certificate: Option<ObjectKey>,

    /// 308 to HTTPS for hosts that have TLS.
    #[arg(long, env = "PORTICO_SSL_REDIRECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub ssl_redirect: bool,

    /// `Strict-Transport-Security` on HTTPS responses.
    #[arg(long, env = "PORTICO_HSTS", default_value_t = false, action = clap::ArgAction::Set)]
    pub hsts: bool,

    #[arg(long, env = "PORTICO_MIN_TLS_VERSION", default_value = "1.2", value_parser = ["1.2", "1.3"])]
    pub min_tls_version: String,

    /// Open downstream connections per pod, over both listeners; beyond it a new connection
    /// is closed at once.
    #[arg(long, env = "PORTICO_MAX_CONNECTIONS", default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// `appProtocol: https` backends without a CA bundle (`portico.dev/backend-tls-ca-secret`
    /// on the Service) are reached without verifying their certificate; `false` refuses
    /// to serve Ingresses that use such a backend.
    #[arg(long, env = "PORTICO_BACKEND_TLS_ALLOW_UNVERIFIED", default_value_t = true, action = clap::ArgAction::Set)]
    pub backend_tls_allow_unverified: bool,

    /// Upstream connections in use (requests in flight) per backend endpoint; a request
    /// beyond it waits up to the connect timeout for a slot, then gets 503.
    #[arg(long, env = "PORTICO_MAX_CONNECTIONS_PER_ENDPOINT", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections_per_endpoint: u32,

    /// An upgraded (WebSocket) connection with no bytes moving for this long is closed.
    #[arg(long, env = "PORTICO_TUNNEL_IDLE_TIMEOUT", default_value = "1h", value_parser = parse_duration)]
    pub tunnel_idle_timeout: Duration,

    /// Concurrent streams per downstream HTTP/2 connection.
    #[arg(long, env = "PORTICO_HTTP2_MAX_CONCURRENT_STREAMS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub http2_max_concurrent_streams: u32,

    /// Initial flow-control window of a downstream HTTP/2 stream, in bytes.
    #[arg(long, env = "PORTICO_HTTP2_INITIAL_STREAM_WINDOW", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(65_535..=16_777_216))]
    pub http2_initial_stream_window: u32,

    /// Largest request body, in ingress-nginx's size syntax (`1m`, `512k`; `0`: no limit);
    /// 413 beyond it. Parsed to bytes; 0 is no limit.
    #[arg(long, env = "PORTICO_MAX_REQUEST_BODY_SIZE", default_value = "1m", value_parser = parse_body_size)]
    pub max_request_body_size: u64,

    /// `reject` answers 400 to a path with `%2F`, `%5C` or `\\`; `keep` passes them on as
    /// they are (encoded, not separators), for apps that need encoded slashes.
    #[arg(long, env = "PORTICO_ENCODED_SLASHES", default_value = "reject", value_parser = ["reject", "keep"])]
    pub encoded_slashes: String,

    /// `drop` removes request headers whose names hold `_` (as nginx does); `keep` passes them.
    #[arg(long, env = "PORTICO_UNDERSCORES_IN_HEADERS", default_value = "drop", value_parser = ["drop", "keep"])]
    pub underscores_in_headers: String,

    /// Endpoints in these ranges are never dialled (the platform's node and control-plane
    /// networks); loopback, link-local, metadata and this pod's own addresses never are.
    #[arg(long, env = "PORTICO_DENIED_ENDPOINT_CIDRS", value_delimiter = ',')]
    pub denied_endpoint_cidrs: Vec<IpNet>,

    /// This pod's addresses (the downward API's `status.podIPs`): endpoints there are
    /// refused on every port. Set by the Deployment; not a flag you need to pass.
    #[arg(long, env = "POD_IPS", value_delimiter = ',')]
    pub pod_ips: Vec<IpAddr>,

    /// After SIGTERM: not ready, still serving, then close.
    #[arg(long, env = "PORTICO_DRAIN_PERIOD", default_value = "10s", value_parser = parse_duration)]
    pub drain_period: Duration,

    #[arg(long, env = "PORTICO_LOG_FORMAT", default_value = "json", value_parser = ["json", "text"])]
    pub log_format: String,

    #[arg(long, env = "PORTICO_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl Args {
    /// The endpoints this proxy refuses: the denied ranges, and its own addresses (its pod
    /// IPs and a specific `--bind-address`), whatever the port.
    pub fn endpoint_policy(&self) -> EndpointPolicy {
        let mut own = self.pod_ips.clone();
        if !self.bind_address.is_unspecified() {
            own.push(self.bind_address);
        }
        own.sort();
        own.dedup();
        EndpointPolicy {
            denied: self.denied_endpoint_cidrs.clone(),
            own,
        }
    }
}

/// Durations like `250ms`, `5s`, `2m`, `1h`, and compound ones like `1m30s` (the CRD's
/// form); a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("invalid duration {s:?}: expected e.g. 250ms, 5s, 2m, 1h30m");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(err());
    }
    if rest.bytes().all(|b| b.is_ascii_digit()) {
        return rest.parse().map(Duration::from_secs).map_err(|_| err());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(err()),
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

fn parse_body_size(s: &str) -> Result<u64, String> {
    portico_ingress::parse_size(s).map(|limit| limit.unwrap_or(0))
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    s.parse()
}

fn parse_object_key(s: &str) -> Result<ObjectKey, String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(ObjectKey::new(ns, name))
        }
        _ => Err(format!("expected NAMESPACE/NAME, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1s500ms"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("5 s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn contract_flags_parse() {
        let a = Args::try_parse_from([
            "portico-proxy",
            "--ingress-class=team-a",
            "--namespaces=a,b",
            "--http-port=8080",
            "--load-balance=header:X-User",
            "--trusted-proxy-cidrs=10.0.0.0/8,192.168.0.0/16",
            "--default-certificate=a/default-cert",
            "--ssl-redirect=false",
            "--hsts=true",
            "--drain-period=1s",
        ])
        .expect("parse");
        assert_eq!(a.namespaces, vec!["a", "b"]);
        assert_eq!(a.http_port, 8080);
        assert!(!a.ssl_redirect);
        assert!(a.hsts);
        assert_eq!(a.trusted_proxy_cidrs.len(), 2);
        assert_eq!(
            a.default_certificate,
            Some(ObjectKey::new("a", "default-cert"))
        );
        assert!(matches!(a.load_balance, Policy::Header(_)));
        assert_eq!(a.drain_period, Duration::from_secs(1));
    }

    #[test]
    fn the_endpoint_policy_holds_the_denied_ranges_and_this_pods_addresses() {
        let a = Args::try_parse_from([
            "portico-proxy",
            "--ingress-class=c",
            "--namespaces=a",
            "--denied-endpoint-cidrs=10.0.0.0/24,fd00:1::/64",
            "--pod-ips=10.244.1.7,fd00:10:244::7",
            "--bind-address=10.244.1.7",
        ])
        .expect("parse");
        let p = a.endpoint_policy();
        assert_eq!(p.denied.len(), 2);
        assert_eq!(
            p.own,
            vec![
                "10.244.1.7".parse::<IpAddr>().expect("ip"),
                "fd00:10:244::7".parse().expect("ip"),
            ]
        );
        // The default bind address is every interface, which names no address.
        let a = Args::try_parse_from(["portico-proxy", "--ingress-class=c", "--namespaces=a"])
            .expect("parse");
        assert!(a.endpoint_policy().own.is_empty());
        assert!(a.endpoint_policy().denied.is_empty());
        assert!(
            Args::try_parse_from([
                "portico-proxy",
                "--ingress-class=c",
                "--namespaces=a",
                "--denied-endpoint-cidrs=10.0.0.0/33",
            ])
            .is_err(),
            "a bad CIDR fails the start"
        );
    }
}
