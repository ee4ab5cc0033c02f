//! The accept loop (after hyper-util's `examples/server_graceful.rs`): HTTP/1.1 keep-alive
//! and HTTP/2 (prior knowledge, or ALPN `h2` over TLS) on one listener, upgrades, a
//! header-read timeout and header size limits against slowloris, a bound on open
//! connections, an idle timeout, and a graceful drain.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures::task::AtomicWaker;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::proxy::{ConnInfo, Proxy};
use crate::clock::coarse_ms;
use crate::http::body::Body;
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

/// What bounds the downstream side; shared by every listener and worker of the pod.
#[derive(Debug, Clone)]
pub struct Limits {
    /// One permit per open connection (an upgraded one keeps its permit).
    pub connections: Arc<Semaphore>,
    pub max_connections: usize,
    /// A connection with nothing moving for this long is closed gracefully.
    pub idle_timeout: Duration,
    /// After `stop`, how long open connections may take to finish.
    pub drain: Duration,
    pub http2_max_concurrent_streams: u32,
    pub http2_initial_stream_window: u32,
    /// Every connection opens with a PROXY protocol header naming the client
    /// (proxy_protocol.rs); one without a valid header is closed.
    pub proxy_protocol: bool,
}

impl Limits {
    pub fn new(max_connections: usize, idle_timeout: Duration, drain: Duration) -> Self {
        Limits {
            connections: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            idle_timeout,
            drain,
            http2_max_concurrent_streams: 100,
            http2_initial_stream_window: 64 * 1024,
            proxy_protocol: false,
        }
    }
}

pub fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(crate::http::timer::PooledTimer::default())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES / 2)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(Duration::from_secs(30))
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .initial_stream_window_size(limits.http2_initial_stream_window);
    b
}

/// Serves `listener` until `stop` fires, then drains open connections for at most
/// `limits.drain`. At the connection limit a new connection is closed at once rather than
/// left in the accept queue. A connection idle for `limits.idle_timeout` is closed
/// gracefully (a request in flight still gets its response): for HTTP/1.1 idle means no
/// bytes moved; for HTTP/2 it means no request in flight or started, so keep-alive PINGs
/// do not keep a connection open.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    tls: Option<crate::tls::Acceptor>,
    proxy: Arc<Proxy>,
    stop: CancellationToken,
    limits: Limits,
) {
    let builder = Arc::new(builder(&limits));
    let limit = limits.connections.clone();
    let idle_timeout = limits.idle_timeout;
    let proxy_protocol = limits.proxy_protocol;
    let gauge = METRICS.connections.with_label_values(&[name]);
    let refused = METRICS.connections_refused.with_label_values(&[name]);
    info!(listener = name, addr = ?listener.local_addr().ok(), "listening");
    loop {
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
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            refused.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let proxy = proxy.clone();
        let tls = tls.clone();
        let gauge = gauge.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            gauge.inc();
            let mut stream = stream;
            let mut peer = peer;
            if proxy_protocol {
                let header = tokio::time::timeout(
                    TLS_HANDSHAKE_TIMEOUT,
                    crate::http::proxy_protocol::accept(&mut stream),
                )
                .await;
                match header {
                    Ok(Ok(Some(client))) => peer = client,
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "no valid PROXY protocol header; closing");
                        gauge.dec();
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "PROXY protocol header timed out; closing");
                        gauge.dec();
                        return;
                    }
                }
            }
            let is_tls = tls.is_some();
            let mut sni = None;
            let mut client_chain = None;
            let mut alpn_h2 = false;
            let io: Box<dyn Io> = match tls {
                None => Box::new(stream),
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls_stream)) => {
                            let session = tls_stream.get_ref().1;
                            alpn_h2 = session.alpn_protocol() == Some(b"h2");
                            sni = session
                                .server_name()
                                .map(|n| Box::from(n.trim_end_matches('.').to_ascii_lowercase()));
                            client_chain = session.peer_certificates().map(|c| {
                                c.iter()
                                    .map(|c| c.clone().into_owned())
                                    .collect::<Arc<[_]>>()
                            });
                            Box::new(tls_stream)
                        }
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
            let info = Arc::new(ConnInfo {
                peer,
                peer_value: crate::http::headers::peer_value(peer.ip()),
                tls: is_tls,
                sni,
                client_chain,
                activity: Activity::new(),
                slot: permit,
            });
            let io = TokioIo::new(ActivityIo {
                inner: io,
                activity: info.clone(),
            });
            let conn_info = info.clone();
            let driving = Driving {
                builder: &builder,
                stop: &stop,
                activity: &info.activity,
                idle_timeout,
                peer,
            };
            let result = if alpn_h2 {
                // Boxed: each HTTP/2 stream's future is moved into a task of its own, and
                // tokio copies a task's future whole several times over its life (spawn,
                // completion); a pointer is cheap to move, the 2.5 KB future is not.
                // HTTP/1.1 keeps it inline: there it lives in the connection's task and
                // a box would only add an allocation per request. The bench's HTTP/2 case,
                // against HAProxy: req/s 0.71-0.76x inline, 0.74-0.78x boxed; CPU per
                // request 1.34-1.41x inline, 1.28-1.35x boxed.
                driving
                    .drive(io, move |req| {
                        boxed_in_place(|| proxy.clone().handle(conn_info.clone(), req))
                    })
                    .await
            } else {
                driving
                    .drive(io, move |req| proxy.clone().handle(conn_info.clone(), req))
                    .await
            };
            if let Err(e) = result {
                debug!(%peer, error = %e, "connection ended with error");
            }
            gauge.dec();
        });
    }
    drop(listener);
    let open = limits.max_connections - limit.available_permits();
    info!(
        listener = name,
        open, "stopped accepting; draining connections"
    );
    match tokio::time::timeout(
        limits.drain,
        limit.acquire_many(limits.max_connections as u32),
    )
    .await
    {
        Ok(_) => info!(listener = name, "all connections closed"),
        Err(_) => warn!(
            listener = name,
            "drain timed out; closing remaining connections"
        ),
    }
}

