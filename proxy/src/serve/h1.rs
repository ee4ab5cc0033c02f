//! The proxy's own HTTP/1.1 server for the common request, in front of hyper's.
//!
//! ```text
//! bytes ─ httparse ─ a whole HTTP/1.1 head, no body, no upgrade, nothing to negotiate?
//!                      ├ yes ─ the proxy ─ the answer's head and body written here; next
//!                      └ no  ─ hyper serves the connection from here on, from the first
//!                              byte of that request (the bytes read so far replayed)
//! ```
//!
//! hyper's server spent about 2,000 instructions per request around the proxy's own work:
//! its dispatcher's turns, the request body channel, its buffered writer, two reads of the
//! clock. The upstream side had the same cost taken out before (`upstream::wire`).
//!
//! What this takes is narrow on purpose. A head with `Content-Length` or
//! `Transfer-Encoding`, `Upgrade`, `Expect` or `TE`, a `CONNECT`, HTTP/1.0, an h2c preface,
//! and every head httparse, `http::Method`, `http::Uri` or `http::HeaderName` refuses goes
//! to hyper untouched, which answers or refuses it exactly as before (400, 414, 431, bodies,
//! 100-continue, tunnels). So how a request's body is framed, what request smuggling turns
//! on, is still decided in one place; here there is no body to frame.
//!
//! The answer's framing is decided from its body alone: the length it knows, else the
//! `Content-Length` it carries (enforced: a body that runs short or long ends the
//! connection), else chunked. A body that fails midway ends the connection too, as hyper
//! did, so a client never takes a cut answer for a whole one. While a request is served
//! the client is read from: a pipelined request is kept for later, and its going away
//! drops the request (the upstream exchange with it), as hyper did.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::server::{MAX_HEADER_BYTES, MAX_HEADERS};
use crate::http::body::Body;
use crate::http::spans::Spans;

/// The longest head taken here: hyper's read buffer limit, so a longer one goes to hyper,
/// which refuses it (431) as before.
const MAX_HEAD: usize = MAX_HEADER_BYTES / 2;
/// The read buffer to start with (hyper's).
const READ_SPACE: usize = 8 * 1024;
/// hyper refuses a longer request target (414).
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;
/// An answer's field map is kept for the next request's fields up to this room.
const SPARE_FIELDS: usize = 64;
/// Answer bytes gathered before they are written: head and body in one write when small.
const WRITE_GATHER: usize = 16 * 1024;

/// How a connection left this server.
pub enum Ended<T> {
    /// Closed: by the client, after `Connection: close`, or gracefully.
    Closed,
    /// hyper serves it from here: `T` with these bytes (read, not served) first.
    HandOff(T, Bytes),
}

/// Serves the requests on `io` that this server takes, with `handle`, until the
/// connection ends or a request needs hyper. `closing` set (a graceful shutdown) ends it
/// between requests, and makes the answer in flight the last.
pub async fn serve<T, H, F>(mut io: T, handle: &H, closing: &AtomicBool) -> io::Result<Ended<T>>
where
    T: AsyncRead + AsyncWrite + Unpin,
    H: Fn(Request<Option<Incoming>>) -> F,
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    let mut buf = BytesMut::with_capacity(READ_SPACE);
    let mut out: Vec<u8> = Vec::new();
    // The last answer's field map, emptied: the next request's fields go into it (as
    // hyper does), one map allocated per request instead of two.
    let mut spare = HeaderMap::new();
    loop {
        // A whole head, or the reason this server does not take it.
        let (req, client_close) = loop {
            if !buf.is_empty() {
                match parse(&mut buf, &mut spare) {
                    Head::Request(req, close) => break (req, close),
                    Head::Partial if buf.len() < MAX_HEAD => {}
                    Head::Partial | Head::NotOurs => {
                        return Ok(Ended::HandOff(io, buf.freeze()));
                    }
                }
            }
            let more = std::future::poll_fn(|cx| {
                if closing.load(Ordering::Relaxed) {
                    return Poll::Ready(Ok(0));
                }
                poll_fill(&mut io, &mut buf, cx)
            })
            .await?;
            if more == 0 {
                return Ok(Ended::Closed);
            }
        };
        let head_request = req.method() == Method::HEAD;

        // Served, while the client is watched: bytes it sends now are a pipelined request,
        // kept; its end (or a broken read) drops the request.
        let resp = {
            let mut serving = std::pin::pin!(handle(req));
            std::future::poll_fn(|cx| {
                if let Poll::Ready(Ok(resp)) = serving.as_mut().poll(cx) {
                    return Poll::Ready(Some(resp));
                }
                while buf.len() < MAX_HEAD {
                    match poll_fill(&mut io, &mut buf, cx) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(None),
                        Poll::Ready(Ok(_)) => {}
                        Poll::Pending => break,
                    }
                }
                Poll::Pending
            })
            .await
        };
        let Some(resp) = resp else {
            return Ok(Ended::Closed);
        };

        let (parts, body) = resp.into_parts();
        let close = client_close || closing.load(Ordering::Relaxed);
        let (framing, close) = encode_head(&parts, head_request, &body, close, &mut out);
        if parts.headers.capacity() <= SPARE_FIELDS {
            spare = parts.headers;
            spare.clear();
        }
        write_body(&mut io, body, framing, &mut out).await?;
        if close {
            let _ = io.shutdown().await;
            return Ok(Ended::Closed);
        }
    }
}

