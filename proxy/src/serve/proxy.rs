//! The proxy path, in explicit phases over one per-request context (after pingora's
//! `ProxyHttp`):
//!
//! ```text
//! 1 request_filter   one validated host (400), SNI covers it (421), normalized path (400)
//! 2 route            snapshot (loaded once) → host → path → Route, or 404; body limit (413)
//! 3 redirect         plain HTTP to a TLS host → 308 https; CORS preflight → 204 (cors.rs);
//!                    ingress-nginx's from-to-www, app-root and permanent/temporal
//!                    redirects; its rewrite-target
//! 4 upstream_peer    endpoint set (loaded once) → policy pick → slot under the endpoint's
//!                    cap (bounded wait, 503) → connect; connect failure: eject, retry
//!                    idempotent requests on another endpoint
//! 5 upstream_request strip hop-by-hop and what clients may not send, X-Forwarded-*,
//!                    normalized (or rewritten) URI and version for the upstream;
//!                    ingress-nginx's X-Forwarded-Prefix and upstream-vhost
//! 6 send             request timeout → 504; a stale pooled connection is redialled once
//! 7 response_filter  strip hop-by-hop, HSTS, affinity cookie, WebSocket tunnel; pool the
//!                    connection only after a bodyless request
//! 8 logging          metrics by namespace/ingress/service/code class; CORS headers; the
//!                    access log line when the body ends (access_log.rs), if on
//! The route's `traffic` overrides the body limit (2), connect timeout and retries (4) and
//! the request timeout (6) per Ingress.
//! ```
//! Errors from any phase become responses in one place: `ProxyError::into_response`.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, warn};

use super::error::ProxyError;
use super::server::{Activity, ActivityIo};
use crate::config::{SharedSnapshot, Snapshot};
use crate::http::body::{Body, BoxError, RequestBody, empty};
use crate::http::headers::{
    Forwarded, apply_forwarded, cookie, forwarded, is_upgrade_request, sanitize_request,
    strip_hop_by_hop,
};
use crate::http::target::{PathOptions, normalize_path, validate_host};
use crate::http::timer::SleepPool;
use crate::lb::{EJECTION_TIME, EndpointSet, InFlight, Pick, PickKey, Policy};
use crate::metrics::{METRICS, RouteMetrics};
use crate::routing::{Route, RouteBackend, RouteMatch};
use crate::tls::CertTable;
use crate::upstream::UpstreamProtocol;
use crate::upstream::body::{Upstream, UpstreamBody};
use crate::upstream::client::{Client, Conn, ConnectError};
use crate::upstream::wire::{H1Conn, SendError};

#[derive(Debug, Clone)]
pub struct Settings {
    pub trusted_proxies: Vec<IpNet>,
    pub retries: u32,
    pub request_timeout: Duration,
    pub hsts: bool,
    /// For redirect `Location`s (omitted when 443).
    pub https_port: u16,
    /// Keep `%2F`/`%5C` in paths as they are instead of answering 400.
    pub allow_encoded_slashes: bool,
    /// Pass header names with underscores to backends instead of dropping them.
    pub keep_underscores: bool,
    /// An upgraded (WebSocket) connection with no bytes moving for this long is closed.
    pub tunnel_idle_timeout: Duration,
    /// Largest request body in bytes (413 beyond it); `None`: no limit.
    pub max_body_size: Option<u64>,
    /// Requests in flight (so HTTP/1.1 connections in use) per endpoint and pod.
    pub max_connections_per_endpoint: u32,
    /// How long a request waits for a slot on a full endpoint before 503.
    pub endpoint_wait: Duration,
    /// One JSON line per request on stdout (`--access-log`); `None`: off.
    pub access_log: Option<crate::http::access_log::AccessLog>,
}

pub struct Proxy {
    pub snapshot: SharedSnapshot,
    pub client: Arc<Client>,
    pub settings: Settings,
    /// The rate-limit table (the pod's) and the external auth client (this worker's).
    pub access: crate::access::Shared,
    /// The request timeout's sleeps (this worker's; timer.rs).
    pub timers: SleepPool,
}

/// Facts about the downstream connection, shared by its requests (and a tunnel made from
/// it, which so stays counted against the connection limit).
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The peer's address as a header value (`X-Forwarded-For`, `X-Real-IP`), made once.
    pub peer_value: HeaderValue,
    pub tls: bool,
    /// The TLS client's SNI, lowercased.
    pub sni: Option<Box<str>>,
    /// The certificates a TLS client sent when asked (tls/client_auth.rs): it holds the
    /// key; each request's route decides whether its CA vouches for them.
    pub client_chain: Option<Arc<[rustls_pki_types::CertificateDer<'static>]>>,
    pub activity: Activity,
    /// The connection's place under the listener's limit, released when the last holder ends.
    pub slot: OwnedSemaphorePermit,
}

