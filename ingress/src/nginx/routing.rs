//! ingress-nginx's routing annotations: regular expression paths, rewrites, redirects and
//! what the upstream is told (`use-regex`, `rewrite-target`, `app-root`,
//! `x-forwarded-prefix`, `upstream-vhost`, `permanent-redirect`, `temporal-redirect`,
//! `from-to-www-redirect`).
//!
//! A value that would change where a request goes, or what the upstream sees, and that
//! Portico cannot honour exactly is a refusal (the Ingress is not served, with an Event):
//! serving it without the rewrite or redirect would send requests somewhere its author
//! did not mean. A bad redirect code falls back to the default with a notice, as nginx
//! does.

use std::collections::BTreeMap;

use super::{AnnotationVerdict, NGINX_PREFIX};
use crate::{PathMatch, Problem};

/// The annotations this module reads (without the prefix).
pub const NAMES: &[&str] = &[
    "app-root",
    "from-to-www-redirect",
    "permanent-redirect",
    "permanent-redirect-code",
    "rewrite-target",
    "temporal-redirect",
    "temporal-redirect-code",
    "upstream-vhost",
    "use-regex",
    "x-forwarded-prefix",
];

/// Longest value accepted for a URL, path or header these annotations carry.
const MAX_VALUE_LEN: usize = 2048;

/// The routing settings of one Ingress's nginx annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    /// `use-regex: "true"`: the Ingress's paths are regular expressions.
    pub use_regex: bool,
    /// `rewrite-target`: the path the upstream gets, from the path regex's captures.
    pub rewrite_target: Option<RewriteTarget>,
    /// `app-root`: a request for `/` gets 302 to this path.
    pub app_root: Option<String>,
    /// `x-forwarded-prefix`: sent upstream as `X-Forwarded-Prefix`.
    pub x_forwarded_prefix: Option<String>,
    /// `upstream-vhost`: the `Host` the upstream gets.
    pub upstream_vhost: Option<String>,
    /// `permanent-redirect` or `temporal-redirect` (temporal wins, as in ingress-nginx):
    /// every path of the Ingress answers this redirect.
    pub redirect: Option<Redirect>,
    /// `from-to-www-redirect`: `www.<host>` ↔ `<host>` answers 308 to the host named.
    pub from_to_www: bool,
}

impl Routing {
    /// Whether the Ingress's paths are regular expressions: `use-regex`, or a rewrite
    /// (as in ingress-nginx, a rewrite target implies regex paths). ingress-nginx then
    /// treats every path of the same host as a regular expression too; the proxy's build
    /// does that, since it sees all the Ingresses of a host.
    pub fn regex_paths(&self) -> bool {
        self.use_regex || self.rewrite_target.is_some()
    }

    /// Whether any of these settings is in use (the proxy compiles them then).
    pub fn is_set(&self) -> bool {
        *self != Routing::default()
    }
}

/// A redirect every path of an Ingress answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub code: u16,
    /// An absolute `http`/`https` URL, sent as `Location` as it is.
    pub location: String,
}

/// A `rewrite-target`, parsed: literal text and `$1`…`$9` capture references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteTarget {
    parts: Vec<RewritePart>,
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RewritePart {
    Literal(String),
    Group(usize),
}

