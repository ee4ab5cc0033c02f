//! The accept loop (after hyper-util's `examples/server_graceful.rs`): HTTP/1.1 keep-alive
//! and HTTP/2 (prior knowledge, or ALPN `h2` over TLS) on one listener, upgrades, a
//! header-read timeout and header size limits against slowloris, a bound on open
//! connections, an idle timeout, and a graceful drain.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
/// A connection with no bytes moving for `idle_timeout` is closed gracefully (a request in
/// flight still gets its response).
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    proxy: Arc<Proxy>,
    stop: CancellationToken,
    idle_timeout: Duration,
    drain: Duration,
) {
    let builder = Arc::new(builder());
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
        let builder = builder.clone();
        let proxy = proxy.clone();
        let tls = tls.clone();
        let gauge = gauge.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            gauge.inc();
            let info = ConnInfo {
                peer,
                tls: tls.is_some(),
            };
            let io: Box<dyn Io> = match tls {
                None => Box::new(stream),
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls_stream)) => Box::new(tls_stream),
                        Ok(Err(e)) => {
                            debug!(%peer, error = %e, "TLS handshake failed");
                            gauge.dec();
                            return;
                        }
                        Err(_) => {
                            debug!(%peer, "TLS handshake timed out");
                            gauge.dec();
                            return;
                        }
                    }
                }
            };
            let activity = Arc::new(AtomicU64::new(now_ms()));
            let io = TokioIo::new(ActivityIo {
                inner: io,
                last: activity.clone(),
            });
            let service = service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(proxy.handle(info, req).await) }
            });
            let conn = builder.serve_connection_with_upgrades(io, service);
            let mut conn = std::pin::pin!(conn);
            let mut closing = false;
            let result = loop {
                tokio::select! {
                    r = conn.as_mut() => break r,
                    _ = stop.cancelled(), if !closing => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    _ = idle(&activity, idle_timeout), if !closing => {
                        debug!(%peer, "idle timeout; closing the connection");
                        conn.as_mut().graceful_shutdown();
                        closing = true;
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
    let open = MAX_CONNECTIONS - limit.available_permits();
    info!(
        listener = name,
        open, "stopped accepting; draining connections"
    );
    match tokio::time::timeout(drain, limit.acquire_many(MAX_CONNECTIONS as u32)).await {
        Ok(_) => info!(listener = name, "all connections closed"),
        Err(_) => warn!(
            listener = name,
            "drain timed out; closing remaining connections"
        ),
    }
}

/// A downstream stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

static START: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    START.elapsed().as_millis() as u64
}

/// Resolves once no bytes moved for `idle`.
async fn idle(last: &AtomicU64, idle: Duration) {
    let idle_ms = idle.as_millis() as u64;
    loop {
        let deadline = last.load(Ordering::Relaxed) + idle_ms;
        let now = now_ms();
        if now >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(deadline - now)).await;
    }
}

/// Records when bytes last moved in either direction.
struct ActivityIo {
    inner: Box<dyn Io>,
    last: Arc<AtomicU64>,
}

impl ActivityIo {
    fn touch(&self) {
        self.last.store(now_ms(), Ordering::Relaxed);
    }
}

impl AsyncRead for ActivityIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for ActivityIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Binds a listening socket (SO_REUSEADDR for quick restarts). With `reuse_port`, several
/// sockets share the port (SO_REUSEPORT) and the kernel spreads connections over them: one
/// per worker runtime. Returns a std listener; convert it inside the runtime that serves it.
pub fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