/// Per-request context, filled phase by phase.
struct Ctx {
    start: Instant,
    conn: Arc<ConnInfo>,
    snapshot: Arc<Snapshot>,
    route: Option<Arc<Route>>,
    endpoint: Option<SocketAddr>,
    attempts: u32,
    /// The client as `X-Forwarded-For` is trusted (the peer until it is known).
    client: std::net::IpAddr,
    /// The route's CORS policy and the `Access-Control-Allow-Origin` this request gets.
    cors: Option<(Arc<crate::routing::cors::CorsPolicy>, HeaderValue)>,
}

const HSTS_VALUE: &str = "max-age=31536000";

impl Proxy {
    /// Serves one request. Never fails (every error is answered here); the `Result` is
    /// hyper's service signature, so the connection stores this future as it is, not in
    /// a wrapper that would move (copy) all of it again on its first poll.
    ///
    /// Like `proxy` and `connect_and_send`, written as a function returning an `async`
    /// block: an `async fn` keeps a second copy of each argument in its future (rustc moves
    /// the arguments into locals and reserves both), 264 bytes for the request alone.
    #[allow(clippy::manual_async_fn)]
    pub fn handle(
        self: Arc<Self>,
        conn: Arc<ConnInfo>,
        req: Request<Option<Incoming>>,
    ) -> impl Future<Output = Result<Response<Body>, Infallible>> + Send + 'static {
        async move {
            let conn_activity = conn.clone();
            let _active = conn_activity
                .activity
                .request(req.version() == Version::HTTP_2);
            let mut ctx = Ctx {
                start: Instant::now(),
                conn,
                snapshot: self.snapshot.load_full(),
                route: None,
                endpoint: None,
                attempts: 0,
                client: conn_activity.peer.ip(),
                cors: None,
            };
            let method = req.method().clone();
            // What the access log needs of the request, taken only when it is on.
            let logged = self
                .settings
                .access_log
                .as_ref()
                .map(|log| (log.clone(), access_log_request(&req)));
            let mut resp = match self.proxy(&mut ctx, req).await {
                Ok(resp) => resp,
                Err(e) => {
                    if let Some(kind) = e.upstream_kind() {
                        // Connect failures are counted per attempt where they happen.
                        if !matches!(e, ProxyError::Connect(_)) {
                            METRICS.upstream_errors.with_label_values(&[kind]).inc();
                        }
                        if ctx.route.as_ref().is_none_or(|r| r.metrics.allow_log()) {
                            warn!(
                                ingress = ctx.route.as_ref().map(|r| r.ingress.to_string()),
                                endpoint = ctx.endpoint.map(|e| e.to_string()),
                                attempts = ctx.attempts,
                                error = %e,
                                "upstream error"
                            );
                        }
                    }
                    e.into_response()
                }
            };
            if let Some((policy, origin)) = ctx.cors.take() {
                policy.apply(origin, resp.headers_mut());
            }
            self.logging(&ctx, &method, resp.status());
            Ok(match logged {
                Some((log, (time, host, path)))
                    if !ctx.route.as_ref().is_some_and(|r| r.traffic.access_log_off) =>
                {
                    let entry = crate::http::access_log::Entry {
                        time,
                        client: ctx.client,
                        host,
                        method: method.to_string(),
                        path,
                        status: resp.status().as_u16(),
                        bytes: 0,
                        duration: 0.0,
                        upstream: ctx.endpoint.map(|e| e.to_string()),
                        ingress: ctx.route.as_ref().map(|r| r.ingress.to_string()),
                    };
                    let (parts, body) = resp.into_parts();
                    let body =
                        crate::http::access_log::LoggedBody::new(body, log, entry, ctx.start);
                    Response::from_parts(parts, body.boxed_unsync())
                }
                _ => resp,
            })
        }
    }

    #[allow(clippy::manual_async_fn)] // see `handle`
    fn proxy(
        &self,
        ctx: &mut Ctx,
        mut req: Request<Option<Incoming>>,
    ) -> impl Future<Output = Result<Response<Body>, ProxyError>> {
        async move {
            // 1 request_filter: one validated host and a normalized path, or 400/421
            // Kept as the header value it came in (no copy): it is also what X-Forwarded-Host
            // and an HTTP/1.1 upstream's Host get.
            let authority_value = request_authority(&req)?;
            let authority = authority_value.as_ref().and_then(|v| v.to_str().ok());
            let host = match authority {
                Some(a) => validate_host(a)?,
                None => Cow::Borrowed(""),
            };
            if ctx.conn.tls && misdirected(&ctx.snapshot.certs, ctx.conn.sni.as_deref(), &host) {
                return Err(ProxyError::Misdirected);
            }
            let path_opts = PathOptions {
                allow_encoded_slashes: self.settings.allow_encoded_slashes,
            };
            // `Some` only when normalizing changed the path (rare): the upstream gets it.
            let normalized = match normalize_path(req.uri().path(), path_opts) {
                Ok(Cow::Borrowed(_)) => None,
                Ok(Cow::Owned(p)) => Some(p),
                Err(e) => return Err(e.into()),
            };

            // 2 route
            let path = normalized.as_deref().unwrap_or(req.uri().path());
            let route = match ctx.snapshot.routes.find(&host, path, req.headers()) {
                RouteMatch::Rule(r) | RouteMatch::Default(r) => r.clone(),
                RouteMatch::NotFound => return Err(ProxyError::NotFound),
            };
            ctx.route = Some(route.clone());

            // Who the client is (the peer, or a trusted proxy's X-Forwarded-For), and whether
            // the Ingress's source ranges let it in: before anything else is answered for it.
            let fwd = forwarded(
                req.headers(),
                ctx.conn.peer.ip(),
                ctx.conn.tls,
                authority_value.as_ref(),
                Some(&ctx.conn.peer_value),
                &self.settings.trusted_proxies,
            );
            ctx.client = fwd.client_ip;
            let mut granted = match &route.access {
                None => None,
                Some(access) => {
                    let facts = crate::access::external::Facts {
                        method: req.method(),
                        uri: req.uri(),
                        headers: req.headers(),
                        host: &host,
                        tls: ctx.conn.tls,
                        client: fwd.client_ip,
                        ingress: &access.ingress,
                    };
                    let chain = ctx.conn.client_chain.as_deref();
                    // Boxed, as every path most requests do not take: inlined, its future
                    // would grow every request's, which is moved (copied) as a whole.
                    match Box::pin(access.decide(&self.access, &facts, chain)).await {
                        Ok(g) => Some(g),
                        Err(denied) => return Ok(*denied),
                    }
                }
            };

            // A declared length over the limit is refused before anything is sent upstream;
            // an undeclared one is counted as it streams (RequestBody).
            let body_limit = route
                .traffic
                .max_body_size
                .unwrap_or(self.settings.max_body_size);
            if let Some(limit) = body_limit
                && declared_length(req.headers()).is_some_and(|n| n > limit)
            {
                return Err(ProxyError::PayloadTooLarge);
            }

            // 3 redirect
            if !ctx.conn.tls && route.https_redirect {
                return Ok(self.redirect(&host, normalized.as_deref(), req.uri()));
            }
            // ingress-nginx's redirects (from-to-www, app-root, permanent/temporal), and its
            // rewrite, decided on the path judged.
            let nginx = route.nginx.as_deref();
            if let Some((code, location)) =
                nginx.and_then(|n| n.redirect(ctx.conn.tls, authority, path, req.uri()))
            {
                let mut resp = Response::new(empty());
                *resp.status_mut() = code;
                resp.headers_mut().insert(header::LOCATION, location);
                return Ok(resp);
            }
            let rewritten = nginx.and_then(|n| n.rewrite(path, req.uri().query()));

            // CORS: an allowed origin's preflight is answered here (headers in `handle`).
            if let Some(policy) = &route.traffic.cors
                && let Some(allow) = policy.allow_origin(req.headers().get(header::ORIGIN))
            {
                ctx.cors = Some((policy.clone(), allow));
                if req.method() == Method::OPTIONS {
                    let mut resp = Response::new(empty());
                    *resp.status_mut() = StatusCode::NO_CONTENT;
                    return Ok(resp);
                }
            }

            // 4 upstream_peer (the endpoint set is loaded once: pick and retries see one set)
            let rb = route
                .pick_backend()
                .ok_or_else(|| ProxyError::NoEndpoints(route.service.clone()))?;
            let set = rb.backend.endpoints();
            if set.is_empty() {
                // ingress-nginx's default-backend answers for a Service with no endpoints.
                if let Some(eb) = &route.error_backend {
                    let accept = req.headers().get(header::ACCEPT).cloned();
                    return Box::pin(self.error_page(
                        ctx,
                        &route,
                        eb,
                        StatusCode::SERVICE_UNAVAILABLE,
                        &host,
                        req.uri(),
                        accept,
                    ))
                    .await;
                }
                return Err(ProxyError::NoEndpoints(rb.backend.key.to_string()));
            }
            // What the default backend is told about the request, should the answer be one of
            // its custom-http-errors (kept only when the Ingress has one; boxed, as it is
            // held across the send by every request's future).
            let for_error_page = route
                .error_backend
                .as_ref()
                .filter(|eb| !eb.codes.is_empty())
                .map(|_| {
                    Box::new((
                        req.uri().clone(),
                        req.headers().get(header::ACCEPT).cloned(),
                    ))
                });
            // Only `cookie` affinity reads the cookie.
            let affinity = match route.policy {
                Policy::Cookie => {
                    cookie(req.headers(), route.traffic.affinity_cookie()).map(str::to_string)
                }
                _ => None,
            };
            let hash_header = match &route.policy {
                Policy::Header(name) => req
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
                Policy::Uri => req.uri().path_and_query().map(|p| p.as_str().to_string()),
                Policy::CookieValue(name) => cookie(req.headers(), name).map(str::to_string),
                _ => None,
            };
            let key = PickKey {
                cookie: affinity.as_deref(),
                header: hash_header.as_deref(),
                client_ip: Some(fwd.client_ip),
            };
            let idempotent = matches!(
                *req.method(),
                Method::GET
                    | Method::HEAD
                    | Method::OPTIONS
                    | Method::TRACE
                    | Method::PUT
                    | Method::DELETE
            );
            let max_attempts = if idempotent || route.traffic.retry_non_idempotent {
                1u32.saturating_add(route.traffic.retries.unwrap_or(self.settings.retries))
            } else {
                1
            };

            // 5 upstream_request (the protocol is the backend's, the same for every endpoint).
            // In a block of its own: what only builds the upstream request is gone before
            // the send is awaited, so the request's future keeps no slot for it.
            let mut forwarding_fields = Some(&fwd);
            let (up_req, downstream_upgrade, body_sent) = {
                // Moved in, so that it ends with the block.
                #[allow(clippy::redundant_locals)]
                let rewritten = rewritten;
                let upgrade = is_upgrade_request(req.headers());
                let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
                let (mut parts, body) = req.into_parts();
                strip_hop_by_hop(&mut parts.headers, upgrade);
                sanitize_request(
                    &mut parts.headers,
                    fwd.trusted_peer,
                    self.settings.keep_underscores,
                );
                // External auth's answer headers replace whatever the client sent by those
                // names, and may name the proxy's forwarding fields too: then these are put
                // in the map first. Otherwise they are added as the request is sent.
                if let Some(g) = granted.as_mut().filter(|g| !g.upstream_headers.is_empty()) {
                    apply_forwarded(&mut parts.headers, &fwd);
                    forwarding_fields = None;
                    for (name, value) in g.upstream_headers.drain(..) {
                        parts.headers.remove(&name);
                        if let Some(v) = value {
                            parts.headers.insert(name, v);
                        }
                    }
                }
                if let Some(prefix) = nginx.and_then(|n| n.x_forwarded_prefix.as_ref()) {
                    parts.headers.insert(
                        HeaderName::from_static("x-forwarded-prefix"),
                        prefix.clone(),
                    );
                }
                let vhost = nginx.and_then(|n| n.upstream_vhost.as_ref());
                match rb.protocol {
                    UpstreamProtocol::H2c => {
                        let path_and_query = match &rewritten {
                            Some(r) => Cow::Borrowed(r.as_str()),
                            None => upstream_path_and_query(normalized.as_deref(), &parts.uri),
                        };
                        parts.headers.remove(header::HOST);
                        let auth = match vhost {
                            Some(v) => v.to_str().unwrap_or("upstream"),
                            None => authority.unwrap_or("upstream"),
                        };
                        parts.uri = Uri::builder()
                            .scheme("http")
                            .authority(auth)
                            .path_and_query(path_and_query.as_ref())
                            .build()
                            .map_err(|_| ProxyError::BadRequest("upstream URI"))?;
                        parts.version = Version::HTTP_2;
                    }
                    UpstreamProtocol::Http1 | UpstreamProtocol::Https => {
                        // The host judged is the host sent: an absolute-form target's authority
                        // replaces the Host header (RFC 9112 §3.2.2), and HTTP/2's `:authority`
                        // becomes one.
                        if (parts.uri.authority().is_some()
                            || !parts.headers.contains_key(header::HOST))
                            && let Some(a) = &authority_value
                        {
                            parts.headers.insert(header::HOST, a.clone());
                        }
                        // An origin-form target (`/path?query`, the usual case) whose path needed
                        // no normalizing is already what the upstream gets: keep it.
                        let origin_form = parts.uri.scheme().is_none()
                            && parts.uri.authority().is_none()
                            && parts.uri.path_and_query().is_some();
                        if let Some(r) = rewritten {
                            parts.uri = r
                                .parse()
                                .map_err(|_| ProxyError::BadRequest("upstream URI"))?;
                        } else if !origin_form || normalized.is_some() {
                            parts.uri = upstream_path_and_query(normalized.as_deref(), &parts.uri)
                                .parse()
                                .map_err(|_| ProxyError::BadRequest("upstream URI"))?;
                        }
                        if let Some(v) = vhost {
                            parts.headers.insert(header::HOST, v.clone());
                        }
                        parts.version = Version::HTTP_11;
                    }
                }
                let body = RequestBody::new(body, body_limit);
                let body_sent = body.sent();
                (
                    Request::from_parts(parts, body),
                    downstream_upgrade,
                    body_sent,
                )
            };

            // 6 connect and send, under the request timeout
            let sent = self
                .timers
                .timeout(
                    route
                        .traffic
                        .request_timeout
                        .unwrap_or(self.settings.request_timeout),
                    self.connect_and_send(
                        ctx,
                        &route,
                        rb,
                        &set,
                        &key,
                        max_attempts,
                        Some(up_req),
                        forwarding_fields,
                    ),
                )
                .await;
            let (mut resp, pick, in_flight) = match sent {
                Err(_) => return Err(ProxyError::Timeout),
                Ok(Err(_)) if body_sent.was_too_large() => return Err(ProxyError::PayloadTooLarge),
                // The client's body broke (a malformed chunk): its fault, not the backend's.
                Ok(Err(_)) if body_sent.client_failed() => {
                    return Err(ProxyError::BadRequest("malformed request body"));
                }
                Ok(r) => r?,
            };
            // ingress-nginx's custom-http-errors: the default backend answers instead. The
            // backend's own answer is dropped, and its connection with it.
            if let (Some(eb), Some(page)) = (&route.error_backend, for_error_page)
                && eb.codes.contains(&resp.status().as_u16())
            {
                let code = resp.status();
                drop((resp, in_flight));
                let (uri, accept) = *page;
                return Box::pin(self.error_page(ctx, &route, eb, code, &host, &uri, accept)).await;
            }
            let addr = pick.endpoint.addr;

            // 7 response_filter
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS
                && let Some(downstream) = downstream_upgrade
            {
                let upstream = hyper::upgrade::on(&mut resp);
                // The tunnel keeps the connection's slot under the limit and has an idle
                // timeout of its own.
                let conn = ctx.conn.clone();
                let idle = self.settings.tunnel_idle_timeout;
                tokio::spawn(async move {
                    let _in_flight = in_flight;
                    let _slot = conn;
                    match tokio::try_join!(downstream, upstream) {
                        Ok((d, u)) => {
                            let activity = Arc::new(Activity::new());
                            let mut d = ActivityIo {
                                inner: TokioIo::new(d),
                                activity: activity.clone(),
                            };
                            let mut u = TokioIo::new(u);
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut d, &mut u) => {}
                                _ = activity.idle(idle) => debug!("tunnel idle timeout"),
                            }
                        }
                        Err(e) => debug!(error = %e, "upgrade failed"),
                    }
                });
                let (mut parts, _) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers, true);
                if !parts.headers.contains_key(header::UPGRADE) {
                    parts
                        .headers
                        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                }
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                return Ok(Response::from_parts(parts, empty()));
            }
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers, false);
            parts.version = Version::default();
            let limit_guard = granted.as_mut().and_then(|g| {
                g.set_cookies(parts.status, &mut parts.headers);
                g.in_flight.take()
            });
            if ctx.conn.tls && self.settings.hsts {
                parts.headers.insert(
                    header::STRICT_TRANSPORT_SECURITY,
                    HeaderValue::from_static(HSTS_VALUE),
                );
            }
            if let Some(token) = &pick.set_cookie
                && let Ok(v) = HeaderValue::from_str(&route.traffic.set_affinity_cookie(token))
            {
                parts.headers.append(header::SET_COOKIE, v);
            }
            // The body returns the connection to the pool when it ends cleanly. Only the
            // proxy's own client hands one back: a request body is the client's bytes on the
            // backend's connection, and a backend that answers without reading all of it (an
            // early 401, a redirect) may take the rest for a new request and answer that
            // too, later, on the same connection. Nothing seen from here tells such a
            // backend apart in time (its second answer can come after the next client's
            // request was written), so a connection that carried a body (on hyper's client)
            // serves no one after it. Requests without a body, the bulk of traffic, keep
            // their pooled connections.
            let client = self.client.clone();
            let proto = rb.protocol;
            let tls_name = rb.tls.as_ref().map(|t| t.name.clone());
            let on_end = move |conn: Option<H1Conn>| {
                drop(in_flight);
                drop(limit_guard);
                if let Some(conn) = conn {
                    client.checkin(addr, proto, tls_name, conn);
                }
            };
            Ok(Response::from_parts(
                parts,
                UpstreamBody::new(body, on_end).boxed_unsync(),
            ))
        }
    }

    /// Asks an Ingress's default backend for the page of `code`, as ingress-nginx does:
    /// the request's path, with `X-Code`, `X-Format`, `X-Original-URI`, `X-Namespace`,
    /// `X-Ingress-Name` and `X-Service-Name`; its answer is returned as it is. Cleartext
    /// HTTP/1.1 on a connection of its own (error pages are rare; they get no pool).
    #[allow(clippy::too_many_arguments)]
    async fn error_page(
        &self,
        ctx: &mut Ctx,
        route: &Route,
        eb: &crate::routing::ErrorBackend,
        code: StatusCode,
        host: &str,
        uri: &Uri,
        accept: Option<HeaderValue>,
    ) -> Result<Response<Body>, ProxyError> {
        let set = eb.backend.endpoints();
        let pick = Policy::RoundRobin
            .pick(&eb.backend, &set, &PickKey::default(), &[])
            .ok_or_else(|| ProxyError::NoEndpoints(eb.service.clone()))?;
        let addr = pick.endpoint.addr;
        ctx.endpoint = Some(addr);
        let tcp = tokio::time::timeout(
            self.settings.endpoint_wait,
            tokio::net::TcpStream::connect(addr),
        )
        .await
        .map_err(|_| ProxyError::Connect(ConnectError::Timeout(self.settings.endpoint_wait)))?
        .map_err(|e| ProxyError::Connect(ConnectError::Io(e)))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| ProxyError::Upstream(e.into()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(error = %e, "error page connection");
            }
        });
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let value =
            |s: &str| HeaderValue::from_str(s).map_err(|_| ProxyError::BadRequest("header"));
        let mut req = Request::get(path)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|_| ProxyError::BadRequest("upstream URI"))?;
        let headers = req.headers_mut();
        headers.insert(header::HOST, value(host)?);
        headers.insert(HeaderName::from_static("x-code"), value(code.as_str())?);
        headers.insert(
            HeaderName::from_static("x-format"),
            accept.unwrap_or_else(|| HeaderValue::from_static("text/html")),
        );
        headers.insert(HeaderName::from_static("x-original-uri"), value(path)?);
        headers.insert(
            HeaderName::from_static("x-namespace"),
            value(&route.ingress.namespace)?,
        );
        headers.insert(
            HeaderName::from_static("x-ingress-name"),
            value(&route.ingress.name)?,
        );
        headers.insert(
            HeaderName::from_static("x-service-name"),
            value(&route.service)?,
        );
        let resp = tokio::time::timeout(self.settings.request_timeout, sender.send_request(req))
            .await
            .map_err(|_| ProxyError::Timeout)?
            .map_err(|e| ProxyError::Upstream(e.into()))?;
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        parts.version = Version::default();
        Ok(Response::from_parts(
            parts,
            body.map_err(|e| Box::new(e) as BoxError).boxed_unsync(),
        ))
    }

    /// Picks an endpoint, connects (failed connects eject the endpoint and move on to
    /// another one, up to `max_attempts`), and sends. The request body is untouched until
    /// a connection accepted the request, so retrying is safe; a pooled connection that the
    /// peer closed meanwhile hands the request back and is replaced by a fresh one.
    ///
    /// `req` is `Some` and is taken when sent (and put back when handed back). It is the
    /// parameter itself, not an `async fn`'s copy of it in an `Option`: each copy is a
    /// slot of the request's size in every request's future. `fwd`, when `Some`, holds
    /// the forwarding fields `req`'s map does not have yet.
    #[allow(clippy::too_many_arguments, clippy::manual_async_fn)]
    fn connect_and_send(
        &self,
        ctx: &mut Ctx,
        route: &Route,
        rb: &RouteBackend,
        set: &EndpointSet,
        key: &PickKey<'_>,
        max_attempts: u32,
        mut req: Option<Request<RequestBody>>,
        fwd: Option<&Forwarded>,
    ) -> impl Future<Output = Result<(Response<Upstream>, Pick, InFlight), ProxyError>> {
        async move {
            let mut tried: Vec<SocketAddr> = Vec::new();
            let mut redial: Option<Pick> = None;
            loop {
                let (pick, fresh) = match redial.take() {
                    Some(p) => (p, true),
                    None => match route.policy.pick(&rb.backend, set, key, &tried) {
                        Some(p) => (p, false),
                        None => {
                            return Err(ProxyError::Connect(ConnectError::Exhausted(tried.len())));
                        }
                    },
                };
                let addr = pick.endpoint.addr;
                ctx.endpoint = Some(addr);
                if !fresh {
                    ctx.attempts += 1;
                }
                // A slot under the endpoint's cap on connections in use, before connecting;
                // waiting for one (boxed: the rare path) only when the endpoint is full.
                let max = self.settings.max_connections_per_endpoint;
                let slot = match pick.endpoint.try_start_request(max) {
                    Some(f) => Some(f),
                    None => {
                        Box::pin(
                            pick.endpoint
                                .start_request_within(max, self.settings.endpoint_wait),
                        )
                        .await
                    }
                };
                let Some(in_flight) = slot else {
                    return Err(ProxyError::Saturated(addr));
                };
                let checkout = match self
                    .client
                    .checkout_within(
                        addr,
                        rb.protocol,
                        rb.tls.as_deref(),
                        fresh,
                        route.traffic.connect_timeout,
                    )
                    .await
                {
                    Ok(c) => c,
                    Err(e) => {
                        pick.endpoint.eject(EJECTION_TIME);
                        METRICS
                            .upstream_errors
                            .with_label_values(&["connect"])
                            .inc();
                        debug!(endpoint = %addr, error = %e, "connect failed; endpoint ejected");
                        tried.push(addr);
                        if tried.len() as u32 >= max_attempts {
                            return Err(ProxyError::Connect(e));
                        }
                        continue;
                    }
                };
                if !checkout.reused {
                    pick.endpoint.mark_healthy();
                }
                // The common request, no body and no upgrade, goes through the proxy's own
                // HTTP/1.1 client; anything else through hyper's (see `upstream::wire`).
                let result = match checkout.conn {
                    Conn::H1(mut conn)
                        if req.as_ref().is_some_and(|r| {
                            r.body().is_end_stream() && !r.headers().contains_key(header::UPGRADE)
                        }) =>
                    {
                        let Some(request) = req.as_ref() else {
                            return Err(ProxyError::Upstream("request lost".into()));
                        };
                        conn.encode(request, fwd.into_iter().flat_map(Forwarded::fields));
                        match conn.send_encoded(request.method() == Method::HEAD).await {
                            Ok(resp) => {
                                return Ok((resp.map(Upstream::Wire), pick, in_flight));
                            }
                            // A pooled connection the backend closed as it was taken: the
                            // request is sent again on a new one, if it may be.
                            Err(SendError::NotSent(_)) if checkout.reused => {
                                redial = Some(pick);
                                continue;
                            }
                            // A new connection that would not take the request: the next
                            // endpoint, as after a failed connect.
                            Err(SendError::NotSent(e)) => {
                                pick.endpoint.eject(EJECTION_TIME);
                                tried.push(addr);
                                if tried.len() as u32 >= max_attempts {
                                    return Err(ProxyError::Upstream(e.into()));
                                }
                                continue;
                            }
                            // Written, and no answer: only a request that may run twice.
                            Err(SendError::NoResponse(_))
                                if checkout.reused
                                    && (request.method().is_idempotent()
                                        || route.traffic.retry_non_idempotent) =>
                            {
                                redial = Some(pick);
                                continue;
                            }
                            Err(e) => return Err(ProxyError::Upstream(e.into())),
                        }
                    }
                    Conn::H1(conn) => {
                        forwarding_in_map(req.as_mut(), fwd);
                        let Some(request) = req.take() else {
                            return Err(ProxyError::Upstream("request lost".into()));
                        };
                        // Boxed: requests with a body are the rarer path; their handshake's
                        // future should not grow every request's.
                        match Box::pin(conn.into_hyper()).await {
                            Ok(mut sender) => sender.try_send_request(request).await,
                            Err(e) => return Err(ProxyError::Upstream(e.into())),
                        }
                    }
                    Conn::H2(mut sender) => {
                        forwarding_in_map(req.as_mut(), fwd);
                        let Some(request) = req.take() else {
                            return Err(ProxyError::Upstream("request lost".into()));
                        };
                        sender.try_send_request(request).await
                    }
                };
                match result {
                    Ok(resp) => return Ok((resp.map(Upstream::Hyper), pick, in_flight)),
                    Err(mut e) => match e.take_message() {
                        // Not sent: the connection was closed before it took the request.
                        Some(back) if checkout.reused => {
                            req = Some(back);
                            redial = Some(pick);
                        }
                        Some(back) => {
                            req = Some(back);
                            pick.endpoint.eject(EJECTION_TIME);
                            tried.push(addr);
                            if tried.len() as u32 >= max_attempts {
                                return Err(ProxyError::Upstream(e.into_error().into()));
                            }
                        }
                        None => return Err(ProxyError::Upstream(e.into_error().into())),
                    },
                }
            }
        }
    }

    /// `host` is validated (no userinfo, no path, no spaces), so the `Location` points where
    /// the client asked and nowhere else.
    fn redirect(&self, host: &str, normalized: Option<&str>, uri: &Uri) -> Response<Body> {
        let port = if self.settings.https_port == 443 {
            String::new()
        } else {
            format!(":{}", self.settings.https_port)
        };
        let pq = upstream_path_and_query(normalized, uri);
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
        if let Ok(v) = HeaderValue::from_str(&format!("https://{host}{port}{pq}")) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        resp
    }

    // 8 logging
    fn logging(&self, ctx: &Ctx, method: &Method, status: StatusCode) {
        let elapsed = ctx.start.elapsed();
        let metrics = ctx
            .route
            .as_ref()
            .map_or(RouteMetrics::unrouted(), |r| &r.metrics);
        metrics.observe(status.as_u16(), elapsed.as_secs_f64());
        debug!(
            %method,
            status = status.as_u16(),
            ingress = ctx.route.as_ref().map(|r| r.ingress.to_string()),
            endpoint = ctx.endpoint.map(|e| e.to_string()),
            micros = elapsed.as_micros() as u64,
            "request"
        );
    }
}

