//! The accept loop (after hyper-util's `examples/server_graceful.rs`): HTTP/1.1 keep-alive
//! and HTTP/2 (prior knowledge, or ALPN `h2` over TLS) on one listener, upgrades, a
//! header-read timeout and header size limits against slowloris, a bound on open
//! connections, and a graceful drain.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::proxy::{ConnInfo, Proxy};
use crate::metrics::METRICS;

/// Time a client has to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to finish a TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head for HTTP/2 (header list). For HTTP/1.1 the limit is the read
/// buffer, `MAX_HEADER_BYTES / 2`: hyper checks it between reads, so a head is refused
/// (431) somewhere between 32 and 64 KiB.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// At most this many request header fields (HTTP/1.1).
pub const MAX_HEADERS: usize = 128;
/// Open downstream connections per listener; beyond it, accept waits.
pub const MAX_CONNECTIONS: usize = 16_384;

pub fn builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES / 2)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(Duration::from_secs(30))
        .max_concurrent_streams(250);
    b
}

/// Serves `listener` until `stop` fires, then drains open connections for at most `drain`.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    proxy: Arc<Proxy>,
    stop: CancellationToken,
    drain: Duration,
) {
    let builder = Arc::new(builder());
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let gauge = METRICS.connections.with_label_values(&[name]);
    info!(listener = name, addr = ?listener.local_addr().ok(), "listening");
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let proxy = proxy.clone();
        let tls = tls.clone();
        let gauge = gauge.clone();
        tokio::spawn(async move {
            let _permit = permit;
            gauge.inc();
            let info = ConnInfo {
                peer,
                tls: tls.is_some(),
            };
            let service = service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(proxy.handle(info, req).await) }
            });
            let result = match tls {
                None => {
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls_stream)) => {
                            let conn = builder
                                .serve_connection_with_upgrades(TokioIo::new(tls_stream), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        Ok(Err(e)) => {
                            debug!(%peer, error = %e, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            debug!(%peer, "TLS handshake timed out");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = result {
                debug!(%peer, error = %e, "connection ended with error");
            }
            gauge.dec();
        });
    }
    drop(listener);
    info!(
        listener = name,
        open = graceful.count(),
        "stopped accepting; draining connections"
    );
    tokio::select! {
        _ = graceful.shutdown() => info!(listener = name, "all connections closed"),
        _ = tokio::time::sleep(drain) => warn!(listener = name, "drain timed out; closing remaining connections"),
    }
}

/// Binds with SO_REUSEADDR (quick restarts) on the given address.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}
