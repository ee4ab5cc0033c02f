//! ingress-nginx's traffic annotations with real requests: a per-Ingress body limit (413,
//! declared and chunked), per-Ingress timeouts (504 from a slow backend, and a longer
//! deadline than the instance's), `proxy-next-upstream` (retries off; POST retried with
//! `non_idempotent`), and access log lines on the proxy's stdout, on per instance and off
//! per Ingress. Real apiserver and operator, the proxy from the operator's Deployment.

mod proxy_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use proxy_support::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const N: &str = "nginx.ingress.kubernetes.io";

fn annotated(ns: &str, name: &str, class: &str, service: &str, annotations: Value) -> Value {
    let host = format!("{name}.traffic.example.com");
    with_annotations(
        ingress(ns, name, class, &host, &[("/", "Prefix", service)]),
        annotations,
    )
}

/// Sends `head` (without the blank line) and `body` as written, returns the status.
async fn raw_status(proxy: SocketAddr, head: &str, body: &[u8]) -> Result<u16> {
    Ok(raw(proxy, head, body).await?.0)
}

/// Sends `head` and `body`, returns the status and the response head's lines.
async fn raw(proxy: SocketAddr, head: &str, body: &[u8]) -> Result<(u16, Vec<String>)> {
    let mut s = tokio::net::TcpStream::connect(proxy).await?;
    let mut req = format!("{head}\r\nconnection: close\r\n\r\n").into_bytes();
    req.extend_from_slice(body);
    // The proxy may answer 413 and close before reading all of it.
    let _ = s.write_all(&req).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line in {text:?}"))?;
    Ok((
        status,
        head.lines().skip(1).map(str::to_ascii_lowercase).collect(),
    ))
}

fn has(lines: &[String], line: &str) -> bool {
    lines.iter().any(|l| l == &line.to_ascii_lowercase())
}

async fn post(proxy: SocketAddr, host: &str, len: usize) -> Result<u16> {
    let head = format!("POST /upload HTTP/1.1\r\nhost: {host}\r\ncontent-length: {len}");
    raw_status(proxy, &head, &vec![b'x'; len]).await
}