/// The authority a request names, checked for ambiguity: one Host header at most; an
/// absolute-form target's authority wins over Host (RFC 9112 §3.2.2); HTTP/2's
/// `:authority` and a Host header must agree. HTTP/1.1 requires a host; HTTP/1.0 may omit
/// it and then matches only host-less rules.
fn request_authority<B>(req: &Request<B>) -> Result<Option<HeaderValue>, ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host_value = match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return Err(ProxyError::BadRequest("two Host headers")),
        (h, None) => h,
    };
    let host_header = host_value
        .map(|h| h.to_str().map_err(|_| ProxyError::BadRequest("host")))
        .transpose()?;
    let authority = req.uri().authority().map(|a| a.as_str());
    let chosen = match (authority, host_header) {
        (Some(a), Some(h)) if req.version() == Version::HTTP_2 => {
            let same = matches!((validate_host(a), validate_host(h)), (Ok(x), Ok(y)) if x == y);
            if !same {
                return Err(ProxyError::BadRequest("Host disagrees with :authority"));
            }
            Some(a)
        }
        (Some(a), _) => Some(a),
        // The usual case: the Host header as it is, shared rather than copied.
        (None, Some(_)) => return Ok(host_value.cloned()),
        (None, None) if req.version() == Version::HTTP_11 => {
            return Err(ProxyError::BadRequest("no Host header"));
        }
        (None, None) => None,
    };
    chosen
        .map(|a| HeaderValue::from_str(a).map_err(|_| ProxyError::BadRequest("host")))
        .transpose()
}

