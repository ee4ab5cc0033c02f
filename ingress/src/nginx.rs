//! ingress-nginx's annotations (`nginx.ingress.kubernetes.io/*`), read natively: each one
//! ingress-nginx documents is honoured, honoured with a documented difference, or not
//! supported. Not supported is only a notice, except for the annotations that decide who
//! may reach an app (auth, source ranges, rate limits, `satisfy`, WAF) and those carrying
//! nginx configuration (snippets): an Ingress with one of those is not served at all
//! (fail closed), unless the instance accepts the risk for that annotation.
//!
//! ```text
//!  Ingress annotations ─▶ read() ─┬─▶ Nginx (typed settings check() uses)
//!                                 ├─▶ notices: not honoured (Event, status count; still served)
//!                                 └─▶ refusals: fail closed (Problem: the Ingress is not served)
//! ```
//!
//! docs/migrating-from-ingress-nginx.md is the table in prose; `SUPPORT` is the source.

use std::collections::BTreeSet;

use k8s_openapi::api::networking::v1::Ingress;

use crate::LoadBalance;

mod routing;
pub use routing::{Redirect, RewriteTarget, Routing};

pub const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// What Portico does with one ingress-nginx annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Support {
    /// As ingress-nginx documents it.
    Honoured,
    /// Honoured, with the difference said.
    Differs(&'static str),
    /// Ignored: the Ingress is served without it (a notice says so).
    NotSupported,
    /// It decides who may reach the app, or carries nginx configuration: while it is not
    /// supported, the Ingress is not served at all.
    FailClosed,
}

impl Support {
    /// The verdict as docs/migrating-from-ingress-nginx.md's table says it.
    pub fn describe(self) -> String {
        match self {
            Support::Differs(how) => format!("honoured, differs: {how}"),
            other => other.label().to_owned(),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Support::Honoured => "honoured",
            Support::Differs(_) => "honoured with a difference",
            Support::NotSupported => "not supported",
            Support::FailClosed => "not supported, decides access: Ingress not served",
        }
    }
}

use Support::{Differs, FailClosed, Honoured, NotSupported};

