//! Each test runs a backend on 127.0.0.1 that writes exact bytes, as a broken or hostile
//! backend would, and checks what `H1Conn::send` and `WireBody` make of them: the status,
//! fields and body that come out, the error, and whether the connection would be pooled.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use http::Request;
use http_body::Body as _;
use http_body_util::{BodyExt, Collected};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::*;

/// Every network wait is bounded by this.
const WAIT: Duration = Duration::from_secs(5);

type Collect = Result<Collected<Bytes>, BoxError>;

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(WAIT, fut)
        .await
        .map_err(|_| anyhow!("{what}: nothing within {WAIT:?}"))
}

/// A backend on 127.0.0.1 that runs `script` on the first connection it accepts.
async fn backend<T, F, Fut>(script: F) -> Result<(SocketAddr, JoinHandle<io::Result<T>>)>
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = io::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        script(stream).await
    });
    Ok((addr, task))
}

/// What the backend's script returned.
async fn joined<T>(task: JoinHandle<io::Result<T>>) -> Result<T> {
    Ok(within("the backend's end", task).await???)
}

/// Reads one request head through its empty line, a byte at a time so as to take
/// nothing past it; empty at EOF.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    Ok(head)
}

/// Keeps the backend's side open until the client closes the connection.
async fn hold<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut sink = [0u8; 1024];
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

/// Answers each request with the next of `answers`, then keeps the connection open
/// until the client closes it. Returns the request heads it read.
async fn answering(
    answers: Vec<Vec<u8>>,
) -> Result<(SocketAddr, JoinHandle<io::Result<Vec<Vec<u8>>>>)> {
    backend(move |mut s| async move {
        let mut heads = Vec::new();
        for answer in answers {
            let head = read_head(&mut s).await?;
            if head.is_empty() {
                break;
            }
            heads.push(head);
            s.write_all(&answer).await?;
        }
        hold(&mut s).await;
        Ok(heads)
    })
    .await
}

/// Answers one request with `answer`, then closes the connection.
async fn answering_then_closing(
    answer: Vec<u8>,
) -> Result<(SocketAddr, JoinHandle<io::Result<()>>)> {
    backend(move |mut s| async move {
        read_head(&mut s).await?;
        s.write_all(&answer).await?;
        s.shutdown().await?;
        Ok(())
    })
    .await
}

/// A connection as the pool makes one: the stream, and a duplicate of its socket.
async fn connect(addr: SocketAddr) -> Result<H1Conn> {
    let tcp = within("connect", TcpStream::connect(addr)).await??;
    tcp.set_nodelay(true)?;
    let std = tcp.into_std()?;
    let probe = std.try_clone()?;
    Ok(H1Conn::new(Io::Tcp(TcpStream::from_std(std)?), probe))
}

fn request(method: Method, target: &str) -> Result<Request<()>> {
    Ok(Request::builder()
        .method(method)
        .uri(target)
        .header(http::header::HOST, "backend")
        .body(())?)
}

fn get(target: &str) -> Result<Request<()>> {
    request(Method::GET, target)
}

async fn send(conn: H1Conn, req: &Request<()>) -> Result<Result<Response<WireBody>, SendError>> {
    within("the response head", conn.send(req)).await
}

/// The body read to its end (or its error), and the connection if it may serve again.
async fn finish(resp: Response<WireBody>) -> Result<(Collect, Option<H1Conn>)> {
    let mut body = resp.into_body();
    let collected = within("the body", BodyExt::collect(&mut body)).await?;
    Ok((collected, body.take_reusable()))
}

fn bytes(body: Collect) -> Result<Bytes> {
    Ok(body.map_err(|e| anyhow!(e))?.to_bytes())
}

fn body_error(body: Collect) -> Result<BodyError> {
    match body {
        Ok(c) => bail!("the body ended cleanly: {:?}", c.to_bytes()),
        Err(e) => match e.downcast::<BodyError>() {
            Ok(e) => Ok(*e),
            Err(e) => bail!("not a BodyError: {e}"),
        },
    }
}

/// One exchange on a new connection.
struct Exchange {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Collect,
    conn: Option<H1Conn>,
}

async fn exchange_on(addr: SocketAddr, req: &Request<()>) -> Result<Exchange> {
    let conn = connect(addr).await?;
    let resp = send(conn, req).await??;
    let (status, version, headers) = (resp.status(), resp.version(), resp.headers().clone());
    let (body, conn) = finish(resp).await?;
    Ok(Exchange {
        status,
        version,
        headers,
        body,
        conn,
    })
}

/// `req` answered with `answer` by a backend that keeps the connection open after it.
async fn exchange(req: &Request<()>, answer: &[u8]) -> Result<Exchange> {
    let (addr, _backend) = answering(vec![answer.to_vec()]).await?;
    exchange_on(addr, req).await
}

/// `req` answered with `answer` by a backend that closes the connection after it.
async fn exchange_closing(req: &Request<()>, answer: &[u8]) -> Result<Exchange> {
    let (addr, _backend) = answering_then_closing(answer.to_vec()).await?;
    exchange_on(addr, req).await
}

/// The error `send` gives when `answer` answers `req`; fails if it gives a response.
async fn send_error(req: &Request<()>, answer: Vec<u8>) -> Result<SendError> {
    let (addr, _backend) = answering(vec![answer]).await?;
    let conn = connect(addr).await?;
    match send(conn, req).await? {
        Ok(resp) => bail!("a {} response, not an error", resp.status()),
        Err(e) => Ok(e),
    }
}

/// Asserts that `answer` to a GET is refused as invalid.
async fn assert_refused(answer: &[u8]) -> Result<()> {
    assert_refused_to(&get("/")?, answer).await
}

