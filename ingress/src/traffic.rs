//! ingress-nginx's per-Ingress traffic annotations: body size, timeouts, retries and access
//! logs, read into [`Traffic`]. `nginx::read()` hands each of these annotations here; a
//! value Portico cannot read is ignored with a notice (the instance's setting applies), as
//! for the other honoured annotations.
//!
//! ```text
//!  proxy-body-size ──────────────────────▶ body_size        (413 beyond it)
//!  proxy-connect-timeout ────────────────▶ connect_timeout  (each connect attempt)
//!  proxy-read-timeout, proxy-send-timeout ▶ request_timeout()(504 without a response head)
//!  proxy-next-upstream(-tries) ──────────▶ retries()        (connect failures only)
//!  enable-access-log ────────────────────▶ access_log
//!  enable-cors, cors-* ──────────────────▶ cors (crate::cors)
//!  session-cookie-* ─────────────────────▶ session_cookie (crate::affinity)
//! ```

use std::time::Duration;

/// What an Ingress's traffic annotations ask for; `None` everywhere: the instance's
/// settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traffic {
    /// `proxy-body-size`: `Some(None)` is `0`, no limit.
    pub body_size: Option<Option<u64>>,
    pub connect_timeout: Option<Duration>,
    pub read_timeout: Option<Duration>,
    pub send_timeout: Option<Duration>,
    /// `proxy-next-upstream`.
    pub next_upstream: Option<NextUpstream>,
    /// `proxy-next-upstream-tries`: attempts in all, `0` none counted (every endpoint once).
    pub tries: Option<u32>,
    /// `enable-access-log`.
    pub access_log: Option<bool>,
    /// `enable-cors` and `cors-*`.
    pub cors: crate::cors::CorsAnnotations,
    /// `session-cookie-*`: the attributes of `affinity: cookie`'s cookie.
    pub session_cookie: crate::affinity::SessionCookie,
}

/// `proxy-next-upstream`, as far as Portico can honour it: Portico retries only a request
/// whose connection failed (nothing of it was sent), on another endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextUpstream {
    /// `error` or `timeout` listed: a failed or timed-out connect moves on.
    pub on_connect_failure: bool,
    /// `non_idempotent`: POST, PATCH and the like move on too.
    pub non_idempotent: bool,
}

impl Traffic {
    /// The deadline for one exchange, sending the request to receiving the response head,
    /// when the Ingress sets one: the larger of the send and read timeouts.
    pub fn request_timeout(&self) -> Option<Duration> {
        match (self.send_timeout, self.read_timeout) {
            (Some(s), Some(r)) => Some(s.max(r)),
            (s, r) => s.or(r),
        }
    }

    /// Retries after the first attempt (`None`: the instance's), and whether requests that
    /// are not idempotent are retried too.
    pub fn retries(&self) -> (Option<u32>, bool) {
        match self.next_upstream {
            Some(NextUpstream {
                on_connect_failure: false,
                ..
            }) => (Some(0), false),
            next => {
                // nginx counts the first attempt; 0 is "no limit": every endpoint once.
                let retries = self.tries.map(|t| if t == 0 { u32::MAX } else { t - 1 });
                (retries, next.is_some_and(|n| n.non_idempotent))
            }
        }
    }
}

