//! Edge hardening, tried the way an attacker would: hostile bytes sent for real through the
//! proxy (run from the operator's Deployment, in the test network namespace), and what came
//! out asserted. Each test is named by the protection it proves.

mod proxy_support;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use proxy_support::*;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// Reads one request head and returns its target; the body, if any, stays unread. `None`
/// when the connection ends first.
async fn request_path<R: AsyncBufReadExt + Unpin>(r: &mut R) -> Option<String> {
    let mut line = String::new();
    if r.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    loop {
        let mut h = String::new();
        match r.read_line(&mut h).await {
            Ok(0) | Err(_) => return None,
            Ok(_) if h == "\r\n" || h == "\n" => break,
            Ok(_) => {}
        }
    }
    Some(line.split(' ').nth(1).unwrap_or("?").to_string())
}

/// A backend that desyncs on purpose: it answers a POST as soon as it has read the head,
/// never reads the body, and then parses the body as the next request on the connection
/// and answers that too. Every answer's body is the request line's path, so a misdelivered
/// response is plain to see.
async fn desync_backend(addr: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut r = BufReader::new(r);
                // The body (if any) stays unread.
                while let Some(path) = request_path(&mut r).await {
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{path}",
                        path.len()
                    );
                    if w.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(())
}

/// One request on a fresh connection, read to the end (`connection: close`).
async fn raw_exchange(proxy: SocketAddr, request: &[u8]) -> Result<String> {
    let mut s = TcpStream::connect(proxy).await?;
    s.write_all(request).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .context("no answer within 10 s")??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn body_of(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_upstream_connection_never_hands_one_clients_response_to_another() -> Result<()> {
    let inst = Instance::create("desync", json!({}), &[]).await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let backend = SocketAddr::new(portico_tests::netns::pod_ip(), 8080);
    desync_backend(backend).await?;
    portico_tests::fixtures::apply_service(c, ns, "desync", "http", 80, 8080).await?;
    portico_tests::fixtures::apply_endpoints(c, ns, "desync", "slice", "http", &[backend]).await?;
    apply_ingress(
        c,
        ingress(
            ns,
            "desync",
            class,
            "desync.example.com",
            &[("/", "Prefix", "desync")],
        ),
    )
    .await?;
    let proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    let proxy_addr = SocketAddr::new(proxy.ip, proxy.http_port);
    let host = "desync.example.com";
    eventually(OPERATOR_WAIT, "the desync backend is routed", || {
        let http = http.clone();
        async move { status_of(&http, host, "/ready").await == 200 }
    })
    .await?;

    let mut misdelivered = Vec::new();
    let mut victims = 0;
    for round in 0..40 {
        {
            // The attacker's POST carries a whole request as its body.
            let smuggled = format!("GET /smuggled-{round} HTTP/1.1\r\nhost: {host}\r\n\r\n");
            let attack = format!(
                "POST /upload HTTP/1.1\r\nhost: {host}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{smuggled}",
                smuggled.len()
            );
            let answer = raw_exchange(proxy_addr, attack.as_bytes()).await?;
            if body_of(&answer) != "/upload" {
                bail!("the attacker's own POST got {answer:?}");
            }
            // Other clients follow at once on their own connections.
            for i in 0..3 {
                let path = format!("/victim-{round}-{i}");
                let r = http.get(host, &path).await?;
                victims += 1;
                let got = String::from_utf8_lossy(&r.body).into_owned();
                if got != path {
                    misdelivered.push(format!("{host}{path} got {:?} ({})", got, r.status));
                }
            }
        }
    }
    assert_eq!(victims, 120);
    assert!(
        misdelivered.is_empty(),
        "{} of {victims} requests got another client's response: {misdelivered:#?}",
        misdelivered.len()
    );
    Ok(())
}

/// A backend whose answers try to leave bytes on its pooled connection for the next client:
/// by path, a response framed two ways, a second response glued after the first, two
/// lengths, a bad chunk line, and a plain answer (`/ok...`) naming its own path.
async fn splitting_backend(addr: SocketAddr) -> Result<()> {
    const PWNED: &str = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nPWNED!";
    let listener = TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut r = BufReader::new(r);
                while let Some(path) = request_path(&mut r).await {
                    let answer = match path.as_str() {
                        "/te-and-cl" => format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n{PWNED}"
                        ),
                        "/glued" => {
                            format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok{PWNED}")
                        }
                        "/two-lengths" => format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 50\r\n\r\nok{PWNED}"
                        ),
                        "/bad-chunk" => format!(
                            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\nok\r\n0\r\n\r\n{PWNED}"
                        ),
                        _ => format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{path}",
                            path.len()
                        ),
                    };
                    if w.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backends_extra_or_ambiguous_bytes_never_reach_the_next_client() -> Result<()> {
    let inst = Instance::create("split", json!({}), &[]).await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let backend = SocketAddr::new(portico_tests::netns::pod_ip(), 8080);
    splitting_backend(backend).await?;
    portico_tests::fixtures::apply_service(c, ns, "split", "http", 80, 8080).await?;
    portico_tests::fixtures::apply_endpoints(c, ns, "split", "slice", "http", &[backend]).await?;
    let host = "split.example.com";
    apply_ingress(
        c,
        ingress(ns, "split", class, host, &[("/", "Prefix", "split")]),
    )
    .await?;
    let proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    eventually(OPERATOR_WAIT, "the splitting backend is routed", || {
        let http = http.clone();
        async move { status_of(&http, host, "/ok-ready").await == 200 }
    })
    .await?;

    let mut leaks = Vec::new();
    for round in 0..10 {
        // Refused: the client gets a 502 and none of the bytes.
        for attack in ["/te-and-cl", "/two-lengths"] {
            let r = http.get(host, attack).await?;
            let body = String::from_utf8_lossy(&r.body).into_owned();
            if r.status != 502 || body.contains("PWNED") {
                leaks.push(format!("{attack} answered {} {body:?}", r.status));
            }
        }
        // Framed well but followed by more: the client gets the first answer only.
        let r = http.get(host, "/glued").await?;
        if r.status != 200 || &r.body[..] != b"ok" {
            leaks.push(format!("/glued answered {} {:?}", r.status, r.body));
        }
        // A chunk line ended by a bare LF: the body is cut off (an error, or a short body),
        // never the next response.
        if let Ok(r) = http.get(host, "/bad-chunk").await
            && String::from_utf8_lossy(&r.body).contains("PWNED")
        {
            leaks.push(format!("/bad-chunk answered {} {:?}", r.status, r.body));
        }
        // Every other client gets its own answer.
        for i in 0..3 {
            let path = format!("/ok-{round}-{i}");
            let r = http.get(host, &path).await?;
            if r.status != 200 || r.body != path.as_bytes() {
                leaks.push(format!("{path} got {} {:?}", r.status, r.body));
            }
        }
    }
    assert!(leaks.is_empty(), "{} leaks: {leaks:#?}", leaks.len());
    Ok(())
}

/// The status code of a raw HTTP/1.1 answer ("HTTP/1.1 400 ..." → 400), 0 when none.
fn status_code(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_hosts_and_headers_are_judged_as_the_backend_will_read_them() -> Result<()> {
    let inst = Instance::create("edge", json!({}), &[]).await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let public = backends("public", 1).await?;
    publish(c, ns, "public", &public).await?;
    let admin = backends("admin", 1).await?;
    publish(c, ns, "admin", &admin).await?;
    let other = backends("other", 1).await?;
    publish(c, ns, "other", &other).await?;
    apply_ingress(
        c,
        ingress(
            ns,
            "app",
            class,
            "app.example.com",
            &[("/", "Prefix", "public"), ("/admin", "Prefix", "admin")],
        ),
    )
    .await?;
    apply_ingress(
        c,
        ingress(
            ns,
            "other",
            class,
            "other.example.com",
            &[("/", "Prefix", "other")],
        ),
    )
    .await?;
    let proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    let addr = SocketAddr::new(proxy.ip, proxy.http_port);
    eventually(OPERATOR_WAIT, "app.example.com is routed", || {
        let http = http.clone();
        async move { status_of(&http, "app.example.com", "/").await == 200 }
    })
    .await?;
    assert_eq!(
        http.get("app.example.com", "/admin").await?.backend(),
        Some("admin-0")
    );

    // 1. Paths: every spelling of /admin reaches the /admin rule's backend, which is sent
    // the normalized path and the original query.
    for spelling in [
        "/x/../admin",
        "//admin",
        "/%61dmin",
        "/./admin",
        "/%2e%2e/admin",
        "/%2E./admin",
        "/public/..//admin/.",
        "/admin/x/..",
    ] {
        let r = http
            .get("app.example.com", &format!("{spelling}?q=%2e."))
            .await?;
        assert_eq!(r.status, 200, "{spelling}");
        assert_eq!(
            r.backend(),
            Some("admin-0"),
            "{spelling} is judged as /admin"
        );
        let path = r.json["path"].as_str().unwrap_or_default();
        assert!(
            path == "/admin" || path == "/admin/",
            "{spelling} sent upstream as {path:?}"
        );
        assert_eq!(
            r.json["query"], "q=%2e.",
            "{spelling}: the query is kept as sent"
        );
    }
    // Refused: encoded slashes and backslashes, control characters, malformed escapes and
    // targets that are not origin-form.
    for (what, target) in [
        ("encoded slash", "/admin%2Fx"),
        ("encoded backslash", "/x%5C..%5Cadmin"),
        ("raw backslash", "/x\\..\\admin"),
        ("encoded NUL", "/admin%00.txt"),
        ("malformed escape", "/admin%zz"),
        ("asterisk-form", "*"),
    ] {
        let raw =
            format!("GET {target} HTTP/1.1\r\nhost: app.example.com\r\nconnection: close\r\n\r\n");
        let answer = raw_exchange(addr, raw.as_bytes()).await?;
        assert_eq!(status_code(&answer), 400, "{what} ({target}): {answer:?}");
    }

    // 2. One host per request: an absolute-form target's authority replaces Host, upstream too.
    let raw = "GET http://app.example.com/admin HTTP/1.1\r\nhost: other.example.com\r\nconnection: close\r\n\r\n";
    let answer = raw_exchange(addr, raw.as_bytes()).await?;
    assert_eq!(status_code(&answer), 200, "{answer:?}");
    let doc: serde_json::Value = serde_json::from_str(body_of(&answer))?;
    assert_eq!(
        doc["backend"], "admin-0",
        "routed by the target's authority"
    );
    assert_eq!(
        doc["headers"]["host"], "app.example.com",
        "the backend sees that host"
    );
    for (what, head) in [
        (
            "two Host headers",
            "host: app.example.com\r\nhost: other.example.com\r\n",
        ),
        (
            "userinfo in Host",
            "host: other.example.com@app.example.com\r\n",
        ),
        ("space in Host", "host: app.example.com x\r\n"),
        ("bad port", "host: app.example.com:99999\r\n"),
        ("no Host on HTTP/1.1", ""),
    ] {
        let raw = format!("GET /admin HTTP/1.1\r\n{head}connection: close\r\n\r\n");
        let answer = raw_exchange(addr, raw.as_bytes()).await?;
        assert_eq!(status_code(&answer), 400, "{what}: {answer:?}");
    }
    // HTTP/2: `:authority` and a Host header that disagree.
    let tcp = TcpStream::connect(addr).await?;
    let (mut h2, conn) = h2::client::handshake(tcp).await?;
    tokio::spawn(conn);
    let req = http::Request::get("http://app.example.com/admin")
        .header("host", "other.example.com")
        .body(())?;
    let (resp, _) = h2.send_request(req, true)?;
    assert_eq!(
        resp.await?.status(),
        400,
        "HTTP/2 Host disagreeing with :authority"
    );
    let req = http::Request::get("http://app.example.com/admin").body(())?;
    let (resp, _) = h2.ready().await?.send_request(req, true)?;
    assert_eq!(resp.await?.status(), 200, "HTTP/2 with :authority alone");

    // 3. Headers: underscores and untrusted forwarding headers never reach the backend;
    // only WebSocket upgrades pass (h2c is stripped, the request served as ordinary).
    let r = http
        .get_with(
            "app.example.com",
            "/headers",
            &[
                ("x_forwarded_for", "1.2.3.4"),
                ("x-user_id", "admin"),
                ("forwarded", "for=1.2.3.4;proto=https"),
                ("x-forwarded-port", "8443"),
                ("x-forwarded-prefix", "/admin"),
                ("x-original-url", "/admin"),
                ("x-rewrite-url", "/admin"),
                ("x-app", "kept"),
            ],
        )
        .await?;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.backend(),
        Some("public-0"),
        "judged on /headers, not on a header"
    );
    let h = &r.json["headers"];
    for gone in [
        "x_forwarded_for",
        "x-user_id",
        "forwarded",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-original-url",
        "x-rewrite-url",
    ] {
        assert!(h.get(gone).is_none(), "{gone} reached the backend: {h}");
    }
    assert_eq!(h["x-app"], "kept");
    let raw = "GET /h2c HTTP/1.1\r\nhost: app.example.com\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(raw.as_bytes()).await?;
    let mut buf = vec![0u8; 16 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await??;
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert_eq!(
        status_code(&answer),
        200,
        "h2c upgrade not tunnelled: {answer:?}"
    );
    let doc: serde_json::Value = serde_json::from_str(body_of(&answer))?;
    assert!(doc["headers"].get("upgrade").is_none(), "{doc}");
    assert!(doc["headers"].get("http2-settings").is_none(), "{doc}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_streams_bodies_and_tunnels_are_bounded() -> Result<()> {
    let inst = Instance::create(
        "bounds",
        json!({
            "timeouts": { "idle": "1s", "tunnelIdle": "1s", "connect": "500ms" },
            "http": { "maxConnections": 12, "maxRequestBodySize": "1k", "http2MaxConcurrentStreams": 3,
                      "maxConnectionsPerEndpoint": 2 }
        }),
        &[],
    )
    .await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let b = backends("echo", 1).await?;
    publish(c, ns, "echo", &b).await?;
    apply_ingress(
        c,
        ingress(
            ns,
            "bounds",
            class,
            "bounds.example.com",
            &[("/", "Prefix", "echo")],
        ),
    )
    .await?;
    let proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    let addr = SocketAddr::new(proxy.ip, proxy.http_port);
    let host = "bounds.example.com";
    eventually(OPERATOR_WAIT, "bounds.example.com is routed", || {
        let http = http.clone();
        async move { status_of(&http, host, "/").await == 200 }
    })
    .await?;

    // Request bodies: 413 beyond the limit, declared or streamed (chunked).
    let post = |body: String, chunked: bool| {
        let framing = if chunked {
            format!(
                "transfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            )
        } else {
            format!("content-length: {}\r\n\r\n{body}", body.len())
        };
        format!("POST /upload HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n{framing}")
    };
    for (what, raw, want) in [
        ("small declared body", post("x".repeat(512), false), 200),
        ("large declared body", post("x".repeat(2048), false), 413),
        ("small chunked body", post("x".repeat(512), true), 200),
        ("large chunked body", post("x".repeat(4096), true), 413),
    ] {
        let answer = raw_exchange(addr, raw.as_bytes()).await?;
        assert_eq!(status_code(&answer), want, "{what}: {answer:?}");
    }

    // Upstream connections in use per endpoint: two slow requests hold both slots; a third
    // waits the connect timeout (500 ms) for one, then gets 503; a slot freed within the
    // wait serves it.
    let slow = |ms: u64| {
        let http = http.clone();
        tokio::spawn(async move {
            http.get(host, &format!("/slow?delay_ms={ms}"))
                .await
                .map(|r| r.status)
        })
    };
    let (a, b) = (slow(2500), slow(2500));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let third = http.get(host, "/third").await?;
    let waited = started.elapsed();
    assert_eq!(third.status, 503, "beyond the per-endpoint cap");
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_millis(1500),
        "waited {waited:?} for a slot"
    );
    assert_eq!(a.await??, 200);
    assert_eq!(b.await??, 200);
    let (a, b) = (slow(400), slow(400));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = http.get(host, "/fourth").await?;
    assert_eq!(
        r.status, 200,
        "a slot freed during the wait serves the request"
    );
    assert_eq!(a.await??, 200);
    assert_eq!(b.await??, 200);

    // HTTP/2: the advertised stream limit, and an idle connection closed although the
    // client keeps pinging.
    let tcp = TcpStream::connect(addr).await?;
    let (h2c, conn) = h2::client::Builder::new()
        .handshake::<_, bytes::Bytes>(tcp)
        .await?;
    let mut conn = conn;
    let ping = conn.ping_pong();
    let conn_task = tokio::spawn(conn);
    let mut h2c = h2c.ready().await?;
    let req = http::Request::get(format!("http://{host}/h2")).body(())?;
    let (resp, _) = h2c.send_request(req, true)?;
    assert_eq!(resp.await?.status(), 200);
    assert_eq!(
        h2c.current_max_send_streams(),
        3,
        "SETTINGS_MAX_CONCURRENT_STREAMS"
    );
    let pinger = tokio::spawn(async move {
        let Some(mut ping) = ping else { return };
        for _ in 0..40 {
            if ping.ping(h2::Ping::opaque()).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let closed = tokio::time::timeout(Duration::from_secs(4), conn_task).await;
    assert!(
        closed.is_ok(),
        "an HTTP/2 connection with only PINGs for 1 s is closed"
    );
    pinger.abort();

    // The connection limit: a WebSocket tunnel keeps its slot; at the limit a new
    // connection is closed at once, while the admin port still answers.
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("ws://{host}/ws"), TcpStream::connect(addr).await?)
            .await?;
    ws.send(Message::Text("hello".into())).await?;
    assert!(matches!(ws.next().await, Some(Ok(Message::Text(t))) if t == "hello"));
    let mut held = Vec::new();
    for _ in 0..11 {
        held.push(TcpStream::connect(addr).await?);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = TcpStream::connect(addr).await?;
    let mut buf = [0u8; 64];
    let started = std::time::Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(2), over.read(&mut buf)).await;
    assert!(
        matches!(n, Ok(Ok(0)) | Ok(Err(_))) && started.elapsed() < Duration::from_millis(900),
        "the 13th connection is closed at once, not queued: {n:?} after {:?}",
        started.elapsed()
    );
    let admin = portico_tests::pod::http_status(&format!("{}/readyz", proxy.admin_base())).await;
    assert_eq!(
        admin,
        Some(200),
        "the admin port answers at the connection limit"
    );
    drop(held);
    // The idle tunnel is closed after its own idle timeout.
    let end = tokio::time::timeout(Duration::from_secs(4), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "an idle WebSocket tunnel is closed after 1 s");
    eventually(Duration::from_secs(5), "slots are free again", || {
        let http = http.clone();
        async move { status_of(&http, host, "/").await == 200 }
    })
    .await?;

    // The traffic port (slowloris): a client that sends its head a byte every 300 ms, so
    // never idle for the 1 s idle timeout, is cut off by the 10 s header-read timeout,
    // counted from the head's first byte.
    let traffic = async {
        let (mut rd, mut wr) = TcpStream::connect(addr).await?.into_split();
        wr.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await?;
        let started = std::time::Instant::now();
        let mut one = [0u8; 1];
        let cut = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                tokio::select! {
                    r = rd.read(&mut one) => return r.unwrap_or(0),
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {
                        if wr.write_all(b"x").await.is_err() {
                            return 0;
                        }
                    }
                }
            }
        })
        .await;
        anyhow::Ok((cut, started.elapsed()))
    };
    // The admin port: a client that never finishes its head is dropped after the
    // header-read timeout; other clients are served meanwhile.
    let admin = async {
        let mut slow = TcpStream::connect((proxy.ip, proxy.admin_port)).await?;
        slow.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n")
            .await?;
        let mut buf = [0u8; 64];
        anyhow::Ok(tokio::time::timeout(Duration::from_secs(8), slow.read(&mut buf)).await)
    };
    let (traffic, admin) = tokio::join!(traffic, admin);
    let (cut, took) = traffic?;
    assert_eq!(
        cut.ok(),
        Some(0),
        "the traffic port closes a trickled head without an answer"
    );
    assert!(
        took >= Duration::from_millis(9_500) && took < Duration::from_secs(12),
        "the traffic port cut a trickled head after {took:?}, not 10 s"
    );
    assert!(
        admin?.is_ok(),
        "the admin port drops an unfinished head within its header-read timeout"
    );
    Ok(())
}
