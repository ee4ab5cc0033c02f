//! The proxy's command line: one typed struct that the operator renders
//! ([`ProxyArgs::to_args`]) and the proxy parses (`ProxyArgs::parse`), so the contract
//! between them cannot drift. docs/contracts.md lists it; a round-trip test keeps the two
//! directions equal.
//!
//! ```text
//!  operator: IngressController spec + Settings ─▶ ProxyArgs ─▶ to_args() ─▶ Deployment args
//!  proxy:    container args (and PORTICO_* env) ─▶ ProxyArgs::parse() ─▶ typed settings
//! ```

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use clap::{Parser, ValueEnum};
use ipnet::IpNet;

use crate::LoadBalance;

/// A duration in Portico's one grammar: `250ms`, `5s`, `2m`, `1h`, or compound like
/// `1h30m` (the CRD's form). Shown in one unit, the largest that is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }

    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }

    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || format!("invalid duration {s:?}: expected e.g. 250ms, 5s, 2m, 1h30m");
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(err());
        }
        let mut total = std::time::Duration::ZERO;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
            if digits == 0 {
                return Err(err());
            }
            // Saturating: a schema-valid value never fails here, however large.
            let n: u64 = rest[..digits].parse().unwrap_or(u64::MAX);
            rest = &rest[digits..];
            let (part, len) = if let Some(r) = rest.strip_prefix("ms") {
                (std::time::Duration::from_millis(n), rest.len() - r.len())
            } else if rest.starts_with('s') {
                (std::time::Duration::from_secs(n), 1)
            } else if rest.starts_with('m') {
                (std::time::Duration::from_secs(n.saturating_mul(60)), 1)
            } else if rest.starts_with('h') {
                (std::time::Duration::from_secs(n.saturating_mul(3600)), 1)
            } else {
                return Err(err());
            };
            total = total.saturating_add(part);
            rest = &rest[len..];
        }
        Ok(Duration(total))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            0 => f.write_str("0s"),
            _ if ms.is_multiple_of(3_600_000) => write!(f, "{}h", ms / 3_600_000),
            _ if ms.is_multiple_of(60_000) => write!(f, "{}m", ms / 60_000),
            _ if ms.is_multiple_of(1000) => write!(f, "{}s", ms / 1000),
            _ => write!(f, "{ms}ms"),
        }
    }
}

/// `namespace/name` of an object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

impl FromStr for NamespacedName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(NamespacedName {
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(format!("expected NAMESPACE/NAME, got {s:?}")),
        }
    }
}

impl fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A byte size in ingress-nginx's syntax (`1m`, `512k`, `0` for no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub Option<u64>);

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::parse_size(s).map(Size)
    }
}

/// In the largest exact unit: `1m`, `512k`, `1500`, `0`.
impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0.unwrap_or(0);
        match bytes {
            0 => f.write_str("0"),
            _ if bytes.is_multiple_of(1 << 30) => write!(f, "{}g", bytes >> 30),
            _ if bytes.is_multiple_of(1 << 20) => write!(f, "{}m", bytes >> 20),
            _ if bytes.is_multiple_of(1 << 10) => write!(f, "{}k", bytes >> 10),
            _ => write!(f, "{bytes}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum TlsVersion {
    #[default]
    #[value(name = "1.2")]
    V1_2,
    #[value(name = "1.3")]
    V1_3,
}

/// What a path holding `%2F`, `%5C` or `\` gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum EncodedSlashes {
    /// 400.
    #[default]
    Reject,
    /// Passed on encoded (not separators).
    Keep,
}

/// What request headers with `_` in the name get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum UnderscoreHeaders {
    #[default]
    Drop,
    Keep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

fn value_name(v: impl ValueEnum) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_owned())
        .unwrap_or_default()
}

impl fmt::Display for LoadBalance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadBalance::RoundRobin => f.write_str("round-robin"),
            LoadBalance::LeastRequest => f.write_str("least-request"),
            LoadBalance::Cookie => f.write_str("cookie"),
            LoadBalance::ClientIp => f.write_str("client-ip"),
            LoadBalance::Header(h) => write!(f, "header:{h}"),
            LoadBalance::Uri => f.write_str("uri"),
            LoadBalance::CookieValue(c) => write!(f, "cookie:{c}"),
        }
    }
}