/// Every annotation ingress-nginx documents (its docs, user-guide/nginx-configuration/
/// annotations.md), by name without the prefix, and what Portico does with it.
pub const SUPPORT: &[(&str, Support)] = &[
    (
        "affinity",
        Differs(
            "\"cookie\" is honoured as Portico's cookie affinity (consistent hash on its own cookie, whose attributes session-cookie-* set)",
        ),
    ),
    ("affinity-canary-behavior", NotSupported),
    (
        "affinity-mode",
        Differs(
            "cookie affinity is a consistent hash of the cookie: a removed endpoint's sessions move, and a new endpoint takes a share of sessions (balanced); persistent is treated as balanced",
        ),
    ),
    (
        "allowlist-source-range",
        Differs(
            "403 for other client addresses; the client is the peer, or the X-Forwarded-For address from a trusted proxy (spec.trustedProxyCIDRs)",
        ),
    ),
    (
        "app-root",
        Differs(
            "302 for a request for / that one of the Ingress's paths matches (nginx: any request for / to the host)",
        ),
    ),
    ("auth-always-set-cookie", Honoured),
    (
        "auth-cache-duration",
        Differs("answers are kept per proxy pod, at most 10,000"),
    ),
    (
        "auth-cache-key",
        Differs(
            "variables $remote_addr, $host, $request_uri, $remote_user, $http_* and $cookie_*; others refuse the Ingress",
        ),
    ),
    (
        "auth-keepalive",
        Differs(
            "ignored: connections to the auth service are always pooled (at most 128 idle per address and worker)",
        ),
    ),
    (
        "auth-keepalive-requests",
        Differs("ignored: connections to the auth service are always pooled"),
    ),
    ("auth-keepalive-share-vars", NotSupported),
    (
        "auth-keepalive-timeout",
        Differs("ignored: idle auth connections close after the instance's idle timeout"),
    ),
    ("auth-method", Honoured),
    ("auth-proxy-set-headers", FailClosed),
    ("auth-realm", Honoured),
    ("auth-request-redirect", Honoured),
    (
        "auth-response-headers",
        Differs(
            "a header the auth service does not return is removed from the request, so a client cannot supply it",
        ),
    ),
    (
        "auth-secret",
        Differs(
            "a Secret of the Ingress's own namespace only; a missing Secret, or one without a usable user, leaves the Ingress unserved",
        ),
    ),
    ("auth-secret-type", Honoured),
    (
        "auth-signin",
        Differs(
            "variables $host, $scheme, $request_uri and $escaped_request_uri are filled in; others refuse the Ingress",
        ),
    ),
    ("auth-signin-redirect-param", Honoured),
    ("auth-snippet", FailClosed),
    ("auth-tls-error-page", Honoured),
    ("auth-tls-match-cn", FailClosed),
    (
        "auth-tls-pass-certificate-to-upstream",
        Differs(
            "ssl-client-cert (URL-escaped PEM of the leaf) and ssl-client-verify; no ssl-client-subject-dn or ssl-client-issuer-dn",
        ),
    ),
    (
        "auth-tls-secret",
        Differs(
            "a Secret of the Ingress's own namespace; the handshake asks for a certificate when any Ingress of the SNI host has one, and each Ingress's paths judge it against their own CA (a request whose Host is not its SNI host, or over plain HTTP, has none to show)",
        ),
    ),
    ("auth-tls-verify-client", Honoured),
    (
        "auth-tls-verify-depth",
        Differs("counts the certificates the client sends (its own and intermediates)"),
    ),
    (
        "auth-type",
        Differs("basic, with bcrypt, {SHA} and MD5-crypt ($apr1$, $1$) entries; digest is refused"),
    ),
    (
        "auth-url",
        Differs(
            "http:// only (https:// refuses the Ingress); variables $host, $scheme, $request_uri, $escaped_request_uri; a 5 s deadline; addresses no endpoint may have are refused (500)",
        ),
    ),
    (
        "backend-protocol",
        Differs("HTTP, HTTPS and GRPC (cleartext HTTP/2); GRPCS, AJP and FCGI are refused"),
    ),
    (
        "canary",
        Differs(
            "a canary Ingress shares host and path with its primary in the same namespace; one canary per path",
        ),
    ),
    ("canary-by-cookie", Honoured),
    ("canary-by-header", Honoured),
    (
        "canary-by-header-pattern",
        Differs(
            "Rust regex syntax (no look-around or back-references), matched anywhere in the value",
        ),
    ),
    ("canary-by-header-value", Honoured),
    (
        "canary-weight",
        Differs(
            "requests are spread by a deterministic rotation, so the share is exact over every weight-total requests (nginx: random)",
        ),
    ),
    ("canary-weight-total", Honoured),
    ("client-body-buffer-size", NotSupported),
    ("configuration-snippet", FailClosed),
    ("connection-proxy-header", NotSupported),
    ("cors-allow-credentials", Honoured),
    ("cors-allow-headers", Honoured),
    ("cors-allow-methods", Honoured),
    (
        "cors-allow-origin",
        Differs(
            "\"*\" or a comma-separated list (*.domain matches subdomains); a list Portico cannot read turns CORS off for the Ingress rather than falling back to \"*\"",
        ),
    ),
    ("cors-expose-headers", Honoured),
    ("cors-max-age", Honoured),
    ("custom-headers", NotSupported),
    (
        "custom-http-errors",
        Differs(
            "only with default-backend on the same Ingress (Portico has no global one); the default backend is asked over cleartext HTTP/1.1 and its answer returned as it is",
        ),
    ),
    (
        "default-backend",
        Differs(
            "a Service of the Ingress's namespace, on its first port, over cleartext HTTP/1.1: used for custom-http-errors and when a rule's Service has no endpoints",
        ),
    ),
    ("denylist-source-range", Honoured),
    (
        "enable-access-log",
        Differs(
            "\"false\" turns the Ingress's lines off when the instance logs (spec.accessLog); \"true\" cannot turn them on where it does not, and the line is Portico's JSON, not nginx's log-format",
        ),
    ),
    (
        "enable-cors",
        Differs(
            "the proxy answers OPTIONS from an allowed origin with 204 and the Access-Control-* headers, as nginx, and sets them on every response of the Ingress, the proxy's own errors included",
        ),
    ),
    ("enable-global-auth", NotSupported),
    ("enable-modsecurity", FailClosed),
    ("enable-opentelemetry", NotSupported),
    ("enable-opentracing", NotSupported),
    ("enable-owasp-core-rules", FailClosed),
    ("enable-rewrite-log", NotSupported),
    (
        "force-ssl-redirect",
        Differs("308 to HTTPS for every host of the Ingress, TLS section or not (nginx: 308)"),
    ),
    (
        "from-to-www-redirect",
        Differs(
            "308 for www.<host> ↔ <host>, only when no Ingress serves the other name and its owner is the Ingress's namespace",
        ),
    ),
    ("global-rate-limit", FailClosed),
    ("global-rate-limit-ignored-cidrs", FailClosed),
    ("global-rate-limit-key", FailClosed),
    ("global-rate-limit-window", FailClosed),
    ("http2-push-preload", NotSupported),
    ("limit-allowlist", Honoured),
    ("limit-burst-multiplier", Honoured),
    (
        "limit-connections",
        Differs(
            "requests in flight per client address and per proxy pod; 429 by default (portico.dev/limit-status-code: 503)",
        ),
    ),
    ("limit-rate", NotSupported),
    ("limit-rate-after", NotSupported),
    (
        "limit-rpm",
        Differs(
            "per client address and per proxy pod, as ingress-nginx; 429 with Retry-After by default (portico.dev/limit-status-code: 503)",
        ),
    ),
    (
        "limit-rps",
        Differs(
            "per client address and per proxy pod, as ingress-nginx; 429 with Retry-After by default (portico.dev/limit-status-code: 503)",
        ),
    ),
    ("limit-whitelist", Honoured),
    (
        "load-balance",
        Differs("round_robin as round-robin; ewma as least-request (power of two choices)"),
    ),
    ("mirror-host", NotSupported),
    ("mirror-request-body", NotSupported),
    ("mirror-target", NotSupported),
    ("modsecurity-snippet", FailClosed),
    ("modsecurity-transaction-id", FailClosed),
    ("opentelemetry-operation-name", NotSupported),
    ("opentelemetry-trust-incoming-span", NotSupported),
    ("permanent-redirect", Honoured),
    ("permanent-redirect-code", Honoured),
    ("preserve-trailing-slash", NotSupported),
    ("proxy-body-size", Honoured),
    ("proxy-buffer-size", NotSupported),
    ("proxy-buffering", NotSupported),
    ("proxy-buffers-number", NotSupported),
    (
        "proxy-connect-timeout",
        Differs(
            "bounds each connect attempt (TCP and TLS handshake), as nginx; nginx caps it at 75s, Portico does not",
        ),
    ),
    ("proxy-cookie-domain", NotSupported),
    ("proxy-cookie-path", NotSupported),
    ("proxy-http-version", NotSupported),
    ("proxy-max-temp-file-size", NotSupported),
    (
        "proxy-next-upstream",
        Differs(
            "error and timeout retry a request whose connection failed (nothing was sent yet) on another endpoint; non_idempotent extends that to POST and the like; off turns retries off; http_*, invalid_header and failures after the request was sent are not retried",
        ),
    ),
    ("proxy-next-upstream-timeout", NotSupported),
    (
        "proxy-next-upstream-tries",
        Differs(
            "attempts in all, the first included, as nginx; 0 tries each endpoint once at most",
        ),
    ),
    (
        "proxy-read-timeout",
        Differs(
            "one deadline from sending the request to the response head (504 beyond it), the larger of proxy-send-timeout and proxy-read-timeout; nginx times each read and write, so it also cuts a response body that pauses longer, which Portico does not",
        ),
    ),
    ("proxy-redirect-from", NotSupported),
    ("proxy-redirect-to", NotSupported),
    ("proxy-request-buffering", NotSupported),
    (
        "proxy-send-timeout",
        Differs(
            "no separate send deadline: sending the request counts against one deadline to the response head, the larger of proxy-send-timeout and proxy-read-timeout (see proxy-read-timeout)",
        ),
    ),
    ("proxy-ssl-ciphers", NotSupported),
    ("proxy-ssl-name", NotSupported),
    ("proxy-ssl-protocols", NotSupported),
    ("proxy-ssl-secret", NotSupported),
    ("proxy-ssl-server-name", NotSupported),
    ("proxy-ssl-verify", NotSupported),
    ("proxy-ssl-verify-depth", NotSupported),
    (
        "rewrite-target",
        Differs(
            "$1 to $9 only (no other nginx variables, no query, no redirect); Rust regex syntax",
        ),
    ),
    ("satisfy", Honoured),
    (
        "server-alias",
        Differs(
            "each alias is a host of the Ingress's rules, judged by host ownership like any host it names (a host another namespace owns is refused)",
        ),
    ),
    ("server-snippet", FailClosed),
    ("service-upstream", NotSupported),
    ("session-cookie-change-on-failure", NotSupported),
    ("session-cookie-conditional-samesite-none", NotSupported),
    ("session-cookie-domain", NotSupported),
    (
        "session-cookie-expires",
        Differs(
            "seconds from when the cookie is set, sent as Expires, as nginx; only with affinity: cookie",
        ),
    ),
    ("session-cookie-max-age", Honoured),
    (
        "session-cookie-name",
        Differs(
            "names Portico's affinity cookie (default portico-affinity, nginx: INGRESSCOOKIE); its value is Portico's token",
        ),
    ),
    (
        "session-cookie-path",
        Differs("default Path=/ (nginx: the Ingress path)"),
    ),
    ("session-cookie-samesite", Honoured),
    ("session-cookie-secure", Honoured),
    ("ssl-ciphers", NotSupported),
    ("ssl-passthrough", NotSupported),
    ("ssl-prefer-server-ciphers", NotSupported),
    ("ssl-redirect", Honoured),
    ("stream-snippet", FailClosed),
    ("temporal-redirect", Honoured),
    ("temporal-redirect-code", Honoured),
    (
        "upstream-hash-by",
        Differs(
            "$remote_addr, $request_uri, $http_<name> and $cookie_<name>; other keys and combinations are not supported",
        ),
    ),
    ("upstream-hash-by-subset", NotSupported),
    ("upstream-hash-by-subset-size", NotSupported),
    (
        "upstream-vhost",
        Differs("a host name with an optional port, no nginx variables"),
    ),
    (
        "use-regex",
        Differs(
            "Rust regex syntax (no look-around or back-references, unlike PCRE); patterns up to 1024 bytes",
        ),
    ),
    (
        "whitelist-source-range",
        Differs(
            "403 for other client addresses; the client is the peer, or the X-Forwarded-For address from a trusted proxy (spec.trustedProxyCIDRs)",
        ),
    ),
    ("x-forwarded-prefix", Honoured),
];

