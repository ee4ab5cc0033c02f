//! ingress-nginx's CORS annotations (`enable-cors`, `cors-*`), read into [`Cors`]: what the
//! proxy answers a preflight with and adds to responses. Defaults are ingress-nginx's.
//!
//! ```text
//!  enable-cors: "true" ─┬─ cors-allow-origin       ─▶ origins ("*" or a list; *.domain ok)
//!                       ├─ cors-allow-methods       ─▶ allow_methods
//!                       ├─ cors-allow-headers       ─▶ allow_headers
//!                       ├─ cors-expose-headers      ─▶ expose_headers
//!                       ├─ cors-allow-credentials   ─▶ allow_credentials
//!                       └─ cors-max-age             ─▶ max_age
//! ```
//!
//! A value that cannot be read is ignored with a notice and the default applies, except
//! `cors-allow-origin`: ignoring a bad origin list would widen it to `*`, so CORS is then
//! off for the Ingress (browsers keep refusing cross-origin reads).

pub const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
pub const DEFAULT_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
pub const DEFAULT_MAX_AGE: u64 = 1_728_000;

/// The CORS policy of an Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Empty: any origin (`*`).
    pub origins: Vec<Origin>,
    pub allow_methods: String,
    pub allow_headers: String,
    pub expose_headers: Option<String>,
    pub allow_credentials: bool,
    pub max_age: u64,
}

/// An allowed origin: `scheme://host[:port]`, the host optionally `*.` and a domain (any
/// one or more labels in front of it, as ingress-nginx matches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    /// Lowercase, with the port if any; without the `*.` of a wildcard.
    pub host: String,
    pub wildcard: bool,
}

impl Origin {
    fn parse(s: &str) -> Option<Origin> {
        let (scheme, rest) = s.split_once("://")?;
        let scheme_ok = !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        let (wildcard, host) = match rest.strip_prefix("*.") {
            Some(h) => (true, h),
            None => (false, rest),
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'));
        (scheme_ok && host_ok).then(|| Origin {
            scheme: scheme.to_ascii_lowercase(),
            host: host.to_ascii_lowercase(),
            wildcard,
        })
    }

    /// Whether the request's `Origin` header value is this one.
    pub fn matches(&self, origin: &str) -> bool {
        let Some((scheme, host)) = origin.split_once("://") else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(&self.scheme) {
            return false;
        }
        let host = host.to_ascii_lowercase();
        if self.wildcard {
            host.strip_suffix(&self.host)
                .and_then(|front| front.strip_suffix('.'))
                .is_some_and(|front| {
                    !front.is_empty()
                        && front
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
                })
        } else {
            host == self.host
        }
    }
}

impl Cors {
    /// Whether a request from `origin` gets CORS headers (always, for `*`).
    pub fn allows(&self, origin: Option<&str>) -> bool {
        self.origins.is_empty() || origin.is_some_and(|o| self.origins.iter().any(|a| a.matches(o)))
    }
}

/// The CORS annotations of one Ingress, as read so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsAnnotations {
    pub enabled: bool,
    /// `Some(None)`: the annotation was there and could not be read.
    origins: Option<Option<Vec<Origin>>>,
    methods: Option<String>,
    headers: Option<String>,
    expose: Option<String>,
    credentials: Option<bool>,
    max_age: Option<u64>,
}

impl CorsAnnotations {
    /// The policy, when CORS is on and the origin list could be read.
    pub fn policy(&self) -> Option<Cors> {
        if !self.enabled {
            return None;
        }
        let origins = match &self.origins {
            None => Vec::new(),
            Some(Some(o)) => o.clone(),
            Some(None) => return None,
        };
        Some(Cors {
            origins,
            allow_methods: self
                .methods
                .clone()
                .unwrap_or_else(|| DEFAULT_METHODS.to_owned()),
            allow_headers: self
                .headers
                .clone()
                .unwrap_or_else(|| DEFAULT_HEADERS.to_owned()),
            expose_headers: self.expose.clone(),
            allow_credentials: self.credentials.unwrap_or(true),
            max_age: self.max_age.unwrap_or(DEFAULT_MAX_AGE),
        })
    }
}