async fn assert_refused_to(req: &Request<()>, answer: &[u8]) -> Result<()> {
    let shown = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
    match send_error(req, answer.to_vec())
        .await
        .with_context(|| format!("answer {shown:?}"))?
    {
        SendError::Invalid(_) => Ok(()),
        e => bail!("answer {shown:?}: {e:?}, not SendError::Invalid"),
    }
}

/// Polls `conn.has_unsolicited_bytes()` until it is true (or the wait is over).
async fn sees_unsolicited_bytes(conn: &mut H1Conn) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if conn.has_unsolicited_bytes() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

// 1. Content-Length.

#[tokio::test]
async fn a_content_length_body_is_read_and_the_connection_serves_the_next_request() -> Result<()> {
    let (addr, backend) = answering(vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-n: 1\r\n\r\nfirst".to_vec(),
        b"HTTP/1.1 201 Created\r\nContent-Length: 6\r\nx-n: 2\r\n\r\nsecond".to_vec(),
    ])
    .await?;
    let conn = connect(addr).await?;
    let resp = send(conn, &get("/one")?).await??;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), Version::HTTP_11);
    assert_eq!(resp.headers()["x-n"], "1");
    assert_eq!(resp.headers()[CONTENT_LENGTH], "5");
    assert_eq!(resp.body().size_hint().exact(), Some(5));
    let (body, conn) = finish(resp).await?;
    assert_eq!(bytes(body)?, "first");
    let mut conn = conn.context("not reusable after a whole Content-Length body")?;
    assert!(!conn.has_unsolicited_bytes());

    let resp = send(conn, &get("/two")?).await??;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["x-n"], "2");
    let (body, conn) = finish(resp).await?;
    assert_eq!(bytes(body)?, "second", "the reused connection's own answer");
    let conn = conn.context("not reusable after the second exchange")?;
    drop(conn);

    let heads = joined(backend).await?;
    assert_eq!(heads.len(), 2, "both requests on one connection");
    assert!(heads[0].starts_with(b"GET /one HTTP/1.1\r\n"));
    assert!(heads[1].starts_with(b"GET /two HTTP/1.1\r\n"));
    Ok(())
}

#[tokio::test]
async fn extra_fields_are_sent_after_the_requests_own() -> Result<()> {
    let (addr, backend) = answering(vec![b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()]).await?;
    let mut req = get("/x")?;
    req.headers_mut()
        .insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    let (xff, real) = (
        HeaderName::from_static("x-forwarded-for"),
        HeaderName::from_static("x-real-ip"),
    );
    let ip = HeaderValue::from_static("10.1.2.3");
    let mut conn = connect(addr).await?;
    conn.encode(&req, [(&xff, &ip), (&real, &ip)].into_iter());
    let resp = within("the response head", conn.send_encoded(false)).await??;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    drop(resp);
    let heads = joined(backend).await?;
    assert_eq!(
        String::from_utf8_lossy(&heads[0]),
        "GET /x HTTP/1.1\r\nhost: backend\r\nx-forwarded-for: 10.1.2.3\r\n\
         x-real-ip: 10.1.2.3\r\n\r\n",
        "the map's fields (never Transfer-Encoding, as there is no body), then the extra ones"
    );
    Ok(())
}

#[tokio::test]
async fn equal_content_lengths_are_one_length() -> Result<()> {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\ncontent-length: 005\r\n\r\nhello",
    ] {
        let ex = exchange(&get("/")?, answer).await?;
        assert_eq!(
            bytes(ex.body)?,
            "hello",
            "{:?}",
            String::from_utf8_lossy(answer)
        );
        assert!(ex.conn.is_some(), "{:?}", String::from_utf8_lossy(answer));
    }
    Ok(())
}

#[tokio::test]
async fn a_custom_reason_phrase_and_an_empty_field_value_come_through() -> Result<()> {
    let (addr, _backend) = answering(vec![
        b"HTTP/1.1 200 Fine Thanks\r\nx-empty:\r\nx-b:  v  \r\ncontent-length: 0\r\n\r\n".to_vec(),
    ])
    .await?;
    let conn = connect(addr).await?;
    let resp = send(conn, &get("/")?).await??;
    let reason = resp
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .context("no reason phrase")?;
    assert_eq!(reason.as_bytes(), b"Fine Thanks");
    assert_eq!(resp.headers()["x-empty"], "");
    assert_eq!(resp.headers()["x-b"], "v");
    let (body, conn) = finish(resp).await?;
    assert!(bytes(body)?.is_empty());
    assert!(conn.is_some());
    Ok(())
}

// 2. Chunked.

#[tokio::test]
async fn a_chunked_body_with_extensions_and_trailers_is_decoded() -> Result<()> {
    let (addr, _backend) = answering(vec![
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
          5;name=value;other=\"q s\"\r\nhello\r\n\
          1\r\n \r\n\
          6 ;x\r\nworld!\r\n\
          0\r\n\
          x-checksum: abc\r\nx-other: 1\r\n\r\n"
            .to_vec(),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n\
          A\r\n0123456789\r\n0000000000000002\r\nab\r\n0\r\n\r\n"
            .to_vec(),
    ])
    .await?;
    let conn = connect(addr).await?;
    let resp = send(conn, &get("/")?).await??;
    assert_eq!(resp.status(), StatusCode::OK);
    let (body, conn) = finish(resp).await?;
    let collected = body.map_err(|e| anyhow!(e))?;
    let trailers = collected.trailers().context("no trailers frame")?.clone();
    assert_eq!(trailers["x-checksum"], "abc");
    assert_eq!(trailers["x-other"], "1");
    assert_eq!(collected.to_bytes(), "hello world!");
    let conn = conn.context("not reusable after a whole chunked body")?;

    // Upper-case hex, 16 digits, and no trailers; the last coding is chunked.
    let resp = send(conn, &get("/")?).await??;
    let (body, conn) = finish(resp).await?;
    let collected = body.map_err(|e| anyhow!(e))?;
    assert!(collected.trailers().is_none());
    assert_eq!(collected.to_bytes(), "0123456789ab");
    assert!(conn.is_some(), "not reusable after the second chunked body");
    Ok(())
}