/// What Portico does with annotation `name` (without the prefix). Unknown names are not
/// supported; an unknown name that sounds like access control fails closed.
pub fn support(name: &str) -> Support {
    match SUPPORT.binary_search_by(|(n, _)| (*n).cmp(name)) {
        Ok(i) => SUPPORT[i].1,
        Err(_) if is_access_control(name) => FailClosed,
        Err(_) => NotSupported,
    }
}

/// Names a future ingress-nginx (or a typo of one) could give an access-control or
/// configuration-carrying annotation: refused rather than ignored.
fn is_access_control(name: &str) -> bool {
    name.starts_with("auth-")
        || name.starts_with("limit-")
        || name.starts_with("global-rate-limit")
        || name.ends_with("-snippet")
        || name.ends_with("source-range")
        || name.contains("modsecurity")
}

/// One annotation of an Ingress and what Portico does with it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AnnotationVerdict {
    /// Without the prefix.
    pub name: String,
    pub support: Support,
    /// The value was not one Portico understands (for an honoured annotation).
    pub bad_value: Option<String>,
}

/// A canary Ingress (`canary: "true"`): which requests its rules take from the primary
/// Ingress of the same host and path. Precedence as in ingress-nginx: header, then
/// cookie, then weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    /// `canary-by-header`: the header; `always` sends to the canary, `never` to the
    /// primary (unless `header_value` is set: then only that value means the canary).
    pub by_header: Option<String>,
    /// `canary-by-header-value`.
    pub header_value: Option<String>,
    /// `canary-by-header-pattern`: a header value it matches means the canary (ignored
    /// when `header_value` is set, as in ingress-nginx).
    pub header_pattern: Option<HeaderPattern>,
    /// `canary-by-cookie`: `always` sends to the canary, `never` to the primary.
    pub by_cookie: Option<String>,
    /// `canary-weight` out of `canary-weight-total` (default 100).
    pub weight: u32,
    pub weight_total: u32,
}