impl RewriteTarget {
    /// Parses a target: a path starting with `/`, with `$1`…`$9` for capture groups (nginx
    /// `rewrite`'s replacement). Other nginx variables, a query and a scheme are refused.
    pub fn parse(value: &str) -> Result<RewriteTarget, String> {
        if !value.starts_with('/') {
            return Err(
                "must be a path starting with '/' (redirect targets are not supported)".into(),
            );
        }
        check_value(value)?;
        if let Some(c) = value.chars().find(|c| matches!(c, '?' | '#')) {
            return Err(format!("{c:?} is not supported in a rewrite target"));
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = value.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '$' {
                literal.push(c);
                continue;
            }
            match chars.next().and_then(|d| d.to_digit(10)) {
                Some(d) if d >= 1 => {
                    if !literal.is_empty() {
                        parts.push(RewritePart::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(RewritePart::Group(d as usize));
                }
                _ => {
                    return Err(
                        "only $1 to $9 (capture groups) are supported, not other nginx variables"
                            .into(),
                    );
                }
            }
        }
        if !literal.is_empty() {
            parts.push(RewritePart::Literal(literal));
        }
        Ok(RewriteTarget {
            parts,
            source: value.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The path the upstream gets for `request_path` matched by `path` (nginx: `rewrite
    /// "(?i)<path>" <target> break;`), with `query` kept; `None` when the regex does not
    /// match (the path goes upstream unchanged, as in nginx). A group the match did not
    /// set expands to nothing.
    pub fn apply(
        &self,
        path: &PathMatch,
        request_path: &str,
        query: Option<&str>,
    ) -> Option<String> {
        let caps = path.captures(request_path)?;
        let mut out = String::with_capacity(request_path.len() + 16);
        for part in &self.parts {
            match part {
                RewritePart::Literal(l) => out.push_str(l),
                RewritePart::Group(n) => {
                    out.push_str(caps.get(*n).map_or("", |m| m.as_str()));
                }
            }
        }
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        Some(out)
    }
}

/// No control characters or whitespace, bounded length.
fn check_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE_LEN {
        return Err(format!("longer than {MAX_VALUE_LEN} bytes"));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("contains whitespace or control characters".into());
    }
    Ok(())
}

/// An absolute `http`/`https` URL with a host.
fn check_url(value: &str) -> Result<(), String> {
    check_value(value)?;
    let uri: http::Uri = value.parse().map_err(|_| "not a URL".to_string())?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(h)) if !h.is_empty() => Ok(()),
        _ => Err("not an absolute http or https URL".into()),
    }
}

/// A `Host` value: a DNS name or address, with an optional port.
fn check_vhost(value: &str) -> Result<(), String> {
    check_value(value)?;
    let ok = !value.is_empty()
        && value.len() <= 261
        && value.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']' | b'_')
        })
        && value
            .parse::<http::uri::Authority>()
            .is_ok_and(|a| a.as_str() == value);
    if ok {
        Ok(())
    } else {
        Err("not a host name with an optional port".into())
    }
}

/// ingress-nginx accepts redirect codes 300–308; another one falls back to the default.
fn redirect_code(value: &str) -> Option<u16> {
    value.parse().ok().filter(|c| (300..=308).contains(c))
}

