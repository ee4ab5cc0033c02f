//! Upstream connections: our own small pool instead of hyper-util's legacy client, so that
//! the connect phase is explicit (a failed connect is retried on another endpoint before
//! the request body is touched, and the endpoint ejected) and checkout is one short lock.
//!
//! ```text
//! checkout(endpoint, protocol)
//!   HTTP/1.1 (plain or TLS): idle stack per endpoint ─ pop a ready one ─ else connect
//!   h2c: one shared multiplexed connection per endpoint ─ clone ─ else connect
//! response body ends cleanly ─▶ checkin (HTTP/1.1)
//! ```
//!
//! A connection goes back to the pool only when it cannot carry anything of the last
//! exchange into the next one: the request had no body (a request with one goes through
//! hyper's client, and its connection is never pooled after it; see `wire`), the response
//! was read to its end with a framing that allows another exchange, and nothing else is
//! buffered or waiting. An idle connection has no task watching it: checkout and the
//! pruner peek at its socket, and one with data or EOF waiting is closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tracing::debug;

use super::UpstreamProtocol;
use super::tls::UpstreamTls;
use super::wire::{H1Conn, Io};
use crate::clock::coarse_ms;
use crate::http::body::RequestBody;

/// Idle HTTP/1.1 connections kept per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 128;

pub enum Conn {
    H1(H1Conn),
    H2(http2::SendRequest<RequestBody>),
}

pub struct Checkout {
    pub conn: Conn,
    /// Taken from the pool (it may have been closed by the peer meanwhile).
    pub reused: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    #[error("HTTP handshake: {0}")]
    Handshake(#[from] hyper::Error),
    #[error("no TLS settings for an https backend")]
    NoTlsConfig,
    #[error("all {0} endpoint(s) tried failed")]
    Exhausted(usize),
}

struct Idle {
    conn: H1Conn,
    /// When it was checked in, on the coarse clock (`crate::clock::coarse_ms`).
    since_ms: u64,
}

/// Endpoint, protocol, and for TLS the server name the connection was made (and checked)
/// for: a connection never serves a backend that expects another name.
type Key = (SocketAddr, UpstreamProtocol, Option<Arc<str>>);

/// The pool's maps are looked up twice per request (checkout, checkin), by keys that come
/// from EndpointSlices, not from clients: a fast seeded hash, not SipHash's
/// flooding-resistant one.
type Hasher = foldhash::fast::RandomState;

pub struct Client {
    idle: Mutex<HashMap<Key, Vec<Idle>, Hasher>>,
    h2: Mutex<HashMap<SocketAddr, http2::SendRequest<RequestBody>, Hasher>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

impl Client {
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Self {
        Client {
            idle: Mutex::new(HashMap::default()),
            h2: Mutex::new(HashMap::default()),
            connect_timeout,
            idle_timeout,
        }
    }

    /// A connection to `addr` that is ready for one request.
    pub async fn checkout(
        &self,
        addr: SocketAddr,
        proto: UpstreamProtocol,
        tls: Option<&UpstreamTls>,
        fresh: bool,
    ) -> Result<Checkout, ConnectError> {
        self.checkout_within(addr, proto, tls, fresh, None).await
    }

    /// [`Client::checkout`], a new connection's connect bounded by `connect_timeout` (a
    /// route's own) instead of the client's.
    pub async fn checkout_within(
        &self,
        addr: SocketAddr,
        proto: UpstreamProtocol,
        tls: Option<&UpstreamTls>,
        fresh: bool,
        connect_timeout: Option<Duration>,
    ) -> Result<Checkout, ConnectError> {
        let key = (addr, proto, tls.map(|t| t.name.clone()));
        if !fresh && let Some(c) = self.take_idle(&key).await {
            return Ok(c);
        }
        // Boxed: the connect future (TCP, TLS, HTTP handshakes) is ~2.5 KB, and inlined it
        // would make every request's future that large, copied on each move. Connecting is
        // the rare path; pooled requests should not pay for it.
        let timeout = connect_timeout.unwrap_or(self.connect_timeout);
        Box::pin(self.connect(addr, proto, tls, timeout)).await
    }

