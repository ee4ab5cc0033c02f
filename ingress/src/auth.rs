//! ingress-nginx's access-control annotations, read: basic auth, external auth
//! (`auth_request`), rate limits, client certificates and `satisfy`. Source ranges are in
//! `source_range.rs`. Everything here decides who may reach an app, so a value Portico
//! cannot read makes the Ingress unserved (a Problem), never served open.
//!
//! ```text
//!  annotations ─▶ read() ─┬─▶ Auth { basic, external, rate_limit, client_cert, satisfy }
//!                         └─▶ Problems (the Ingress is not served)
//! ```
//!
//! The proxy enforces what is read here (proxy/src/access): the Secrets named are read
//! from the Ingress's own namespace only, by name, as TLS Secrets are.

use std::collections::BTreeMap;

use ipnet::IpNet;

use crate::Problem;
use crate::nginx::NGINX_PREFIX;

/// The annotation with a rate limit's status code (429 unless set; 503 as ingress-nginx).
pub const LIMIT_STATUS_ANNOTATION: &str = "portico.dev/limit-status-code";

/// The ingress-nginx names this module reads (without the prefix).
pub const NAMES: &[&str] = &[
    "auth-always-set-cookie",
    "auth-cache-duration",
    "auth-cache-key",
    "auth-method",
    "auth-realm",
    "auth-request-redirect",
    "auth-response-headers",
    "auth-secret",
    "auth-secret-type",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-tls-error-page",
    "auth-tls-pass-certificate-to-upstream",
    "auth-tls-secret",
    "auth-tls-verify-client",
    "auth-tls-verify-depth",
    "auth-type",
    "auth-url",
    "limit-allowlist",
    "limit-burst-multiplier",
    "limit-connections",
    "limit-rpm",
    "limit-rps",
    "limit-whitelist",
    "satisfy",
];

/// An Ingress's access control, besides source ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    pub basic: Option<BasicAuth>,
    pub external: Option<ExternalAuth>,
    pub rate_limit: Option<RateLimit>,
    pub client_cert: Option<ClientCert>,
    /// `satisfy: any`: source ranges, basic and external auth each suffice alone; by
    /// default (`all`) each that is set must allow the request.
    pub satisfy_any: bool,
}

impl Auth {
    /// The Secrets (of the Ingress's namespace) this needs read.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.basic
            .as_ref()
            .map(|b| b.secret.as_str())
            .into_iter()
            .chain(self.client_cert.as_ref().map(|c| c.secret.as_str()))
    }
}

/// `auth-type: basic`: an htpasswd file (or map) in a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// `auth-secret`: a Secret of the Ingress's namespace.
    pub secret: String,
    /// `auth-secret-type`: `auth-file` (the `auth` key holds htpasswd lines) or `auth-map`
    /// (each key is a user, its value the hash).
    pub map: bool,
    /// `auth-realm`.
    pub realm: String,
}

/// `auth-url`: nginx's `auth_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalAuth {
    /// With `$host`, `$scheme`, `$request_uri`, `$escaped_request_uri` still in it.
    pub url: String,
    /// `auth-method`, `GET` by default.
    pub method: String,
    /// `auth-signin`: where a 401 is redirected (302), with the original URL in
    /// `signin_param`.
    pub signin: Option<String>,
    pub signin_param: String,
    /// `auth-response-headers`: copied from a 2xx answer onto the request upstream.
    pub response_headers: Vec<String>,
    /// `auth-request-redirect`: sent as `X-Auth-Request-Redirect`.
    pub request_redirect: Option<String>,
    /// `auth-cache-key` and `auth-cache-duration`: answers kept per key for a time by
    /// status.
    pub cache: Option<AuthCache>,
    /// `auth-always-set-cookie`: the auth answer's `Set-Cookie` reaches the client on
    /// success too (by default only with a denial).
    pub always_set_cookie: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCache {
    /// With nginx variables in it (`$http_*`, `$cookie_*`, `$remote_addr`, `$host`,
    /// `$request_uri`, `$remote_user`).
    pub key: String,
    /// (statuses, seconds); default `200 202 401 5m`.
    pub durations: Vec<(Vec<u16>, u64)>,
}

