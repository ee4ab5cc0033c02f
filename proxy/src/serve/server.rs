//! The accept loop (after hyper-util's `examples/server_graceful.rs`): HTTP/1.1 keep-alive
//! and HTTP/2 (prior knowledge, or ALPN `h2` over TLS) on one listener, upgrades, a
//! header-read timeout and header size limits against slowloris, a bound on open
//! connections, an idle timeout, and a graceful drain.
//!
//! An HTTP/1.1 connection starts on the proxy's own server (`h1.rs`), which takes the
//! common request (no body, no upgrade) and hands the connection to hyper's at the first
//! one it does not; HTTP/2 by ALPN goes to hyper's at once.
//!
//! The header-read timeout is the connection's own watch ([`Activity::expired`]), not
//! hyper's: hyper arms a timer for every request head it starts to read, right after each
//! response, which cost about 1,150 instructions per HTTP/1.1 request (a pooled sleep
//! reset, its polls, and one more turn of hyper's read loop), and it also closed every
//! keep-alive connection idle for 10 s, whatever `--idle-timeout` said. The watch starts a
//! head's clock at its first byte (at the accept for the first head), as nginx's
//! `client_header_timeout` does, and looks at it at least once per timeout, so no request
//! touches a timer.

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

use super::h1;
use super::proxy::{ConnInfo, Proxy};
use crate::clock::coarse_ms;
use crate::http::body::Body;
use crate::metrics::METRICS;

/// Time a client has to send a request's head: from its first byte (from the accept for
/// the first request) to its end.
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
    // hyper's own header-read timer is off (it would default to 30 s): the connection's
    // watch times request heads (see the module docs).
    b.http1()
        .header_read_timeout(None)
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
    let timeouts = Timeouts {
        idle: limits.idle_timeout,
        head: Some(HEADER_READ_TIMEOUT),
    };
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
                activity: Activity::connection(alpn_h2),
                slot: permit,
            });
            let io = ActivityIo {
                inner: io,
                activity: info.clone(),
            };
            let conn_info = info.clone();
            let driving = Driving {
                builder: &builder,
                stop: &stop,
                activity: &info.activity,
                timeouts,
                peer,
            };
            // Each request's future in a box of its own, written straight into it. Over
            // HTTP/2 each stream runs in a task of its own, and tokio copies a task's future
            // whole several times over its life; a pointer is cheap to move, the 2.6 KB
            // future is not (the bench's HTTP/2 case, against HAProxy: req/s 0.71-0.76x
            // inline, 0.74-0.78x boxed). Over HTTP/1.1 hyper moves the future into the
            // connection's slot for it, memory that 50 connections take turns at and that
            // is cold by each one's next request, where the allocator hands back the block
            // the last request freed: per request 22,689 to 22,331 instructions, L1 data
            // misses 365 to 340, L2 misses 6.6 to 4.8 (callgrind, `just bench --phases
            // instructions`).
            let result = driving
                .drive(
                    io,
                    move |req| boxed_in_place(|| proxy.clone().handle(conn_info.clone(), req)),
                    alpn_h2,
                )
                .await;
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

/// How long a connection may idle, and take over a request head (none for a tunnel).
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    idle: Duration,
    head: Option<Duration>,
}

/// What serving one downstream connection needs besides its stream and service.
struct Driving<'a> {
    builder: &'a auto::Builder<TokioExecutor>,
    stop: &'a CancellationToken,
    activity: &'a Activity,
    timeouts: Timeouts,
    peer: SocketAddr,
}

/// A request head not received in time (slowloris).
#[derive(Debug)]
struct HeadTimeout;

impl std::fmt::Display for HeadTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request head not received in time")
    }
}

impl std::error::Error for HeadTimeout {}