async fn post_chunked(proxy: SocketAddr, host: &str, len: usize) -> Result<u16> {
    let head = format!("POST /upload HTTP/1.1\r\nhost: {host}\r\ntransfer-encoding: chunked");
    let mut body = Vec::new();
    for chunk in vec![b'x'; len].chunks(1000) {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    raw_status(proxy, &head, &body).await
}

/// The proxy's access log lines (JSON with `status` and `host`) for `host`.
fn access_lines(log: &std::path::Path, host: &str) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("status").is_some() && v["host"] == host)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_traffic_annotations_with_real_requests() -> Result<()> {
    // The instance: 1k body limit, 1s request timeout, access log on.
    let inst = Instance::create(
        "nginx-traffic",
        json!({
            "http": { "maxRequestBodySize": "1k" },
            "timeouts": { "request": "1s" },
            "accessLog": { "enabled": true },
        }),
        &[],
    )
    .await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let web = backends("web", 1).await?;
    publish(c, ns, "web", &web).await?;
    // Two Services whose slices list a live backend and an address nothing listens on.
    let mut live_backends = Vec::new();
    for svc in ["flaky-a", "flaky-b"] {
        let live = backends(svc, 1).await?;
        let dead = SocketAddr::new(portico_tests::netns::pod_ip(), 8080);
        portico_tests::fixtures::apply_service(c, ns, svc, "http", 80, 8080).await?;
        portico_tests::fixtures::apply_endpoints(
            c,
            ns,
            svc,
            "slice",
            "http",
            &[dead, live[0].addr],
        )
        .await?;
        live_backends.extend(live);
    }
    for (name, service, annotations) in [
        ("plain", "web", json!({})),
        (
            "big",
            "web",
            json!({ format!("{N}/proxy-body-size"): "8k" }),
        ),
        (
            "small",
            "web",
            json!({ format!("{N}/proxy-body-size"): "100" }),
        ),
        (
            "unlimited",
            "web",
            json!({ format!("{N}/proxy-body-size"): "0" }),
        ),
        (
            "slow",
            "web",
            json!({ format!("{N}/proxy-read-timeout"): "1", format!("{N}/proxy-send-timeout"): "500ms" }),
        ),
        (
            "patient",
            "web",
            json!({ format!("{N}/proxy-read-timeout"): "5" }),
        ),
        (
            "quiet",
            "web",
            json!({ format!("{N}/enable-access-log"): "false" }),
        ),
        ("cors", "web", json!({ format!("{N}/enable-cors"): "true" })),
        (
            "cors-list",
            "web",
            json!({
                format!("{N}/enable-cors"): "true",
                format!("{N}/cors-allow-origin"): "https://app.example.com, https://*.example.org",
                format!("{N}/cors-allow-methods"): "GET, POST",
                format!("{N}/cors-allow-headers"): "X-Token",
                format!("{N}/cors-expose-headers"): "X-Total",
                format!("{N}/cors-allow-credentials"): "false",
                format!("{N}/cors-max-age"): "600",
            }),
        ),
        (
            "sticky",
            "web",
            json!({
                format!("{N}/affinity"): "cookie",
                format!("{N}/session-cookie-name"): "route",
                format!("{N}/session-cookie-path"): "/app",
                format!("{N}/session-cookie-max-age"): "3600",
                format!("{N}/session-cookie-expires"): "7200",
                format!("{N}/session-cookie-samesite"): "Strict",
                format!("{N}/session-cookie-secure"): "true",
            }),
        ),
        (
            "noretry",
            "flaky-a",
            json!({ format!("{N}/proxy-next-upstream"): "off" }),
        ),
        (
            "postretry",
            "flaky-b",
            json!({
                format!("{N}/proxy-next-upstream"): "error timeout non_idempotent",
                format!("{N}/proxy-next-upstream-tries"): "2",
            }),
        ),
    ] {
        apply_ingress(c, annotated(ns, name, class, service, annotations)).await?;
    }
    inst.await_proxy_arg("access-log", "true").await?;
    let proxy = inst.start_proxy().await?;
    let addr = SocketAddr::new(proxy.ip, proxy.http_port);
    let http = Http::new(&proxy.http_base());
    let host = |name: &str| format!("{name}.traffic.example.com");
    for name in [
        "plain",
        "big",
        "small",
        "unlimited",
        "slow",
        "patient",
        "quiet",
        "cors",
        "cors-list",
        "sticky",
    ] {
        eventually(
            Duration::from_secs(10),
            &format!("{name} is served"),
            || async { status_of(&http, &host(name), "/").await == 200 },
        )
        .await?;
    }

    // proxy-body-size: the Ingress's limit, not the instance's 1k; declared and chunked.
    assert_eq!(post(addr, &host("plain"), 2000).await?, 413, "instance: 1k");
    assert_eq!(post(addr, &host("big"), 4000).await?, 200, "8k allows 4000");
    assert_eq!(post(addr, &host("big"), 10_000).await?, 413, "declared");
    assert_eq!(post_chunked(addr, &host("big"), 4000).await?, 200);
    assert_eq!(
        post_chunked(addr, &host("big"), 10_000).await?,
        413,
        "chunked"
    );
    assert_eq!(post(addr, &host("small"), 100).await?, 200);
    assert_eq!(post(addr, &host("small"), 101).await?, 413);
    assert_eq!(post_chunked(addr, &host("small"), 500).await?, 413);
    assert_eq!(
        post(addr, &host("unlimited"), 200_000).await?,
        200,
        "0: no limit"
    );
    assert_eq!(post_chunked(addr, &host("unlimited"), 200_000).await?, 200);

    // Timeouts: 504 from the Ingress's deadline; a longer one than the instance's 1s.
    let t = Instant::now();
    let r = http.get(&host("slow"), "/?delay_ms=4000").await?;
    assert_eq!(r.status, 504, "read timeout 1s against a 4s backend");
    assert!(
        t.elapsed() < Duration::from_millis(3000),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(http.get(&host("slow"), "/?delay_ms=100").await?.status, 200);
    assert_eq!(
        http.get(&host("plain"), "/?delay_ms=2000").await?.status,
        504,
        "the instance's 1s"
    );
    assert_eq!(
        http.get(&host("patient"), "/?delay_ms=2000").await?.status,
        200,
        "proxy-read-timeout 5 outlasts the instance's 1s"
    );

    // proxy-next-upstream off: a failed connect is answered 502, not retried.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(status_of(&http, &host("noretry"), "/").await);
    }
    assert!(statuses.contains(&502), "no retry: {statuses:?}");
    // non_idempotent: a POST whose connect failed goes to the other endpoint.
    for i in 0..4 {
        assert_eq!(
            post(addr, &host("postretry"), 10).await?,
            200,
            "POST {i} retried after a failed connect"
        );
    }

    // CORS with ingress-nginx's defaults: a preflight answered by the proxy, headers on
    // responses.
    let preflight = |name: &str, origin: &str| {
        format!(
            "OPTIONS /api HTTP/1.1\r\nhost: {}\r\norigin: {origin}\r\naccess-control-request-method: POST",
            host(name)
        )
    };
    let (status, h) = raw(addr, &preflight("cors", "https://any.example"), b"").await?;
    assert_eq!(status, 204, "{h:?}");
    for line in [
        "access-control-allow-origin: *",
        "access-control-allow-credentials: true",
        "access-control-allow-methods: GET, PUT, POST, DELETE, PATCH, OPTIONS",
        "access-control-allow-headers: DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization",
        "access-control-max-age: 1728000",
    ] {
        assert!(has(&h, line), "{line} in {h:?}");
    }
    let r = http
        .get_with(&host("cors"), "/", &[("origin", "https://any.example")])
        .await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.backend(), Some(web[0].name.as_str()), "proxied");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    // Several origins: the matching one is echoed; another gets no CORS headers, and its
    // preflight goes to the backend as any OPTIONS would.
    let (status, h) = raw(addr, &preflight("cors-list", "https://a.example.org"), b"").await?;
    assert_eq!(status, 204, "{h:?}");
    for line in [
        "access-control-allow-origin: https://a.example.org",
        "access-control-allow-methods: GET, POST",
        "access-control-allow-headers: X-Token",
        "access-control-expose-headers: X-Total",
        "access-control-max-age: 600",
        "vary: Origin",
    ] {
        assert!(has(&h, line), "{line} in {h:?}");
    }
    assert!(
        !h.iter()
            .any(|l| l.starts_with("access-control-allow-credentials")),
        "{h:?}"
    );
    let (status, h) = raw(addr, &preflight("cors-list", "https://evil.example"), b"").await?;
    assert_eq!(status, 200, "not answered by the proxy: {h:?}");
    assert!(!h.iter().any(|l| l.starts_with("access-control-")), "{h:?}");
    let r = http
        .get_with(
            &host("cors-list"),
            "/",
            &[("origin", "https://app.example.com")],
        )
        .await?;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );

    // The affinity cookie's attributes, and the named cookie read back.
    let r = http.get(&host("sticky"), "/app").await?;
    let set = r.header("set-cookie").context("Set-Cookie")?.to_owned();
    let attrs: Vec<&str> = set.split("; ").collect();
    assert!(attrs[0].starts_with("route="), "{set}");
    for a in [
        "Path=/app",
        "Max-Age=3600",
        "SameSite=Strict",
        "Secure",
        "HttpOnly",
    ] {
        assert!(attrs.contains(&a), "{a} in {set}");
    }
    assert!(
        attrs
            .iter()
            .any(|a| a.starts_with("Expires=") && a.ends_with(" GMT")),
        "{set}"
    );
    let r = http
        .get_with(&host("sticky"), "/app", &[("cookie", attrs[0])])
        .await?;
    assert_eq!(
        r.header("set-cookie"),
        None,
        "a client with the cookie keeps it"
    );

    // Access log: a JSON line per request on stdout; none for the quiet Ingress.
    for _ in 0..3 {
        assert_eq!(http.get(&host("quiet"), "/").await?.status, 200);
    }
    let r = http.get(&host("plain"), "/logged?secret=1").await?;
    assert_eq!(r.status, 200);
    let log = proxy.process.log_path().to_owned();
    eventually(
        Duration::from_secs(5),
        "an access log line for /logged",
        || {
            let log = log.clone();
            async move {
                access_lines(&log, &host("plain"))
                    .iter()
                    .any(|l| l["path"] == "/logged")
            }
        },
    )
    .await?;
    let lines = access_lines(&log, &host("plain"));
    let line = lines
        .iter()
        .find(|l| l["path"] == "/logged")
        .context("logged line")?;
    assert_eq!(line["method"], "GET");
    assert_eq!(line["status"], 200);
    assert_eq!(line["ingress"], format!("{ns}/plain"));
    assert_eq!(line["upstream"], web[0].addr.to_string());
    assert_eq!(line["bytes"].as_u64(), Some(r.body.len() as u64));
    assert!(line["duration"].as_f64().is_some_and(|d| d >= 0.0));
    assert!(line["client"].as_str().is_some());
    assert!(line["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(
        lines.iter().any(|l| l["status"] == 413),
        "refused requests are logged too"
    );
    assert!(
        access_lines(&log, &host("quiet")).is_empty(),
        "enable-access-log: false writes no lines for its Ingress"
    );
    Ok(())
}
