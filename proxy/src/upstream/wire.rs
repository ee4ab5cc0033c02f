//! HTTP/1.1 to a backend without hyper's client, for the requests that make up most traffic:
//! no body and no upgrade. The request's task writes the head and reads the answer itself;
//! there is no connection task, no channel and no oneshot per request, and the response
//! body is read from the socket by whoever polls it.
//!
//! ```text
//! H1Conn::send(head)   write the request head ─ read until the response head is whole
//!                      (1xx skipped) ─ judge its framing ─ Response<WireBody>
//! WireBody             Content-Length / chunked / until close, decoded from the socket;
//!                      at a clean end, the connection back (only if reusable)
//! H1Conn::into_hyper   anything else (a request body, an upgrade): one exchange on
//!                      hyper's client, and the connection is not pooled after it
//! ```
//!
//! Framing is judged as a proxy that pools connections must judge it, since a response
//! read wrong leaves bytes that the next client would get as its answer:
//! - `Transfer-Encoding` with `Content-Length`, differing or malformed lengths, `chunked`
//!   anywhere but last, a 101 nobody asked for, a head over 64 KiB or 100 fields, a bad
//!   chunk line: the answer is refused (a 502 for the client) and the connection closed;
//! - no length (read until close), HTTP/1.0 or `Connection: close`: never pooled;
//! - bytes past the end of the response, or arriving while idle: never pooled (the pool's
//!   peek sees the latter).

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use crate::http::spans::Spans;
use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::{Frame, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tracing::debug;

use crate::http::body::{BoxError, RequestBody};

/// Header fields in a response head (hyper's default too).
const MAX_HEADERS: usize = 100;
/// A response head, or a chunked body's trailer section, larger than this is refused.
const MAX_HEAD: usize = 64 * 1024;
/// A chunk-size line (with its extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;
/// Interim (1xx) responses skipped before the final one.
const MAX_INTERIM: usize = 16;
/// Read in steps of at least this much free buffer.
const READ_SPACE: usize = 8 * 1024;

/// A backend's socket, cleartext or TLS.
pub enum Io {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Tcp(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why an exchange failed before a response head was whole.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The request head could not be written: the backend had closed the connection.
    #[error("writing the request: {0}")]
    NotSent(io::Error),
    /// Written, then the connection closed (or reset) before a byte of an answer.
    #[error("the connection closed before any answer: {0}")]
    NoResponse(io::Error),
    #[error("reading the response: {0}")]
    Io(io::Error),
    /// An answer no proxy may pass on (see the module's list).
    #[error("invalid response: {0}")]
    Invalid(&'static str),
}

/// A body that failed mid-way: the client's response is cut off, not ended cleanly.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("response body: {0}")]
    Io(#[from] io::Error),
    #[error("response body: the connection closed before its end")]
    Truncated,
    #[error("response body: {0}")]
    Invalid(&'static str),
}

/// An HTTP/1.1 connection to a backend, idle between exchanges, with a duplicate of its
/// socket's file descriptor for the pool to peek at.
pub struct H1Conn {
    io: Io,
    probe: std::net::TcpStream,
    /// The read buffer; empty whenever the connection is idle.
    buf: BytesMut,
}

impl H1Conn {
    pub fn new(io: Io, probe: std::net::TcpStream) -> Self {
        H1Conn {
            io,
            probe,
            buf: BytesMut::new(),
        }
    }

    /// Data or EOF waiting on a connection that owes nobody a response: an answer to a
    /// request the backend found in an earlier body would be read as the next client's.
    /// Over TLS, rustls may already hold such bytes, decrypted, out of the socket's sight
    /// (in the record that ended the last response): one read that must not wait asks it.
    pub fn has_unsolicited_bytes(&mut self) -> bool {
        if !self.buf.is_empty()
            || !matches!(
                self.probe.peek(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            )
        {
            return true;
        }
        let Io::Tls(tls) = &mut self.io else {
            return false;
        };
        let mut byte = [MaybeUninit::uninit(); 1];
        let mut rb = ReadBuf::uninit(&mut byte);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        !Pin::new(tls.as_mut())
            .poll_read(&mut cx, &mut rb)
            .is_pending()
    }

    /// Sends a request that has no body (its head only: the method, the target's path and
    /// query, the fields as they are) and reads the answer's head.
    pub async fn send<B>(mut self, req: &Request<B>) -> Result<Response<WireBody>, SendError> {
        self.encode(req, std::iter::empty());
        self.send_encoded(req.method() == Method::HEAD).await
    }

    /// Writes the head of a request that has no body into the connection's buffer, with
    /// `extra` fields after the request's own (the proxy's forwarding fields, which the
    /// request's map does not hold), for [`send_encoded`](Self::send_encoded). Apart from
    /// [`send`](Self::send) so that the fields' iterator is not kept in the sending future.
    pub fn encode<'a, B>(
        &mut self,
        req: &Request<B>,
        extra: impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)>,
    ) {
        self.buf.clear();
        encode_head(req, extra, &mut self.buf);
    }

    /// Sends the head [`encode`](Self::encode) wrote and reads the answer's head;
    /// `head_request` if it was a HEAD request's.
    pub async fn send_encoded(
        mut self,
        head_request: bool,
    ) -> Result<Response<WireBody>, SendError> {
        if let Err(e) = self.io.write_all(&self.buf).await {
            return Err(SendError::NotSent(e));
        }
        if let Err(e) = self.io.flush().await {
            return Err(SendError::NotSent(e));
        }
        self.buf.clear();
        let mut interim = 0;
        let mut answered = false;
        loop {
            if !self.buf.is_empty() {
                match parse_head(&mut self.buf, head_request)? {
                    Some(Parsed::Interim) => {
                        interim += 1;
                        if interim > MAX_INTERIM {
                            return Err(SendError::Invalid("too many interim responses"));
                        }
                        continue;
                    }
                    Some(Parsed::Final(parts, framing)) => {
                        let body = WireBody::new(self, framing);
                        return Ok(Response::from_parts(parts, body));
                    }
                    None if self.buf.len() > MAX_HEAD => {
                        return Err(SendError::Invalid("response head too large"));
                    }
                    None => {}
                }
            }
            let read = std::future::poll_fn(|cx| poll_fill(&mut self.io, &mut self.buf, cx)).await;
            match read {
                Ok(0) if !answered => {
                    return Err(SendError::NoResponse(io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(0) => return Err(SendError::Invalid("connection closed in the response head")),
                Ok(_) => answered = true,
                Err(e) if !answered => return Err(SendError::NoResponse(e)),
                Err(e) => return Err(SendError::Io(e)),
            }
        }
    }

    /// One exchange on hyper's client, for a request with a body or an upgrade: hyper
    /// writes the body while it reads the answer, and hands over the socket on a 101. The
    /// connection serves nobody after it.
    pub async fn into_hyper(self) -> Result<http1::SendRequest<RequestBody>, hyper::Error> {
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(self.io))
            .await?;
        tokio::spawn(async move {
            // with_upgrades: a 101 response hands the connection to the WebSocket tunnel.
            if let Err(e) = conn.with_upgrades().await {
                debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

/// Reads what the socket has into the spare room of `buf`; `Ok(0)` at EOF.
fn poll_fill(io: &mut Io, buf: &mut BytesMut, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_SPACE / 2 {
        buf.reserve(READ_SPACE);
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
}

/// The request line and fields. The fields are the proxy's, already validated by `http`'s
/// types (no CR, LF or NUL can be in a name or value); `Transfer-Encoding` is left out, as
/// there is no body. `extra` fields follow the request's own.
fn encode_head<'a, B>(
    req: &Request<B>,
    extra: impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)>,
    out: &mut BytesMut,
) {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    // An estimate, as hyper's: `BytesMut` grows if the fields are longer.
    out.reserve(32 + target.len() + (req.headers().len() + 4) * 32);
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut field = |name: &HeaderName, value: &HeaderValue| {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    for (name, value) in req.headers() {
        if name != TRANSFER_ENCODING {
            field(name, value);
        }
    }
    for (name, value) in extra {
        field(name, value);
    }
    out.extend_from_slice(b"\r\n");
}

enum Parsed {
    /// A 1xx answer, consumed; the final one follows.
    Interim,
    Final(http::response::Parts, Framing),
}

/// How the body of a response ends, and whether the connection may serve again after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Framing {
    body: BodyKind,
    reusable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Length(u64),
    Chunked,
    /// Until the backend closes the connection.
    Close,
}

/// Parses a response head at the start of `buf` and takes it out; `None` when it is not
/// whole yet.
fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<Parsed>, SendError> {
    let mut fields: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS] =
        [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        buf,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => {
            return Err(SendError::Invalid("response head too large"));
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(SendError::Invalid("more than 100 header fields"));
        }
        Err(_) => return Err(SendError::Invalid("malformed response head")),
    };
    let code = res.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| SendError::Invalid("status code out of range"))?;
    if status.is_informational() {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(SendError::Invalid(
                "101 to a request that asked for no upgrade",
            ));
        }
        let _ = buf.split_to(len);
        return Ok(Some(Parsed::Interim));
    }
    let http11 = res.version == Some(1);
    let reason = res.reason.unwrap_or("");
    let custom_reason = !reason.is_empty() && Some(reason) != status.canonical_reason();
    // Where each field sits in the head, to share the head's bytes with the values.
    let base = buf.as_ptr() as usize;
    let count = res.headers.len();
    let spans = Spans::of(buf.as_ptr(), res.headers);
    let reason_span = custom_reason.then(|| {
        let r = reason.as_ptr() as usize - base;
        (r, r + reason.len())
    });
    let head = buf.split_to(len).freeze();

    let mut headers = HeaderMap::with_capacity(count);
    let mut seen = Seen::default();
    for &(ns, ne, vs, ve) in spans.as_slice() {
        let name = HeaderName::from_bytes(&head[ns..ne])
            .map_err(|_| SendError::Invalid("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(vs..ve))
            .map_err(|_| SendError::Invalid("invalid header value"))?;
        seen.note(&name);
        headers.append(name, value);
    }
    let framing = framing(status, http11, head_request, &headers, seen)?;
    let mut parts = Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = if http11 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    parts.headers = headers;
    if let Some((rs, re)) = reason_span
        && let Ok(r) = hyper::ext::ReasonPhrase::try_from(head.slice(rs..re))
    {
        parts.extensions.insert(r);
    }
    Ok(Some(Parsed::Final(parts, framing)))
}

/// Which of the fields that decide framing a head has, noted as its fields are read, so
/// that a head without them is not looked up for them again.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    connection: bool,
    content_length: bool,
    transfer_encoding: bool,
}

impl Seen {
    fn note(&mut self, name: &HeaderName) {
        if name == CONNECTION {
            self.connection = true;
        } else if name == CONTENT_LENGTH {
            self.content_length = true;
        } else if name == TRANSFER_ENCODING {
            self.transfer_encoding = true;
        }
    }
}

/// RFC 9112 §6.3, strictly: what would let two readers of this answer disagree on where
/// it ends is refused.
fn framing(
    status: StatusCode,
    http11: bool,
    head_request: bool,
    headers: &HeaderMap,
    seen: Seen,
) -> Result<Framing, SendError> {
    let close = !http11
        || seen.connection
            && headers
                .get_all(CONNECTION)
                .iter()
                .flat_map(|v| v.as_bytes().split(|&b| b == b','))
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
    let (has_te, has_cl) = (seen.transfer_encoding, seen.content_length);
    if has_te && has_cl {
        return Err(SendError::Invalid(
            "both Transfer-Encoding and Content-Length",
        ));
    }
    // Checked even where there is no body, so that a malformed field never passes on.
    let length = if has_cl {
        Some(content_length(headers)?)
    } else {
        None
    };
    if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Framing {
            body: BodyKind::Length(0),
            reusable: !close,
        });
    }
    if has_te {
        if !http11 {
            return Err(SendError::Invalid(
                "Transfer-Encoding in an HTTP/1.0 response",
            ));
        }
        let codings: Vec<&[u8]> = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|t| !t.is_empty())
            .collect();
        let chunked = |t: &&[u8]| t.eq_ignore_ascii_case(b"chunked");
        let Some((last, before)) = codings.split_last() else {
            return Err(SendError::Invalid("empty Transfer-Encoding"));
        };
        if before.iter().any(chunked) {
            return Err(SendError::Invalid(
                "chunked is not the last transfer coding",
            ));
        }
        return Ok(if chunked(last) {
            Framing {
                body: BodyKind::Chunked,
                reusable: !close,
            }
        } else {
            Framing {
                body: BodyKind::Close,
                reusable: false,
            }
        });
    }
    Ok(match length {
        Some(n) => Framing {
            body: BodyKind::Length(n),
            reusable: !close,
        },
        None => Framing {
            body: BodyKind::Close,
            reusable: false,
        },
    })
}

/// Every Content-Length field and list element must be the same decimal number.
fn content_length(headers: &HeaderMap) -> Result<u64, SendError> {
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let digits = part.trim_ascii();
            if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
                return Err(SendError::Invalid("malformed Content-Length"));
            }
            let n = digits
                .iter()
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            match length {
                Some(m) if m != n => return Err(SendError::Invalid("differing Content-Lengths")),
                _ => length = Some(n),
            }
        }
    }
    length.ok_or(SendError::Invalid("malformed Content-Length"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decode {
    /// Bytes still to come.
    Length(u64),
    /// The next chunk-size line.
    ChunkSize,
    /// Bytes left in the current chunk.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
    Close,
    Done,
}

/// A response body read straight from the backend's socket.
pub struct WireBody {
    conn: Option<H1Conn>,
    decode: Decode,
    reusable: bool,
}

impl WireBody {
    fn new(conn: H1Conn, framing: Framing) -> Self {
        let decode = match framing.body {
            BodyKind::Length(0) => Decode::Done,
            BodyKind::Length(n) => Decode::Length(n),
            BodyKind::Chunked => Decode::ChunkSize,
            BodyKind::Close => Decode::Close,
        };
        WireBody {
            conn: Some(conn),
            decode,
            reusable: framing.reusable,
        }
    }

    /// The connection, when the body was read to its end, the framing allowed another
    /// exchange and nothing followed the response.
    pub fn take_reusable(&mut self) -> Option<H1Conn> {
        if self.decode != Decode::Done || !self.reusable {
            return None;
        }
        self.conn.take().filter(|c| c.buf.is_empty())
    }

    fn fail(&mut self, e: BodyError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.decode = Decode::Done;
        self.reusable = false;
        Poll::Ready(Some(Err(Box::new(e))))
    }
}

impl http_body::Body for WireBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let buf = &mut conn.buf;
            // Decode what is buffered; the arms that fall through need more read first.
            match this.decode {
                Decode::Done => return Poll::Ready(None),
                Decode::Length(left) | Decode::ChunkData(left) if !buf.is_empty() => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(n).freeze();
                    let left = left - n as u64;
                    this.decode = match this.decode {
                        Decode::Length(_) if left == 0 => Decode::Done,
                        Decode::Length(_) => Decode::Length(left),
                        _ if left == 0 => Decode::ChunkEnd,
                        _ => Decode::ChunkData(left),
                    };
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Decode::Close if !buf.is_empty() => {
                    let data = buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Decode::ChunkSize => match chunk_size(buf) {
                    Ok(Some(0)) => {
                        this.decode = Decode::Trailers;
                        continue;
                    }
                    Ok(Some(n)) => {
                        this.decode = Decode::ChunkData(n);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => return this.fail(BodyError::Invalid(e)),
                },
                Decode::ChunkEnd if buf.len() >= 2 => {
                    if &buf[..2] != b"\r\n" {
                        return this.fail(BodyError::Invalid("no CRLF after chunk data"));
                    }
                    let _ = buf.split_to(2);
                    this.decode = Decode::ChunkSize;
                    continue;
                }
                Decode::Trailers => match trailers(buf) {
                    Ok(Some(fields)) => {
                        this.decode = Decode::Done;
                        match fields {
                            Some(map) => return Poll::Ready(Some(Ok(Frame::trailers(map)))),
                            None => return Poll::Ready(None),
                        }
                    }
                    Ok(None) => {}
                    Err(e) => return this.fail(BodyError::Invalid(e)),
                },
                _ => {}
            }
            match ready!(poll_fill(&mut conn.io, &mut conn.buf, cx)) {
                Ok(0) if this.decode == Decode::Close => {
                    this.decode = Decode::Done;
                    this.reusable = false;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(BodyError::Truncated),
                Ok(_) => {}
                Err(e) => return this.fail(BodyError::Io(e)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decode == Decode::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.decode {
            Decode::Done => SizeHint::with_exact(0),
            Decode::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

/// A whole chunk-size line taken from `buf`: `Ok(None)` until its CRLF has arrived.
/// Strict: hex digits (at most 16), optional whitespace and `;`-extensions, CRLF.
fn chunk_size(buf: &mut BytesMut) -> Result<Option<u64>, &'static str> {
    let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_CHUNK_LINE {
            Err("chunk-size line too long")
        } else {
            Ok(None)
        };
    };
    if lf > MAX_CHUNK_LINE {
        return Err("chunk-size line too long");
    }
    if lf == 0 || buf[lf - 1] != b'\r' {
        return Err("chunk-size line not ended by CRLF");
    }
    let line = &buf[..lf - 1];
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err("malformed chunk size");
    }
    let rest = &line[digits..];
    let ext = &rest[rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count()..];
    if !(ext.is_empty() || ext[0] == b';')
        || ext.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err("malformed chunk extension");
    }
    let size = line[..digits].iter().fold(0u64, |n, &d| {
        let v = (d as char).to_digit(16).unwrap_or(0);
        (n << 4) | u64::from(v)
    });
    let _ = buf.split_to(lf + 1);
    Ok(Some(size))
}

/// The trailer section after the last chunk, taken from `buf`: `Ok(None)` until it is
/// whole; `Ok(Some(None))` when it is empty.
#[allow(clippy::type_complexity)]
fn trailers(buf: &mut BytesMut) -> Result<Option<Option<HeaderMap>>, &'static str> {
    if buf.starts_with(b"\r\n") {
        let _ = buf.split_to(2);
        return Ok(Some(None));
    }
    if buf.len() < 2 {
        return Ok(None);
    }
    let mut fields = [httparse::EMPTY_HEADER; 32];
    match httparse::parse_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete((len, fields))) => {
            let mut map = HeaderMap::with_capacity(fields.len());
            for f in fields {
                let name = HeaderName::from_bytes(f.name.as_bytes())
                    .map_err(|_| "invalid trailer name")?;
                let value =
                    HeaderValue::from_bytes(f.value).map_err(|_| "invalid trailer value")?;
                map.append(name, value);
            }
            let _ = buf.split_to(len);
            Ok(Some(Some(map)))
        }
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => Err("trailer section too large"),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err("malformed trailer section"),
    }
}

#[cfg(test)]
mod tests;