/// A compiled `canary-by-header-pattern`, compared by its text.
#[derive(Debug, Clone)]
pub struct HeaderPattern(pub std::sync::Arc<regex::Regex>);

impl PartialEq for HeaderPattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for HeaderPattern {}

impl HeaderPattern {
    /// Compiles `pattern` within the same bounds as regex paths; `None` when it is too
    /// long or does not compile.
    pub fn new(pattern: &str) -> Option<HeaderPattern> {
        if pattern.is_empty() || pattern.len() > 1024 {
            return None;
        }
        regex::RegexBuilder::new(pattern)
            .size_limit(1 << 18)
            .dfa_size_limit(1 << 18)
            .nest_limit(64)
            .build()
            .ok()
            .map(|r| HeaderPattern(std::sync::Arc::new(r)))
    }

    pub fn is_match(&self, value: &str) -> bool {
        self.0.is_match(value)
    }
}

/// The settings Portico takes from an Ingress's nginx annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nginx {
    /// Set when the Ingress is a canary.
    pub canary: Option<Canary>,
    pub ssl_redirect: Option<bool>,
    pub force_ssl_redirect: bool,
    pub load_balance: Option<LoadBalance>,
    /// `backend-protocol`, as a Service port `appProtocol` Portico already understands.
    pub app_protocol: Option<&'static str>,
    /// Body size, timeouts, retries, access log (`crate::traffic`).
    pub traffic: crate::traffic::Traffic,
    /// Regex paths, rewrites, redirects, upstream Host and prefix (nginx/routing.rs).
    pub routing: Routing,
    /// `server-alias`: more hosts served by the Ingress's rules.
    pub server_alias: Vec<crate::HostPattern>,
    /// `whitelist-source-range` / `denylist-source-range`.
    pub source_ranges: crate::source_range::SourceRanges,
    /// Basic and external auth, rate limits, client certificates, `satisfy` (auth.rs).
    pub auth: crate::auth::Auth,
    /// `default-backend`: a Service of the Ingress's namespace.
    pub default_backend: Option<String>,
    /// `custom-http-errors`: statuses answered by the default backend instead.
    pub custom_http_errors: Vec<u16>,
}

