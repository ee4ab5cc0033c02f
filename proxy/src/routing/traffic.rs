//! Per-route overrides of the instance's traffic settings (ingress-nginx's per-Ingress
//! annotations, read by `portico_ingress::traffic`): `None` keeps the instance's.

use std::sync::Arc;
use std::time::Duration;

use portico_ingress::affinity::SessionCookie;
use portico_ingress::traffic::Traffic;

use crate::lb::AFFINITY_COOKIE;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTraffic {
    /// Largest request body: `Some(None)` is no limit.
    pub max_body_size: Option<Option<u64>>,
    /// Each connect attempt (TCP, and TLS to the backend).
    pub connect_timeout: Option<Duration>,
    /// Sending the request to receiving the response head (504 beyond it).
    pub request_timeout: Option<Duration>,
    /// Retries after a failed connect.
    pub retries: Option<u32>,
    /// Requests that are not idempotent are retried on a failed connect too.
    pub retry_non_idempotent: bool,
    /// No access log lines for this route, even when the instance writes them.
    pub access_log_off: bool,
    /// `enable-cors`: preflights answered at the proxy, headers on responses.
    pub cors: Option<Arc<crate::routing::cors::CorsPolicy>>,
    /// The affinity cookie's name and attributes, when not Portico's default.
    pub session_cookie: Option<Arc<SessionCookie>>,
}

impl RouteTraffic {
    /// The cookie `cookie` affinity reads and sets.
    pub fn affinity_cookie(&self) -> &str {
        self.session_cookie
            .as_ref()
            .and_then(|c| c.name.as_deref())
            .unwrap_or(AFFINITY_COOKIE)
    }

    /// The `Set-Cookie` value giving the client affinity `token`.
    pub fn set_affinity_cookie(&self, token: &str) -> String {
        let Some(c) = &self.session_cookie else {
            return format!("{AFFINITY_COOKIE}={token}; Path=/; HttpOnly");
        };
        let mut v = format!(
            "{}={token}; Path={}",
            self.affinity_cookie(),
            c.path.as_deref().unwrap_or("/")
        );
        if let Some(age) = c.max_age {
            v.push_str(&format!("; Max-Age={age}"));
        }
        if let Some(secs) = c.expires {
            let at = crate::clock::timestamp_in(secs);
            let printer = k8s_openapi::jiff::fmt::rfc2822::DateTimePrinter::new();
            if let Ok(date) = printer.timestamp_to_rfc9110_string(&at) {
                v.push_str(&format!("; Expires={date}"));
            }
        }
        if let Some(s) = c.same_site {
            v.push_str(&format!("; SameSite={}", s.as_str()));
        }
        if c.secure == Some(true) {
            v.push_str("; Secure");
        }
        v.push_str("; HttpOnly");
        v
    }
}

impl From<&Traffic> for RouteTraffic {
    fn from(t: &Traffic) -> Self {
        let (retries, retry_non_idempotent) = t.retries();
        RouteTraffic {
            max_body_size: t.body_size,
            connect_timeout: t.connect_timeout,
            request_timeout: t.request_timeout(),
            retries,
            retry_non_idempotent,
            access_log_off: t.access_log == Some(false),
            cors: t
                .cors
                .policy()
                .and_then(crate::routing::cors::CorsPolicy::new)
                .map(Arc::new),
            session_cookie: (!t.session_cookie.is_default())
                .then(|| Arc::new(t.session_cookie.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_affinity_cookie_with_and_without_attributes() {
        let plain = RouteTraffic::default();
        assert_eq!(plain.affinity_cookie(), AFFINITY_COOKIE);
        assert_eq!(
            plain.set_affinity_cookie("t"),
            format!("{AFFINITY_COOKIE}=t; Path=/; HttpOnly")
        );
        let mut t = Traffic::default();
        for (n, v) in [
            ("session-cookie-name", "route"),
            ("session-cookie-max-age", "60"),
            ("session-cookie-expires", "120"),
            ("session-cookie-samesite", "Lax"),
            ("session-cookie-secure", "true"),
        ] {
            portico_ingress::traffic::read(n, v, &mut t);
        }
        let r = RouteTraffic::from(&t);
        assert_eq!(r.affinity_cookie(), "route");
        let v = r.set_affinity_cookie("t");
        assert!(
            v.starts_with("route=t; Path=/; Max-Age=60; Expires="),
            "{v}"
        );
        assert!(v.ends_with(" GMT; SameSite=Lax; Secure; HttpOnly"), "{v}");
    }
}
