//! CORS at the proxy (ingress-nginx's `enable-cors`): a preflight (`OPTIONS`) from an
//! allowed origin is answered here with 204; every response to an allowed origin gets the
//! `Access-Control-*` headers, replacing the backend's. The policy is read by
//! `portico_ingress::cors`; here it is turned into header values once per build.

use http::header::{self, HeaderMap, HeaderValue};
use portico_ingress::cors::Cors;

#[derive(Debug, PartialEq, Eq)]
pub struct CorsPolicy {
    cors: Cors,
    methods: HeaderValue,
    headers: HeaderValue,
    expose: Option<HeaderValue>,
    max_age: HeaderValue,
}

fn any() -> HeaderValue {
    HeaderValue::from_static("*")
}

impl CorsPolicy {
    /// `None` if a value cannot be a header (the reader admits only tokens, so never).
    pub fn new(cors: Cors) -> Option<CorsPolicy> {
        Some(CorsPolicy {
            methods: HeaderValue::from_str(&cors.allow_methods).ok()?,
            headers: HeaderValue::from_str(&cors.allow_headers).ok()?,
            expose: match &cors.expose_headers {
                Some(e) => Some(HeaderValue::from_str(e).ok()?),
                None => None,
            },
            max_age: HeaderValue::from(cors.max_age),
            cors,
        })
    }

    /// The `Access-Control-Allow-Origin` a request with `origin` gets: `*`, its own origin
    /// when listed, or none (no CORS headers).
    pub fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        if self.cors.origins.is_empty() {
            return Some(any());
        }
        let origin = origin?;
        self.cors
            .allows(origin.to_str().ok())
            .then(|| origin.clone())
    }

    /// Sets the CORS headers for a request that `allow_origin` admitted.
    pub fn apply(&self, allow_origin: HeaderValue, headers: &mut HeaderMap) {
        if allow_origin != "*" {
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        if self.cors.allow_credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, self.headers.clone());
        if let Some(e) = &self.expose {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone());
        }
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_ingress::cors::{CorsAnnotations, read};

    fn policy(pairs: &[(&str, &str)]) -> CorsPolicy {
        let mut a = CorsAnnotations::default();
        for (n, v) in pairs {
            read(n, v, &mut a);
        }
        CorsPolicy::new(a.policy().expect("on")).expect("policy")
    }

    #[test]
    fn star_for_everyone_a_listed_origin_echoed_others_nothing() {
        let p = policy(&[("enable-cors", "true")]);
        assert_eq!(p.allow_origin(None), Some(any()));
        let mut h = HeaderMap::new();
        p.apply(any(), &mut h);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "1728000");
        assert!(!h.contains_key(header::VARY));

        let p = policy(&[
            ("enable-cors", "true"),
            ("cors-allow-origin", "https://a.example, https://b.example"),
        ]);
        let b = HeaderValue::from_static("https://b.example");
        assert_eq!(p.allow_origin(Some(&b)), Some(b.clone()));
        assert_eq!(
            p.allow_origin(Some(&HeaderValue::from_static("https://c.example"))),
            None
        );
        assert_eq!(p.allow_origin(None), None);
        let mut h = HeaderMap::new();
        p.apply(b, &mut h);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://b.example");
        assert_eq!(h[header::VARY], "Origin");
    }
}
