//! Admin server: `/metrics`, `/healthz` (process alive), `/readyz` (first full sync done
//! and not draining). It stays answerable under a flood: its own small connection cap, a
//! header-read timeout and a bounded connection age, apart from the traffic listeners'.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::health::Health;
use crate::http::body::{Body, full};

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

pub fn route(health: &Health, req: &Request<Incoming>) -> Response<Body> {
    match req.uri().path() {
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" if health.is_ready() => respond(StatusCode::OK, "text/plain", "ready\n".into()),
        "/readyz" if health.is_draining() => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "draining\n".into(),
        ),
        "/readyz" => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not synced yet\n".into(),
        ),
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            crate::metrics::encode(),
        ),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Open admin connections at most (probes and a scraper need a handful). Beyond it a new
/// connection is closed at once, so a flood cannot hold the listener.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send a request head on the admin port.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest an admin connection stays open.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);

pub async fn serve(listener: TcpListener, health: Arc<Health>, stop: CancellationToken) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(16 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(16);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let health = health.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = service_fn(move |req| {
                let health = health.clone();
                async move { Ok::<_, Infallible>(route(&health, &req)) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(MAX_CONNECTION_AGE, conn).await;
        });
    }
}