/// What serving one downstream connection needs besides its stream and service.
struct Driving<'a> {
    builder: &'a auto::Builder<TokioExecutor>,
    stop: &'a CancellationToken,
    activity: &'a Activity,
    idle_timeout: Duration,
    peer: SocketAddr,
}

impl Driving<'_> {
    /// Serves `io` with `handle` as its service until it ends; on `stop`, or when it has
    /// been idle for `idle_timeout`, it is shut down gracefully (a request in flight still
    /// gets its response).
    async fn drive<H, F>(
        self,
        io: TokioIo<ActivityIo<Box<dyn Io>, ConnInfo>>,
        handle: H,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
    where
        H: Fn(Request<Incoming>) -> F + Send + 'static,
        F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
    {
        let service = service_fn(handle);
        let conn = self.builder.serve_connection_with_upgrades(io, service);
        let mut conn = std::pin::pin!(conn);
        let mut stop = std::pin::pin!(self.stop.cancelled());
        let mut idle = std::pin::pin!(self.activity.idle(self.idle_timeout));
        let watch = Arc::new(Watch::default());
        let watch_waker = Waker::from(watch.clone());
        let mut closing = false;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = conn.as_mut().poll(cx) {
                return Poll::Ready(r);
            }
            if closing || !watch.woken(cx.waker()) {
                return Poll::Pending;
            }
            let mut wcx = Context::from_waker(&watch_waker);
            let stopping = stop.as_mut().poll(&mut wcx).is_ready();
            if stopping || idle.as_mut().poll(&mut wcx).is_ready() {
                if !stopping {
                    debug!(peer = %self.peer, "idle timeout; closing the connection");
                }
                conn.as_mut().graceful_shutdown();
                closing = true;
                // The shutdown needs the connection polled again.
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        })
        .await
    }
}

/// The waker of a connection's watchdogs (the stop signal and the idle timer). The
/// connection's task wakes a few times per request, the watchdogs almost never: they are
/// polled only after they woke it, not on every wake (polling both cost about 600
/// instructions per HTTP/1.1 request, a `select!` over the three).
struct Watch {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Default for Watch {
    fn default() -> Self {
        // Woken at first, so that the first poll registers the watchdogs.
        Watch {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        }
    }
}

impl Watch {
    /// Whether a watchdog woke the task since the last call; `task` is woken by the next.
    fn woken(&self, task: &Waker) -> bool {
        // The task's waker first, then the flag: a wake in between sets the flag and
        // wakes this task, so none is lost.
        self.task.register(task);
        self.woken.swap(false, Ordering::AcqRel)
    }
}

impl Wake for Watch {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// `make()` in a new box. The box is allocated first and the future written straight into
/// it: `Box::pin(make())` builds the whole future on the stack and copies it over, 2.5 KB
/// per HTTP/2 stream into memory that is cold by then.
#[inline(always)]
fn boxed_in_place<F>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}

/// A downstream stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// When a connection last did something worth keeping it open for.
#[derive(Debug)]
pub struct Activity {
    /// Bytes moved in either direction (what counts for HTTP/1.1 and tunnels).
    last_io: AtomicU64,
    /// A request started or finished (what counts for HTTP/2).
    last_request: AtomicU64,
    in_flight: AtomicU32,
    http2: AtomicBool,
}

impl Activity {
    pub fn new() -> Self {
        let now = coarse_ms();
        Activity {
            last_io: AtomicU64::new(now),
            last_request: AtomicU64::new(now),
            in_flight: AtomicU32::new(0),
            http2: AtomicBool::new(false),
        }
    }

