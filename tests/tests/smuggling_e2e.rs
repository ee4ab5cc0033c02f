//! The proxy's HTTP parser seen by an attacker: raw bytes on a socket, through the proxy run
//! from the operator's Deployment (in the test network namespace), and what came out — to
//! the client and to a backend — asserted.
//!
//! * Request smuggling: every ambiguous or malformed request framing (Content-Length with
//!   Transfer-Encoding, two lengths, obs-fold, bare LF, bad header names, an overflowing
//!   chunk size, …) is refused with `400` and the request it hides never reaches a backend.
//! * HTTP/2 rapid reset (CVE-2023-44487): a client opening and cancelling streams as fast as
//!   it can does not stall other clients.

mod proxy_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use proxy_support::*;
use serde_json::json;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Every request line the raw backend has read, in order.
type Seen = Arc<Mutex<Vec<String>>>;

const SMUGGLE_HOST: &str = "smuggle.example.com";
/// The path every hidden request asks for; the backend must never see it.
const MARKER: &str = "/smuggled";

/// A hand-written HTTP/1.1 backend that parses loosely (request line, header lines up to a
/// blank line, the body by `Content-Length` or chunked), records every request line it reads
/// and answers `200` with the request's path as the body.
async fn counting_backend(addr: SocketAddr) -> Result<Seen> {
    let listener = TcpListener::bind(addr).await?;
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        for _ in 0..100_000 {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let _ = serve_loosely(stream, record).await;
            });
        }
    });
    Ok(seen)
}

/// One line up to `\n`, without its line ending; `None` at EOF.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = (&mut *r)
        .take(64 * 1024)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    let line = String::from_utf8_lossy(&buf);
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()))
}

async fn serve_loosely(stream: TcpStream, seen: Seen) -> Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    // An idle pooled connection may wait long; the test ends well before.
    let patience = Duration::from_secs(120);
    for _ in 0..10_000 {
        let mut request_line = String::new();
        for _ in 0..16 {
            match tokio::time::timeout(patience, read_line(&mut r)).await?? {
                None => return Ok(()),
                Some(l) if l.is_empty() => continue,
                Some(l) => {
                    request_line = l;
                    break;
                }
            }
        }
        seen.lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .push(request_line.clone());
        let (mut length, mut chunked) = (0u64, false);
        for _ in 0..500 {
            let Some(h) = tokio::time::timeout(patience, read_line(&mut r)).await?? else {
                return Ok(());
            };
            if h.is_empty() {
                break;
            }
            let Some((name, value)) = h.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            }
        }
        if chunked {
            for _ in 0..10_000 {
                let Some(size) = tokio::time::timeout(patience, read_line(&mut r)).await?? else {
                    return Ok(());
                };
                let size = size.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size, 16)?;
                if size == 0 {
                    // Trailers up to a blank line.
                    for _ in 0..100 {
                        match tokio::time::timeout(patience, read_line(&mut r)).await?? {
                            None => return Ok(()),
                            Some(l) if l.is_empty() => break,
                            Some(_) => {}
                        }
                    }
                    break;
                }
                anyhow::ensure!(size <= 1 << 20, "chunk of {size} bytes");
                let mut data = vec![0; size as usize + 2];
                tokio::time::timeout(patience, r.read_exact(&mut data)).await??;
            }
        } else if length > 0 {
            anyhow::ensure!(length <= 1 << 20, "body of {length} bytes");
            let mut data = vec![0; length as usize];
            tokio::time::timeout(patience, r.read_exact(&mut data)).await??;
        }
        let path = request_line.split(' ').nth(1).unwrap_or("?").to_string();
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{path}",
            path.len()
        );
        w.write_all(resp.as_bytes()).await?;
    }
    Ok(())
}

/// What came back on one raw connection.
struct Answer {
    bytes: Vec<u8>,
    /// How the reading stopped: EOF, reset, silence, or the 5 s bound.
    end: &'static str,
}

impl Answer {
    fn status_line(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        match text.lines().next() {
            Some(l) if !l.is_empty() => l.to_string(),
            _ => format!("<no answer; {}>", self.end),
        }
    }
}

/// Writes `request` on a fresh connection and reads whatever comes back: until the proxy
/// closes, 1 s of silence after some bytes, or 5 s in all.
async fn raw_exchange(proxy: SocketAddr, request: &[u8]) -> Result<Answer> {
    let mut s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(proxy))
        .await
        .context("connect to the proxy within 5 s")??;
    s.write_all(request).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    let mut end = "5 s bound";
    for _ in 0..10_000 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let wait = if bytes.is_empty() {
            left
        } else {
            left.min(Duration::from_secs(1))
        };
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Err(_) if left > wait => {
                end = "open, silent for 1 s";
                break;
            }
            Err(_) => break,
            Ok(Ok(0)) => {
                end = "closed";
                break;
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => {
                end = "reset";
                break;
            }
        }
    }
    Ok(Answer { bytes, end })
}

