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
            "\"cookie\" is honoured as Portico's cookie affinity (consistent hash on its own cookie); session-cookie-* are not",
        ),
    ),
    ("affinity-canary-behavior", NotSupported),
    ("affinity-mode", NotSupported),
    ("allowlist-source-range", FailClosed),
    (
        "app-root",
        Differs(
            "302 for a request for / that one of the Ingress's paths matches (nginx: any request for / to the host)",
        ),
    ),
    ("auth-always-set-cookie", FailClosed),
    ("auth-cache-duration", FailClosed),
    ("auth-cache-key", FailClosed),
    ("auth-keepalive", FailClosed),
    ("auth-keepalive-requests", FailClosed),
    ("auth-keepalive-share-vars", FailClosed),
    ("auth-keepalive-timeout", FailClosed),
    ("auth-method", FailClosed),
    ("auth-proxy-set-headers", FailClosed),
    ("auth-realm", FailClosed),
    ("auth-request-redirect", FailClosed),
    ("auth-response-headers", FailClosed),
    ("auth-secret", FailClosed),
    ("auth-secret-type", FailClosed),
    ("auth-signin", FailClosed),
    ("auth-signin-redirect-param", FailClosed),
    ("auth-snippet", FailClosed),
    ("auth-tls-error-page", FailClosed),
    ("auth-tls-match-cn", FailClosed),
    ("auth-tls-pass-certificate-to-upstream", FailClosed),
    ("auth-tls-secret", FailClosed),
    ("auth-tls-verify-client", FailClosed),
    ("auth-tls-verify-depth", FailClosed),
    ("auth-type", FailClosed),
    ("auth-url", FailClosed),
    (
        "backend-protocol",
        Differs("HTTP, HTTPS and GRPC (cleartext HTTP/2); GRPCS, AJP and FCGI are refused"),
    ),
    ("canary", NotSupported),
    ("canary-by-cookie", NotSupported),
    ("canary-by-header", NotSupported),
    ("canary-by-header-pattern", NotSupported),
    ("canary-by-header-value", NotSupported),
    ("canary-weight", NotSupported),
    ("canary-weight-total", NotSupported),
    ("client-body-buffer-size", NotSupported),
    ("configuration-snippet", FailClosed),
    ("connection-proxy-header", NotSupported),
    ("cors-allow-credentials", NotSupported),
    ("cors-allow-headers", NotSupported),
    ("cors-allow-methods", NotSupported),
    ("cors-allow-origin", NotSupported),
    ("cors-expose-headers", NotSupported),
    ("cors-max-age", NotSupported),
    ("custom-headers", NotSupported),
    ("custom-http-errors", NotSupported),
    ("default-backend", NotSupported),
    ("denylist-source-range", FailClosed),
    ("enable-access-log", NotSupported),
    ("enable-cors", NotSupported),
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
    ("limit-allowlist", FailClosed),
    ("limit-burst-multiplier", FailClosed),
    ("limit-connections", FailClosed),
    ("limit-rate", FailClosed),
    ("limit-rate-after", FailClosed),
    ("limit-rpm", FailClosed),
    ("limit-rps", FailClosed),
    ("limit-whitelist", FailClosed),
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
    ("proxy-body-size", NotSupported),
    ("proxy-buffer-size", NotSupported),
    ("proxy-buffering", NotSupported),
    ("proxy-buffers-number", NotSupported),
    ("proxy-connect-timeout", NotSupported),
    ("proxy-cookie-domain", NotSupported),
    ("proxy-cookie-path", NotSupported),
    ("proxy-http-version", NotSupported),
    ("proxy-max-temp-file-size", NotSupported),
    ("proxy-next-upstream", NotSupported),
    ("proxy-next-upstream-timeout", NotSupported),
    ("proxy-next-upstream-tries", NotSupported),
    ("proxy-read-timeout", NotSupported),
    ("proxy-redirect-from", NotSupported),
    ("proxy-redirect-to", NotSupported),
    ("proxy-request-buffering", NotSupported),
    ("proxy-send-timeout", NotSupported),
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
    ("satisfy", FailClosed),
    ("server-alias", NotSupported),
    ("server-snippet", FailClosed),
    ("service-upstream", NotSupported),
    ("session-cookie-change-on-failure", NotSupported),
    ("session-cookie-conditional-samesite-none", NotSupported),
    ("session-cookie-domain", NotSupported),
    ("session-cookie-expires", NotSupported),
    ("session-cookie-max-age", NotSupported),
    ("session-cookie-name", NotSupported),
    ("session-cookie-path", NotSupported),
    ("session-cookie-samesite", NotSupported),
    ("session-cookie-secure", NotSupported),
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
            "$remote_addr as client-ip and $http_<name> as a header hash; other keys are not supported",
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
    ("whitelist-source-range", FailClosed),
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