/// On TLS, the request's host must be one the connection's certificate was chosen for: the
/// same certificate must serve the SNI and the host, else 421 (no fronting from one
/// tenant's host to another's over a connection made for the first).
fn misdirected(certs: &CertTable, sni: Option<&str>, host: &str) -> bool {
    if sni == Some(host) {
        return false;
    }
    match (certs.resolve(sni), certs.resolve(Some(host))) {
        (Some(a), Some(b)) => !Arc::ptr_eq(&a, &b),
        (None, None) => false,
        _ => true,
    }
}

/// What the upstream gets as its target: the normalized path (when normalizing changed
/// it) with the original query.
fn upstream_path_and_query<'a>(normalized: Option<&'a str>, uri: &'a Uri) -> Cow<'a, str> {
    match (normalized, uri.query()) {
        (Some(p), None) => Cow::Borrowed(p),
        (Some(p), Some(q)) => Cow::Owned(format!("{p}?{q}")),
        (None, _) => Cow::Borrowed(uri.path_and_query().map_or("/", |pq| pq.as_str())),
    }
}

/// The access log's time, host and path of `req`, as it came in.
fn access_log_request<B>(req: &Request<B>) -> (String, String, String) {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or_default();
    (
        crate::http::access_log::now(),
        host.to_owned(),
        req.uri().path().to_owned(),
    )
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The forwarding fields put in the map of a request that hyper's client sends (the own
/// client writes them with the head). Not inlined: its temporaries would otherwise take
/// room in every request's future.
#[inline(never)]
fn forwarding_in_map(req: Option<&mut Request<RequestBody>>, fwd: Option<&Forwarded>) {
    if let (Some(req), Some(fwd)) = (req, fwd) {
        apply_forwarded(req.headers_mut(), fwd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `make` returns, without running anything.
    fn future_size<F: Future, M: FnOnce() -> F>(_: M) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every request's future lives in hyper's connection (an HTTP/2 stream's in a box of
    /// its own), and the parts of it that are moved are copied whole; under 500 streams in
    /// flight it no longer fits the CPU's cache. The request timeout around sending must not
    /// store the send future twice (an `async fn` wrapper does: its argument and the pinned
    /// copy), no `async fn` keeps a second copy of the request it is given, and the rare
    /// paths stay boxed. 4,064 bytes before those last two; 2,496 after (a debug build).
    #[test]
    #[allow(unreachable_code, unused_variables, clippy::diverging_sub_expression)]
    fn the_request_future_stays_small() {
        let handle = future_size(|| {
            let p: Arc<Proxy> = unreachable!();
            p.handle(unreachable!(), unreachable!())
        });
        // The send future alone, and under the request timeout.
        let sending = |p: &'static Proxy| {
            p.connect_and_send(
                unreachable!(),
                unreachable!(),
                unreachable!(),
                unreachable!(),
                unreachable!(),
                unreachable!(),
                unreachable!(),
                unreachable!(),
            )
        };
        let send = future_size(|| sending(unreachable!()));
        let timed = future_size(|| {
            let p: &'static Proxy = unreachable!();
            p.timers.timeout(Duration::ZERO, sending(p))
        });
        eprintln!("request future {handle} bytes; send {send}, under the timeout {timed}");
        assert!(
            timed <= send + 64,
            "the timeout stores the send future once"
        );
        assert!(handle <= 2688, "the request future grew to {handle} bytes");
    }
}
