//! ingress-nginx's external auth (`auth-url`), with nginx's `auth_request` semantics: the
//! request's head (never its body) goes to the auth service; a 2xx lets the request
//! through with the named response headers copied onto it, 401 denies it (or redirects to
//! `auth-signin`), 403 denies it, anything else, a timeout or an unreachable service is
//! 500.
//!
//! ```text
//!  request head ─▶ cache (auth-cache-key)? ─▶ resolve auth host (30 s) ─▶ refuse the
//!  addresses no endpoint may have (endpoint::refused) ─▶ pooled HTTP/1.1 connection
//!  (the upstream client's pool) ─▶ status ─▶ Allow { headers, cookies } │ Deny(response)
//! ```
//!
//! The auth service is chosen by the Ingress's author, so it is dialled under the same
//! rules as an endpoint: never the proxy's own admin port, loopback, link-local or cloud
//! metadata addresses, or the platform's denied ranges. Calls are bounded in time
//! (`AUTH_TIMEOUT`) and in connections (the pool keeps at most 128 idle per address).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use portico_ingress::EndpointPolicy;
use portico_ingress::auth::{ExternalAuth, cache_key_parts};
use tracing::debug;

use crate::http::body::{Body, empty};
use crate::http::target::escape;
use crate::upstream::UpstreamProtocol;
use crate::upstream::client::{Client, Conn};
use crate::upstream::wire::SendError;

/// One auth call, connect to last byte of its answer's head.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// An auth answer's body is read (and dropped) up to this, so the connection can be reused.
const MAX_AUTH_BODY: usize = 64 * 1024;
/// Auth answers kept per pod for `auth-cache-key`.
const MAX_CACHED: usize = 10_000;
const DNS_TTL: Duration = Duration::from_secs(30);

/// The request facts an auth call and its cache key need.
pub struct Facts<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub host: &'a str,
    pub tls: bool,
    pub client: IpAddr,
    /// The Ingress, `namespace/name`: cache entries are never shared between Ingresses.
    pub ingress: &'a str,
}

impl Facts<'_> {
    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    fn request_uri(&self) -> &str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }

    fn original_url(&self) -> String {
        format!("{}://{}{}", self.scheme(), self.host, self.request_uri())
    }

    /// `auth-url` / `auth-signin` with their variables filled in.
    fn fill_url(&self, template: &str) -> String {
        template
            .replace("$escaped_request_uri", &escape(self.request_uri()))
            .replace("$request_uri", self.request_uri())
            .replace("$scheme", self.scheme())
            .replace("$host", self.host)
    }

    fn cache_key(&self, template: &str) -> String {
        let mut out = String::from(self.ingress);
        out.push('\0');
        for (var, text) in cache_key_parts(template) {
            if !var {
                out.push_str(text);
                continue;
            }
            let value: Option<String> = match text {
                "remote_addr" => Some(self.client.to_string()),
                "host" => Some(self.host.to_owned()),
                "request_uri" => Some(self.request_uri().to_owned()),
                "remote_user" => remote_user(self.headers),
                _ => {
                    if let Some(h) = text.strip_prefix("http_") {
                        self.headers
                            .get(h.replace('_', "-"))
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    } else if let Some(c) = text.strip_prefix("cookie_") {
                        crate::http::headers::cookie(self.headers, c).map(str::to_owned)
                    } else {
                        None
                    }
                }
            };
            out.push_str(value.as_deref().unwrap_or(""));
            out.push('\0');
        }
        out
    }
}

/// What the auth service decided.
pub enum Verdict {
    Allow {
        /// `auth-response-headers` as the auth service answered them (absent ones are
        /// removed from the request, so a client cannot supply them).
        headers: Vec<(HeaderName, Option<HeaderValue>)>,
        /// Its `Set-Cookie`s, for the client's response.
        cookies: Vec<HeaderValue>,
    },
    Deny(Response<Body>),
}

#[derive(Clone)]
struct Cached {
    status: StatusCode,
    headers: Vec<(HeaderName, Option<HeaderValue>)>,
    www_authenticate: Option<HeaderValue>,
    cookies: Vec<HeaderValue>,
    until: Instant,
}

/// Auth answers kept for `auth-cache-key`, shared by the pod's workers.
#[derive(Default)]
pub struct AnswerCache(Mutex<HashMap<String, Cached>>);

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache").finish_non_exhaustive()
    }
}

/// Auth hosts resolved, by (host, port): the addresses allowed and until when.
type Resolved = HashMap<(String, u16), (Vec<SocketAddr>, Instant)>;

/// A worker's auth client: its upstream connection pool, and the pod's answer cache.
pub struct AuthClient {
    client: Arc<Client>,
    policy: EndpointPolicy,
    dns: Mutex<Resolved>,
    cache: Arc<AnswerCache>,
}