    async fn take_idle(&self, key: &Key) -> Option<Checkout> {
        let (addr, proto) = (key.0, key.1);
        if proto == UpstreamProtocol::H2c {
            let existing = self.h2.lock().ok()?.get(&addr).cloned();
            let mut sender = existing?;
            if sender.is_closed() || sender.ready().await.is_err() {
                self.forget_h2(addr);
                return None;
            }
            return Some(Checkout {
                conn: Conn::H2(sender),
                reused: true,
            });
        }
        loop {
            let mut idle = {
                let mut map = self.idle.lock().ok()?;
                let stack = map.get_mut(key)?;
                stack.pop()?
            };
            if coarse_ms().saturating_sub(idle.since_ms) > self.idle_ms() {
                continue;
            }
            if idle.conn.has_unsolicited_bytes() {
                debug!(%addr, "pooled connection has unsolicited bytes or was closed; closing it");
                continue;
            }
            return Some(Checkout {
                conn: Conn::H1(idle.conn),
                reused: true,
            });
        }
    }

    fn idle_ms(&self) -> u64 {
        u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX)
    }

    fn forget_h2(&self, addr: SocketAddr) {
        if let Ok(mut m) = self.h2.lock() {
            m.remove(&addr);
        }
    }

    /// Returns an HTTP/1.1 connection whose response was read to the end.
    pub fn checkin(
        &self,
        addr: SocketAddr,
        proto: UpstreamProtocol,
        tls: Option<Arc<str>>,
        conn: H1Conn,
    ) {
        if let Ok(mut map) = self.idle.lock() {
            let stack = map.entry((addr, proto, tls)).or_default();
            if stack.len() < MAX_IDLE_PER_ENDPOINT {
                stack.push(Idle {
                    conn,
                    since_ms: coarse_ms(),
                });
            }
        }
    }

    /// Drops idle connections to endpoints that left (called rarely).
    pub fn prune(&self) {
        if let Ok(mut map) = self.idle.lock() {
            let (now, timeout) = (coarse_ms(), self.idle_ms());
            for stack in map.values_mut() {
                stack.retain_mut(|i| {
                    now.saturating_sub(i.since_ms) <= timeout && !i.conn.has_unsolicited_bytes()
                });
            }
            map.retain(|_, s| !s.is_empty());
        }
        if let Ok(mut m) = self.h2.lock() {
            m.retain(|_, s| !s.is_closed());
        }
    }

    async fn connect(
        &self,
        addr: SocketAddr,
        proto: UpstreamProtocol,
        tls: Option<&UpstreamTls>,
        connect_timeout: Duration,
    ) -> Result<Checkout, ConnectError> {
        let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(r) => r?,
            Err(_) => return Err(ConnectError::Timeout(connect_timeout)),
        };
        let _ = tcp.set_nodelay(true);
        debug!(%addr, ?proto, "upstream connected");
        match proto {
            UpstreamProtocol::Http1 => {
                let (tcp, probe) = with_probe(tcp)?;
                Ok(Checkout {
                    conn: Conn::H1(H1Conn::new(Io::Tcp(tcp), probe)),
                    reused: false,
                })
            }
            UpstreamProtocol::Https => {
                let (tcp, probe) = with_probe(tcp)?;
                let upstream = tls.ok_or(ConnectError::NoTlsConfig)?;
                let handshake = upstream
                    .connector
                    .connect(upstream.server_name.clone(), tcp);
                let tls = match tokio::time::timeout(connect_timeout, handshake).await {
                    Ok(r) => r.map_err(ConnectError::Tls)?,
                    Err(_) => return Err(ConnectError::Timeout(connect_timeout)),
                };
                Ok(Checkout {
                    conn: Conn::H1(H1Conn::new(Io::Tls(Box::new(tls)), probe)),
                    reused: false,
                })
            }
            UpstreamProtocol::H2c => {
                let mut builder = http2::Builder::new(TokioExecutor::new());
                builder
                    .timer(TokioTimer::new())
                    .keep_alive_interval(Duration::from_secs(30));
                let (sender, conn) = builder.handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        debug!(%addr, error = %e, "h2c upstream connection ended");
                    }
                });
                if let Ok(mut m) = self.h2.lock() {
                    m.insert(addr, sender.clone());
                }
                Ok(Checkout {
                    conn: Conn::H2(sender),
                    reused: false,
                })
            }
        }
    }
}