/// Reads one routing annotation `name` (one of [`NAMES`]) into `routing`. `annotations`
/// are all of the Ingress's, for the pairs (`*-redirect` and its `-code`).
pub(super) fn read(
    name: &str,
    value: &str,
    annotations: &BTreeMap<String, String>,
    routing: &mut Routing,
    verdict: &mut AnnotationVerdict,
    refusals: &mut Vec<Problem>,
) {
    let mut refuse = |reason: String| {
        refusals.push(Problem::NginxAnnotation {
            name: name.to_owned(),
            reason,
        })
    };
    let flag = |verdict: &mut AnnotationVerdict| match value {
        "true" => true,
        "false" => false,
        _ => {
            verdict.bad_value = Some(value.to_owned());
            false
        }
    };
    match name {
        "use-regex" => routing.use_regex = flag(verdict),
        "from-to-www-redirect" => routing.from_to_www = flag(verdict),
        "rewrite-target" => match RewriteTarget::parse(value) {
            Ok(t) => routing.rewrite_target = Some(t),
            Err(e) => refuse(format!("{value:?}: {e}")),
        },
        "app-root" => match check_value(value) {
            Ok(()) if value.starts_with('/') && !value.contains(['?', '#']) => {
                routing.app_root = Some(value.to_owned());
            }
            Ok(()) => refuse(format!("{value:?} is not a path starting with '/'")),
            Err(e) => refuse(format!("{value:?}: {e}")),
        },
        "x-forwarded-prefix" => match check_value(value) {
            Ok(()) if !value.is_empty() => routing.x_forwarded_prefix = Some(value.to_owned()),
            Ok(()) => refuse("empty".into()),
            Err(e) => refuse(format!("{value:?}: {e}")),
        },
        "upstream-vhost" => match check_vhost(value) {
            Ok(()) => routing.upstream_vhost = Some(value.to_owned()),
            Err(e) => refuse(format!("{value:?}: {e}")),
        },
        "permanent-redirect" | "temporal-redirect" => {
            let temporal = name == "temporal-redirect";
            if !temporal && annotations.contains_key(&format!("{NGINX_PREFIX}temporal-redirect")) {
                // ingress-nginx reads temporal-redirect first; the permanent one is unused.
                return;
            }
            if let Err(e) = check_url(value) {
                refuse(format!("{value:?}: {e}"));
                return;
            }
            let code_value = annotations
                .get(&format!("{NGINX_PREFIX}{name}-code"))
                .map(|c| c.trim());
            let default = if temporal { 302 } else { 301 };
            routing.redirect = Some(Redirect {
                code: code_value.and_then(redirect_code).unwrap_or(default),
                location: value.to_owned(),
            });
        }
        "permanent-redirect-code" | "temporal-redirect-code" if redirect_code(value).is_none() => {
            verdict.bad_value = Some(value.to_owned());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nginx::read as read_all;
    use serde_json::json;
    use std::collections::BTreeSet;

    fn read(annotations: serde_json::Value) -> crate::nginx::Read {
        let mut prefixed = serde_json::Map::new();
        for (k, v) in annotations.as_object().expect("object") {
            prefixed.insert(format!("{NGINX_PREFIX}{k}"), v.clone());
        }
        let ing = serde_json::from_value(json!({"metadata": {"name": "i", "namespace": "a",
            "annotations": prefixed}}))
        .expect("ingress");
        read_all(&ing, &BTreeSet::new())
    }

    fn refused(r: &crate::nginx::Read) -> Vec<String> {
        r.refusals.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn rewrite_target_expands_capture_groups_and_keeps_the_query() {
        let t = RewriteTarget::parse("/$2").expect("target");
        let path = PathMatch::regex("/something(/|$)(.*)").expect("regex");
        let cases = [
            ("/something", None, Some("/")),
            ("/something/", None, Some("/")),
            ("/something/new", Some("a=1"), Some("/new?a=1")),
            ("/SOMETHING/x/y", None, Some("/x/y")),
            ("/other", None, None),
        ];
        for (req, q, want) in cases {
            assert_eq!(t.apply(&path, req, q).as_deref(), want, "{req}");
        }
        let t = RewriteTarget::parse("/v2/$1-$3").expect("target");
        let path = PathMatch::regex("/api/(\\w+)").expect("regex");
        assert_eq!(
            t.apply(&path, "/api/users", None).as_deref(),
            Some("/v2/users-"),
            "a group the pattern lacks expands to nothing"
        );
        for bad in ["$1", "/$host/x", "/a?b=1", "http://x/", "/$0", "/a b"] {
            assert!(RewriteTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routing_annotations_become_settings() {
        let r = read(json!({
            "use-regex": "true",
            "rewrite-target": "/$1",
            "app-root": "/app",
            "x-forwarded-prefix": "/api",
            "upstream-vhost": "internal.example:8080",
            "permanent-redirect": "https://other.example/x",
            "permanent-redirect-code": "308",
            "from-to-www-redirect": "true",
        }));
        assert!(r.refusals.is_empty(), "{:?}", refused(&r));
        assert_eq!(r.not_honoured().count(), 0);
        let s = &r.settings.routing;
        assert!(s.use_regex && s.from_to_www && s.regex_paths());
        assert_eq!(
            s.rewrite_target.as_ref().map(RewriteTarget::as_str),
            Some("/$1")
        );
        assert_eq!(s.app_root.as_deref(), Some("/app"));
        assert_eq!(s.x_forwarded_prefix.as_deref(), Some("/api"));
        assert_eq!(s.upstream_vhost.as_deref(), Some("internal.example:8080"));
        assert_eq!(
            s.redirect,
            Some(Redirect {
                code: 308,
                location: "https://other.example/x".into()
            })
        );
        assert!(
            read(json!({"rewrite-target": "/"}))
                .settings
                .routing
                .regex_paths(),
            "a rewrite implies regex paths"
        );
    }

    #[test]
    fn redirects_default_codes_and_temporal_wins() {
        let r = read(json!({"temporal-redirect": "http://t.example/"}));
        assert_eq!(r.settings.routing.redirect.map(|r| r.code), Some(302));
        let r = read(json!({"permanent-redirect": "http://p.example/"}));
        assert_eq!(r.settings.routing.redirect.map(|r| r.code), Some(301));
        let r = read(json!({
            "permanent-redirect": "http://p.example/",
            "temporal-redirect": "http://t.example/",
            "temporal-redirect-code": "399",
        }));
        assert_eq!(
            r.settings.routing.redirect,
            Some(Redirect {
                code: 302,
                location: "http://t.example/".into()
            }),
            "temporal wins; a code outside 300-308 falls back to the default"
        );
        let bad: Vec<&str> = r.not_honoured().map(|v| v.name.as_str()).collect();
        assert_eq!(bad, ["temporal-redirect-code"]);
    }

    #[test]
    fn values_that_would_misroute_are_refused() {
        for (name, value) in [
            ("rewrite-target", "/$request_uri"),
            ("app-root", "app"),
            ("upstream-vhost", "a b"),
            ("upstream-vhost", "x/y"),
            ("permanent-redirect", "/relative"),
            ("temporal-redirect", "javascript:alert(1)"),
            ("x-forwarded-prefix", ""),
        ] {
            let r = read(json!({ name: value }));
            assert_eq!(r.refusals.len(), 1, "{name}: {value:?} is refused");
            assert!(refused(&r)[0].contains(name));
        }
        let r = read(json!({"use-regex": "yes"}));
        assert!(r.refusals.is_empty());
        assert_eq!(r.not_honoured().count(), 1, "a bad flag is a notice");
        assert!(!r.settings.routing.use_regex);
    }
}
