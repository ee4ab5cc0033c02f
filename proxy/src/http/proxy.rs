//! The proxy path, in explicit phases over one per-request context (after pingora's
//! `ProxyHttp`):
//!
//! ```text
//! 1 request_filter   host and path from the request
//! 2 route            snapshot (loaded once) → host → path → Route, or 404
//! 3 redirect         plain HTTP to a TLS host → 308 https
//! 4 upstream_peer    endpoint set (loaded once) → policy pick → connect;
//!                    connect failure: eject, retry idempotent requests on another endpoint
//! 5 upstream_request strip hop-by-hop, X-Forwarded-*, URI and version for the upstream
//! 6 send             request timeout → 504; a stale pooled connection is redialled once
//! 7 response_filter  strip hop-by-hop, HSTS, affinity cookie, WebSocket tunnel
//! 8 logging          metrics by namespace/ingress/service/code class
//! ```
//! Errors from any phase become responses in one place: `ProxyError::into_response`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use tracing::{debug, warn};

use super::body::{Body, UpstreamBody, empty};
use super::client::{Client, Conn};
use super::error::ProxyError;
use super::headers::{apply_forwarded, cookie, forwarded, is_upgrade_request, strip_hop_by_hop};
use crate::config::{SharedSnapshot, Snapshot};
use crate::lb::{AFFINITY_COOKIE, EJECTION_TIME, EndpointSet, InFlight, Pick, PickKey, Policy};
use crate::metrics::{METRICS, RouteMetrics};
use crate::routing::{Route, RouteBackend, RouteMatch, UpstreamProtocol, normalize_request_host};

#[derive(Debug, Clone)]
pub struct Settings {
    pub trusted_proxies: Vec<IpNet>,
    pub retries: u32,
    pub request_timeout: Duration,
    pub hsts: bool,
    /// For redirect `Location`s (omitted when 443).
    pub https_port: u16,
}

pub struct Proxy {
    pub snapshot: SharedSnapshot,
    pub client: Arc<Client>,
    pub settings: Settings,
}

/// Facts about the downstream connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// Per-request context, filled phase by phase.
struct Ctx {
    start: Instant,
    conn: ConnInfo,
    snapshot: Arc<Snapshot>,
    route: Option<Arc<Route>>,
    endpoint: Option<SocketAddr>,
    attempts: u32,
}

const HSTS_VALUE: &str = "max-age=31536000";

impl Proxy {
    pub async fn handle(self: Arc<Self>, conn: ConnInfo, req: Request<Incoming>) -> Response<Body> {
        let mut ctx = Ctx {
            start: Instant::now(),
            conn,
            snapshot: self.snapshot.load_full(),
            route: None,
            endpoint: None,
            attempts: 0,
        };
        let method = req.method().clone();
        let resp = match self.proxy(&mut ctx, req).await {
            Ok(resp) => resp,
            Err(e) => {
                if let Some(kind) = e.upstream_kind() {
                    // Connect failures are counted per attempt where they happen.
                    if !matches!(e, ProxyError::Connect(_)) {
                        METRICS.upstream_errors.with_label_values(&[kind]).inc();
                    }
                    warn!(
                        ingress = ctx.route.as_ref().map(|r| r.ingress.to_string()),
                        endpoint = ctx.endpoint.map(|e| e.to_string()),
                        attempts = ctx.attempts,
                        error = %e,
                        "upstream error"
                    );
                }
                e.into_response()
            }
        };
        self.logging(&ctx, &method, resp.status());
        resp
    }