/// The stream and a duplicate of its socket, which shares its non-blocking mode.
fn with_probe(tcp: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std = tcp.into_std()?;
    let probe = std.try_clone()?;
    Ok((TcpStream::from_std(std)?, probe))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use anyhow::{Context as _, Result};
    use http::Request;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::upstream::body::{Upstream, UpstreamBody};

    /// A backend on 127.0.0.1 that answers every request with `ok`, keeps the connection
    /// open, or closes it `close_after` the answer. Counts the connections it accepted.
    async fn backend(close_after: Option<Duration>) -> Result<(SocketAddr, Arc<AtomicUsize>)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.clear();
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                        if let Some(after) = close_after {
                            tokio::time::sleep(after).await;
                            return;
                        }
                    }
                });
            }
        });
        Ok((addr, accepted))
    }

    /// Idle connections in the pool (a poisoned lock reads as too many to pass).
    fn idle_count(client: &Client) -> usize {
        client
            .idle
            .lock()
            .map_or(usize::MAX, |m| m.values().map(Vec::len).sum())
    }

    /// One GET through the pool; the body checks the connection in when read to its end.
    /// Returns whether a pooled connection was used.
    async fn get(client: &Client, addr: SocketAddr) -> Result<bool> {
        let checkout = client
            .checkout(addr, UpstreamProtocol::Http1, None, false)
            .await?;
        let Conn::H1(conn) = checkout.conn else {
            anyhow::bail!("not an HTTP/1.1 connection");
        };
        let req = Request::get("/")
            .header(http::header::HOST, "backend")
            .body(())?;
        let resp = tokio::time::timeout(Duration::from_secs(5), conn.send(&req))
            .await
            .context("no answer within 5 s")??;
        let body = UpstreamBody::new(Upstream::Wire(resp.into_body()), |conn| {
            if let Some(conn) = conn {
                client.checkin(addr, UpstreamProtocol::Http1, None, conn);
            }
        });
        let bytes = tokio::time::timeout(Duration::from_secs(5), body.collect())
            .await
            .context("no body within 5 s")?
            .map_err(|e| anyhow::anyhow!(e))?
            .to_bytes();
        assert_eq!(&bytes[..], b"ok");
        Ok(checkout.reused)
    }

    #[tokio::test]
    async fn a_pooled_connection_serves_request_after_request() -> Result<()> {
        let (addr, accepted) = backend(None).await?;
        let client = Client::new(Duration::from_secs(1), Duration::from_secs(60));
        assert!(!get(&client, addr).await?, "the first request connects");
        for _ in 0..5 {
            assert!(
                get(&client, addr).await?,
                "later requests reuse the connection"
            );
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(idle_count(&client), 1);
        Ok(())
    }

    #[tokio::test]
    async fn an_idle_connection_the_backend_closed_is_neither_reused_nor_kept() -> Result<()> {
        let (addr, accepted) = backend(Some(Duration::from_millis(50))).await?;
        let client = Client::new(Duration::from_secs(1), Duration::from_secs(60));
        assert!(!get(&client, addr).await?);
        assert_eq!(
            idle_count(&client),
            1,
            "checked in while the backend kept it open"
        );
        // The backend closes it while it idles, 50 ms after its answer.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while idle_count(&client) != 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.prune();
        }
        assert_eq!(
            idle_count(&client),
            0,
            "the pruner drops a closed idle connection"
        );

        // Checkout sees it too, without the pruner.
        assert!(!get(&client, addr).await?);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(idle_count(&client), 1);
        assert!(
            !get(&client, addr).await?,
            "a closed connection is not handed out"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        Ok(())
    }
}