/// The hosts of a `server-alias` value (comma or space separated); `Err` names the first
/// that is not a host.
pub fn server_aliases(value: &str) -> Result<Vec<crate::HostPattern>, String> {
    value
        .split([',', ' '])
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| match crate::HostPattern::parse(h) {
            Ok(crate::HostPattern::Any) | Err(_) => Err(h.to_owned()),
            Ok(host) => Ok(host),
        })
        .collect()
}

/// An Ingress's nginx annotations, read.
#[derive(Debug, Clone, Default)]
pub struct Read {
    pub settings: Nginx,
    /// Every nginx annotation, with what Portico does with it, sorted by name.
    pub verdicts: Vec<AnnotationVerdict>,
    /// Why the Ingress must not be served (fail closed, or a value Portico cannot honour).
    pub refusals: Vec<crate::Problem>,
}

impl Read {
    /// The annotations not honoured (ignored, or refused), by name.
    pub fn not_honoured(&self) -> impl Iterator<Item = &AnnotationVerdict> {
        self.verdicts
            .iter()
            .filter(|v| matches!(v.support, NotSupported | FailClosed) || v.bad_value.is_some())
    }
}

/// The text of the notice on a served Ingress whose nginx annotations are not all honoured.
pub fn not_honoured_note(list: &[AnnotationVerdict]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|v| match &v.bad_value {
            Some(value) => format!("{}: value {value:?} not supported", v.name),
            None => format!("{} ({})", v.name, v.support.label()),
        })
        .collect();
    format!(
        "ingress-nginx annotations not honoured, the Ingress is served without them: {} \
         (docs/migrating-from-ingress-nginx.md)",
        items.join(", ")
    )
}