/// `limit-rps`, `limit-rpm`, `limit-connections`: per client address and per proxy pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub rps: Option<u32>,
    pub rpm: Option<u32>,
    /// `limit-burst-multiplier` (5): the burst is the rate times this.
    pub burst_multiplier: u32,
    pub connections: Option<u32>,
    /// `limit-whitelist` / `limit-allowlist`: clients the limits do not apply to.
    pub exempt: Vec<IpNet>,
    /// 429, or 503 ([`LIMIT_STATUS_ANNOTATION`]).
    pub status: u16,
}

/// `auth-tls-verify-client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verify {
    /// A certificate the CA verifies is required.
    On,
    /// Asked for; if one is sent, the CA must verify it.
    Optional,
    /// Asked for; any certificate is passed on unverified.
    OptionalNoCa,
    /// Not asked for.
    Off,
}

/// `auth-tls-secret`: client certificates, decided in the handshake of the Ingress's hosts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientCert {
    /// A Secret of the Ingress's namespace with the CA bundle in `ca.crt`.
    pub secret: String,
    pub verify: Verify,
    /// `auth-tls-verify-depth` (1): certificates in the chain the client sends, at most.
    pub depth: u8,
    /// `auth-tls-pass-certificate-to-upstream`: the `ssl-client-cert` header.
    pub pass_to_upstream: bool,
    /// `auth-tls-error-page`: a refused request is redirected (302) there instead of 400.
    pub error_page: Option<String>,
}

/// Reads the access-control annotations of an Ingress of `namespace`.
pub fn read(annotations: &BTreeMap<String, String>, namespace: &str) -> Result<Auth, Vec<Problem>> {
    let get = |name: &str| {
        annotations
            .get(&format!("{NGINX_PREFIX}{name}"))
            .map(|v| v.trim())
    };
    let mut problems = Vec::new();
    let mut refuse = |name: &str, reason: String| {
        problems.push(Problem::NginxAnnotation {
            name: name.to_owned(),
            reason,
        })
    };
    let mut auth = Auth::default();

    match get("satisfy") {
        None | Some("all") => {}
        Some("any") => auth.satisfy_any = true,
        Some(v) => refuse("satisfy", format!("{v:?} is not \"any\" or \"all\"")),
    }

    // Basic auth.
    match get("auth-type") {
        None => {
            if get("auth-secret").is_some() {
                refuse(
                    "auth-secret",
                    "set without auth-type: basic; say which auth it is for".into(),
                );
            }
        }
        Some("basic") => match get("auth-secret").map(|v| own_secret(v, namespace)) {
            None => refuse(
                "auth-type",
                "basic needs auth-secret (an htpasswd Secret)".into(),
            ),
            Some(Err(why)) => refuse("auth-secret", why),
            Some(Ok(secret)) => {
                let map = match get("auth-secret-type") {
                    None | Some("auth-file") => false,
                    Some("auth-map") => true,
                    Some(v) => {
                        refuse(
                            "auth-secret-type",
                            format!("{v:?} is not auth-file or auth-map"),
                        );
                        false
                    }
                };
                let realm = get("auth-realm")
                    .unwrap_or("Authentication Required")
                    .to_owned();
                if realm.contains(['"', '\\']) || realm.chars().any(char::is_control) {
                    refuse(
                        "auth-realm",
                        "quotes, backslashes and control characters are not allowed".into(),
                    );
                }
                auth.basic = Some(BasicAuth { secret, map, realm });
            }
        },
        Some(v) => refuse(
            "auth-type",
            format!("{v:?} is not supported (basic is); digest is not"),
        ),
    }

    // External auth.
    if let Some(url) = get("auth-url") {
        match external(&get, url) {
            Ok(e) => auth.external = Some(e),
            Err((name, why)) => refuse(name, why),
        }
    } else {
        for name in NAMES.iter().filter(|n| {
            n.starts_with("auth-")
                && !n.starts_with("auth-tls")
                && !matches!(
                    **n,
                    "auth-type" | "auth-secret" | "auth-secret-type" | "auth-realm"
                )
        }) {
            if get(name).is_some() {
                refuse(name, "set without auth-url".into());
            }
        }
    }

    // Rate limits.
    match rate_limit(&get, annotations.get(LIMIT_STATUS_ANNOTATION)) {
        Ok(limit) => auth.rate_limit = limit,
        Err((name, why)) => refuse(name, why),
    }

    // Client certificates.
    match client_cert(&get, namespace) {
        Ok(c) => auth.client_cert = c,
        Err((name, why)) => refuse(name, why),
    }

    if problems.is_empty() {
        Ok(auth)
    } else {
        Err(problems)
    }
}