/// The settings Portico takes from an Ingress's nginx annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nginx {
    pub ssl_redirect: Option<bool>,
    pub force_ssl_redirect: bool,
    pub load_balance: Option<LoadBalance>,
    /// `backend-protocol`, as a Service port `appProtocol` Portico already understands.
    pub app_protocol: Option<&'static str>,
    /// Regex paths, rewrites, redirects, upstream Host and prefix (nginx/routing.rs).
    pub routing: Routing,
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
            _ if routing::NAMES.contains(&name) => routing::read(
                name,
                value,
                annotations,
                &mut out.settings.routing,
                &mut verdict,
                &mut out.refusals,
            ),
            _ => {}
        }
        if support == FailClosed && !accept_risk.contains(name) {
            out.refusals.push(crate::Problem::NginxAnnotation {
                name: name.to_owned(),
                reason: "decides who may reach the app (or carries nginx configuration) and is not supported: the Ingress is not served until it is removed or the instance accepts the risk (spec.ingressNginx.acceptRisk)".to_owned(),
            });
        }
        out.verdicts.push(verdict);
    }
    out.verdicts.sort();
    out
}

/// `upstream-hash-by` keys Portico can hash on.
fn hash_by(value: &str) -> Option<LoadBalance> {
    if value == "$remote_addr" || value == "$binary_remote_addr" {
        return Some(LoadBalance::ClientIp);
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

    #[test]
    fn the_table_is_sorted_and_has_no_duplicates() {
        for pair in SUPPORT.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
    }

    #[test]
    fn access_control_fails_closed_unless_the_instance_accepts_the_risk() {
        let ing = ingress(json!({
            "nginx.ingress.kubernetes.io/auth-url": "http://auth.example/verify",
            "nginx.ingress.kubernetes.io/configuration-snippet": "more_set_headers x;",
            "nginx.ingress.kubernetes.io/auth-future-thing": "x",
            "nginx.ingress.kubernetes.io/enable-cors": "true",
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
            ["auth-future-thing", "auth-url", "configuration-snippet"],
            "an unknown auth-* name fails closed too"
        );
        let not_honoured: Vec<&str> = r.not_honoured().map(|v| v.name.as_str()).collect();
        assert_eq!(
            not_honoured,
            [
                "auth-future-thing",
                "auth-url",
                "configuration-snippet",
                "enable-cors"
            ]
        );
        let accepted: BTreeSet<String> = ["auth-url".to_owned()].into();
        let r = read(&ing, &accepted);
        assert_eq!(
            r.refusals.len(),
            2,
            "auth-url accepted, the rest still refused"
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
                "nginx.ingress.kubernetes.io/upstream-hash-by": "$request_uri",
            })),
            &BTreeSet::new(),
        );
        assert_eq!(r.refusals.len(), 1, "GRPCS is refused, not sent cleartext");
        let bad: Vec<&str> = r.not_honoured().map(|v| v.name.as_str()).collect();
        assert_eq!(bad, ["upstream-hash-by"], "a key Portico cannot hash on");
    }
}