/// The CORS annotation `name` (without the prefix) with `value` applied: `None` when
/// `name` is not one of them, `Some(false)` when the value is not understood.
pub fn read(name: &str, value: &str, cors: &mut CorsAnnotations) -> Option<bool> {
    let ok = match name {
        "enable-cors" => match value {
            "true" | "false" => {
                cors.enabled = value == "true";
                true
            }
            _ => false,
        },
        "cors-allow-origin" => {
            let origins = origins(value);
            let ok = origins.is_some();
            cors.origins = Some(origins);
            ok
        }
        "cors-allow-methods" => set(&mut cors.methods, list(value, is_method)),
        "cors-allow-headers" => set(&mut cors.headers, list(value, is_header_name)),
        "cors-expose-headers" => set(&mut cors.expose, list(value, is_header_name)),
        "cors-allow-credentials" => set(
            &mut cors.credentials,
            match value {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
        ),
        "cors-max-age" => set(&mut cors.max_age, value.parse().ok()),
        _ => return None,
    };
    Some(ok)
}

fn set<T>(field: &mut Option<T>, value: Option<T>) -> bool {
    let ok = value.is_some();
    if ok {
        *field = value;
    }
    ok
}

/// `*`, or origins separated by commas (ingress-nginx's form); `None` if any is bad.
fn origins(value: &str) -> Option<Vec<Origin>> {
    let items: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return None;
    }
    if items.contains(&"*") {
        return Some(Vec::new());
    }
    items.into_iter().map(Origin::parse).collect()
}

/// A comma-separated list of tokens, normalized to `a, b`, for a header value.
fn list(value: &str, ok: fn(&str) -> bool) -> Option<String> {
    let items: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    (!items.is_empty() && items.iter().all(|i| ok(i))).then(|| items.join(", "))
}

fn is_method(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphabetic())
}

fn is_header_name(s: &str) -> bool {
    s == "*"
        || s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(pairs: &[(&str, &str)]) -> (Option<Cors>, Vec<String>) {
        let mut c = CorsAnnotations::default();
        let mut bad = Vec::new();
        for (name, value) in pairs {
            if read(name, value, &mut c) == Some(false) {
                bad.push((*name).to_owned());
            }
        }
        (c.policy(), bad)
    }

    #[test]
    fn ingress_nginx_defaults() {
        assert_eq!(
            cors(&[("cors-allow-origin", "*")]).0,
            None,
            "off unless enabled"
        );
        let (c, bad) = cors(&[("enable-cors", "true")]);
        assert!(bad.is_empty());
        let c = c.expect("on");
        assert!(c.origins.is_empty() && c.allows(None) && c.allows(Some("https://x.y")));
        assert_eq!(c.allow_methods, DEFAULT_METHODS);
        assert_eq!(c.allow_headers, DEFAULT_HEADERS);
        assert_eq!((c.allow_credentials, c.max_age), (true, 1_728_000));
        assert_eq!(c.expose_headers, None);
    }

    #[test]
    fn origin_lists_match_exactly_or_by_subdomain() {
        let (c, bad) = cors(&[
            ("enable-cors", "true"),
            (
                "cors-allow-origin",
                "https://app.example.com, https://*.example.org, http://localhost:8080",
            ),
            ("cors-allow-methods", "GET,POST"),
            ("cors-allow-headers", "X-Token, Content-Type"),
            ("cors-expose-headers", "X-Total"),
            ("cors-allow-credentials", "false"),
            ("cors-max-age", "600"),
        ]);
        assert!(bad.is_empty(), "{bad:?}");
        let c = c.expect("on");
        assert_eq!(c.allow_methods, "GET, POST");
        assert_eq!(c.allow_headers, "X-Token, Content-Type");
        assert_eq!(c.expose_headers.as_deref(), Some("X-Total"));
        assert_eq!((c.allow_credentials, c.max_age), (false, 600));
        for ok in [
            "https://app.example.com",
            "HTTPS://App.Example.com",
            "https://a.example.org",
            "https://a.b.example.org",
            "http://localhost:8080",
        ] {
            assert!(c.allows(Some(ok)), "{ok}");
        }
        for no in [
            "http://app.example.com",
            "https://app.example.com.evil.net",
            "https://example.org",
            "https://evilexample.org",
            "http://localhost:8081",
            "null",
        ] {
            assert!(!c.allows(Some(no)), "{no}");
        }
        assert!(!c.allows(None));
    }

    #[test]
    fn a_bad_origin_list_turns_cors_off_rather_than_open() {
        let (c, bad) = cors(&[
            ("enable-cors", "true"),
            ("cors-allow-origin", "https://ok.example, not an origin"),
        ]);
        assert_eq!(c, None);
        assert_eq!(bad, ["cors-allow-origin"]);
        let (c, bad) = cors(&[
            ("enable-cors", "true"),
            ("cors-allow-methods", "GET;rm"),
            ("cors-max-age", "soon"),
        ]);
        assert_eq!(bad.len(), 2);
        assert_eq!(
            c.expect("on").allow_methods,
            DEFAULT_METHODS,
            "default kept"
        );
    }
}