/// `portico-proxy`'s command line, exactly as docs/contracts.md lists it. Every flag has an
/// environment equivalent `PORTICO_<FLAG_IN_CAPS>`.
#[derive(Debug, Clone, PartialEq, Parser)]
#[command(
    name = "portico-proxy",
    version,
    about = "Portico proxy: serves the Ingresses of one IngressClass"
)]
pub struct ProxyArgs {
    /// The IngressClass served.
    #[arg(long, env = "PORTICO_INGRESS_CLASS")]
    pub ingress_class: String,

    /// The IngressController's namespace: only its Ingresses (and those of
    /// `--catch-all-namespaces`) may hold the `defaultBackend` and host-less rules.
    #[arg(long, env = "PORTICO_INSTANCE_NAMESPACE")]
    pub instance_namespace: String,

    /// The served namespaces (computed by the operator).
    #[arg(
        long,
        env = "PORTICO_NAMESPACES",
        value_delimiter = ',',
        required = true
    )]
    pub namespaces: Vec<String>,

    /// A host belongs to the namespace of its oldest Ingress; `false` merges one host's
    /// paths across namespaces, as ingress-nginx did (platform policy).
    #[arg(long, env = "PORTICO_HOST_OWNERSHIP", default_value_t = true, action = clap::ArgAction::Set)]
    pub host_ownership: bool,

    /// Namespaces, besides the instance's own, whose catch-alls are served (platform policy).
    #[arg(long, env = "PORTICO_CATCH_ALL_NAMESPACES", value_delimiter = ',')]
    pub catch_all_namespaces: Vec<String>,

    #[arg(long, env = "PORTICO_HTTP_PORT", default_value_t = 80)]
    pub http_port: u16,

    #[arg(long, env = "PORTICO_HTTPS_PORT", default_value_t = 443)]
    pub https_port: u16,

    #[arg(long, env = "PORTICO_ADMIN_PORT", default_value_t = 9090)]
    pub admin_port: u16,

    /// Local runs give each "pod" its own 10.244.x.y address (default: every address).
    #[arg(long, env = "PORTICO_BIND_ADDRESS")]
    pub bind_address: Option<IpAddr>,

    /// `round-robin`, `least-request`, `cookie`, `client-ip`, `uri`, `header:<Header-Name>`, `cookie:<name>`.
    #[arg(long, env = "PORTICO_LOAD_BALANCE", default_value = "round-robin")]
    pub load_balance: LoadBalance,

    #[arg(long, env = "PORTICO_CONNECT_TIMEOUT", default_value = "5s")]
    pub connect_timeout: Duration,

    #[arg(long, env = "PORTICO_REQUEST_TIMEOUT", default_value = "60s")]
    pub request_timeout: Duration,

    #[arg(long, env = "PORTICO_IDLE_TIMEOUT", default_value = "60s")]
    pub idle_timeout: Duration,

    /// Retries of idempotent requests on connect failure, each on another endpoint.
    #[arg(long, env = "PORTICO_RETRIES", default_value_t = 2)]
    pub retries: u32,

    /// Every connection opens with a PROXY protocol (v1 or v2) header naming the client;
    /// one without a valid header is closed.
    #[arg(long, env = "PORTICO_PROXY_PROTOCOL", default_value_t = false, action = clap::ArgAction::Set)]
    pub proxy_protocol: bool,

    /// Whose `X-Forwarded-*` headers are kept.
    #[arg(long, env = "PORTICO_TRUSTED_PROXY_CIDRS", value_delimiter = ',')]
    pub trusted_proxy_cidrs: Vec<IpNet>,

    /// kubernetes.io/tls Secret (`NS/NAME`) served when SNI matches nothing.
    #[arg(long, env = "PORTICO_DEFAULT_CERTIFICATE")]
    pub default_certificate: Option<NamespacedName>,

    /// 308 to HTTPS for hosts that have TLS.
    #[arg(long, env = "PORTICO_SSL_REDIRECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub ssl_redirect: bool,

    /// `Strict-Transport-Security` on HTTPS responses.
    #[arg(long, env = "PORTICO_HSTS", default_value_t = false, action = clap::ArgAction::Set)]
    pub hsts: bool,

    #[arg(long, env = "PORTICO_MIN_TLS_VERSION", value_enum, default_value_t)]
    pub min_tls_version: TlsVersion,

    /// An upgraded (WebSocket) connection with no bytes moving for this long is closed.
    #[arg(long, env = "PORTICO_TUNNEL_IDLE_TIMEOUT", default_value = "1h")]
    pub tunnel_idle_timeout: Duration,

    /// Open downstream connections per pod, over both listeners; beyond it a new connection
    /// is closed at once.
    #[arg(long, env = "PORTICO_MAX_CONNECTIONS", default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// `appProtocol: https` backends without a CA bundle (`portico.dev/backend-tls-ca-secret`
    /// on the Service) are reached without verifying their certificate; `false` refuses
    /// to serve Ingresses that use such a backend.
    #[arg(long, env = "PORTICO_BACKEND_TLS_ALLOW_UNVERIFIED", default_value_t = true, action = clap::ArgAction::Set)]
    pub backend_tls_allow_unverified: bool,

    /// ingress-nginx annotations (names without the prefix) that would make an Ingress
    /// unserved because they decide access and are not supported, served anyway (ignored).
    #[arg(long, env = "PORTICO_ACCEPT_RISK_ANNOTATIONS", value_delimiter = ',')]
    pub accept_risk_annotations: Vec<String>,

    /// Upstream connections in use (requests in flight) per backend endpoint; a request
    /// beyond it waits up to the connect timeout for a slot, then gets 503.
    #[arg(long, env = "PORTICO_MAX_CONNECTIONS_PER_ENDPOINT", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections_per_endpoint: u32,

    /// Concurrent streams per downstream HTTP/2 connection.
    #[arg(long, env = "PORTICO_HTTP2_MAX_CONCURRENT_STREAMS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub http2_max_concurrent_streams: u32,

    /// Initial flow-control window of a downstream HTTP/2 stream, in bytes.
    #[arg(long, env = "PORTICO_HTTP2_INITIAL_STREAM_WINDOW", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(65_535..=16_777_216))]
    pub http2_initial_stream_window: u32,

    /// Largest request body, in ingress-nginx's size syntax (`1m`, `512k`; `0`: no limit);
    /// 413 beyond it.
    #[arg(long, env = "PORTICO_MAX_REQUEST_BODY_SIZE", default_value = "1m")]
    pub max_request_body_size: Size,

    /// `reject` answers 400 to a path with `%2F`, `%5C` or `\\`; `keep` passes them on as
    /// they are (encoded, not separators), for apps that need encoded slashes.
    #[arg(long, env = "PORTICO_ENCODED_SLASHES", value_enum, default_value_t)]
    pub encoded_slashes: EncodedSlashes,

    /// `drop` removes request headers whose names hold `_` (as nginx does); `keep` passes them.
    #[arg(
        long,
        env = "PORTICO_UNDERSCORES_IN_HEADERS",
        value_enum,
        default_value_t
    )]
    pub underscores_in_headers: UnderscoreHeaders,

    /// Endpoints in these ranges are never dialled (the platform's node and control-plane
    /// networks); loopback, link-local, metadata and this pod's own addresses never are.
    #[arg(long, env = "PORTICO_DENIED_ENDPOINT_CIDRS", value_delimiter = ',')]
    pub denied_endpoint_cidrs: Vec<IpNet>,

    /// This pod's addresses (the downward API's `status.podIPs`): endpoints there are
    /// refused on every port. Set by the Deployment's env; never rendered as a flag.
    #[arg(long, env = "POD_IPS", value_delimiter = ',')]
    pub pod_ips: Vec<IpAddr>,

    /// After SIGTERM: not ready, still serving, then close.
    #[arg(long, env = "PORTICO_DRAIN_PERIOD", default_value = "10s")]
    pub drain_period: Duration,

    /// One JSON line per request on stdout (docs/configuration.md, "Access log"); an
    /// Ingress turns its own off with `nginx.ingress.kubernetes.io/enable-access-log: "false"`.
    #[arg(long, env = "PORTICO_ACCESS_LOG", default_value_t = false, action = clap::ArgAction::Set)]
    pub access_log: bool,

    #[arg(long, env = "PORTICO_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,

    #[arg(long, env = "PORTICO_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl ProxyArgs {
    /// What one Ingress may ask for on this instance: the judgement's [`crate::Limits`],
    /// the same for the proxy that parses these flags and the operator that renders them.
    pub fn limits(&self) -> crate::Limits {
        crate::Limits {
            allow_unverified_backend_tls: self.backend_tls_allow_unverified,
            accept_risk: self
                .accept_risk_annotations
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            ..crate::Limits::default()
        }
    }

    /// Every flag's default, with the three the proxy cannot do without.
    pub fn new(ingress_class: &str, instance_namespace: &str, namespaces: Vec<String>) -> Self {
        let mut args = ProxyArgs::parse_from([
            "portico-proxy",
            "--ingress-class=x",
            "--instance-namespace=x",
            "--namespaces=x",
        ]);
        args.ingress_class = ingress_class.to_owned();
        args.instance_namespace = instance_namespace.to_owned();
        args.namespaces = namespaces;
        args
    }

    /// The command line that parses back into `self`, in contract order. Unset optional
    /// flags and empty lists are left out.
    pub fn to_args(&self) -> Vec<String> {
        let join = |items: &[String]| items.join(",");
        let mut out = vec![
            format!("--ingress-class={}", self.ingress_class),
            format!("--instance-namespace={}", self.instance_namespace),
            format!("--namespaces={}", join(&self.namespaces)),
            format!("--host-ownership={}", self.host_ownership),
        ];
        if !self.catch_all_namespaces.is_empty() {
            out.push(format!(
                "--catch-all-namespaces={}",
                join(&self.catch_all_namespaces)
            ));
        }
        out.extend([
            format!("--http-port={}", self.http_port),
            format!("--https-port={}", self.https_port),
            format!("--admin-port={}", self.admin_port),
        ]);
        if let Some(ip) = self.bind_address {
            out.push(format!("--bind-address={ip}"));
        }
        out.extend([
            format!("--load-balance={}", self.load_balance),
            format!("--connect-timeout={}", self.connect_timeout),
            format!("--request-timeout={}", self.request_timeout),
            format!("--idle-timeout={}", self.idle_timeout),
            format!("--retries={}", self.retries),
        ]);
        if self.proxy_protocol {
            out.push("--proxy-protocol=true".to_owned());
        }
        if !self.trusted_proxy_cidrs.is_empty() {
            let cidrs: Vec<String> = self
                .trusted_proxy_cidrs
                .iter()
                .map(ToString::to_string)
                .collect();
            out.push(format!("--trusted-proxy-cidrs={}", join(&cidrs)));
        }
        if let Some(cert) = &self.default_certificate {
            out.push(format!("--default-certificate={cert}"));
        }
        out.extend([
            format!("--ssl-redirect={}", self.ssl_redirect),
            format!("--hsts={}", self.hsts),
            format!("--min-tls-version={}", value_name(self.min_tls_version)),
            format!("--tunnel-idle-timeout={}", self.tunnel_idle_timeout),
            format!("--max-connections={}", self.max_connections),
            format!(
                "--backend-tls-allow-unverified={}",
                self.backend_tls_allow_unverified
            ),
            format!(
                "--max-connections-per-endpoint={}",
                self.max_connections_per_endpoint
            ),
            format!(
                "--http2-max-concurrent-streams={}",
                self.http2_max_concurrent_streams
            ),
            format!(
                "--http2-initial-stream-window={}",
                self.http2_initial_stream_window
            ),
            format!("--max-request-body-size={}", self.max_request_body_size),
            format!("--encoded-slashes={}", value_name(self.encoded_slashes)),
            format!(
                "--underscores-in-headers={}",
                value_name(self.underscores_in_headers)
            ),
        ]);
        if !self.accept_risk_annotations.is_empty() {
            out.push(format!(
                "--accept-risk-annotations={}",
                join(&self.accept_risk_annotations)
            ));
        }
        if !self.denied_endpoint_cidrs.is_empty() {
            let cidrs: Vec<String> = self
                .denied_endpoint_cidrs
                .iter()
                .map(ToString::to_string)
                .collect();
            out.push(format!("--denied-endpoint-cidrs={}", join(&cidrs)));
        }
        // Only when on: a Deployment rendered before the flag existed keeps its arguments,
        // so upgrading the operator does not roll every proxy fleet.
        if self.access_log {
            out.push("--access-log=true".to_owned());
        }
        out.extend([
            format!("--drain-period={}", self.drain_period),
            format!("--log-format={}", value_name(self.log_format)),
            format!("--log-level={}", self.log_level),
        ]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_one_grammar_and_one_spelling() {
        let d = |s: &str| s.parse::<Duration>().map(|d| d.0);
        assert_eq!(d("250ms"), Ok(std::time::Duration::from_millis(250)));
        assert_eq!(d("5s"), Ok(std::time::Duration::from_secs(5)));
        assert_eq!(d("1h30m"), Ok(std::time::Duration::from_secs(5400)));
        assert_eq!(d("1s500ms"), Ok(std::time::Duration::from_millis(1500)));
        for bad in ["", "5", "s", "5x", "5 s", "m5", "-1s"] {
            assert!(d(bad).is_err(), "{bad:?}");
        }
        // Saturates rather than failing on a pattern-valid but huge value.
        assert!(d("99999999999999999999999h").is_ok());
        let show = |s: &str| s.parse::<Duration>().map(|d| d.to_string());
        assert_eq!(show("1h30m").as_deref(), Ok("90m"));
        assert_eq!(show("1m30s").as_deref(), Ok("90s"));
        assert_eq!(show("1s500ms").as_deref(), Ok("1500ms"));
        assert_eq!(show("120s").as_deref(), Ok("2m"));
        assert_eq!(show("0ms").as_deref(), Ok("0s"));
    }

    #[test]
    fn what_the_operator_renders_the_proxy_parses_back() {
        let mut args = ProxyArgs::new("team-a", "a", vec!["a".into(), "b".into()]);
        assert_eq!(
            ProxyArgs::try_parse_from(
                std::iter::once("portico-proxy".to_owned()).chain(args.to_args())
            )
            .expect("defaults round-trip"),
            args
        );
        args.host_ownership = false;
        args.catch_all_namespaces = vec!["infra".into()];
        args.http_port = 8080;
        args.load_balance = LoadBalance::Header("X-User".into());
        args.connect_timeout = "1h30m".parse().expect("duration");
        args.request_timeout = Duration::from_millis(1500);
        args.trusted_proxy_cidrs = vec!["10.0.0.0/8".parse().expect("cidr")];
        args.proxy_protocol = true;
        args.default_certificate = Some("a/default-cert".parse().expect("name"));
        args.ssl_redirect = false;
        args.hsts = true;
        args.min_tls_version = TlsVersion::V1_3;
        args.max_request_body_size = "1536k".parse().expect("size");
        args.encoded_slashes = EncodedSlashes::Keep;
        args.underscores_in_headers = UnderscoreHeaders::Keep;
        args.log_format = LogFormat::Text;
        args.bind_address = Some("10.244.0.9".parse().expect("ip"));
        args.denied_endpoint_cidrs = vec!["192.168.0.0/16".parse().expect("cidr")];
        args.accept_risk_annotations = vec!["auth-url".into(), "limit-rps".into()];
        args.access_log = true;
        let rendered = args.to_args();
        assert!(rendered.contains(&"--max-request-body-size=1536k".to_owned()));
        let parsed =
            ProxyArgs::try_parse_from(std::iter::once("portico-proxy".to_owned()).chain(rendered))
                .expect("parse");
        assert_eq!(parsed, args);
    }

    #[test]
    fn bad_flags_say_what_to_fix() {
        let err = ProxyArgs::try_parse_from([
            "portico-proxy",
            "--ingress-class=a",
            "--instance-namespace=a",
            "--namespaces=a",
            "--connect-timeout=5",
        ])
        .expect_err("bare number");
        assert!(err.to_string().contains("expected e.g. 250ms"), "{err}");
        let err =
            ProxyArgs::try_parse_from(["portico-proxy", "--ingress-class=a", "--namespaces=a"])
                .expect_err("instance namespace required");
        assert!(err.to_string().contains("--instance-namespace"), "{err}");
    }
}