/// Reads the nginx annotations of `ingress`. `accept_risk` names fail-closed annotations
/// (without the prefix) the instance serves anyway, ignoring them.
pub fn read(ingress: &Ingress, accept_risk: &BTreeSet<String>) -> Read {
    let mut out = Read::default();
    let Some(annotations) = ingress.metadata.annotations.as_ref() else {
        return out;
    };
    for (key, value) in annotations {
        let Some(name) = key.strip_prefix(NGINX_PREFIX) else {
            continue;
        };
        let support = support(name);
        let mut verdict = AnnotationVerdict {
            name: name.to_owned(),
            support,
            bad_value: None,
        };
        let value = value.trim();
        let bad = |v: &mut AnnotationVerdict| v.bad_value = Some(value.to_owned());
        match name {
            "ssl-redirect" | "force-ssl-redirect" => match value {
                "true" | "false" => {
                    let on = value == "true";
                    if name == "ssl-redirect" {
                        out.settings.ssl_redirect = Some(on);
                    } else {
                        out.settings.force_ssl_redirect = on;
                    }
                }
                _ => bad(&mut verdict),
            },
            "load-balance" => match value {
                "round_robin" => out.settings.load_balance = Some(LoadBalance::RoundRobin),
                "ewma" => out.settings.load_balance = Some(LoadBalance::LeastRequest),
                _ => bad(&mut verdict),
            },
            "upstream-hash-by" => match hash_by(value) {
                Some(lb) => out.settings.load_balance = Some(lb),
                None => bad(&mut verdict),
            },
            "affinity" => match value {
                "cookie" => {
                    // An explicit hash key wins, as in ingress-nginx (affinity is ignored
                    // when upstream-hash-by is set).
                    if !annotations.contains_key(&format!("{NGINX_PREFIX}upstream-hash-by")) {
                        out.settings.load_balance = Some(LoadBalance::Cookie);
                    }
                }
                _ => bad(&mut verdict),
            },
            "backend-protocol" => match value.to_ascii_uppercase().as_str() {
                "HTTP" => out.settings.app_protocol = Some("http"),
                "HTTPS" => out.settings.app_protocol = Some("https"),
                "GRPC" | "H2C" => out.settings.app_protocol = Some("kubernetes.io/h2c"),
                other => out.refusals.push(crate::Problem::NginxAnnotation {
                    name: name.to_owned(),
                    reason: format!(
                        "{other:?} is not supported (HTTP, HTTPS, GRPC are); the backend would not understand what Portico sends"
                    ),
                }),
            },
            "whitelist-source-range" | "allowlist-source-range" | "denylist-source-range" => {
                match crate::source_range::parse(value) {
                    Ok(ranges) if name == "denylist-source-range" => {
                        out.settings.source_ranges.deny.extend(ranges);
                    }
                    Ok(ranges) => out.settings.source_ranges.allow.extend(ranges),
                    // Who may reach the app: an unreadable list is not served open.
                    Err(entry) => out.refusals.push(crate::Problem::NginxAnnotation {
                        name: name.to_owned(),
                        reason: format!(
                            "{entry:?} is not an address or CIDR; the Ingress is not served until it is fixed"
                        ),
                    }),
                }
            }
            "default-backend" => {
                if crate::check::is_dns_label(value) {
                    out.settings.default_backend = Some(value.to_owned());
                } else {
                    out.refusals.push(crate::Problem::NginxAnnotation {
                        name: name.to_owned(),
                        reason: format!("{value:?} is not a Service name"),
                    });
                }
            }
            "custom-http-errors" => {
                let codes: Option<Vec<u16>> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| c.parse::<u16>().ok().filter(|c| (400..=599).contains(c)))
                    .collect();
                match codes {
                    Some(codes) => out.settings.custom_http_errors = codes,
                    None => bad(&mut verdict),
                }
            }
            "server-alias" => match server_aliases(value) {
                Ok(hosts) => out.settings.server_alias = hosts,
                Err(host) => out.refusals.push(crate::Problem::NginxAnnotation {
                    name: name.to_owned(),
                    reason: format!("{host:?} is not a host name"),
                }),
            },
            // Read together, below: they depend on each other.
            _ if crate::auth::NAMES.contains(&name) => {}
            _ if routing::NAMES.contains(&name) => routing::read(
                name,
                value,
                annotations,
                &mut out.settings.routing,
                &mut verdict,
                &mut out.refusals,
            ),
            _ => {
                if crate::traffic::read(name, value, &mut out.settings.traffic) == Some(false) {
                    bad(&mut verdict);
                }
            }
        }
        if support == FailClosed && !accept_risk.contains(name) {
            out.refusals.push(crate::Problem::NginxAnnotation {
                name: name.to_owned(),
                reason: "decides who may reach the app (or carries nginx configuration) and is not supported: the Ingress is not served until it is removed or the instance accepts the risk (spec.ingressNginx.acceptRisk)".to_owned(),
            });
        }
        out.verdicts.push(verdict);
    }
    let namespace = ingress.metadata.namespace.as_deref().unwrap_or_default();
    match crate::auth::read(annotations, namespace) {
        Ok(auth) => out.settings.auth = auth,
        Err(problems) => out.refusals.extend(problems),
    }
    if out.settings.default_backend.is_none()
        && let Some(v) = out
            .verdicts
            .iter_mut()
            .find(|v| v.name == "custom-http-errors" && v.bad_value.is_none())
    {
        // Portico has no cluster-wide error backend: without one here it does nothing.
        v.bad_value = Some("(no default-backend on this Ingress)".to_owned());
        out.settings.custom_http_errors.clear();
    }
    out.verdicts.sort();
    if let Some(canary) = canary(annotations, &mut out.verdicts) {
        out.settings.canary = Some(canary);
    }
    out
}

/// The canary settings, when `canary: "true"`; bad values are marked on their verdicts.
fn canary(
    annotations: &std::collections::BTreeMap<String, String>,
    verdicts: &mut [AnnotationVerdict],
) -> Option<Canary> {
    let get = |name: &str| {
        annotations
            .get(&format!("{NGINX_PREFIX}{name}"))
            .map(|v| v.trim().to_owned())
    };
    if get("canary").as_deref() != Some("true") {
        return None;
    }
    let mut bad = |name: &str| {
        if let Some(v) = verdicts.iter_mut().find(|v| v.name == name) {
            v.bad_value = get(name);
        }
    };
    let header_name = |v: Option<String>| {
        v.filter(|h| {
            !h.is_empty()
                && h.len() <= 256
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        })
    };
    let by_header = get("canary-by-header");
    let valid_header = header_name(by_header.clone());
    if by_header.is_some() && valid_header.is_none() {
        bad("canary-by-header");
    }
    let by_cookie = get("canary-by-cookie");
    let valid_cookie = by_cookie.clone().filter(|c| {
        !c.is_empty()
            && c.len() <= 256
            && c.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'=' && b != b';')
    });
    if by_cookie.is_some() && valid_cookie.is_none() {
        bad("canary-by-cookie");
    }
    let number = |name: &str, default: u32| -> Option<u32> {
        match get(name) {
            None => Some(default),
            Some(v) => v.parse::<u32>().ok().filter(|n| *n <= 1_000_000),
        }
    };
    let weight_total = match number("canary-weight-total", 100) {
        Some(t) if t > 0 => t,
        _ => {
            bad("canary-weight-total");
            100
        }
    };
    let weight = match number("canary-weight", 0) {
        Some(w) => w.min(weight_total),
        None => {
            bad("canary-weight");
            0
        }
    };
    let header_value = get("canary-by-header-value").filter(|v| !v.is_empty());
    let header_pattern = match get("canary-by-header-pattern") {
        Some(p) if header_value.is_none() => {
            let compiled = HeaderPattern::new(&p);
            if compiled.is_none() {
                bad("canary-by-header-pattern");
            }
            compiled
        }
        _ => None,
    };
    Some(Canary {
        by_header: valid_header,
        header_value,
        header_pattern,
        by_cookie: valid_cookie,
        weight,
        weight_total,
    })
}