impl std::fmt::Debug for AuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthClient").finish_non_exhaustive()
    }
}

impl AuthClient {
    pub fn new(client: Arc<Client>, policy: EndpointPolicy, cache: Arc<AnswerCache>) -> Self {
        AuthClient {
            client,
            policy,
            dns: Mutex::new(HashMap::new()),
            cache,
        }
    }

    pub async fn check(&self, auth: &ExternalAuth, facts: &Facts<'_>) -> Verdict {
        let key = auth.cache.as_ref().map(|c| facts.cache_key(&c.key));
        let cached = key.as_ref().and_then(|k| {
            let cache = self.cache.0.lock().ok()?;
            cache.get(k).filter(|c| c.until > Instant::now()).cloned()
        });
        let answer = match cached {
            Some(c) => c,
            None => match tokio::time::timeout(AUTH_TIMEOUT, self.call(auth, facts)).await {
                Ok(Ok(answer)) => {
                    if let (Some(key), Some(cache)) = (key, &auth.cache)
                        && let Some((_, secs)) = cache
                            .durations
                            .iter()
                            .find(|(codes, _)| codes.contains(&answer.status.as_u16()))
                    {
                        let mut answer = answer.clone();
                        answer.until = Instant::now() + Duration::from_secs(*secs);
                        self.remember(key, answer);
                    }
                    answer
                }
                Ok(Err(e)) => {
                    debug!(url = %auth.url, error = %e, "auth service failed");
                    return Verdict::Deny(status_only(StatusCode::INTERNAL_SERVER_ERROR));
                }
                Err(_) => {
                    debug!(url = %auth.url, "auth service timed out");
                    return Verdict::Deny(status_only(StatusCode::INTERNAL_SERVER_ERROR));
                }
            },
        };
        match answer.status.as_u16() {
            200..=299 => Verdict::Allow {
                headers: answer.headers,
                cookies: answer.cookies,
            },
            401 => match &auth.signin {
                Some(signin) => {
                    let mut location = facts.fill_url(signin);
                    location.push(if location.contains('?') { '&' } else { '?' });
                    location.push_str(&auth.signin_param);
                    location.push('=');
                    location.push_str(&escape(&facts.original_url()));
                    let mut resp = status_only(StatusCode::FOUND);
                    if let Ok(v) = HeaderValue::from_str(&location) {
                        resp.headers_mut().insert(header::LOCATION, v);
                    }
                    for c in answer.cookies {
                        resp.headers_mut().append(header::SET_COOKIE, c);
                    }
                    Verdict::Deny(resp)
                }
                None => {
                    let mut resp = status_only(StatusCode::UNAUTHORIZED);
                    if let Some(v) = answer.www_authenticate {
                        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                    }
                    for c in answer.cookies {
                        resp.headers_mut().append(header::SET_COOKIE, c);
                    }
                    Verdict::Deny(resp)
                }
            },
            403 => Verdict::Deny(status_only(StatusCode::FORBIDDEN)),
            _ => Verdict::Deny(status_only(StatusCode::INTERNAL_SERVER_ERROR)),
        }
    }