/// The traffic annotation `name` (without the prefix) with `value` applied to `traffic`:
/// `None` when `name` is not one of them, `Some(false)` when the value is not understood.
pub fn read(name: &str, value: &str, traffic: &mut Traffic) -> Option<bool> {
    let ok = match name {
        "proxy-body-size" => crate::parse_size(value)
            .map(|s| traffic.body_size = Some(s))
            .is_ok(),
        "proxy-connect-timeout" => set(&mut traffic.connect_timeout, seconds(value)),
        "proxy-read-timeout" => set(&mut traffic.read_timeout, seconds(value)),
        "proxy-send-timeout" => set(&mut traffic.send_timeout, seconds(value)),
        "proxy-next-upstream" => set(&mut traffic.next_upstream, next_upstream(value)),
        "proxy-next-upstream-tries" => set(&mut traffic.tries, value.parse().ok()),
        "enable-access-log" => set(
            &mut traffic.access_log,
            match value {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
        ),
        _ if name.starts_with("session-cookie-") => {
            return crate::affinity::read(name, value, &mut traffic.session_cookie);
        }
        _ => return crate::cors::read(name, value, &mut traffic.cors),
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

/// An nginx timeout: bare seconds (`"60"`, ingress-nginx's form) or with units (`"500ms"`,
/// `"1m30s"`); zero is refused (nginx would time out at once).
pub fn seconds(value: &str) -> Option<Duration> {
    let d = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(value.parse().ok()?)
    } else {
        value.parse::<crate::Duration>().ok()?.get()
    };
    (!d.is_zero()).then_some(d)
}

fn next_upstream(value: &str) -> Option<NextUpstream> {
    let mut next = NextUpstream {
        on_connect_failure: false,
        non_idempotent: false,
    };
    let tokens: Vec<&str> = value.split_whitespace().collect();
    if tokens == ["off"] {
        return Some(next);
    }
    if tokens.is_empty() {
        return None;
    }
    for t in tokens {
        match t {
            "error" | "timeout" => next.on_connect_failure = true,
            "non_idempotent" => next.non_idempotent = true,
            // Retries on an answer are not Portico's: the request was sent already.
            "invalid_header" | "http_500" | "http_502" | "http_503" | "http_504" | "http_403"
            | "http_404" | "http_429" => {}
            _ => return None,
        }
    }
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic(pairs: &[(&str, &str)]) -> (Traffic, Vec<String>) {
        let mut t = Traffic::default();
        let mut bad = Vec::new();
        for (name, value) in pairs {
            if read(name, value, &mut t) == Some(false) {
                bad.push((*name).to_owned());
            }
        }
        (t, bad)
    }

    #[test]
    fn sizes_and_timeouts_in_ingress_nginx_syntax() {
        let (t, bad) = traffic(&[
            ("proxy-body-size", "8m"),
            ("proxy-connect-timeout", "5"),
            ("proxy-read-timeout", "1m30s"),
            ("proxy-send-timeout", "500ms"),
        ]);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(t.body_size, Some(Some(8 << 20)));
        assert_eq!(t.connect_timeout, Some(Duration::from_secs(5)));
        assert_eq!(t.request_timeout(), Some(Duration::from_secs(90)));
        let (t, _) = traffic(&[("proxy-body-size", "0")]);
        assert_eq!(t.body_size, Some(None), "0 is no limit");
        let (t, bad) = traffic(&[
            ("proxy-body-size", "1.5m"),
            ("proxy-read-timeout", "0"),
            ("proxy-send-timeout", "-1"),
            ("proxy-connect-timeout", "5x"),
            ("enable-access-log", "no"),
        ]);
        assert_eq!(t, Traffic::default(), "bad values change nothing");
        assert_eq!(bad.len(), 5);
        assert_eq!(read("rewrite-target", "/", &mut Traffic::default()), None);
    }

    #[test]
    fn next_upstream_maps_onto_retries_of_failed_connects() {
        let (t, _) = traffic(&[]);
        assert_eq!(t.retries(), (None, false), "the instance's retries");
        let (t, _) = traffic(&[("proxy-next-upstream", "off")]);
        assert_eq!(t.retries(), (Some(0), false));
        let (t, _) = traffic(&[("proxy-next-upstream", "http_502 http_503")]);
        assert_eq!(t.retries(), (Some(0), false), "no error/timeout: no retry");
        let (t, _) = traffic(&[
            ("proxy-next-upstream", "error timeout non_idempotent"),
            ("proxy-next-upstream-tries", "4"),
        ]);
        assert_eq!(
            t.retries(),
            (Some(3), true),
            "tries count the first attempt"
        );
        let (t, _) = traffic(&[("proxy-next-upstream-tries", "0")]);
        assert_eq!(t.retries(), (Some(u32::MAX), false), "0: every endpoint");
        let (_, bad) = traffic(&[
            ("proxy-next-upstream", "error bogus"),
            ("proxy-next-upstream", ""),
            ("proxy-next-upstream-tries", "-1"),
        ]);
        assert_eq!(bad.len(), 3);
    }
}
