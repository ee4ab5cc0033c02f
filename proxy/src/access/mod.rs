//! Who may reach an Ingress, per request: ingress-nginx's rate limits, source ranges,
//! basic auth and external auth, combined by `satisfy`. Client certificates are decided
//! in the TLS handshake (tls/client_auth.rs) and checked in `proxy.rs` before this.
//!
//! ```text
//!  request ─▶ rate limits (limit-rps/rpm/connections; exempt: limit-whitelist) ─▶ 429/503
//!          ─▶ source ranges ─┐
//!             basic auth ────┼─ satisfy all: each set must allow (the first denial answers)
//!             external auth ─┘  satisfy any: one allowing is enough (else 401 before 403)
//!          ─▶ Granted (headers for the upstream, cookies for the client, in-flight guard)
//! ```
//!
//! As in nginx, rate limits come first (its preaccess phase), so a denied client is
//! limited too, and the access checks run in the order above, stopping as soon as the
//! answer is known: an external auth call is not made for a client the ranges refuse.

pub mod basic;
pub mod external;
pub mod limit;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use portico_ingress::auth::{ExternalAuth, RateLimit};
use portico_ingress::source_range::SourceRanges;

use crate::http::body::status_text as text;
use crate::http::body::{Body, full};
use crate::tls::client_auth::{ClientCertPolicy, Outcome};
use basic::Htpasswd;
use external::{AuthClient, Facts, Verdict};
use limit::{LimitId, Limiter};

/// An Ingress's access control, compiled; shared by its routes.
#[derive(Debug)]
pub struct Access {
    /// Keys the Ingress's rate-limit state (a hash of `namespace/name`).
    pub id: u64,
    /// `namespace/name`: keys its external auth answers.
    pub ingress: String,
    pub source_ranges: Option<SourceRanges>,
    pub basic: Option<Basic>,
    pub external: Option<ExternalAuth>,
    pub rate_limit: Option<RateLimit>,
    pub satisfy_any: bool,
    /// `auth-tls-*`: judged before everything else here, and outside `satisfy`.
    pub client_cert: Option<ClientCertPolicy>,
}

#[derive(Debug)]
pub struct Basic {
    pub users: Arc<Htpasswd>,
    /// `Basic realm="…"`.
    pub challenge: HeaderValue,
}

/// What the pod's access checks share: the rate-limit table and the auth client.
#[derive(Debug)]
pub struct Shared {
    pub limiter: Arc<Limiter>,
    pub auth: AuthClient,
}

/// What an allowed request carries on.
#[derive(Default)]
pub struct Granted {
    /// Set (or removed) on the upstream request: external auth's response headers.
    pub upstream_headers: Vec<(HeaderName, Option<HeaderValue>)>,
    /// For the client's response: external auth's `Set-Cookie`s.
    pub cookies: Vec<HeaderValue>,
    pub always_set_cookie: bool,
    /// Counts against `limit-connections` until the response ends.
    pub in_flight: Option<limit::InFlight>,
}

impl Granted {
    /// Adds the auth cookies to a response from the backend: always, or (as ingress-nginx)
    /// only for a success or a redirect.
    pub fn set_cookies(&mut self, status: StatusCode, headers: &mut http::HeaderMap) {
        let allowed = self.always_set_cookie
            || matches!(
                status.as_u16(),
                200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
            );
        if allowed {
            for c in self.cookies.drain(..) {
                headers.append(header::SET_COOKIE, c);
            }
        }
    }
}

/// One access check's answer.
enum Check {
    Allow,
    Deny(Response<Body>),
}