impl Driving<'_> {
    /// Serves `io` with `handle` as its service until it ends. On `stop`, or when it has
    /// been idle for `timeouts.idle`, it is shut down gracefully (a request in flight still
    /// gets its response). A request head waited on for `timeouts.head` ends it at once,
    /// as hyper's own timer did: a graceful shutdown would wait for that head.
    async fn drive<H, F, A>(
        self,
        io: ActivityIo<Box<dyn Io>, A>,
        handle: H,
        http2: bool,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
    where
        H: Fn(Request<Option<Incoming>>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
        A: HasActivity + Send + Sync + 'static,
    {
        // HTTP/1.1 starts on the proxy's own server (h1.rs); hyper takes over at the first
        // request that one leaves to it, and from the start for HTTP/2 by ALPN.
        let closing = AtomicBool::new(false);
        let mut own = std::pin::pin!(async {
            if http2 {
                Ok(h1::Ended::HandOff(io, bytes::Bytes::new()))
            } else {
                h1::serve(io, &handle, &closing).await
            }
        });
        type Hyper<'b, A, S> = Pin<
            Box<
                auto::UpgradeableConnection<
                    'b,
                    TokioIo<h1::Prefixed<ActivityIo<Box<dyn Io>, A>>>,
                    S,
                    TokioExecutor,
                >,
            >,
        >;
        let mut hyper_conn: Option<Hyper<'_, A, _>> = None;
        let mut stop = std::pin::pin!(self.stop.cancelled());
        let mut expired = std::pin::pin!(self.activity.expired(self.timeouts));
        let watch = Arc::new(Watch::default());
        let watch_waker = Waker::from(watch.clone());
        std::future::poll_fn(|cx| {
            loop {
                if let Some(conn) = hyper_conn.as_mut() {
                    if let Poll::Ready(r) = conn.as_mut().poll(cx) {
                        return Poll::Ready(r);
                    }
                    break;
                }
                match own.as_mut().poll(cx) {
                    Poll::Ready(Ok(h1::Ended::HandOff(io, read))) => {
                        let io = TokioIo::new(h1::Prefixed::new(read, io));
                        let service = service_fn(|req: Request<Incoming>| handle(req.map(Some)));
                        let mut conn =
                            Box::pin(self.builder.serve_connection_with_upgrades(io, service));
                        if closing.load(Ordering::Relaxed) {
                            conn.as_mut().graceful_shutdown();
                        }
                        hyper_conn = Some(conn);
                    }
                    Poll::Ready(Ok(h1::Ended::Closed)) => return Poll::Ready(Ok(())),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                    Poll::Pending => break,
                }
            }
            if closing.load(Ordering::Relaxed) || !watch.woken(cx.waker()) {
                return Poll::Pending;
            }
            let mut wcx = Context::from_waker(&watch_waker);
            let stopping = stop.as_mut().poll(&mut wcx).is_ready();
            let expiry = match expired.as_mut().poll(&mut wcx) {
                Poll::Ready(e) => Some(e),
                Poll::Pending => None,
            };
            if expiry == Some(Expiry::Head) {
                debug!(peer = %self.peer, "request head not received in time; closing the connection");
                return Poll::Ready(Err(HeadTimeout.into()));
            }
            if stopping || expiry.is_some() {
                if !stopping {
                    debug!(peer = %self.peer, "idle timeout; closing the connection");
                }
                if let Some(conn) = hyper_conn.as_mut() {
                    conn.as_mut().graceful_shutdown();
                }
                closing.store(true, Ordering::Relaxed);
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
/// it: `Box::pin(make())` builds the whole future on the stack and copies it over, 2.6 KB
/// per request.
#[inline(always)]
fn boxed_in_place<F>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}

/// A downstream stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// When a connection last did something worth keeping it open for, and since when it
/// waits for the rest of a request head.
#[derive(Debug)]
pub struct Activity {
    /// Bytes read and written (what counts for HTTP/1.1 and tunnels).
    last_read: AtomicU64,
    last_write: AtomicU64,
    /// A request started or finished (what counts for HTTP/2).
    last_request: AtomicU64,
    in_flight: AtomicU32,
    http2: AtomicBool,
    /// HTTP/1.1: when the request head being read began (its first byte, or the accept for
    /// the first); 0 while none is.
    head_since: AtomicU64,
    /// Nothing read yet: an HTTP/2 preface may come first.
    unread: AtomicBool,
}

/// Why a connection's watch ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Idle,
    Head,
}

/// How an HTTP/2 connection without TLS begins (RFC 9113, 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

impl Activity {
    /// A tunnel's record: only idleness counts.
    pub fn new() -> Self {
        let now = coarse_ms();
        Activity {
            last_read: AtomicU64::new(now),
            last_write: AtomicU64::new(now),
            last_request: AtomicU64::new(now),
            in_flight: AtomicU32::new(0),
            http2: AtomicBool::new(false),
            head_since: AtomicU64::new(0),
            unread: AtomicBool::new(false),
        }
    }

    /// A connection just accepted: HTTP/2 when TLS said so; else its first request head is
    /// due from now, unless its preface shows HTTP/2.
    pub fn connection(http2: bool) -> Self {
        let a = Activity::new();
        a.http2.store(http2, Ordering::Relaxed);
        if !http2 {
            a.head_since.store(coarse_ms(), Ordering::Relaxed);
            a.unread.store(true, Ordering::Relaxed);
        }
        a
    }

    /// `bytes` were read. Between requests the first of them starts a head's clock.
    pub fn read(&self, bytes: &[u8]) {
        let now = coarse_ms();
        self.last_read.store(now, Ordering::Relaxed);
        if self.unread.load(Ordering::Relaxed) {
            self.unread.store(false, Ordering::Relaxed);
            if bytes.starts_with(H2_PREFACE) {
                self.http2.store(true, Ordering::Relaxed);
                self.head_since.store(0, Ordering::Relaxed);
            }
        } else if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == 0
            && !self.http2.load(Ordering::Relaxed)
        {
            self.head_since.store(now, Ordering::Relaxed);
        }
    }

    pub fn wrote(&self) {
        self.last_write.store(coarse_ms(), Ordering::Relaxed);
    }

    /// A request began on this connection (its head is complete); the guard marks its end.
    pub fn request(&self, http2: bool) -> RequestActivity<'_> {
        if http2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
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
            let read = self.last_read.load(Ordering::Relaxed);
            read.max(self.last_write.load(Ordering::Relaxed))
        }
    }

    /// When the request head being read is due, if one is. Not while a request is in
    /// flight, nor when a response was written after the head began: a client may send
    /// its next request while a long response still streams (hyper reads it then), and
    /// that response must not be cut short. A partial head behind a stalled response is
    /// left to the idle timeout.
    fn head_due(&self, head_ms: u64) -> Option<u64> {
        if self.http2.load(Ordering::Relaxed) || self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let since = self.head_since.load(Ordering::Relaxed);
        let written_after = self.last_write.load(Ordering::Relaxed) > since;
        (since != 0 && !written_after).then_some(since + head_ms)
    }

    /// Resolves once the connection has been idle for `timeouts.idle`, or has waited
    /// `timeouts.head` for a request head. A head's clock starts without waking this
    /// watch, so over HTTP/1.1 it looks again at least once per `timeouts.head`: a head
    /// begun at `t` is seen by `t + head` and cut off then.
    async fn expired(&self, timeouts: Timeouts) -> Expiry {
        let idle_ms = timeouts.idle.as_millis() as u64;
        let head_ms = timeouts.head.map(|head| head.as_millis() as u64);
        loop {
            let now = coarse_ms();
            let idle_at = self.last() + idle_ms;
            let head_due = head_ms.and_then(|head_ms| self.head_due(head_ms));
            if let Some(due) = head_due {
                // Idle in the middle of a head ends the connection too: a graceful
                // shutdown would wait for the rest of that head.
                if now >= due || now >= idle_at {
                    return Expiry::Head;
                }
            }
            if now >= idle_at {
                return Expiry::Idle;
            }
            let mut wake_at = idle_at;
            if let Some(head_ms) = head_ms
                && !self.http2.load(Ordering::Relaxed)
            {
                wake_at = wake_at.min(head_due.unwrap_or(u64::MAX)).min(now + head_ms);
            }
            tokio::time::sleep(Duration::from_millis(wake_at - now)).await;
        }
    }

    /// Resolves once a tunnel has been idle for `idle`.
    pub async fn idle(&self, idle: Duration) {
        self.expired(Timeouts { idle, head: None }).await;
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
            self.activity.activity().read(&buf.filled()[before..]);
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
            self.activity.activity().wrote();
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
            self.activity.activity().wrote();
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

    type ConnResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

    /// A plain connection driven as `serve` drives one, over an in-memory pipe. The service
    /// marks its requests on the connection's [`Activity`] as the proxy does; the first is
    /// answered with `first`, the others with "next".
    fn driven(
        timeouts: Timeouts,
        first: impl FnOnce() -> Body + Send + 'static,
    ) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<ConnResult>) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let activity = Arc::new(Activity::connection(false));
        let io = ActivityIo {
            inner: Box::new(server) as Box<dyn Io>,
            activity: activity.clone(),
        };
        let first = std::sync::Mutex::new(Some(first));
        let conn = tokio::spawn(async move {
            let builder = builder(&Limits::new(1, timeouts.idle, Duration::ZERO));
            let stop = CancellationToken::new();
            let driving = Driving {
                builder: &builder,
                stop: &stop,
                activity: &activity,
                timeouts,
                peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            };
            let service_activity = activity.clone();
            driving
                .drive(
                    io,
                    move |_req| {
                        let activity = service_activity.clone();
                        let body = match first.lock().expect("first").take() {
                            Some(first) => first(),
                            None => crate::http::body::full("next"),
                        };
                        async move {
                            let _active = activity.request(false);
                            Ok(Response::new(body))
                        }
                    },
                    false,
                )
                .await
        });
        (client, conn)
    }

    const HEAD: Duration = Duration::from_millis(300);

    /// `first` complete requests, then (after resting longer than the head timeout, which
    /// is not an idle timeout) a request head sent a byte every 50 ms: the connection is
    /// cut off the head timeout after the head's first byte, not let through by the trickle.
    async fn slow_head_closed_within_the_timeout(first: usize) {
        let timeouts = Timeouts {
            idle: Duration::from_secs(10),
            head: Some(HEAD),
        };
        let (mut client, conn) = driven(timeouts, || crate::http::body::full("first"));
        let mut buf = vec![0u8; 4096];
        for _ in 0..first {
            client
                .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .expect("write");
            let n = client.read(&mut buf).await.expect("read");
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "answered");
        }
        if first > 0 {
            tokio::time::sleep(HEAD * 2).await;
            assert!(
                !conn.is_finished(),
                "an idle keep-alive connection stays open"
            );
        }
        let start = tokio::time::Instant::now();
        client
            .write_all(b"GET / HTTP/1.1\r\n")
            .await
            .expect("write");
        let trickle = async {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if client.write_all(b"x").await.is_err() {
                    return;
                }
            }
        };
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::select! {
                r = conn => r.expect("the connection task"),
                _ = trickle => panic!("the trickle ended first"),
            }
        })
        .await
        .expect("the connection is closed");
        let took = start.elapsed();
        assert!(
            closed.is_err_and(|e| e.is::<HeadTimeout>()),
            "a header-read timeout"
        );
        assert!(
            took >= HEAD - Duration::from_millis(10) && took < HEAD + Duration::from_millis(150),
            "closed after {took:?}"
        );
    }

    #[tokio::test]
    async fn a_slow_first_head_is_cut_off() {
        slow_head_closed_within_the_timeout(0).await;
    }

    #[tokio::test]
    async fn a_slow_head_after_keep_alive_requests_is_cut_off() {
        slow_head_closed_within_the_timeout(3).await;
    }

    /// An idle timeout shorter than the head timeout: a head begun and left unfinished is
    /// cut off when the connection has idled that long (a graceful close would wait for it).
    #[tokio::test]
    async fn a_partial_head_is_not_kept_past_the_idle_timeout() {
        let timeouts = Timeouts {
            idle: Duration::from_millis(200),
            head: Some(Duration::from_secs(10)),
        };
        let (mut client, conn) = driven(timeouts, || crate::http::body::full("first"));
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = vec![0u8; 4096];
        let n = client.read(&mut buf).await.expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "answered");
        client.write_all(b"GET / HT").await.expect("write");
        let start = tokio::time::Instant::now();
        let closed = tokio::time::timeout(Duration::from_secs(3), conn)
            .await
            .expect("the connection is closed")
            .expect("the connection task");
        assert!(closed.is_err_and(|e| e.is::<HeadTimeout>()));
        let took = start.elapsed();
        assert!(took < Duration::from_millis(400), "closed after {took:?}");
    }

    /// HTTP/2 without TLS (prior knowledge) has no request heads to time: a connection that
    /// opens with the preface and waits longer than the head timeout before its first
    /// request is still served.
    #[tokio::test]
    async fn an_h2c_connection_is_not_timed_as_a_head() {
        let timeouts = Timeouts {
            idle: Duration::from_secs(10),
            head: Some(HEAD),
        };
        let (client, conn) = driven(timeouts, || crate::http::body::full("first"));
        let (mut sender, h2) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(client))
                .await
                .expect("h2 handshake");
        tokio::spawn(h2);
        tokio::time::sleep(HEAD * 2).await;
        assert!(!conn.is_finished(), "still open");
        let req = Request::builder()
            .uri("http://x/")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request");
        let resp = sender.send_request(req).await.expect("answered");
        assert_eq!(resp.status(), 200);
    }

    /// A client may send its next request while a response streams for longer than the
    /// head timeout (hyper reads it then): the response is not cut short, and the next
    /// request is answered after it.
    #[tokio::test]
    async fn a_request_sent_during_a_long_response_does_not_cut_it() {
        let timeouts = Timeouts {
            idle: Duration::from_secs(10),
            head: Some(HEAD),
        };
        let slow = || {
            let chunks = futures::stream::unfold(0, |i| async move {
                if i == 10 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                let frame = http_body::Frame::data(bytes::Bytes::from(format!("chunk{i};")));
                Some((Ok::<_, crate::http::body::BoxError>(frame), i + 1))
            });
            http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(chunks))
        };
        let (mut client, conn) = driven(timeouts, slow);
        client
            .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
        client
            .write_all(b"GET /next HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            let mut buf = vec![0u8; 4096];
            while !got.ends_with(b"next") {
                let n = client.read(&mut buf).await.expect("read");
                assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        let text = String::from_utf8_lossy(&got);
        assert!(read.is_ok(), "both answered, got {text:?}");
        assert!(
            text.contains("chunk9;"),
            "the whole first response: {text:?}"
        );
        assert!(!conn.is_finished(), "the connection stays open");
    }
}