/// The Secrets of its own namespace the proxy reads for `ingress`: the `spec.tls` ones and
/// those its auth annotations name. Read (and so in the proxy's RBAC) even while the
/// Ingress is broken, so that fixing a Secret heals it.
pub fn secrets_read(
    ingress: &k8s_openapi::api::networking::v1::Ingress,
) -> std::collections::BTreeSet<String> {
    let namespace = ingress.metadata.namespace.as_deref().unwrap_or_default();
    let tls = ingress
        .spec
        .iter()
        .flat_map(|s| s.tls.iter().flatten())
        .filter_map(|t| t.secret_name.clone())
        .filter(|n| !n.is_empty());
    let annotations = ingress.metadata.annotations.iter().flatten();
    let auth = annotations
        .filter(|(k, _)| {
            k.strip_prefix(NGINX_PREFIX)
                .is_some_and(|n| n == "auth-secret" || n == "auth-tls-secret")
        })
        .filter_map(|(_, v)| own_secret(v.trim(), namespace).ok());
    tls.chain(auth).collect()
}

/// A Secret name as ingress-nginx takes it (`name` or `namespace/name`), which must be of
/// the Ingress's own namespace.
fn own_secret(value: &str, namespace: &str) -> Result<String, String> {
    let name = match value.split_once('/') {
        Some((ns, name)) if ns == namespace => name,
        Some((ns, _)) => {
            return Err(format!(
                "the Secret is in namespace {ns:?}; Portico reads auth Secrets from the Ingress's own namespace ({namespace:?}) only"
            ));
        }
        None => value,
    };
    if crate::check::is_object_name(name) {
        Ok(name.to_owned())
    } else {
        Err(format!("{name:?} is not a Secret name"))
    }
}

/// The nginx variables an `auth-url` or `auth-signin` may use.
const URL_VARIABLES: &[&str] = &["$host", "$scheme", "$request_uri", "$escaped_request_uri"];

/// Whether `value` is an http(s) URL once its variables are filled in.
fn check_url(value: &str) -> Result<(), String> {
    let mut filled = value.to_owned();
    // Longest first: `$escaped_request_uri` before `$request_uri`.
    let mut vars = URL_VARIABLES.to_vec();
    vars.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for var in vars {
        filled = filled.replace(var, "x");
    }
    if filled.contains('$') {
        return Err(format!(
            "{value:?} uses a variable Portico does not fill in (it fills {})",
            URL_VARIABLES.join(", ")
        ));
    }
    let uri: http::Uri = filled
        .parse()
        .map_err(|_| format!("{value:?} is not a URL"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(()),
        _ => Err(format!("{value:?} is not an http:// or https:// URL")),
    }
}

type Refusal = (&'static str, String);

fn external<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    url: &str,
) -> Result<ExternalAuth, Refusal> {
    check_url(url).map_err(|e| ("auth-url", e))?;
    if !url.starts_with("http://") {
        return Err((
            "auth-url",
            format!(
                "{url:?}: Portico calls auth services over http:// only (https:// is not supported yet)"
            ),
        ));
    }
    let method = get("auth-method").unwrap_or("GET").to_ascii_uppercase();
    if !matches!(
        method.as_str(),
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "OPTIONS"
    ) {
        return Err(("auth-method", format!("{method:?} is not an HTTP method")));
    }
    let signin = get("auth-signin").map(str::to_owned);
    if let Some(s) = &signin {
        check_url(s).map_err(|e| ("auth-signin", e))?;
    }
    let signin_param = get("auth-signin-redirect-param").unwrap_or("rd").to_owned();
    if signin_param.is_empty()
        || !signin_param
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err((
            "auth-signin-redirect-param",
            format!("{signin_param:?} is not a query parameter name"),
        ));
    }
    let response_headers: Vec<String> = get("auth-response-headers")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    if let Some(h) = response_headers
        .iter()
        .find(|h| http::HeaderName::from_bytes(h.as_bytes()).is_err())
    {
        return Err((
            "auth-response-headers",
            format!("{h:?} is not a header name"),
        ));
    }
    let request_redirect = get("auth-request-redirect").map(str::to_owned);
    if request_redirect
        .as_deref()
        .is_some_and(|r| http::HeaderValue::from_str(r).is_err())
    {
        return Err(("auth-request-redirect", "not a header value".into()));
    }
    let cache = match get("auth-cache-key") {
        None => {
            if get("auth-cache-duration").is_some() {
                return Err(("auth-cache-duration", "set without auth-cache-key".into()));
            }
            None
        }
        Some(key) => {
            check_cache_key(key).map_err(|e| ("auth-cache-key", e))?;
            let durations = cache_durations(get("auth-cache-duration").unwrap_or("200 202 401 5m"))
                .map_err(|e| ("auth-cache-duration", e))?;
            Some(AuthCache {
                key: key.to_owned(),
                durations,
            })
        }
    };
    let always_set_cookie = match get("auth-always-set-cookie") {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return Err((
                "auth-always-set-cookie",
                format!("{v:?} is not true or false"),
            ));
        }
    };
    Ok(ExternalAuth {
        url: url.to_owned(),
        method,
        signin,
        signin_param,
        response_headers,
        request_redirect,
        cache,
        always_set_cookie,
    })
}