/// Reads what is there into `buf`'s spare room.
fn poll_fill<T: AsyncRead + Unpin>(
    io: &mut T,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_SPACE / 2 {
        buf.reserve(READ_SPACE);
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
}

#[allow(clippy::large_enum_variant)] // returned once per request, into its future
enum Head {
    Request(Request<Option<Incoming>>, bool),
    Partial,
    NotOurs,
}

/// Takes the request head at the start of `buf` when this server serves it (and says
/// whether the client asked to close); leaves `buf` as it was otherwise. The fields go
/// into `spare`'s room.
fn parse(buf: &mut BytesMut, spare: &mut HeaderMap) -> Head {
    let mut fields: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS] =
        [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Complete(_)) | Err(_) => return Head::NotOurs,
        Ok(httparse::Status::Partial) => return Head::Partial,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Head::NotOurs;
    };
    if target.len() > MAX_URI_LEN {
        return Head::NotOurs;
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Head::NotOurs;
    };
    if method == Method::CONNECT {
        return Head::NotOurs;
    }
    // Where the target and each field sit in the head, to share the head's bytes with them.
    let base = buf.as_ptr() as usize;
    let target_at = target.as_ptr() as usize - base;
    let target_span = (target_at, target_at + target.len());
    let count = req.headers.len();
    let mut close = false;
    if !req.headers.iter().all(|h| ours(h, &mut close)) {
        return Head::NotOurs;
    }
    let spans = Spans::of(buf.as_ptr(), req.headers);
    let head = buf.split_to(len).freeze();
    let built = (|| {
        let uri = Uri::from_maybe_shared(head.slice(target_span.0..target_span.1)).ok()?;
        let mut headers = std::mem::take(spare);
        headers.reserve(count);
        for &(ns, ne, vs, ve) in spans.as_slice() {
            let name = HeaderName::from_bytes(&head[ns..ne]).ok()?;
            let value = HeaderValue::from_maybe_shared(head.slice(vs..ve)).ok()?;
            headers.append(name, value);
        }
        let mut req = Request::new(None);
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = headers;
        Some(req)
    })();
    match built {
        Some(req) => Head::Request(req, close),
        None => {
            // Put back as it came, for hyper to refuse.
            let mut whole = BytesMut::with_capacity(head.len() + buf.len());
            whole.extend_from_slice(&head);
            whole.extend_from_slice(buf);
            *buf = whole;
            Head::NotOurs
        }
    }
}

/// Whether a request field leaves the request to this server, noting `Connection: close`.
/// What frames a body (`Content-Length`, `Transfer-Encoding`, even `Content-Length: 0`),
/// asks for a protocol switch (`Upgrade`), for an interim answer (`Expect`) or for
/// trailers (`TE`) is hyper's.
fn ours(h: &httparse::Header<'_>, close: &mut bool) -> bool {
    let name = h.name.as_bytes();
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    match name.len() {
        2 => !is("te"),
        6 => !is("expect"),
        7 => !is("upgrade"),
        10 => {
            if is("connection") && has_token(h.value, b"close") {
                *close = true;
            }
            true
        }
        14 => !is("content-length"),
        17 => !is("transfer-encoding"),
        _ => true,
    }
}