    fn remember(&self, key: String, answer: Cached) {
        let Ok(mut cache) = self.cache.0.lock() else {
            return;
        };
        if cache.len() >= MAX_CACHED {
            let now = Instant::now();
            cache.retain(|_, c| c.until > now);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, answer);
    }

    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let key = (host.to_owned(), port);
        if let Ok(dns) = self.dns.lock()
            && let Some((addrs, until)) = dns.get(&key)
            && *until > Instant::now()
        {
            return Ok(addrs.clone());
        }
        let host_only = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match host_only.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host_only, port))
                .await
                .map_err(|e| format!("resolving {host}: {e}"))?
                .collect(),
        };
        let allowed: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| portico_ingress::refused(*a, &self.policy).is_none())
            .collect();
        if allowed.is_empty() {
            return Err(format!(
                "{host} resolves to no address the proxy may dial ({addrs:?})"
            ));
        }
        if let Ok(mut dns) = self.dns.lock() {
            if dns.len() > 1024 {
                dns.clear();
            }
            dns.insert(key, (allowed.clone(), Instant::now() + DNS_TTL));
        }
        Ok(allowed)
    }

    async fn call(&self, auth: &ExternalAuth, facts: &Facts<'_>) -> Result<Cached, String> {
        let url: Uri = facts
            .fill_url(&auth.url)
            .parse()
            .map_err(|e| format!("auth-url: {e}"))?;
        let authority = url.authority().ok_or("auth-url has no host")?.clone();
        let port = authority.port_u16().unwrap_or(80);
        let addrs = self.resolve(authority.host(), port).await?;
        let addr = addrs[fastrand::usize(..addrs.len())];

        let mut headers = HeaderMap::with_capacity(facts.headers.len() + 8);
        for (name, value) in facts.headers {
            if !matches!(
                name.as_str(),
                "host"
                    | "content-length"
                    | "transfer-encoding"
                    | "connection"
                    | "keep-alive"
                    | "upgrade"
                    | "te"
                    | "trailer"
                    | "expect"
                    | "proxy-connection"
                    | "proxy-authorization"
            ) {
                headers.append(name, value.clone());
            }
        }
        let set = |headers: &mut HeaderMap, name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        };
        set(&mut headers, "host", authority.as_str());
        set(&mut headers, "x-original-url", &facts.original_url());
        set(&mut headers, "x-original-method", facts.method.as_str());
        set(&mut headers, "x-sent-from", "portico");
        set(&mut headers, "x-real-ip", &facts.client.to_string());
        set(&mut headers, "x-forwarded-for", &facts.client.to_string());
        set(&mut headers, "x-forwarded-host", facts.host);
        set(&mut headers, "x-forwarded-proto", facts.scheme());
        set(
            &mut headers,
            "x-auth-request-redirect",
            auth.request_redirect
                .as_deref()
                .unwrap_or(facts.request_uri()),
        );
        let method = Method::from_bytes(auth.method.as_bytes()).map_err(|e| e.to_string())?;
        let path = url.path_and_query().map_or("/", |p| p.as_str());
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .map_err(|e| e.to_string())?;
        *req.headers_mut() = headers;

        // A pooled connection the service closed meanwhile: once more on a fresh one.
        let mut fresh = false;
        let resp = loop {
            let checkout = self
                .client
                .checkout(addr, UpstreamProtocol::Http1, None, fresh)
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
            let Conn::H1(conn) = checkout.conn else {
                return Err("not an HTTP/1.1 connection".into());
            };
            match conn.send(&req).await {
                Ok(resp) => break resp,
                Err(SendError::NotSent(_) | SendError::NoResponse(_))
                    if checkout.reused && !fresh =>
                {
                    fresh = true;
                }
                Err(e) => return Err(e.to_string()),
            }
        };
        let (parts, mut body) = resp.into_parts();
        // Read to its end (at most MAX_AUTH_BODY bytes) to keep the connection.
        let drained = Limited::new(&mut body, MAX_AUTH_BODY)
            .collect()
            .await
            .is_ok();
        if drained && let Some(conn) = body.take_reusable() {
            self.client
                .checkin(addr, UpstreamProtocol::Http1, None, conn);
        }
        let copied = auth
            .response_headers
            .iter()
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .map(|name| {
                let value = parts.headers.get(&name).cloned();
                (name, value)
            })
            .collect();
        Ok(Cached {
            status: parts.status,
            headers: copied,
            www_authenticate: parts.headers.get(header::WWW_AUTHENTICATE).cloned(),
            cookies: parts
                .headers
                .get_all(header::SET_COOKIE)
                .iter()
                .cloned()
                .collect(),
            until: Instant::now(),
        })
    }
}

/// A redirect has no body; other answers say their status.
fn status_only(status: StatusCode) -> Response<Body> {
    if status == StatusCode::FOUND {
        let mut resp = Response::new(empty());
        *resp.status_mut() = status;
        return resp;
    }
    crate::http::body::status_text(status)
}

/// The user of a `Basic` Authorization header (nginx's `$remote_user`).
fn remote_user(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?;
    super::basic::basic_credentials(value.as_bytes()).map(|(user, _)| user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_cache_keys_are_filled_in() {
        let uri: Uri = "/a b?x=1&y=2".replace(' ', "%20").parse().expect("uri");
        let mut headers = HeaderMap::new();
        headers.insert("x-token", HeaderValue::from_static("t1"));
        headers.insert("cookie", HeaderValue::from_static("a=1; session=s9"));
        let facts = Facts {
            method: &Method::GET,
            uri: &uri,
            headers: &headers,
            host: "app.example.com",
            tls: true,
            client: "10.1.2.3".parse().expect("ip"),
            ingress: "team/app",
        };
        assert_eq!(
            facts.fill_url("http://auth/check?u=$escaped_request_uri&h=$host&s=$scheme"),
            "http://auth/check?u=/a%2520b%3Fx%3D1%26y%3D2&h=app.example.com&s=https"
        );
        assert_eq!(
            facts.original_url(),
            "https://app.example.com/a%20b?x=1&y=2"
        );
        assert_eq!(
            facts.cache_key("$http_x_token:$cookie_session:$remote_addr"),
            "team/app\0t1\0:s9\0:10.1.2.3\0"
        );
    }
}