/// The variables a cache key may hold.
pub fn cache_key_variable(var: &str) -> bool {
    matches!(var, "remote_addr" | "host" | "request_uri" | "remote_user")
        || var
            .strip_prefix("http_")
            .or_else(|| var.strip_prefix("cookie_"))
            .is_some_and(|n| {
                !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            })
}

/// Splits a cache key into literal text and variables (without `$`).
pub fn cache_key_parts(key: &str) -> Vec<(bool, &str)> {
    let mut out = Vec::new();
    let mut rest = key;
    while let Some(i) = rest.find('$') {
        if i > 0 {
            out.push((false, &rest[..i]));
        }
        let after = &rest[i + 1..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        out.push((true, &after[..end]));
        rest = &after[end..];
    }
    if !rest.is_empty() {
        out.push((false, rest));
    }
    out
}

fn check_cache_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 512 {
        return Err("empty or longer than 512 bytes".into());
    }
    match cache_key_parts(key)
        .into_iter()
        .find(|(var, name)| *var && !cache_key_variable(name))
    {
        Some((_, name)) => Err(format!(
            "${name} is not a variable Portico fills in ($remote_addr, $host, $request_uri, $remote_user, $http_*, $cookie_*)"
        )),
        None => Ok(()),
    }
}

/// `"200 202 10m, 401 5m"`: statuses then a duration, per entry.
fn cache_durations(value: &str) -> Result<Vec<(Vec<u16>, u64)>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let words: Vec<&str> = entry.split_whitespace().collect();
            let (duration, codes) = words
                .split_last()
                .ok_or_else(|| format!("{entry:?} has no duration"))?;
            let seconds = nginx_seconds(duration)
                .ok_or_else(|| format!("{duration:?} is not a duration (like 30s, 5m, 1h)"))?;
            let codes = if codes.is_empty() || codes == ["any"] {
                vec![200, 301, 302]
            } else {
                codes
                    .iter()
                    .map(|c| c.parse::<u16>().ok().filter(|c| (100..=599).contains(c)))
                    .collect::<Option<Vec<u16>>>()
                    .ok_or_else(|| format!("{entry:?}: statuses are numbers"))?
            };
            Ok((codes, seconds))
        })
        .collect()
}