// 3. Refused framing and heads.

#[tokio::test]
async fn transfer_encoding_with_content_length_is_refused() -> Result<()> {
    assert_refused(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        .await?;
    assert_refused(
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\nhello",
    )
    .await?;
    // Also where no body follows: a malformed framing never passes on.
    assert_refused_to(
        &request(Method::HEAD, "/")?,
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    .await?;
    assert_refused(
        b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    .await
}

#[tokio::test]
async fn differing_content_lengths_are_refused() -> Result<()> {
    assert_refused(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!")
        .await?;
    assert_refused(b"HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\nhello!").await?;
    assert_refused(b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\ncontent-length: 6\r\n\r\nhello!")
        .await
}

#[tokio::test]
async fn malformed_content_lengths_are_refused() -> Result<()> {
    for value in [
        "+5",
        "-5",
        "0x5",
        "5 5",
        "5.0",
        "5,",
        ",5",
        "",
        "five",
        "18446744073709551616",
        "99999999999999999999",
    ] {
        let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {value}\r\n\r\nhello");
        assert_refused(answer.as_bytes()).await?;
    }
    // Checked where no body follows too.
    assert_refused_to(
        &request(Method::HEAD, "/")?,
        b"HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
    )
    .await?;
    assert_refused(b"HTTP/1.1 204 No Content\r\ncontent-length: 0x0\r\n\r\n").await
}

#[tokio::test]
async fn chunked_twice_or_an_empty_transfer_encoding_is_refused() -> Result<()> {
    assert_refused(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, chunked\r\n\r\n0\r\n\r\n")
        .await?;
    assert_refused(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n")
        .await?;
    assert_refused(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip, chunked\r\n\r\n0\r\n\r\n",
    )
    .await?;
    assert_refused(b"HTTP/1.1 200 OK\r\ntransfer-encoding:\r\n\r\n").await?;
    assert_refused(b"HTTP/1.1 200 OK\r\ntransfer-encoding: ,\r\n\r\n").await
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_read_until_close_and_not_reused() -> Result<()> {
    let raw = b"5\r\nhello\r\n0\r\n\r\n";
    let answer = [
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n"[..],
        &raw[..],
    ]
    .concat();
    let ex = exchange_closing(&get("/")?, &answer).await?;
    assert_eq!(ex.status, StatusCode::OK);
    assert_eq!(
        bytes(ex.body)?,
        &raw[..],
        "the body as sent, until the close"
    );
    assert!(
        ex.conn.is_none(),
        "a body that ends at the close is not reused"
    );
    // While the backend keeps the connection open, the body does not end.
    let (addr, _backend) = answering(vec![answer]).await?;
    let resp = send(connect(addr).await?, &get("/")?).await??;
    let mut body = resp.into_body();
    let read = tokio::time::timeout(Duration::from_millis(300), BodyExt::collect(&mut body)).await;
    assert!(read.is_err(), "a body without end ended");
    assert!(body.take_reusable().is_none());
    Ok(())
}

#[tokio::test]
/// RFC 9112 §6.3 would read these until the close; nginx refuses any coding but a
/// lone `chunked`, and so does the proxy for `chunked` followed by another: a body
/// framed by chunks and then by the close is one two readers can disagree on.
async fn chunked_before_another_coding_is_refused() -> Result<()> {
    assert_refused(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await?;
    assert_refused(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: gzip\r\n\r\n",
    )
    .await
}

#[tokio::test]
async fn a_101_to_a_plain_request_is_refused() -> Result<()> {
    assert_refused(
        b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    )
    .await?;
    // Even after an interim response.
    assert_refused(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n",
    )
    .await
}

#[tokio::test]
async fn transfer_encoding_in_an_http10_response_is_refused() -> Result<()> {
    assert_refused(b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        .await
}

fn head_with_fields(n: usize) -> Vec<u8> {
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..n - 1 {
        head.extend_from_slice(format!("x-field-{i}: {i}\r\n").as_bytes());
    }
    head.extend_from_slice(b"content-length: 2\r\n\r\nok");
    head
}

#[tokio::test]
async fn more_than_100_header_fields_are_refused() -> Result<()> {
    let ex = exchange(&get("/")?, &head_with_fields(100)).await?;
    assert_eq!(ex.headers.len(), 100, "100 fields pass");
    assert_eq!(bytes(ex.body)?, "ok");
    match send_error(&get("/")?, head_with_fields(101)).await? {
        SendError::Invalid(_) => Ok(()),
        e => bail!("101 fields: {e:?}"),
    }
}

#[tokio::test]
async fn a_head_larger_than_64_kib_is_refused() -> Result<()> {
    // One huge field value, and a head that never ends.
    let mut huge = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
    huge.resize(huge.len() + 1024 * 1024, b'a');
    huge.extend_from_slice(b"\r\ncontent-length: 2\r\n\r\nok");
    match send_error(&get("/")?, huge).await? {
        SendError::Invalid(_) => {}
        e => bail!("a 1 MiB head: {e:?}"),
    }
    let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..20000 {
        endless.extend_from_slice(format!("x-{i}: {i}\r\n").as_bytes());
    }
    assert!(endless.len() > 2 * MAX_HEAD);
    match send_error(&get("/")?, endless).await? {
        SendError::Invalid(_) => Ok(()),
        e => bail!("an endless head: {e:?}"),
    }
}

#[tokio::test]
async fn a_head_just_over_64_kib_is_refused() -> Result<()> {
    // Sent at once, the head is read in steps of 8, 8, 16 and 32 KiB: 64 KiB exactly,
    // not yet over the limit, and the next read completes it.
    let mut head = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
    let end = b"\r\ncontent-length: 2\r\n\r\n";
    head.resize(MAX_HEAD + 100 - end.len(), b'a');
    head.extend_from_slice(end);
    assert_eq!(head.len(), MAX_HEAD + 100);
    head.extend_from_slice(b"ok");
    match send_error(&get("/")?, head).await? {
        SendError::Invalid(_) => Ok(()),
        e => bail!("{e:?}"),
    }
}

#[tokio::test]
async fn malformed_heads_are_refused() -> Result<()> {
    for answer in [
        // Whitespace between a field's name and its colon (a classic smuggling vector).
        &b"HTTP/1.1 200 OK\r\ncontent-length : 5\r\n\r\nhello"[..],
        b"HTTP/1.1 200 OK\r\ntransfer-encoding : chunked\r\n\r\n0\r\n\r\n",
        // A folded field value.
        b"HTTP/1.1 200 OK\r\nx-a: 1\r\n folded\r\ncontent-length: 2\r\n\r\nok",
        // A NUL and a bare CR in a value.
        b"HTTP/1.1 200 OK\r\nx-a: a\0b\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nx-a: a\rb\r\ncontent-length: 2\r\n\r\nok",
        // Status lines.
        b"HTTP/1.1 2000 OK\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 099 Low\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/2 200 OK\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.2 200 OK\r\ncontent-length: 2\r\n\r\nok",
        b"ICY 200 OK\r\ncontent-length: 2\r\n\r\nok",
    ] {
        assert_refused(answer).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_head_cut_short_by_the_close_is_an_error() -> Result<()> {
    let (addr, _backend) = answering_then_closing(b"HTTP/1.1 200 OK\r\ncontent-".to_vec()).await?;
    let conn = connect(addr).await?;
    match send(conn, &get("/")?).await? {
        Err(SendError::Invalid(_)) => Ok(()),
        Err(e) => bail!("{e:?}, not Invalid (part of an answer came)"),
        Ok(resp) => bail!("a {} response from half a head", resp.status()),
    }
}

// 4. Body errors.

/// Asserts that the body of `answer` (to a GET) fails with `BodyError::Invalid`, and
/// the connection is not returned.
async fn assert_body_invalid(answer: &[u8]) -> Result<()> {
    let shown = String::from_utf8_lossy(answer).into_owned();
    let ex = exchange(&get("/")?, answer)
        .await
        .with_context(|| format!("answer {shown:?}"))?;
    match body_error(ex.body).with_context(|| format!("answer {shown:?}"))? {
        BodyError::Invalid(_) => {}
        e => bail!("answer {shown:?}: {e:?}, not BodyError::Invalid"),
    }
    assert!(
        ex.conn.is_none(),
        "answer {shown:?}: reusable after a body error"
    );
    Ok(())
}

/// Asserts that the body of `answer`, after which the backend closes, fails with
/// `BodyError::Truncated`.
async fn assert_body_truncated(answer: &[u8]) -> Result<()> {
    let shown = String::from_utf8_lossy(answer).into_owned();
    let ex = exchange_closing(&get("/")?, answer)
        .await
        .with_context(|| format!("answer {shown:?}"))?;
    match body_error(ex.body).with_context(|| format!("answer {shown:?}"))? {
        BodyError::Truncated => {}
        e => bail!("answer {shown:?}: {e:?}, not BodyError::Truncated"),
    }
    assert!(
        ex.conn.is_none(),
        "answer {shown:?}: reusable after a cut body"
    );
    Ok(())
}

const CHUNKED: &str = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";

#[tokio::test]
async fn a_chunk_size_line_ended_by_a_bare_lf_is_an_error() -> Result<()> {
    assert_body_invalid(format!("{CHUNKED}5\nhello\r\n0\r\n\r\n").as_bytes()).await?;
    assert_body_invalid(format!("{CHUNKED}5\r\nhello\r\n0\n\r\n").as_bytes()).await
}

#[tokio::test]
async fn a_chunk_size_of_17_hex_digits_is_an_error() -> Result<()> {
    assert_body_invalid(format!("{CHUNKED}00000000000000005\r\nhello\r\n0\r\n\r\n").as_bytes())
        .await?;
    assert_body_invalid(format!("{CHUNKED}10000000000000000\r\n").as_bytes()).await
}

#[tokio::test]
async fn a_non_hex_chunk_size_is_an_error() -> Result<()> {
    for line in [
        "z", "-5", "+5", "0x5", "5z", " 5", "", "5 5", ";ext", "5;a\x01b",
    ] {
        assert_body_invalid(format!("{CHUNKED}{line}\r\nhello\r\n0\r\n\r\n").as_bytes()).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_chunk_size_line_longer_than_4_kib_is_an_error() -> Result<()> {
    let ext = "a".repeat(MAX_CHUNK_LINE + 10);
    assert_body_invalid(format!("{CHUNKED}5;{ext}\r\nhello\r\n0\r\n\r\n").as_bytes()).await?;
    // Also while its end has not come.
    assert_body_invalid(format!("{CHUNKED}5;{ext}").as_bytes()).await
}

#[tokio::test]
async fn chunk_data_not_followed_by_crlf_is_an_error() -> Result<()> {
    assert_body_invalid(format!("{CHUNKED}5\r\nhelloXX0\r\n\r\n").as_bytes()).await?;
    assert_body_invalid(format!("{CHUNKED}5\r\nhello\n0\r\n\r\n").as_bytes()).await?;
    // Data longer than its size says.
    assert_body_invalid(format!("{CHUNKED}3\r\nhello\r\n0\r\n\r\n").as_bytes()).await
}

#[tokio::test]
async fn a_malformed_trailer_section_is_an_error() -> Result<()> {
    assert_body_invalid(format!("{CHUNKED}0\r\nx-a : 1\r\n\r\n").as_bytes()).await?;
    assert_body_invalid(format!("{CHUNKED}0\r\nno colon\r\n\r\n").as_bytes()).await
}

#[tokio::test]
async fn a_body_cut_short_by_the_close_is_truncated() -> Result<()> {
    assert_body_truncated(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello").await?;
    assert_body_truncated(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n").await?;
    assert_body_truncated(format!("{CHUNKED}a\r\nhello").as_bytes()).await?;
    assert_body_truncated(format!("{CHUNKED}5\r\nhello").as_bytes()).await?;
    assert_body_truncated(format!("{CHUNKED}5\r\nhello\r\n").as_bytes()).await?;
    assert_body_truncated(format!("{CHUNKED}5\r\nhello\r\n0\r\n").as_bytes()).await?;
    assert_body_truncated(format!("{CHUNKED}0\r\nx-a: 1\r\n").as_bytes()).await?;
    // The largest chunk size: no overflow, just a body that never ends.
    assert_body_truncated(format!("{CHUNKED}ffffffffffffffff\r\nhello").as_bytes()).await
}

#[tokio::test]
async fn a_bare_cr_in_a_chunk_size_line_is_an_error() -> Result<()> {
    // RFC 9112 §7.1.1: only BWS (SP / HTAB) may follow the size, and only before a `;`.
    // `chunk_size` trims the rest of the line with `trim_ascii_start`, which also takes
    // CR and FF, and then checks for control characters only in what is left.
    let mut accepted = Vec::new();
    for line in ["5\r", "5\x0c", "5 \r \t"] {
        let answer = format!("{CHUNKED}{line}\r\nhello\r\n0\r\n\r\n");
        if assert_body_invalid(answer.as_bytes()).await.is_err() {
            accepted.push(line);
        }
    }
    assert!(
        accepted.is_empty(),
        "chunk-size lines accepted: {accepted:?}"
    );
    Ok(())
}

// 5. Interim responses.

#[tokio::test]
async fn interim_responses_are_skipped() -> Result<()> {
    let (addr, _backend) = backend(|mut s| async move {
        read_head(&mut s).await?;
        s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.write_all(b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n")
            .await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await?;
        hold(&mut s).await;
        Ok(())
    })
    .await?;
    let ex = exchange_on(addr, &get("/")?).await?;
    assert_eq!(ex.status, StatusCode::OK);
    assert!(
        ex.headers.get("link").is_none(),
        "an interim answer's fields are not the final's"
    );
    assert_eq!(bytes(ex.body)?, "ok");
    assert!(ex.conn.is_some());
    Ok(())
}

#[tokio::test]
async fn interim_responses_in_the_same_segment_as_the_final_one_are_skipped() -> Result<()> {
    let ex = exchange(
        &get("/")?,
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\n\
          HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    )
    .await?;
    assert_eq!(ex.status, StatusCode::OK);
    assert_eq!(bytes(ex.body)?, "ok");
    assert!(ex.conn.is_some());
    Ok(())
}

#[tokio::test]
async fn more_than_16_interim_responses_are_refused() -> Result<()> {
    let interim = |n: usize| b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n".repeat(n);
    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    let ex = exchange(&get("/")?, &[interim(MAX_INTERIM), ok.to_vec()].concat()).await?;
    assert_eq!(ex.status, StatusCode::OK, "16 pass");
    assert_eq!(bytes(ex.body)?, "ok");
    match send_error(&get("/")?, [interim(MAX_INTERIM + 1), ok.to_vec()].concat()).await? {
        SendError::Invalid(_) => {}
        e => bail!("17 interim: {e:?}"),
    }
    // Interim answers without end, each in its own write.
    let (addr, _backend) = backend(|mut s| async move {
        read_head(&mut s).await?;
        for _ in 0..100 {
            s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        hold(&mut s).await;
        Ok(())
    })
    .await?;
    let conn = connect(addr).await?;
    match send(conn, &get("/")?).await? {
        Err(SendError::Invalid(_)) => Ok(()),
        Err(e) => bail!("endless interim: {e:?}"),
        Ok(resp) => bail!("endless interim: a {} response", resp.status()),
    }
}

#[tokio::test]
async fn an_interim_response_then_the_close_is_an_error_not_a_missing_answer() -> Result<()> {
    let (addr, _backend) =
        answering_then_closing(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()).await?;
    let conn = connect(addr).await?;
    match send(conn, &get("/")?).await? {
        Err(SendError::Invalid(_)) => Ok(()),
        Err(e) => bail!("{e:?}"),
        Ok(resp) => bail!("a {} response", resp.status()),
    }
}

// 6. Answers without a body.

/// `first` answered with `answer`, then a GET on the same connection answered `ok`:
/// the first body is empty and the connection serves the second.
async fn assert_bodiless_then_reused(
    first: &Request<()>,
    answer: &[u8],
    status: StatusCode,
) -> Result<()> {
    let shown = String::from_utf8_lossy(answer).into_owned();
    let (addr, _backend) = answering(vec![
        answer.to_vec(),
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
    ])
    .await?;
    let conn = connect(addr).await?;
    let resp = send(conn, first).await??;
    assert_eq!(resp.status(), status, "{shown:?}");
    assert!(resp.body().is_end_stream(), "{shown:?}: a body is expected");
    assert_eq!(resp.body().size_hint().exact(), Some(0), "{shown:?}");
    let (body, conn) = finish(resp).await?;
    assert!(bytes(body)?.is_empty(), "{shown:?}");
    let conn = conn.with_context(|| format!("{shown:?}: not reusable"))?;
    let resp = send(conn, &get("/")?).await??;
    assert_eq!(resp.status(), StatusCode::OK, "{shown:?}: the next answer");
    let (body, _) = finish(resp).await?;
    assert_eq!(bytes(body)?, "ok", "{shown:?}: the next answer");
    Ok(())
}

#[tokio::test]
async fn a_head_response_has_no_body_whatever_its_length() -> Result<()> {
    let head = request(Method::HEAD, "/")?;
    assert_bodiless_then_reused(
        &head,
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n",
        StatusCode::OK,
    )
    .await?;
    assert_bodiless_then_reused(
        &head,
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        StatusCode::OK,
    )
    .await?;
    assert_bodiless_then_reused(
        &head,
        b"HTTP/1.1 404 Not Found\r\n\r\n",
        StatusCode::NOT_FOUND,
    )
    .await
}

#[tokio::test]
async fn a_head_response_keeps_its_content_length_field() -> Result<()> {
    let ex = exchange(
        &request(Method::HEAD, "/")?,
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n",
    )
    .await?;
    assert_eq!(ex.headers[CONTENT_LENGTH], "100");
    assert!(bytes(ex.body)?.is_empty());
    assert!(ex.conn.is_some());
    Ok(())
}

#[tokio::test]
async fn no_content_and_not_modified_have_no_body() -> Result<()> {
    let get = get("/")?;
    assert_bodiless_then_reused(
        &get,
        b"HTTP/1.1 204 No Content\r\n\r\n",
        StatusCode::NO_CONTENT,
    )
    .await?;
    assert_bodiless_then_reused(
        &get,
        b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
        StatusCode::NO_CONTENT,
    )
    .await?;
    assert_bodiless_then_reused(
        &get,
        b"HTTP/1.1 304 Not Modified\r\ncontent-length: 50\r\n\r\n",
        StatusCode::NOT_MODIFIED,
    )
    .await?;
    assert_bodiless_then_reused(
        &get,
        b"HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n",
        StatusCode::NOT_MODIFIED,
    )
    .await
}

#[tokio::test]
async fn a_body_sent_where_none_may_follow_prevents_reuse() -> Result<()> {
    for (req, answer) in [
        (
            request(Method::HEAD, "/")?,
            &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"[..],
        ),
        (
            get("/")?,
            b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\nhello",
        ),
        (get("/")?, b"HTTP/1.1 304 Not Modified\r\n\r\nhello"),
    ] {
        let shown = String::from_utf8_lossy(answer).into_owned();
        let ex = exchange(&req, answer).await?;
        assert!(bytes(ex.body)?.is_empty(), "{shown:?}");
        match ex.conn {
            None => {}
            // The bytes came in a later segment: the pool's peek must see them.
            Some(mut conn) => assert!(sees_unsolicited_bytes(&mut conn).await, "{shown:?}: reused"),
        }
    }
    Ok(())
}

// 7. Bodies that end at the close, and connections that may not serve again.

#[tokio::test]
async fn a_body_without_length_is_read_until_the_close() -> Result<()> {
    let ex = exchange_closing(
        &get("/")?,
        b"HTTP/1.1 200 OK\r\nx-a: 1\r\n\r\nuntil the close",
    )
    .await?;
    assert_eq!(ex.status, StatusCode::OK);
    assert_eq!(bytes(ex.body)?, "until the close");
    assert!(ex.conn.is_none());
    let ex = exchange_closing(&get("/")?, b"HTTP/1.0 200 OK\r\n\r\nold").await?;
    assert_eq!(ex.version, Version::HTTP_10);
    assert_eq!(bytes(ex.body)?, "old");
    assert!(ex.conn.is_none());
    Ok(())
}

#[tokio::test]
async fn a_body_without_length_waits_for_the_close() -> Result<()> {
    // The backend pauses between its writes; the body is all of them.
    let (addr, _backend) = backend(|mut s| async move {
        read_head(&mut s).await?;
        s.write_all(b"HTTP/1.1 200 OK\r\n\r\nfirst,").await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.write_all(b"second").await?;
        Ok(())
    })
    .await?;
    let ex = exchange_on(addr, &get("/")?).await?;
    assert_eq!(bytes(ex.body)?, "first,second");
    assert!(ex.conn.is_none());
    Ok(())
}

#[tokio::test]
async fn an_http10_response_is_not_reused() -> Result<()> {
    let ex = exchange(
        &get("/")?,
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
    )
    .await?;
    assert_eq!(ex.version, Version::HTTP_10);
    assert_eq!(bytes(ex.body)?, "ok");
    assert!(ex.conn.is_none());
    let ex = exchange(
        &get("/")?,
        b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok",
    )
    .await?;
    assert_eq!(bytes(ex.body)?, "ok");
    assert!(ex.conn.is_none());
    Ok(())
}

#[tokio::test]
async fn connection_close_is_not_reused() -> Result<()> {
    for answer in [
        &b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: CLOSE\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ] {
        let shown = String::from_utf8_lossy(answer).into_owned();
        let ex = exchange(&get("/")?, answer).await?;
        assert_eq!(bytes(ex.body)?, "ok", "{shown:?}");
        assert!(ex.conn.is_none(), "{shown:?}: reused");
    }
    let head = request(Method::HEAD, "/")?;
    let ex = exchange(
        &head,
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n",
    )
    .await?;
    assert!(ex.conn.is_none(), "HEAD with connection: close reused");
    // Control: keep-alive, and a token that only contains "close".
    for answer in [
        &b"HTTP/1.1 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\nconnection: closed, x-close\r\ncontent-length: 2\r\n\r\nok",
    ] {
        let ex = exchange(&get("/")?, answer).await?;
        assert_eq!(bytes(ex.body)?, "ok");
        assert!(
            ex.conn.is_some(),
            "{:?}: not reused",
            String::from_utf8_lossy(answer)
        );
    }
    Ok(())
}

// 8. Bytes past the end of the response, and while idle.

#[tokio::test]
async fn bytes_past_the_end_of_the_response_prevent_reuse() -> Result<()> {
    let ex = exchange(
        &get("/")?,
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA",
    )
    .await?;
    assert_eq!(bytes(ex.body)?, "ok");
    assert!(ex.conn.is_none(), "reusable with EXTRA buffered");
    // A whole second response smuggled after a chunked one.
    let ex = exchange(
        &get("/")?,
        format!("{CHUNKED}2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nEVIL")
            .as_bytes(),
    )
    .await?;
    assert_eq!(bytes(ex.body)?, "ok");
    assert!(
        ex.conn.is_none(),
        "reusable with a second response buffered"
    );
    // Past the trailers.
    let ex = exchange(
        &get("/")?,
        format!("{CHUNKED}2\r\nok\r\n0\r\nx-t: 1\r\n\r\nX").as_bytes(),
    )
    .await?;
    assert_eq!(bytes(ex.body)?, "ok");
    assert!(ex.conn.is_none(), "reusable with a byte after the trailers");
    Ok(())
}

#[tokio::test]
async fn bytes_arriving_while_idle_are_seen() -> Result<()> {
    let (addr, _backend) = backend(|mut s| async move {
        read_head(&mut s).await?;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nEVIL")
            .await?;
        hold(&mut s).await;
        Ok(())
    })
    .await?;
    let ex = exchange_on(addr, &get("/")?).await?;
    assert_eq!(bytes(ex.body)?, "ok");
    let mut conn = ex
        .conn
        .context("the clean exchange's connection not reusable")?;
    assert!(
        sees_unsolicited_bytes(&mut conn).await,
        "unsolicited bytes not seen"
    );
    Ok(())
}

#[tokio::test]
async fn a_close_while_idle_is_seen() -> Result<()> {
    let (addr, _backend) = backend(|mut s| async move {
        read_head(&mut s).await?;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    })
    .await?;
    let ex = exchange_on(addr, &get("/")?).await?;
    assert_eq!(bytes(ex.body)?, "ok");
    let mut conn = ex
        .conn
        .context("the clean exchange's connection not reusable")?;
    assert!(
        sees_unsolicited_bytes(&mut conn).await,
        "the close not seen"
    );
    Ok(())
}

#[tokio::test]
async fn a_clean_idle_connection_has_no_unsolicited_bytes() -> Result<()> {
    let ex = exchange(
        &get("/")?,
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    )
    .await?;
    assert_eq!(bytes(ex.body)?, "ok");
    let mut conn = ex.conn.context("not reusable")?;
    for _ in 0..5 {
        assert!(!conn.has_unsolicited_bytes());
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    Ok(())
}

// 9. The request head.

#[tokio::test]
async fn the_request_head_is_written_as_given_without_transfer_encoding() -> Result<()> {
    let (addr, backend) = answering(vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec(),
    ])
    .await?;
    let req = Request::get("/p?q=1")
        .header(http::header::HOST, "backend")
        .header("x-a", "1")
        .header(http::header::TRANSFER_ENCODING, "chunked")
        .header("x-multi", "a")
        .header("x-multi", "b")
        .header("X-Upper", "Value With Spaces")
        .body(())?;
    let conn = connect(addr).await?;
    let resp = send(conn, &req).await??;
    let (_, conn) = finish(resp).await?;
    // The absolute form goes out as the origin form; HEAD as HEAD.
    let conn = conn.context("not reusable")?;
    let resp = send(
        conn,
        &request(Method::HEAD, "http://backend/abs/path?x=y#frag")?,
    )
    .await??;
    let (_, conn) = finish(resp).await?;
    let conn = conn.context("not reusable")?;
    let resp = send(conn, &request(Method::GET, "http://backend")?).await??;
    let (_, conn) = finish(resp).await?;
    drop(conn);

    let heads = joined(backend).await?;
    assert_eq!(heads.len(), 3);
    let first = &heads[0];
    assert!(
        first.starts_with(b"GET /p?q=1 HTTP/1.1\r\n"),
        "{:?}",
        String::from_utf8_lossy(first)
    );
    for field in [
        &b"host: backend\r\n"[..],
        b"x-a: 1\r\n",
        b"x-multi: a\r\n",
        b"x-multi: b\r\n",
        b"x-upper: Value With Spaces\r\n",
    ] {
        assert!(
            first.windows(field.len()).any(|w| w == field),
            "{:?} not in {:?}",
            String::from_utf8_lossy(field),
            String::from_utf8_lossy(first)
        );
    }
    assert!(
        !first
            .to_ascii_lowercase()
            .windows(17)
            .any(|w| w == b"transfer-encoding"),
        "transfer-encoding written: {:?}",
        String::from_utf8_lossy(first)
    );
    assert_eq!(
        &first[..],
        &b"GET /p?q=1 HTTP/1.1\r\nhost: backend\r\nx-a: 1\r\nx-multi: a\r\nx-multi: b\r\n\
           x-upper: Value With Spaces\r\n\r\n"[..],
        "{:?}",
        String::from_utf8_lossy(first)
    );
    assert_eq!(
        &heads[1][..],
        &b"HEAD /abs/path?x=y HTTP/1.1\r\nhost: backend\r\n\r\n"[..],
        "{:?}",
        String::from_utf8_lossy(&heads[1])
    );
    assert_eq!(
        &heads[2][..],
        &b"GET / HTTP/1.1\r\nhost: backend\r\n\r\n"[..],
        "{:?}",
        String::from_utf8_lossy(&heads[2])
    );
    Ok(())
}

// 10. No answer.

#[tokio::test]
async fn a_close_without_an_answer_is_no_response() -> Result<()> {
    let (addr, backend) = backend(|mut s| async move {
        let head = read_head(&mut s).await?;
        Ok(head)
    })
    .await?;
    let conn = connect(addr).await?;
    match send(conn, &get("/")?).await? {
        Err(SendError::NoResponse(_)) => {}
        Err(e) => bail!("{e:?}, not NoResponse"),
        Ok(resp) => bail!("a {} response", resp.status()),
    }
    assert!(joined(backend).await?.starts_with(b"GET / HTTP/1.1\r\n"));
    Ok(())
}

// 11. Heads and bodies in many small pieces.

/// A backend that answers one request with `answer`, one byte per write.
async fn trickling(answer: Vec<u8>) -> Result<(SocketAddr, JoinHandle<io::Result<()>>)> {
    backend(move |mut s| async move {
        read_head(&mut s).await?;
        for b in answer {
            s.write_all(&[b]).await?;
            s.flush().await?;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        hold(&mut s).await;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_head_arriving_a_byte_at_a_time_parses() -> Result<()> {
    let (addr, _backend) = trickling(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 5\r\n\r\nhello"
            .to_vec(),
    )
    .await?;
    let ex = exchange_on(addr, &get("/")?).await?;
    assert_eq!(ex.status, StatusCode::OK);
    assert_eq!(ex.headers["x-a"], "1");
    assert_eq!(bytes(ex.body)?, "hello");
    assert!(ex.conn.is_some());
    Ok(())
}

#[tokio::test]
async fn a_chunked_body_arriving_a_byte_at_a_time_is_decoded() -> Result<()> {
    let (addr, _backend) = trickling(
        format!(
            "{CHUNKED}5;e=1\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nx-t: 1\r\nx-u: 2\r\n\r\n"
        )
        .into_bytes(),
    )
    .await?;
    let ex = exchange_on(addr, &get("/")?).await?;
    let collected = ex.body.map_err(|e| anyhow!(e))?;
    let trailers = collected.trailers().context("no trailers")?.clone();
    assert_eq!(trailers["x-t"], "1");
    assert_eq!(trailers["x-u"], "2");
    assert_eq!(collected.to_bytes(), "hello world!");
    assert!(ex.conn.is_some());
    Ok(())
}

// TLS: what the TLS layer holds is not in the socket the pool peeks at.

/// A TLS backend on 127.0.0.1 (self-signed for "backend") running `script`, and a
/// client connection to it made as the pool makes one.
async fn tls_pair<T, F, Fut>(script: F) -> Result<(H1Conn, JoinHandle<io::Result<T>>)>
where
    F: FnOnce(tokio_rustls::server::TlsStream<TcpStream>) -> Fut + Send + 'static,
    Fut: Future<Output = io::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let ck = rcgen::generate_simple_self_signed(vec!["backend".to_string()])?;
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let (addr, task) =
        backend(move |s| async move { script(acceptor.accept(s).await?).await }).await?;

    let upstream = crate::upstream::tls::upstream_tls("backend", None).map_err(|e| anyhow!(e))?;
    let tcp = within("connect", TcpStream::connect(addr)).await??;
    tcp.set_nodelay(true)?;
    let std = tcp.into_std()?;
    let probe = std.try_clone()?;
    let tcp = TcpStream::from_std(std)?;
    let tls = within(
        "the TLS handshake",
        upstream
            .connector
            .connect(upstream.server_name.clone(), tcp),
    )
    .await??;
    Ok((H1Conn::new(Io::Tls(Box::new(tls)), probe), task))
}

#[tokio::test]
async fn a_tls_connection_serves_request_after_request() -> Result<()> {
    let (conn, _backend) = tls_pair(|mut s| async move {
        for n in 0..3u8 {
            read_head(&mut s).await?;
            s.write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n{n}").as_bytes())
                .await?;
            s.flush().await?;
        }
        hold(&mut s).await;
        Ok(())
    })
    .await?;
    let mut conn = conn;
    for n in 0..3 {
        let resp = send(conn, &get("/")?).await??;
        let (body, next) = finish(resp).await?;
        assert_eq!(bytes(body)?, n.to_string());
        conn = next.context("not reusable")?;
        assert!(!conn.has_unsolicited_bytes());
    }
    Ok(())
}

#[tokio::test]
async fn a_tls_response_followed_by_more_plaintext_is_not_reused() -> Result<()> {
    // The client's TLS stream fills the read buffer's spare room from what rustls has
    // decrypted, and stops when it is full. A response that ends exactly there leaves
    // `buf` empty at the body's end while rustls still holds what followed it in the
    // same record; the socket the pool peeks at is empty.
    let req = get("/first")?;
    // The spare room of the first read, as `send` and `poll_fill` make it.
    let mut mirror = BytesMut::new();
    encode_head(&req, std::iter::empty(), &mut mirror);
    mirror.clear();
    if mirror.capacity() - mirror.len() < READ_SPACE / 2 {
        mirror.reserve(READ_SPACE);
    }
    let first_read = mirror.capacity() - mirror.len();
    let head = "HTTP/1.1 200 OK\r\ncontent-length: ";
    // The head's length depends on the length's digits: try both.
    let (mut answer, mut body_len) = (Vec::new(), 0);
    for digits in 1..=5 {
        let body = first_read - head.len() - digits - 4;
        let candidate = format!("{head}{body}\r\n\r\n{}", "a".repeat(body));
        if candidate.len() == first_read {
            (answer, body_len) = (candidate.into_bytes(), body);
            break;
        }
    }
    assert_eq!(answer.len(), first_read);
    answer.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nEVIL");
    let (conn, _backend) = tls_pair(move |mut s| async move {
        read_head(&mut s).await?;
        // One write: one TLS record (it is under 16 KiB).
        s.write_all(&answer).await?;
        s.flush().await?;
        read_head(&mut s).await?;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ngood")
            .await?;
        s.flush().await?;
        hold(&mut s).await;
        Ok(())
    })
    .await?;
    let resp = send(conn, &req).await??;
    let (body, conn) = finish(resp).await?;
    assert_eq!(bytes(body)?.len(), body_len);
    // As the pool would: reuse it unless it is refused or its peek sees something.
    if let Some(mut conn) = conn
        && !conn.has_unsolicited_bytes()
    {
        let resp = send(conn, &get("/second")?).await??;
        let (body, _) = finish(resp).await?;
        assert_eq!(
            bytes(body)?,
            "good",
            "the second request got the bytes sent after the first response"
        );
    }
    Ok(())
}