/// Whether a comma-separated field value lists `token` (any case).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// How an answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// None is sent (HEAD, 204, 304).
    Bodiless,
    Length(u64),
    Chunked,
}

/// Writes the status line and fields into `out`, the framing chosen from the body, and
/// says whether this is the connection's last answer.
fn encode_head(
    parts: &http::response::Parts,
    head_request: bool,
    body: &Body,
    mut close: bool,
    out: &mut Vec<u8>,
) -> (Framing, bool) {
    let mut status = parts.status;
    let mut headers = &parts.headers;
    let empty = HeaderMap::new();
    // The proxy answers no request taken here with an interim status (a 101 needs an
    // upgrade, which is hyper's); one would be a bug: a 500 then, as hyper did.
    if status.is_informational() {
        status = StatusCode::INTERNAL_SERVER_ERROR;
        headers = &empty;
        close = true;
    }
    out.reserve(64 + headers.len() * 32);
    let reason = parts.extensions.get::<hyper::ext::ReasonPhrase>();
    if status == StatusCode::OK && reason.is_none() {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        match reason {
            Some(r) => out.extend_from_slice(r.as_bytes()),
            None => out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes()),
        }
        out.extend_from_slice(b"\r\n");
    }
    let mut declared: Option<u64> = None;
    let mut conflicting = false;
    let mut dated = false;
    for (name, value) in headers {
        match *name {
            // The framing is written below, from the body.
            header::CONTENT_LENGTH => {
                match content_length(value) {
                    Some(n) if declared.is_none_or(|d| d == n) => declared = Some(n),
                    _ => conflicting = true,
                }
                continue;
            }
            // Trailers are not sent; `Connection` is this hop's, written below.
            header::TRANSFER_ENCODING | header::TRAILER => continue,
            header::CONNECTION => {
                close |= has_token(value.as_bytes(), b"close");
                continue;
            }
            header::DATE => dated = true,
            _ => {}
        }
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    let declared = declared.filter(|_| !conflicting);
    let exact = body.size_hint().exact();
    let no_length = status == StatusCode::NO_CONTENT;
    let framing = if head_request || no_length || status == StatusCode::NOT_MODIFIED {
        // No body; a HEAD's (or 304's) length is the one the GET would have.
        if !no_length && let Some(n) = declared.or(exact.filter(|n| *n > 0)) {
            length_field(out, n);
        }
        Framing::Bodiless
    } else {
        match exact.or(declared) {
            Some(n) => {
                length_field(out, n);
                Framing::Length(n)
            }
            None => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Framing::Chunked
            }
        }
    };
    if !dated {
        out.extend_from_slice(b"date: ");
        crate::clock::http_date(out);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (framing, close)
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn length_field(out: &mut Vec<u8>, n: u64) {
    field(
        out,
        b"content-length",
        itoa::Buffer::new().format(n).as_bytes(),
    );
}

/// A `Content-Length` value: digits only.
fn content_length(value: &HeaderValue) -> Option<u64> {
    let v = value.as_bytes();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Writes `out` (the head) and the body as `framing` says. Frames that are ready go out
/// together; what is gathered is written whenever the body has to be waited for.
async fn write_body<T: AsyncWrite + Unpin>(
    io: &mut T,
    mut body: Body,
    framing: Framing,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let mut left = match framing {
        Framing::Bodiless => {
            drop(body);
            return flush(io, out).await;
        }
        Framing::Length(n) => Some(n),
        Framing::Chunked => None,
    };
    loop {
        let frame = match body.frame().now_or_never() {
            Some(frame) => frame,
            None => {
                flush(io, out).await?;
                body.frame().await
            }
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => return Err(io::Error::other(e)),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                // Empty, or trailers: nothing is sent.
                _ => continue,
            },
        };
        match left.as_mut() {
            Some(left) => {
                *left = left
                    .checked_sub(data.len() as u64)
                    .ok_or_else(|| io::Error::other("answer body longer than its length"))?;
            }
            None => chunk_size(out, data.len()),
        }
        if out.len() + data.len() <= WRITE_GATHER {
            out.extend_from_slice(&data);
        } else {
            io.write_all(out).await?;
            out.clear();
            io.write_all(&data).await?;
        }
        if left.is_none() {
            out.extend_from_slice(b"\r\n");
        }
    }
    match left {
        Some(0) => {}
        Some(_) => return Err(io::Error::other("answer body shorter than its length")),
        None => out.extend_from_slice(b"0\r\n\r\n"),
    }
    flush(io, out).await
}

/// A chunk's size line: hex digits and CRLF.
fn chunk_size(out: &mut Vec<u8>, len: usize) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = len;
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

async fn flush<T: AsyncWrite + Unpin>(io: &mut T, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    io.flush().await
}

/// A stream that yields `prefix` before its own bytes: how hyper gets a connection with
/// what this server read of it.
pub struct Prefixed<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Prefixed<T> {
    pub fn new(prefix: Bytes, inner: T) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let taken = self.prefix.split_to(n);
            buf.put_slice(&taken);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::time::Duration;

    use http_body_util::{Full, StreamBody};
    use tokio::io::{AsyncReadExt, DuplexStream};

    use super::*;

    type Seen = Arc<Mutex<Vec<String>>>;

    /// This server on one end of a pipe. Each request is answered by `answer` (given its
    /// method and target); `seen` lists them.
    fn served(
        answer: fn(&Method, &str) -> Response<Body>,
    ) -> (
        DuplexStream,
        Seen,
        Arc<AtomicBool>,
        tokio::task::JoinHandle<io::Result<Ended<DuplexStream>>>,
    ) {
        let (client, server) = tokio::io::duplex(256 * 1024);
        let seen: Seen = Arc::default();
        let closing = Arc::new(AtomicBool::new(false));
        let (s, c) = (seen.clone(), closing.clone());
        let task = tokio::spawn(async move {
            let handle = move |req: Request<Option<Incoming>>| {
                let target = req.uri().to_string();
                s.lock()
                    .expect("seen")
                    .push(format!("{} {target}", req.method()));
                let resp = answer(req.method(), &target);
                async move { Ok::<_, Infallible>(resp) }
            };
            serve(server, &handle, &c).await
        });
        (client, seen, closing, task)
    }

    fn text(body: &'static str) -> Response<Body> {
        Response::new(crate::http::body::full(body))
    }

    /// Reads until `needle` has come (or fails after a second).
    async fn read_until(client: &mut DuplexStream, needle: &str) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let read = async {
            while !String::from_utf8_lossy(&got).contains(needle) {
                let n = client.read(&mut buf).await.expect("read");
                assert!(
                    n > 0,
                    "closed before {needle:?}: {:?}",
                    String::from_utf8_lossy(&got)
                );
                got.extend_from_slice(&buf[..n]);
            }
        };
        tokio::time::timeout(Duration::from_secs(1), read)
            .await
            .expect("in time");
        String::from_utf8(got).expect("utf-8")
    }

    async fn read_to_end(client: &mut DuplexStream) -> String {
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(1), client.read_to_end(&mut got))
            .await
            .expect("in time")
            .expect("read");
        String::from_utf8(got).expect("utf-8")
    }

    #[tokio::test]
    async fn pipelined_requests_are_answered_in_order_on_one_connection() {
        let (mut client, seen, _, task) = served(|_, target| match target {
            "/a" => text("first"),
            _ => text("second"),
        });
        client
            .write_all(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let got = read_until(&mut client, "second").await;
        let first = got.find("first").expect("first");
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(got[..first].contains("content-length: 5\r\n"), "{got}");
        assert!(got[..first].contains("date: "), "{got}");
        assert!(!got.contains("connection: close"), "{got}");
        assert!(
            got[first..].contains("HTTP/1.1 200 OK\r\ncontent-length: 6\r\n"),
            "{got}"
        );
        drop(client);
        assert!(matches!(task.await.expect("task"), Ok(Ended::Closed)));
        assert_eq!(*seen.lock().expect("seen"), ["GET /a", "GET /b?q=1"]);
    }

    /// Every head this server leaves to hyper is handed over as it came, from its first
    /// byte, after the requests before it were answered.
    #[tokio::test]
    async fn what_is_not_taken_goes_to_hyper_byte_for_byte() {
        let leftovers: [&[u8]; 13] = [
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc",
            b"GET / HTTP/1.1\r\nhost: x\r\nContent-Length: 0\r\n\r\n",
            b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            b"GET / HTTP/1.0\r\nhost: x\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET /chat HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: x\r\nte: trailers\r\n\r\n",
            b"CONNECT x:443 HTTP/1.1\r\nhost: x:443\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost x\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nhost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: x\r\n folded: value\r\n\r\n",
        ];
        for leftover in leftovers {
            let (mut client, seen, _, task) = served(|_, _| text("ok"));
            let mut sent = b"GET /first HTTP/1.1\r\nhost: x\r\n\r\n".to_vec();
            sent.extend_from_slice(leftover);
            client.write_all(&sent).await.expect("write");
            let shown = String::from_utf8_lossy(leftover).into_owned();
            match task.await.expect("task") {
                Ok(Ended::HandOff(_, read)) => assert_eq!(&read[..], leftover, "{shown}"),
                Ok(Ended::Closed) => panic!("closed at {shown}"),
                Err(e) => panic!("{e} at {shown}"),
            }
            assert_eq!(*seen.lock().expect("seen"), ["GET /first"], "{shown}");
            let got = read_until(&mut client, "ok").await;
            assert_eq!(got.matches("HTTP/1.1").count(), 1, "{shown}: {got}");
        }
    }

    /// A head longer than hyper would take is hyper's to refuse (431), not answered here.
    #[tokio::test]
    async fn a_head_past_the_limit_goes_to_hyper() {
        let (mut client, seen, _, task) = served(|_, _| text("ok"));
        let mut head = b"GET / HTTP/1.1\r\nhost: x\r\nx-big: ".to_vec();
        head.resize(MAX_HEAD + 100, b'a');
        client.write_all(&head).await.expect("write");
        match task.await.expect("task") {
            Ok(Ended::HandOff(_, read)) => {
                assert!(read.len() >= MAX_HEAD && head.starts_with(&read))
            }
            _ => panic!("not handed off"),
        }
        assert!(seen.lock().expect("seen").is_empty());
    }

    #[tokio::test]
    async fn connection_close_makes_the_answer_the_last() {
        let (mut client, _, _, task) = served(|_, _| text("bye"));
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nConnection: keep-alive, Close\r\n\r\nGET /never HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let got = read_to_end(&mut client).await;
        assert!(
            got.contains("connection: close\r\n") && got.ends_with("bye"),
            "{got}"
        );
        assert_eq!(got.matches("HTTP/1.1").count(), 1, "{got}");
        assert!(matches!(task.await.expect("task"), Ok(Ended::Closed)));
    }

    /// HEAD keeps the length the GET would have and sends no body; 204 has no length; a
    /// body of unknown length is chunked; `Connection: close` from the answer ends the
    /// connection after it.
    #[tokio::test]
    async fn the_framing_comes_from_the_answer_and_its_body() {
        let (mut client, _, _, task) = served(|method, target| {
            let mut resp = match target {
                "/stream" => {
                    let frames = ["ab", "", "cde"].map(|d| {
                        Ok::<_, crate::http::body::BoxError>(http_body::Frame::data(
                            Bytes::from_static(d.as_bytes()),
                        ))
                    });
                    Response::new(StreamBody::new(futures::stream::iter(frames)).boxed_unsync())
                }
                "/none" => {
                    let mut r = text("");
                    *r.status_mut() = StatusCode::NO_CONTENT;
                    r
                }
                "/last" => {
                    let mut r = text("end");
                    r.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    r
                }
                _ => text(""),
            };
            if method == Method::HEAD {
                resp.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from_static("42"));
                resp.headers_mut().insert(
                    header::DATE,
                    HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
                );
            }
            resp
        });
        client
            .write_all(
                b"HEAD /h HTTP/1.1\r\nhost: x\r\n\r\nGET /stream HTTP/1.1\r\nhost: x\r\n\r\nGET /none HTTP/1.1\r\nhost: x\r\n\r\nGET /last HTTP/1.1\r\nhost: x\r\n\r\n",
            )
            .await
            .expect("write");
        let got = read_to_end(&mut client).await;
        let answers: Vec<&str> = got.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(answers.len(), 4, "{got}");
        assert_eq!(
            answers[0],
            "200 OK\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\ncontent-length: 42\r\n\r\n"
        );
        assert!(
            answers[1].starts_with("200 OK\r\ntransfer-encoding: chunked\r\ndate: "),
            "{got}"
        );
        assert!(
            answers[1].ends_with("\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"),
            "{got}"
        );
        assert!(answers[2].starts_with("204 No Content\r\ndate: "), "{got}");
        assert!(!answers[2].contains("content-length"), "{got}");
        assert!(answers[3].contains("content-length: 3\r\n"), "{got}");
        assert!(
            answers[3].ends_with("connection: close\r\n\r\nend"),
            "{got}"
        );
        assert!(matches!(task.await.expect("task"), Ok(Ended::Closed)));
    }

    /// A body shorter than the length its answer declared: the connection ends, so the
    /// client cannot take what came for the whole answer (nor the next answer for its rest).
    #[tokio::test]
    async fn a_body_short_of_its_length_ends_the_connection() {
        let (mut client, _, _, task) = served(|_, _| {
            let body = StreamBody::new(futures::stream::iter([
                Ok::<_, crate::http::body::BoxError>(http_body::Frame::data(Bytes::from_static(
                    b"abc",
                ))),
            ]));
            let mut r = Response::new(body.boxed_unsync());
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
            r
        });
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        // Nothing had been written yet: nothing is.
        assert_eq!(read_to_end(&mut client).await, "");
        assert!(task.await.expect("task").is_err());
    }

    /// The client going away while its request is served drops the request.
    #[tokio::test]
    async fn a_client_gone_mid_request_drops_it() {
        struct Flag(Arc<AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let (mut client, server) = tokio::io::duplex(4096);
        let d = dropped.clone();
        let task = tokio::spawn(async move {
            let handle = move |_req: Request<Option<Incoming>>| {
                let flag = Flag(d.clone());
                async move {
                    let _flag = flag;
                    std::future::pending::<()>().await;
                    Ok::<_, Infallible>(text("never"))
                }
            };
            serve(server, &handle, &AtomicBool::new(false)).await
        });
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!dropped.load(Ordering::SeqCst));
        drop(client);
        let ended = tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("in time");
        assert!(matches!(ended.expect("task"), Ok(Ended::Closed)));
        assert!(dropped.load(Ordering::SeqCst));
    }

    /// A graceful close makes the answer in flight the last, and ends the connection
    /// there.
    #[tokio::test]
    async fn closing_makes_the_answer_in_flight_the_last() {
        let closing = Arc::new(AtomicBool::new(false));
        let (mut client, server) = tokio::io::duplex(4096);
        let c = closing.clone();
        let task = tokio::spawn(async move {
            let handle = |_req: Request<Option<Incoming>>| async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, Infallible>(text("late"))
            };
            serve(server, &handle, &c).await
        });
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\nGET /next HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_millis(20)).await;
        closing.store(true, Ordering::SeqCst);
        let got = read_to_end(&mut client).await;
        assert!(got.ends_with("connection: close\r\n\r\nlate"), "{got}");
        assert_eq!(got.matches("HTTP/1.1").count(), 1, "{got}");
        assert!(matches!(task.await.expect("task"), Ok(Ended::Closed)));
    }

    #[test]
    fn chunk_sizes_are_hex() {
        for (n, s) in [
            (0, "0\r\n"),
            (1, "1\r\n"),
            (255, "ff\r\n"),
            (4096, "1000\r\n"),
        ] {
            let mut out = Vec::new();
            chunk_size(&mut out, n);
            assert_eq!(out, s.as_bytes());
        }
    }

    #[test]
    fn full_bodies_know_their_length() {
        let body: Body = Full::new(Bytes::from_static(b"abc"))
            .map_err(|never| match never {})
            .boxed_unsync();
        assert_eq!(body.size_hint().exact(), Some(3));
    }
}