/// nginx's time: a number with `s`, `m`, `h` or `d` (seconds when bare).
fn nginx_seconds(v: &str) -> Option<u64> {
    let (num, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => v.split_at(i),
        None => (v, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let mul = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(mul).filter(|s| *s <= 7 * 86_400)
}

fn rate_limit<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    status: Option<&String>,
) -> Result<Option<RateLimit>, Refusal> {
    let positive = |name: &'static str| -> Result<Option<u32>, Refusal> {
        match get(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .map(Some)
                .ok_or((name, format!("{v:?} is not a number from 1 to 1000000"))),
        }
    };
    let rps = positive("limit-rps")?;
    let rpm = positive("limit-rpm")?;
    let connections = positive("limit-connections")?;
    let burst_multiplier = positive("limit-burst-multiplier")?.unwrap_or(5);
    let mut exempt = Vec::new();
    for name in ["limit-whitelist", "limit-allowlist"] {
        if let Some(v) = get(name) {
            exempt.extend(
                crate::source_range::parse(v)
                    .map_err(|e| (name, format!("{e:?} is not an address or CIDR")))?,
            );
        }
    }
    let status = match status.map(|s| s.trim()) {
        None | Some("429") => 429,
        Some("503") => 503,
        Some(v) => {
            return Err((
                "limit-rps",
                format!("{LIMIT_STATUS_ANNOTATION}: {v:?} is not 429 or 503"),
            ));
        }
    };
    if rps.is_none() && rpm.is_none() && connections.is_none() {
        for name in [
            "limit-burst-multiplier",
            "limit-whitelist",
            "limit-allowlist",
        ] {
            if get(name).is_some() {
                return Err((
                    name,
                    "set without limit-rps, limit-rpm or limit-connections".into(),
                ));
            }
        }
        return Ok(None);
    }
    Ok(Some(RateLimit {
        rps,
        rpm,
        burst_multiplier,
        connections,
        exempt,
        status,
    }))
}