/// The hidden request; `connection: close` so the connection ends if it is ever served.
fn hidden(case: &str) -> String {
    format!("GET {MARKER}/{case} HTTP/1.1\r\nhost: {SMUGGLE_HOST}\r\nconnection: close\r\n\r\n")
}

/// `(case, raw request)`: each hides `GET /smuggled/<case>` where some parser would see a
/// second request.
fn hostile_requests() -> Vec<(&'static str, Vec<u8>)> {
    let h = SMUGGLE_HOST;
    let mut cases: Vec<(&'static str, String)> = Vec::new();

    // CL.TE: a Content-Length reader takes the whole body, a chunked reader stops at `0`.
    let body = format!("0\r\n\r\n{}", hidden("cl-te"));
    cases.push((
        "Content-Length then Transfer-Encoding: chunked",
        format!(
            "POST /cl-te HTTP/1.1\r\nhost: {h}\r\ncontent-length: {}\r\ntransfer-encoding: chunked\r\n\r\n{body}",
            body.len()
        ),
    ));
    // TE.CL: a Content-Length reader stops after the chunk-size line, a chunked reader
    // takes the hidden request as chunk data.
    let inner = hidden("te-cl");
    let size = format!("{:x}", inner.len());
    cases.push((
        "Transfer-Encoding: chunked then Content-Length",
        format!(
            "POST /te-cl HTTP/1.1\r\nhost: {h}\r\ntransfer-encoding: chunked\r\ncontent-length: {}\r\n\r\n{size}\r\n{inner}\r\n0\r\n\r\n",
            size.len() + 2
        ),
    ));
    let inner = hidden("two-cl");
    cases.push((
        "two differing Content-Length headers",
        format!(
            "POST /two-cl HTTP/1.1\r\nhost: {h}\r\ncontent-length: 0\r\ncontent-length: {}\r\n\r\n{inner}",
            inner.len()
        ),
    ));
    let inner = hidden("cl-list");
    cases.push((
        "one Content-Length header listing two differing values",
        format!(
            "POST /cl-list HTTP/1.1\r\nhost: {h}\r\ncontent-length: 0, {}\r\n\r\n{inner}",
            inner.len()
        ),
    ));
    cases.push((
        "Transfer-Encoding: chunked on an HTTP/1.0 request",
        format!(
            "POST /te-http10 HTTP/1.0\r\nhost: {h}\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n{}",
            hidden("te-http10")
        ),
    ));
    // obs-fold: an unfolding parser reads `x-pad: a transfer-encoding: chunked`; one that
    // trims lines reads a Transfer-Encoding header.
    let body = format!("0\r\n\r\n{}", hidden("obs-fold"));
    cases.push((
        "obs-fold (a header line starting with a space)",
        format!(
            "POST /obs-fold HTTP/1.1\r\nhost: {h}\r\ncontent-length: {}\r\nx-pad: a\r\n transfer-encoding: chunked\r\n\r\n{body}",
            body.len()
        ),
    ));
    let inner = hidden("bare-lf");
    cases.push((
        "bare LF line endings throughout the head",
        format!(
            "POST /bare-lf HTTP/1.1\nhost: {h}\ncontent-length: {}\n\n{inner}",
            inner.len()
        ),
    ));
    // A CRLF-only parser reads `x-pad: a<LF>content-length: N` as one header: no body.
    let inner = hidden("bare-lf-cl");
    cases.push((
        "a bare LF hiding a Content-Length line",
        format!(
            "POST /bare-lf-cl HTTP/1.1\r\nhost: {h}\r\nx-pad: a\ncontent-length: {}\r\n\r\n{inner}",
            inner.len()
        ),
    ));
    let inner = hidden("bad-name-space");
    cases.push((
        "invalid header name `Bad Header: x`",
        format!(
            "POST /bad-name-space HTTP/1.1\r\nhost: {h}\r\nBad Header: x\r\ncontent-length: {}\r\n\r\n{inner}",
            inner.len()
        ),
    ));
    let inner = hidden("bad-name-ctl");
    cases.push((
        "invalid header name `X-Foo\\x01: y`",
        format!(
            "POST /bad-name-ctl HTTP/1.1\r\nhost: {h}\r\nX-Foo\x01: y\r\ncontent-length: {}\r\n\r\n{inner}",
            inner.len()
        ),
    ));
    // 72 bits of chunk size: a parser that wraps or truncates reads some other length.
    let inner = hidden("chunk-overflow");
    cases.push((
        "oversized chunk size `ffffffffffffffffff`",
        format!(
            "POST /chunk-overflow HTTP/1.1\r\nhost: {h}\r\ntransfer-encoding: chunked\r\n\r\nffffffffffffffffff\r\n{inner}\r\n0\r\n\r\n"
        ),
    ));
    cases.push((
        "Transfer-Encoding: xchunked",
        format!(
            "POST /xchunked HTTP/1.1\r\nhost: {h}\r\ntransfer-encoding: xchunked\r\n\r\n0\r\n\r\n{}",
            hidden("xchunked")
        ),
    ));
    cases.push((
        "Transfer-Encoding: chunked, identity",
        format!(
            "POST /chunked-identity HTTP/1.1\r\nhost: {h}\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n{}",
            hidden("chunked-identity")
        ),
    ));
    let inner = hidden("space-colon");
    cases.push((
        "a space before the colon (`Content-Length : N`)",
        format!(
            "POST /space-colon HTTP/1.1\r\nhost: {h}\r\ncontent-length : {}\r\n\r\n{inner}",
            inner.len()
        ),
    ));
    cases
        .into_iter()
        .map(|(name, raw)| (name, raw.into_bytes()))
        .collect()
}

fn seen_since(seen: &Seen, from: usize) -> Vec<String> {
    seen.lock()
        .map(|s| s.get(from..).unwrap_or_default().to_vec())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_shapes_are_refused_and_never_reach_a_backend_as_a_second_request()
-> Result<()> {
    let started = Instant::now();
    let inst = Instance::create("smuggle", json!({}), &[]).await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let backend = SocketAddr::new(portico_tests::netns::pod_ip(), 8080);
    let seen = counting_backend(backend).await?;
    portico_tests::fixtures::apply_service(c, ns, "raw", "http", 80, 8080).await?;
    portico_tests::fixtures::apply_endpoints(c, ns, "raw", "slice", "http", &[backend]).await?;
    apply_ingress(
        c,
        ingress(ns, "raw", class, SMUGGLE_HOST, &[("/", "Prefix", "raw")]),
    )
    .await?;
    let mut proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    let proxy_addr = SocketAddr::new(proxy.ip, proxy.http_port);
    eventually(OPERATOR_WAIT, "the raw backend is routed", || {
        let http = http.clone();
        async move { status_of(&http, SMUGGLE_HOST, "/ready").await == 200 }
    })
    .await?;

    let mut failures = Vec::new();
    // Each shape alone, and behind a plain GET on the same connection: the proxy's own
    // HTTP/1.1 server answers that one and hands the connection to hyper at the hostile
    // head (serve/h1.rs), which must then judge it exactly as on a fresh connection.
    let plain = format!("GET /first HTTP/1.1\r\nhost: {SMUGGLE_HOST}\r\n\r\n");
    let shapes = hostile_requests();
    let runs = shapes
        .iter()
        .map(|(case, raw)| (*case, false, raw.clone()))
        .chain(shapes.iter().map(|(case, raw)| {
            let mut behind = plain.clone().into_bytes();
            behind.extend_from_slice(raw);
            (*case, true, behind)
        }));
    for (case, behind, raw) in runs {
        let before = seen.lock().map(|s| s.len()).unwrap_or(0);
        let mut answer = raw_exchange(proxy_addr, &raw).await?;
        let mut reached = seen_since(&seen, before);
        if behind {
            // The plain GET's answer first, and the backend saw it first.
            let first = answer.status_line();
            let ok = first.starts_with("HTTP/1.1 200")
                && reached.first().is_some_and(|l| l.contains("/first"));
            let text = String::from_utf8_lossy(&answer.bytes).into_owned();
            answer.bytes = match text.match_indices("HTTP/1.1 ").nth(1) {
                Some((at, _)) => answer.bytes[at..].to_vec(),
                None => Vec::new(),
            };
            if !ok {
                failures.push(format!(
                    "{case}, behind a plain GET: that GET was answered {first:?}, the backend saw {reached:?}"
                ));
            }
            reached.retain(|l| !l.contains("/first"));
        }
        let case = if behind {
            format!("{case} (behind a plain GET)")
        } else {
            case.to_string()
        };
        let status = answer.status_line();
        eprintln!(
            "{case}: {status:?} (connection {}); the backend saw {reached:?}",
            answer.end
        );
        let leaked = reached.iter().any(|l| l.contains(MARKER));
        // A bare LF is accepted as a line end (RFC 9112 §2.2 lets a recipient do so; hyper
        // does) and the head is written upstream afresh with CRLFs, so the backend sees
        // exactly the one request the proxy parsed: no framing can differ between them.
        // docs/security.md says so. Every other shape is refused.
        //
        // Content-Length with Transfer-Encoding is read as chunked, the Content-Length is
        // dropped and the connection is closed after the answer (RFC 9112 §6.3 allows
        // exactly this; hyper does it and no hook sees the dropped header): the backend
        // gets the chunked body only, and nothing can follow on the connection.
        let ok = if case.contains("bare LF") {
            status.starts_with("HTTP/1.1 200") && reached.len() == 1
        } else if case.contains("Content-Length then Transfer-Encoding")
            || case.contains("Transfer-Encoding: chunked then Content-Length")
        {
            status.starts_with("HTTP/1.1 200") && reached.len() == 1 && answer.end == "closed"
        } else {
            status.starts_with("HTTP/1.1 400")
        };
        if !ok || leaked {
            failures.push(format!(
                "{case}: answered {status:?} (connection {}), {}; the backend saw {reached:?}",
                answer.end,
                if leaked {
                    "the hidden request REACHED the backend"
                } else {
                    "the hidden request did not reach the backend"
                },
            ));
        }
    }
    let all = seen_since(&seen, 0);
    let leaked: Vec<&String> = all.iter().filter(|l| l.contains(MARKER)).collect();

    // The proxy survived all of it.
    let r = http.get(SMUGGLE_HOST, "/after").await?;
    assert_eq!(r.status, 200, "a normal GET after the hostile requests");
    assert_eq!(&r.body[..], b"/after");
    proxy.process.check_running()?;
    eprintln!("run time {:?}", started.elapsed());

    assert!(
        leaked.is_empty(),
        "hidden requests reached the backend: {leaked:?}"
    );
    assert!(
        failures.is_empty(),
        "{} hostile request shape(s) were not handled as documented:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

/// What the rapid-reset client managed.
#[derive(Debug, Default)]
struct Burst {
    /// Streams opened and at once cancelled (HEADERS then RST_STREAM(CANCEL)).
    resets: u64,
    connections: u32,
    /// How the connections the proxy ended ended (GOAWAY reason, EOF, …), and how often.
    closed_by_proxy: BTreeMap<String, u32>,
    elapsed: Duration,
}

const MAX_RESETS: u64 = 20_000;
const BURST: Duration = Duration::from_secs(5);

/// Opens streams on HTTP/2 (prior knowledge) connections to `proxy` and cancels each at
/// once, for at most `MAX_RESETS` streams or `BURST`; reconnects when the proxy closes one.
/// `progress` counts the resets as they go.
async fn rapid_reset(proxy: SocketAddr, host: &str, progress: Arc<AtomicU64>) -> Result<Burst> {
    let start = Instant::now();
    let mut burst = Burst::default();
    while burst.resets < MAX_RESETS && start.elapsed() < BURST && burst.connections < 1_000 {
        let tcp = TcpStream::connect(proxy).await?;
        tcp.set_nodelay(true)?;
        burst.connections += 1;
        let (mut client, conn) =
            tokio::time::timeout(Duration::from_secs(2), h2::client::handshake(tcp))
                .await
                .context("HTTP/2 handshake within 2 s")??;
        let driver = tokio::spawn(conn);
        let mut ended: Option<String> = None;
        while burst.resets < MAX_RESETS && start.elapsed() < BURST {
            let ready = std::future::poll_fn(|cx| client.poll_ready(cx));
            match tokio::time::timeout(Duration::from_secs(1), ready).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    ended = Some(format!("waiting for a stream: {e}"));
                    break;
                }
                Err(_) => {
                    ended = Some("no stream capacity for 1 s".into());
                    break;
                }
            };
            let req =
                http::Request::get(format!("http://{host}/rapid/{}", burst.resets)).body(())?;
            match client.send_request(req, false) {
                Ok((response, send)) => {
                    // Dropping both handles of an open stream sends RST_STREAM(CANCEL).
                    drop(response);
                    drop(send);
                    burst.resets += 1;
                    progress.store(burst.resets, Ordering::Relaxed);
                }
                Err(e) => {
                    ended = Some(format!("sending a request: {e}"));
                    break;
                }
            }
            if burst.resets % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
        drop(client);
        let driven = tokio::time::timeout(Duration::from_secs(2), driver).await;
        if let Some(why) = ended {
            let how = match driven {
                Ok(Ok(Ok(()))) => "connection ended".to_string(),
                Ok(Ok(Err(e))) if e.is_go_away() => {
                    format!("GOAWAY {:?}", e.reason())
                }
                Ok(Ok(Err(e))) => format!("connection error: {e}"),
                Ok(Err(e)) => format!("driver task: {e}"),
                Err(_) => "connection still open after 2 s".into(),
            };
            *burst
                .closed_by_proxy
                .entry(format!("{why}; {how}"))
                .or_default() += 1;
        }
    }
    burst.elapsed = start.elapsed();
    Ok(burst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_rapid_reset_burst_does_not_stall_other_clients() -> Result<()> {
    let started = Instant::now();
    let inst = Instance::create("rapid", json!({}), &[]).await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let echo = backends("echo", 1).await?;
    publish(c, ns, "echo", &echo).await?;
    let host = "echo.example.com";
    apply_ingress(
        c,
        ingress(ns, "echo", class, host, &[("/", "Prefix", "echo")]),
    )
    .await?;
    let mut proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    let proxy_addr = SocketAddr::new(proxy.ip, proxy.http_port);
    eventually(OPERATOR_WAIT, "the echo backend is routed", || {
        let http = http.clone();
        async move { status_of(&http, host, "/ready").await == 200 }
    })
    .await?;

    // The attacker's transport works: one whole HTTP/2 request (prior knowledge) answers.
    {
        let tcp = TcpStream::connect(proxy_addr).await?;
        let (client, conn) = h2::client::handshake(tcp).await?;
        let driver = tokio::spawn(conn);
        let mut client = client.ready().await?;
        let (response, _) = client.send_request(
            http::Request::get(format!("http://{host}/h2")).body(())?,
            true,
        )?;
        let response = tokio::time::timeout(Duration::from_secs(5), response)
            .await
            .context("an HTTP/2 answer within 5 s")??;
        assert_eq!(response.status(), 200, "a plain HTTP/2 GET");
        drop(client);
        driver.abort();
    }

    let progress = Arc::new(AtomicU64::new(0));
    let attacker = tokio::spawn({
        let progress = progress.clone();
        async move { rapid_reset(proxy_addr, host, progress).await }
    });
    // Measure while the burst runs: from its first reset, GETs one after another (every
    // other one on a fresh connection), at least 50, for as long as the burst lasts.
    eventually(Duration::from_secs(5), "the burst starts", || async {
        progress.load(Ordering::Relaxed) > 0 || attacker.is_finished()
    })
    .await?;
    let mut latencies = Vec::new();
    let mut during_burst = 0;
    let mut bad = Vec::new();
    for i in 0..2_000 {
        if i >= 50 && attacker.is_finished() {
            break;
        }
        let path = format!("/victim/{i}");
        let fresh;
        let client = if i % 2 == 0 {
            &http
        } else {
            fresh = Http::new(&proxy.http_base());
            &fresh
        };
        let t = Instant::now();
        let result = client.get(host, &path).await;
        latencies.push(t.elapsed());
        if !attacker.is_finished() {
            during_burst += 1;
        }
        match result {
            Ok(r) if r.status == 200 => {}
            Ok(r) => bad.push(format!("{path}: {}", r.status)),
            Err(e) => bad.push(format!("{path}: {e:#}")),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let burst = attacker.await??;
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    let mut sorted = latencies.clone();
    sorted.sort();
    eprintln!(
        "rapid reset: {} streams reset over {} connection(s) in {:?}; closed by the proxy: {:?}",
        burst.resets, burst.connections, burst.elapsed, burst.closed_by_proxy
    );
    eprintln!(
        "other client: {} GETs ({during_burst} finished while the burst ran), median {:?}, slowest {slowest:?}",
        latencies.len(),
        sorted.get(sorted.len() / 2).copied().unwrap_or_default()
    );
    proxy.process.check_running()?;
    let r = http.get(host, "/after").await?;
    assert_eq!(r.status, 200, "a normal GET after the burst");
    eprintln!("run time {:?}", started.elapsed());

    assert!(burst.resets > 0, "the attacker reset no stream: {burst:?}");
    assert!(during_burst > 0, "no GET ran during the burst: {burst:?}");
    assert!(
        bad.is_empty(),
        "other client's GETs failed during the burst: {bad:?}"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "the other client's slowest GET took {slowest:?} (all: {latencies:?})"
    );
    Ok(())
}