impl Access {
    /// Decides the request described by `facts`, which came on a connection whose client
    /// sent `client_chain` (TLS, when asked).
    pub async fn decide(
        &self,
        shared: &Shared,
        facts: &Facts<'_>,
        client_chain: Option<&[rustls_pki_types::CertificateDer<'static>]>,
    ) -> Result<Granted, Box<Response<Body>>> {
        let mut granted = Granted::default();
        if let Some(policy) = &self.client_cert {
            match policy.judge(client_chain) {
                Outcome::Allow(headers) => {
                    // What the client sent by these names never reaches the backend.
                    for name in ["ssl-client-verify", "ssl-client-cert"] {
                        let value = headers
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map(|(_, v)| v.clone());
                        granted
                            .upstream_headers
                            .push((HeaderName::from_static(name), value));
                    }
                }
                Outcome::Deny(why) => {
                    let resp = match &policy.settings.error_page {
                        Some(page) => {
                            let mut resp = text(StatusCode::FOUND);
                            if let Ok(v) = HeaderValue::from_str(page) {
                                resp.headers_mut().insert(header::LOCATION, v);
                            }
                            resp
                        }
                        None => {
                            let mut resp = Response::new(full(Bytes::from(format!("400 {why}\n"))));
                            *resp.status_mut() = StatusCode::BAD_REQUEST;
                            resp
                        }
                    };
                    return Err(Box::new(resp));
                }
            }
        }
        if let Some(limit) = &self.rate_limit {
            granted.in_flight = self.limit(limit, &shared.limiter, facts.client)?;
        }
        let mut denials: Vec<Response<Body>> = Vec::new();
        // Each check in order; `satisfy all` stops at the first denial, `any` at the
        // first allow.
        macro_rules! settle {
            ($check:expr) => {
                match $check {
                    Check::Allow if self.satisfy_any => return Ok(granted),
                    Check::Allow => {}
                    Check::Deny(resp) if !self.satisfy_any => return Err(Box::new(resp)),
                    Check::Deny(resp) => denials.push(resp),
                }
            };
        }
        if let Some(ranges) = &self.source_ranges {
            settle!(if ranges.permits(facts.client) {
                Check::Allow
            } else {
                Check::Deny(text(StatusCode::FORBIDDEN))
            });
        }
        if let Some(basic) = &self.basic {
            let credentials = facts
                .headers
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            settle!(if basic.users.verify(credentials).await {
                Check::Allow
            } else {
                let mut resp = text(StatusCode::UNAUTHORIZED);
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, basic.challenge.clone());
                Check::Deny(resp)
            });
        }
        if let Some(external) = &self.external {
            settle!(match shared.auth.check(external, facts).await {
                Verdict::Allow { headers, cookies } => {
                    granted.upstream_headers.extend(headers);
                    granted.cookies = cookies;
                    granted.always_set_cookie = external.always_set_cookie;
                    Check::Allow
                }
                Verdict::Deny(resp) => Check::Deny(resp),
            });
        }
        if denials.is_empty() {
            return Ok(granted);
        }
        // satisfy any, every check denied: nginx answers 401 over 403.
        let i = denials
            .iter()
            .position(|r| r.status() == StatusCode::UNAUTHORIZED || r.status() == StatusCode::FOUND)
            .unwrap_or(0);
        Err(Box::new(denials.swap_remove(i)))
    }

    fn limit(
        &self,
        limit: &RateLimit,
        limiter: &Arc<Limiter>,
        client: IpAddr,
    ) -> Result<Option<limit::InFlight>, Box<Response<Body>>> {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        if limit.exempt.iter().any(|n| n.contains(&client)) {
            return Ok(None);
        }
        let status = StatusCode::from_u16(limit.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
        let refuse = |wait: Duration| {
            let mut resp = Box::new(text(status));
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            resp
        };
        let rates = [(0u8, limit.rps, 1u64), (1u8, limit.rpm, 60u64)];
        for (kind, rate, per_secs) in rates {
            let Some(rate) = rate else { continue };
            let interval = Duration::from_secs(per_secs) / rate;
            let burst = rate.saturating_mul(limit.burst_multiplier);
            limiter
                .request(
                    LimitId {
                        ingress: self.id,
                        kind,
                    },
                    client,
                    interval,
                    burst,
                )
                .map_err(refuse)?;
        }
        match limit.connections {
            None => Ok(None),
            Some(max) => limiter
                .connection(
                    LimitId {
                        ingress: self.id,
                        kind: 2,
                    },
                    client,
                    max,
                )
                .map(Some)
                .ok_or_else(|| refuse(Duration::from_secs(1))),
        }
    }
}