fn client_cert<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    namespace: &str,
) -> Result<Option<ClientCert>, Refusal> {
    let Some(secret) = get("auth-tls-secret") else {
        for name in NAMES.iter().filter(|n| n.starts_with("auth-tls-")) {
            if get(name).is_some() {
                return Err((name, "set without auth-tls-secret".into()));
            }
        }
        return Ok(None);
    };
    let secret = own_secret(secret, namespace).map_err(|e| ("auth-tls-secret", e))?;
    let verify = match get("auth-tls-verify-client") {
        None | Some("on") => Verify::On,
        Some("optional") => Verify::Optional,
        Some("optional_no_ca") => Verify::OptionalNoCa,
        Some("off") => Verify::Off,
        Some(v) => {
            return Err((
                "auth-tls-verify-client",
                format!("{v:?} is not on, optional, optional_no_ca or off"),
            ));
        }
    };
    let depth = match get("auth-tls-verify-depth") {
        None => 1,
        Some(v) => v
            .parse::<u8>()
            .ok()
            .filter(|d| (1..=10).contains(d))
            .ok_or((
                "auth-tls-verify-depth",
                format!("{v:?} is not a number from 1 to 10"),
            ))?,
    };
    let pass_to_upstream = match get("auth-tls-pass-certificate-to-upstream") {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return Err((
                "auth-tls-pass-certificate-to-upstream",
                format!("{v:?} is not true or false"),
            ));
        }
    };
    let error_page = get("auth-tls-error-page").map(str::to_owned);
    if let Some(p) = &error_page {
        check_url(p).map_err(|e| ("auth-tls-error-page", e))?;
    }
    Ok(Some(ClientCert {
        secret,
        verify,
        depth,
        pass_to_upstream,
        error_page,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| {
                let key = if k.contains('/') {
                    (*k).to_owned()
                } else {
                    format!("{NGINX_PREFIX}{k}")
                };
                (key, (*v).to_owned())
            })
            .collect()
    }

    fn refused(pairs: &[(&str, &str)]) -> String {
        match read(&annotations(pairs), "team") {
            Ok(a) => panic!("{pairs:?} read as {a:?}"),
            Err(p) => p
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    #[test]
    fn basic_auth_reads_its_secret_from_the_ingress_namespace_only() {
        let a = read(
            &annotations(&[
                ("auth-type", "basic"),
                ("auth-secret", "team/users"),
                ("auth-realm", "Staff"),
            ]),
            "team",
        )
        .expect("basic");
        let b = a.basic.expect("basic");
        assert_eq!(
            (b.secret.as_str(), b.map, b.realm.as_str()),
            ("users", false, "Staff")
        );
        assert!(
            refused(&[("auth-type", "basic"), ("auth-secret", "other/users")])
                .contains("own namespace")
        );
        assert!(refused(&[("auth-type", "basic")]).contains("auth-secret"));
        assert!(refused(&[("auth-type", "digest"), ("auth-secret", "u")]).contains("digest"));
        assert!(refused(&[("auth-secret", "u")]).contains("auth-type"));
        assert!(
            refused(&[
                ("auth-type", "basic"),
                ("auth-secret", "u"),
                ("auth-realm", "a\"b")
            ])
            .contains("quotes")
        );
    }

    #[test]
    fn external_auth_urls_and_their_variables() {
        let a = read(
            &annotations(&[
                (
                    "auth-url",
                    "http://auth.team.svc/verify?u=$escaped_request_uri",
                ),
                ("auth-signin", "https://$host/oauth2/start"),
                ("auth-response-headers", "X-User, X-Email"),
                ("auth-cache-key", "$http_authorization$cookie_session"),
                ("auth-cache-duration", "200 202 10m, 401 30s"),
            ]),
            "team",
        )
        .expect("external");
        let e = a.external.expect("external");
        assert_eq!(e.method, "GET");
        assert_eq!(e.signin_param, "rd");
        assert_eq!(e.response_headers, ["x-user", "x-email"]);
        let cache = e.cache.expect("cache");
        assert_eq!(
            cache.durations,
            vec![(vec![200, 202], 600), (vec![401], 30)]
        );
        assert!(refused(&[("auth-url", "http://x/$arg_token")]).contains("variable"));
        assert!(refused(&[("auth-url", "ftp://x/")]).contains("http"));
        assert!(refused(&[("auth-url", "https://x/")]).contains("http:// only"));
        assert!(refused(&[("auth-signin", "https://x/")]).contains("without auth-url"));
        assert!(
            refused(&[
                ("auth-url", "http://x/"),
                ("auth-cache-key", "$request_body")
            ])
            .contains("$request_body")
        );
        assert_eq!(
            cache_key_parts("a$http_x-$remote_addr"),
            vec![
                (false, "a"),
                (true, "http_x"),
                (false, "-"),
                (true, "remote_addr")
            ]
        );
    }

    #[test]
    fn rate_limits_and_their_status() {
        let a = read(
            &annotations(&[
                ("limit-rps", "10"),
                ("limit-whitelist", "10.0.0.0/8"),
                (LIMIT_STATUS_ANNOTATION, "503"),
            ]),
            "team",
        )
        .expect("limit");
        let l = a.rate_limit.expect("limit");
        assert_eq!(
            (l.rps, l.burst_multiplier, l.status, l.exempt.len()),
            (Some(10), 5, 503, 1)
        );
        assert!(refused(&[("limit-rps", "0")]).contains("limit-rps"));
        assert!(refused(&[("limit-burst-multiplier", "2")]).contains("without"));
        assert!(
            refused(&[("limit-rps", "5"), (LIMIT_STATUS_ANNOTATION, "500")]).contains("429 or 503")
        );
    }

    #[test]
    fn client_certificates() {
        let a = read(
            &annotations(&[
                ("auth-tls-secret", "team/ca"),
                ("auth-tls-verify-client", "optional"),
            ]),
            "team",
        )
        .expect("tls");
        let c = a.client_cert.expect("client cert");
        assert_eq!(
            (c.secret.as_str(), c.verify, c.depth),
            ("ca", Verify::Optional, 1)
        );
        assert!(refused(&[("auth-tls-verify-client", "on")]).contains("without auth-tls-secret"));
        assert!(
            refused(&[
                ("auth-tls-secret", "ca"),
                ("auth-tls-verify-client", "maybe")
            ])
            .contains("maybe")
        );
        assert!(refused(&[("auth-tls-secret", "kube-system/ca")]).contains("own namespace"));
        assert!(refused(&[("satisfy", "some")]).contains("satisfy"));
    }
}