    async fn proxy(
        &self,
        ctx: &mut Ctx,
        mut req: Request<Incoming>,
    ) -> Result<Response<Body>, ProxyError> {
        // 1 request_filter
        let authority = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            });
        let host = normalize_request_host(authority.as_deref().unwrap_or(""));

        // 2 route
        let route = match ctx
            .snapshot
            .routes
            .find(&host, req.uri().path(), req.headers())
        {
            RouteMatch::Rule(r) | RouteMatch::Default(r) => r.clone(),
            RouteMatch::NotFound => return Err(ProxyError::NotFound),
        };
        ctx.route = Some(route.clone());

        // 3 redirect
        if !ctx.conn.tls && route.https_redirect {
            return Ok(self.redirect(&host, req.uri()));
        }

        // 4 upstream_peer (the endpoint set is loaded once: pick and retries see one set)
        let rb = route
            .pick_backend()
            .ok_or_else(|| ProxyError::NoEndpoints(route.service.clone()))?;
        let set = rb.backend.endpoints();
        if set.is_empty() {
            return Err(ProxyError::NoEndpoints(rb.backend.key.to_string()));
        }
        let fwd = forwarded(
            req.headers(),
            ctx.conn.peer.ip(),
            ctx.conn.tls,
            authority.as_deref(),
            &self.settings.trusted_proxies,
        );
        // Only `cookie` affinity reads the cookie.
        let affinity = match route.policy {
            Policy::Cookie => cookie(req.headers(), AFFINITY_COOKIE).map(str::to_string),
            _ => None,
        };
        let hash_header = match &route.policy {
            Policy::Header(name) => req
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
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
        let max_attempts = if idempotent {
            1 + self.settings.retries
        } else {
            1
        };

        // 5 upstream_request (the protocol is the backend's, the same for every endpoint)
        let upgrade = is_upgrade_request(req.headers());
        let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers, upgrade);
        apply_forwarded(&mut parts.headers, &fwd);
        let path_and_query = || {
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into())
        };
        match rb.protocol {
            UpstreamProtocol::H2c => {
                let path_and_query = path_and_query();
                parts.headers.remove(header::HOST);
                let auth = authority.clone().unwrap_or_else(|| "upstream".into());
                parts.uri = Uri::builder()
                    .scheme("http")
                    .authority(auth.as_str())
                    .path_and_query(path_and_query.as_str())
                    .build()
                    .map_err(|_| ProxyError::BadRequest)?;
                parts.version = Version::HTTP_2;
            }
            UpstreamProtocol::Http1 | UpstreamProtocol::Https => {
                if !parts.headers.contains_key(header::HOST) {
                    let h = authority.clone().ok_or(ProxyError::BadRequest)?;
                    parts.headers.insert(
                        header::HOST,
                        HeaderValue::from_str(&h).map_err(|_| ProxyError::BadRequest)?,
                    );
                }
                // An origin-form target (`/path?query`, the usual case) is already what
                // the upstream gets: keep it rather than print and parse it again.
                let origin_form = parts.uri.scheme().is_none()
                    && parts.uri.authority().is_none()
                    && parts.uri.path_and_query().is_some();
                if !origin_form {
                    parts.uri = path_and_query()
                        .parse()
                        .map_err(|_| ProxyError::BadRequest)?;
                }
                parts.version = Version::HTTP_11;
            }
        }
        let up_req = Request::from_parts(parts, body);

        // 6 connect and send, under the request timeout
        let sent = tokio::time::timeout(
            self.settings.request_timeout,
            self.connect_and_send(ctx, &route, rb, &set, &key, max_attempts, up_req),
        )
        .await;
        let (mut resp, h1_sender, pick, in_flight) = match sent {
            Err(_) => return Err(ProxyError::Timeout),
            Ok(r) => r?,
        };
        let addr = pick.endpoint.addr;

        // 7 response_filter
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(downstream) = downstream_upgrade
        {
            let upstream = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                let _in_flight = in_flight;
                match tokio::try_join!(downstream, upstream) {
                    Ok((d, u)) => {
                        let (mut d, mut u) = (TokioIo::new(d), TokioIo::new(u));
                        let _ = tokio::io::copy_bidirectional(&mut d, &mut u).await;
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
        if ctx.conn.tls && self.settings.hsts {
            parts.headers.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static(HSTS_VALUE),
            );
        }
        if let Some(token) = &pick.set_cookie
            && let Ok(v) =
                HeaderValue::from_str(&format!("{AFFINITY_COOKIE}={token}; Path=/; HttpOnly"))
        {
            parts.headers.append(header::SET_COOKIE, v);
        }
        // The body returns the connection to the pool when it ends cleanly.
        let client = self.client.clone();
        let proto = rb.protocol;
        let on_end = Box::new(move |clean: bool| {
            drop(in_flight);
            if clean && let Some(sender) = h1_sender {
                client.checkin(addr, proto, sender);
            }
        });
        Ok(Response::from_parts(
            parts,
            UpstreamBody::new(body, on_end).boxed_unsync(),
        ))
    }

    /// Picks an endpoint, connects (failed connects eject the endpoint and move on to
    /// another one, up to `max_attempts`), and sends. The request body is untouched until
    /// a connection accepted the request, so retrying is safe; a pooled connection that the
    /// peer closed meanwhile hands the request back and is replaced by a fresh one.
    #[allow(clippy::too_many_arguments)]
    async fn connect_and_send(
        &self,
        ctx: &mut Ctx,
        route: &Route,
        rb: &RouteBackend,
        set: &EndpointSet,
        key: &PickKey<'_>,
        max_attempts: u32,
        req: Request<Incoming>,
    ) -> Result<
        (
            Response<Incoming>,
            Option<http1::SendRequest<Incoming>>,
            Pick,
            InFlight,
        ),
        ProxyError,
    > {
        let mut req = Some(req);
        let mut tried: Vec<SocketAddr> = Vec::new();
        let mut redial: Option<Pick> = None;
        loop {
            let (pick, fresh) = match redial.take() {
                Some(p) => (p, true),
                None => match route.policy.pick(&rb.backend, set, key, &tried) {
                    Some(p) => (p, false),
                    None => {
                        return Err(ProxyError::Connect(format!(
                            "all {} endpoint(s) tried failed",
                            tried.len()
                        )));
                    }
                },
            };
            let addr = pick.endpoint.addr;
            ctx.endpoint = Some(addr);
            if !fresh {
                ctx.attempts += 1;
            }
            let checkout = match self.client.checkout(addr, rb.protocol, fresh).await {
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
                        return Err(ProxyError::Connect(e.to_string()));
                    }
                    continue;
                }
            };
            if !checkout.reused {
                pick.endpoint.mark_healthy();
            }
            let in_flight = pick.endpoint.start_request();
            let Some(request) = req.take() else {
                return Err(ProxyError::Upstream("request lost".into()));
            };
            let result = match checkout.conn {
                Conn::H2(mut sender) => sender.try_send_request(request).await.map(|r| (r, None)),
                Conn::H1(mut sender) => match sender.try_send_request(request).await {
                    Ok(r) => Ok((r, Some(sender))),
                    Err(e) => Err(e),
                },
            };
            match result {
                Ok((resp, sender)) => return Ok((resp, sender, pick, in_flight)),
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
                            return Err(ProxyError::Upstream(e.into_error().to_string()));
                        }
                    }
                    None => return Err(ProxyError::Upstream(e.into_error().to_string())),
                },
            }
        }
    }

    fn redirect(&self, host: &str, uri: &Uri) -> Response<Body> {
        let port = if self.settings.https_port == 443 {
            String::new()
        } else {
            format!(":{}", self.settings.https_port)
        };
        let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
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