    pub fn touch_io(&self) {
        self.last_io.store(coarse_ms(), Ordering::Relaxed);
    }

    /// A request began on this connection; the guard marks its end.
    pub fn request(&self, http2: bool) -> RequestActivity<'_> {
        if http2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.last_request.store(coarse_ms(), Ordering::Relaxed);
        RequestActivity(self)
    }

    fn last(&self) -> u64 {
        if self.http2.load(Ordering::Relaxed) {
            if self.in_flight.load(Ordering::Relaxed) > 0 {
                return coarse_ms();
            }
            self.last_request.load(Ordering::Relaxed)
        } else {
            self.last_io.load(Ordering::Relaxed)
        }
    }

    /// Resolves once the connection has been idle for `idle`.
    pub async fn idle(&self, idle: Duration) {
        let idle_ms = idle.as_millis() as u64;
        loop {
            let deadline = self.last() + idle_ms;
            let now = coarse_ms();
            if now >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(deadline - now)).await;
        }
    }
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

pub struct RequestActivity<'a>(&'a Activity);

impl Drop for RequestActivity<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.last_request.store(coarse_ms(), Ordering::Relaxed);
    }
}

/// Something that owns an [`Activity`]: a connection's facts, or a tunnel's own record.
pub trait HasActivity {
    fn activity(&self) -> &Activity;
}

impl HasActivity for Activity {
    fn activity(&self) -> &Activity {
        self
    }
}

impl HasActivity for ConnInfo {
    fn activity(&self) -> &Activity {
        &self.activity
    }
}

/// Records when bytes last moved in either direction.
pub struct ActivityIo<T, A: HasActivity> {
    pub inner: T,
    pub activity: Arc<A>,
}

impl<T: AsyncRead + Unpin, A: HasActivity> AsyncRead for ActivityIo<T, A> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.activity().touch_io();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin, A: HasActivity> AsyncWrite for ActivityIo<T, A> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.activity().touch_io();
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
            self.activity.activity().touch_io();
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A waker that counts its wakes.
    struct Count(std::sync::atomic::AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn watchdogs_are_polled_only_after_they_woke_the_task() {
        let count = Arc::new(Count(Default::default()));
        let task = Waker::from(count.clone());
        let watch = Arc::new(Watch::default());
        assert!(watch.woken(&task), "the first poll registers the watchdogs");
        assert!(
            !watch.woken(&task),
            "a wake by the connection is not theirs"
        );
        Waker::from(watch.clone()).wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "the task is woken");
        assert!(watch.woken(&task));
        assert!(!watch.woken(&task));
        // Woken before the task registered again: the flag keeps it.
        Waker::from(watch.clone()).wake();
        assert!(watch.woken(&task));
    }

    /// A client that sends a request head a byte a second, after `first` complete requests
    /// on the same connection (so the header-read sleep is a pooled, reused one).
    async fn slow_head_closed_within_the_timeout(first: usize) {
        let builder = builder(&Limits::new(1, Duration::from_secs(60), Duration::ZERO));
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let service = service_fn(|_req| async {
            Ok::<_, Infallible>(hyper::Response::new(
                http_body_util::Empty::<bytes::Bytes>::new(),
            ))
        });
        let conn = tokio::spawn(async move {
            builder
                .serve_connection_with_upgrades(TokioIo::new(server), service)
                .await
        });
        let mut buf = vec![0u8; 4096];
        for _ in 0..first {
            client
                .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .expect("write");
            let n = client.read(&mut buf).await.expect("read");
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "answered");
        }
        let start = tokio::time::Instant::now();
        client
            .write_all(b"GET / HTTP/1.1\r\n")
            .await
            .expect("write");
        let trickle = async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if client.write_all(b"x").await.is_err() {
                    return;
                }
            }
        };
        let closed = tokio::select! {
            r = conn => r.expect("the connection task"),
            _ = trickle => panic!("the trickle ended first"),
        };
        assert!(closed.is_err(), "a header-read timeout error");
        let took = start.elapsed();
        assert!(
            took >= HEADER_READ_TIMEOUT && took < HEADER_READ_TIMEOUT + Duration::from_secs(1),
            "closed after {took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_first_head_is_cut_off() {
        slow_head_closed_within_the_timeout(0).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_head_after_keep_alive_requests_is_cut_off() {
        slow_head_closed_within_the_timeout(3).await;
    }
}