/// `upstream-hash-by` keys Portico can hash on.
fn hash_by(value: &str) -> Option<LoadBalance> {
    if value == "$remote_addr" || value == "$binary_remote_addr" {
        return Some(LoadBalance::ClientIp);
    }
    if value == "$request_uri" {
        return Some(LoadBalance::Uri);
    }
    if let Some(cookie) = value.strip_prefix("$cookie_") {
        return format!("cookie:{cookie}").parse().ok();
    }
    let header = value.strip_prefix("$http_")?;
    if header.is_empty()
        || !header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return None;
    }
    // nginx's $http_x_user is the header X-User.
    format!("header:{}", header.replace('_', "-")).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(annotations: serde_json::Value) -> Ingress {
        serde_json::from_value(json!({"metadata": {"name": "i", "namespace": "a",
            "annotations": annotations}}))
        .expect("ingress")
    }

    /// docs/migrating-from-ingress-nginx.md lists every annotation with the verdict the
    /// code gives it; `UPDATE_GOLDEN=1` rewrites the Portico column (keeping the meanings).
    #[test]
    fn the_migration_guide_says_what_the_code_does() {
        const BEGIN: &str = "<!-- annotations:begin";
        const END: &str = "<!-- annotations:end -->";
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/migrating-from-ingress-nginx.md"
        );
        let doc = std::fs::read_to_string(path).expect("the migration guide exists");
        let start = doc.find(BEGIN).expect("begin marker");
        let start = start + doc[start..].find('\n').expect("marker line") + 1;
        let end = doc.find(END).expect("end marker");
        let meanings: std::collections::BTreeMap<String, String> = doc[start..end]
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split(" | ").collect();
                let name = cells.first()?.strip_prefix("| `")?.strip_suffix('`')?;
                Some((name.to_owned(), cells.get(1)?.to_string()))
            })
            .collect();
        let mut table =
            String::from("| annotation | ingress-nginx | Portico |\n| --- | --- | --- |\n");
        for (name, support) in SUPPORT {
            let meaning = meanings
                .get(*name)
                .map_or("(see ingress-nginx docs)", String::as_str);
            table.push_str(&format!(
                "| `{name}` | {meaning} | {} |\n",
                support.describe()
            ));
        }
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            let updated = format!("{}{table}{}", &doc[..start], &doc[end..]);
            std::fs::write(path, updated).expect("write the migration guide");
            return;
        }
        let stale: Vec<(&str, &str)> = doc[start..end]
            .lines()
            .zip(table.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert!(
            stale.is_empty() && doc[start..end].lines().count() == table.lines().count(),
            "docs/migrating-from-ingress-nginx.md is stale (run UPDATE_GOLDEN=1 cargo test -p \
             portico-ingress nginx); first difference: {:?}",
            stale.first()
        );
    }

    #[test]
    fn canary_annotations() {
        let r = read(
            &ingress(json!({
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary",
                "nginx.ingress.kubernetes.io/canary-by-cookie": "canary",
                "nginx.ingress.kubernetes.io/canary-weight": "30",
            })),
            &BTreeSet::new(),
        );
        assert_eq!(
            r.settings.canary,
            Some(Canary {
                by_header: Some("X-Canary".into()),
                header_value: None,
                header_pattern: None,
                by_cookie: Some("canary".into()),
                weight: 30,
                weight_total: 100,
            })
        );
        assert_eq!(r.not_honoured().count(), 0);
        let r = read(
            &ingress(json!({
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-weight": "lots",
            })),
            &BTreeSet::new(),
        );
        let bad: Vec<&str> = r.not_honoured().map(|v| v.name.as_str()).collect();
        assert_eq!(bad, ["canary-weight"]);
        assert_eq!(r.settings.canary.map(|c| c.weight), Some(0));
        let r = read(
            &ingress(json!({"nginx.ingress.kubernetes.io/canary-weight": "30"})),
            &BTreeSet::new(),
        );
        assert_eq!(r.settings.canary, None, "not a canary without canary: true");
    }

    #[test]
    fn the_table_is_sorted_and_has_no_duplicates() {
        for pair in SUPPORT.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
    }

    #[test]
    fn access_control_fails_closed_unless_the_instance_accepts_the_risk() {
        let ing = ingress(json!({
            "nginx.ingress.kubernetes.io/auth-snippet": "return 200;",
            "nginx.ingress.kubernetes.io/configuration-snippet": "more_set_headers x;",
            "nginx.ingress.kubernetes.io/auth-future-thing": "x",
            "nginx.ingress.kubernetes.io/mirror-target": "http://mirror",
            "other.io/ignored": "x",
        }));
        let r = read(&ing, &BTreeSet::new());
        let refused: Vec<String> = r
            .refusals
            .iter()
            .map(|p| match p {
                crate::Problem::NginxAnnotation { name, .. } => name.clone(),
                other => other.to_string(),
            })
            .collect();
        assert_eq!(
            refused,
            ["auth-future-thing", "auth-snippet", "configuration-snippet"],
            "an unknown auth-* name fails closed too"
        );
        let not_honoured: Vec<&str> = r.not_honoured().map(|v| v.name.as_str()).collect();
        assert_eq!(
            not_honoured,
            [
                "auth-future-thing",
                "auth-snippet",
                "configuration-snippet",
                "mirror-target"
            ]
        );
        let accepted: BTreeSet<String> = ["auth-snippet".to_owned()].into();
        let r = read(&ing, &accepted);
        assert_eq!(
            r.refusals.len(),
            2,
            "auth-snippet accepted, the rest still refused"
        );
    }

    #[test]
    fn honoured_annotations_become_settings() {
        let r = read(
            &ingress(json!({
                "nginx.ingress.kubernetes.io/ssl-redirect": "false",
                "nginx.ingress.kubernetes.io/force-ssl-redirect": "true",
                "nginx.ingress.kubernetes.io/upstream-hash-by": "$http_x_user",
                "nginx.ingress.kubernetes.io/affinity": "cookie",
                "nginx.ingress.kubernetes.io/backend-protocol": "GRPC",
            })),
            &BTreeSet::new(),
        );
        assert!(r.refusals.is_empty(), "{:?}", r.refusals);
        assert_eq!(r.not_honoured().count(), 0);
        assert_eq!(
            r.settings,
            Nginx {
                canary: None,
                ssl_redirect: Some(false),
                force_ssl_redirect: true,
                load_balance: Some(LoadBalance::Header("x-user".into())),
                app_protocol: Some("kubernetes.io/h2c"),
                ..Nginx::default()
            }
        );
        let r = read(
            &ingress(json!({
                "nginx.ingress.kubernetes.io/load-balance": "ewma",
                "nginx.ingress.kubernetes.io/backend-protocol": "GRPCS",
                "nginx.ingress.kubernetes.io/upstream-hash-by": "$host$request_uri",
            })),
            &BTreeSet::new(),
        );
        assert_eq!(r.refusals.len(), 1, "GRPCS is refused, not sent cleartext");
        let bad: Vec<&str> = r.not_honoured().map(|v| v.name.as_str()).collect();
        assert_eq!(bad, ["upstream-hash-by"], "a key Portico cannot hash on");
    }

    #[test]
    fn traffic_annotations_are_honoured_and_bad_values_noticed() {
        let r = read(
            &ingress(json!({
                "nginx.ingress.kubernetes.io/proxy-body-size": "8m",
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "120",
                "nginx.ingress.kubernetes.io/proxy-next-upstream": "error timeout http_502",
                "nginx.ingress.kubernetes.io/enable-access-log": "false",
            })),
            &BTreeSet::new(),
        );
        assert!(r.refusals.is_empty(), "{:?}", r.refusals);
        assert_eq!(r.not_honoured().count(), 0);
        assert_eq!(r.settings.traffic.body_size, Some(Some(8 << 20)));
        assert_eq!(
            r.settings.traffic.request_timeout(),
            Some(std::time::Duration::from_secs(120))
        );
        assert_eq!(r.settings.traffic.access_log, Some(false));
        let r = read(
            &ingress(json!({
                "nginx.ingress.kubernetes.io/proxy-body-size": "lots",
                "nginx.ingress.kubernetes.io/proxy-connect-timeout": "soon",
            })),
            &BTreeSet::new(),
        );
        assert!(
            r.refusals.is_empty(),
            "a bad size or timeout is ignored, not refused"
        );
        let bad: Vec<&str> = r.not_honoured().map(|v| v.name.as_str()).collect();
        assert_eq!(bad, ["proxy-body-size", "proxy-connect-timeout"]);
        assert_eq!(r.settings.traffic, crate::traffic::Traffic::default());
    }
}
