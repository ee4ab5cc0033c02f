//! Traffic end to end: a real apiserver, the proxy run from the generated
//! Deployment with its ServiceAccount's token, backends on pod addresses published in real
//! EndpointSlices, and a real HTTP client — all inside the test network namespace.

mod proxy_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::{SinkExt, StreamExt};
use proxy_support::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_rules_follow_the_ingress_spec() -> Result<()> {
    let inst = Instance::create("route", json!({}), &[]).await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let names = [
        "exact", "prefix", "deep", "wild", "named", "legacy", "default", "other",
    ];
    let mut all = Vec::new();
    for n in names {
        let b = backends(n, 1).await?;
        publish(c, ns, n, &b).await?;
        all.extend(b);
    }
    apply_ingress(
        c,
        ingress(
            ns,
            "paths",
            class,
            "routes.example.com",
            &[
                ("/foo", "Exact", "exact"),
                ("/foo", "Prefix", "prefix"),
                ("/aaa", "Prefix", "prefix"),
                ("/aaa/bbb", "Prefix", "deep"),
                ("/trail/", "Prefix", "deep"),
                ("/exact-slash/", "Exact", "exact"),
                ("/impl", "ImplementationSpecific", "deep"),
            ],
        ),
    )
    .await?;
    apply_ingress(
        c,
        ingress(
            ns,
            "wild",
            class,
            "*.wild.example.com",
            &[("/", "Prefix", "wild")],
        ),
    )
    .await?;
    // Named port and numbered port of the same Service.
    apply_ingress(c, json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": { "name": "ports", "namespace": ns },
        "spec": { "ingressClassName": class, "rules": [{ "host": "ports.example.com", "http": { "paths": [
            { "path": "/by-name", "pathType": "Prefix", "backend": { "service": { "name": "named", "port": { "name": "http" } } } },
            { "path": "/by-number", "pathType": "Prefix", "backend": { "service": { "name": "named", "port": { "number": 80 } } } }
        ] } }] }
    }))
    .await?;
    // Legacy annotation instead of spec.ingressClassName.
    apply_ingress(c, json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": { "name": "legacy", "namespace": ns, "annotations": { "kubernetes.io/ingress.class": class } },
        "spec": { "rules": [{ "host": "legacy.example.com", "http": { "paths": [
            { "path": "/", "pathType": "Prefix", "backend": { "service": { "name": "legacy", "port": { "name": "http" } } } }
        ] } }] }
    }))
    .await?;
    // Another class: never served by this instance.
    apply_ingress(
        c,
        ingress(
            ns,
            "unknown-class",
            "some-other-class",
            "other.example.com",
            &[("/", "Prefix", "other")],
        ),
    )
    .await?;

    let proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    let cases: &[(&str, &str, Option<&str>)] = &[
        // Exact vs Prefix on the same path: Exact wins; Exact is the whole path, case-sensitive.
        ("routes.example.com", "/foo", Some("exact-0")),
        ("routes.example.com", "/foo/", Some("prefix-0")),
        ("routes.example.com", "/foo/bar", Some("prefix-0")),
        ("routes.example.com", "/FOO", None),
        // Element-wise prefix.
        ("routes.example.com", "/foobar", None),
        // Longest match.
        ("routes.example.com", "/aaa/bbb/ccc", Some("deep-0")),
        ("routes.example.com", "/aaa/ccc", Some("prefix-0")),
        ("routes.example.com", "/aaaccc", None),
        // Trailing slashes.
        ("routes.example.com", "/trail", Some("deep-0")),
        ("routes.example.com", "/trail/", Some("deep-0")),
        ("routes.example.com", "/exact-slash/", Some("exact-0")),
        ("routes.example.com", "/exact-slash", None),
        // ImplementationSpecific is Prefix.
        ("routes.example.com", "/impl/x", Some("deep-0")),
        ("routes.example.com", "/implx", None),
        // Host case and port are ignored.
        ("ROUTES.Example.COM:8080", "/foo", Some("exact-0")),
        // Wildcard matches exactly one label.
        ("a.wild.example.com", "/", Some("wild-0")),
        ("b.a.wild.example.com", "/", None),
        ("wild.example.com", "/", None),
        // Service ports by name and by number.
        ("ports.example.com", "/by-name", Some("named-0")),
        ("ports.example.com", "/by-number", Some("named-0")),
        // Legacy class annotation.
        ("legacy.example.com", "/", Some("legacy-0")),
        // Unknown class: never served. Unknown host: 404.
        ("other.example.com", "/", None),
        ("nowhere.example.com", "/", None),
    ];
    for (host, path, want) in cases {
        let r = http.get(host, path).await?;
        match want {
            Some(b) => {
                assert_eq!(r.status, 200, "{host}{path}");
                assert_eq!(r.backend(), Some(*b), "{host}{path}");
            }
            None => assert_eq!(
                r.status,
                404,
                "{host}{path} should be 404, got {} from {:?}",
                r.status,
                r.backend()
            ),
        }
    }

    // defaultBackend: every request no rule matches goes there.
    apply_ingress(c, json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": { "name": "default", "namespace": ns },
        "spec": { "ingressClassName": class,
                  "defaultBackend": { "service": { "name": "default", "port": { "name": "http" } } } }
    }))
    .await?;
    eventually(
        Duration::from_secs(2),
        "default backend serves unknown hosts",
        || async {
            http.get("nowhere.example.com", "/")
                .await
                .is_ok_and(|r| r.backend() == Some("default-0"))
        },
    )
    .await?;
    assert_eq!(
        http.get("routes.example.com", "/foobar").await?.backend(),
        Some("default-0")
    );
    assert_eq!(
        http.get("routes.example.com", "/foo").await?.backend(),
        Some("exact-0")
    );
    assert_eq!(
        http.get("other.example.com", "/").await?.backend(),
        Some("default-0"),
        "other class stays unserved"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_cookie_affinity_and_least_request() -> Result<()> {
    let inst = Instance::create("lb", json!({}), &[]).await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let ten = backends("rr", 10).await?;
    publish(c, ns, "ten", &ten).await?;
    apply_ingress(
        c,
        ingress(ns, "rr", class, "rr.example.com", &[("/", "Prefix", "ten")]),
    )
    .await?;
    let mut sticky = ingress(
        ns,
        "sticky",
        class,
        "sticky.example.com",
        &[("/", "Prefix", "ten")],
    );
    sticky["metadata"]["annotations"] = json!({ "portico.dev/load-balance": "cookie" });
    apply_ingress(c, sticky).await?;

    // Least request: one fast backend and one slow endpoint (answers after 1 s).
    let fast = backends("fast", 1).await?;
    let slow_addr = SocketAddr::new(portico_tests::netns::pod_ip(), 8080);
    let slow = tokio::spawn(slow_server(slow_addr, Duration::from_millis(1000)));
    portico_tests::fixtures::apply_service(c, ns, "mixed", "http", 80, 8080).await?;
    portico_tests::fixtures::apply_endpoints(
        c,
        ns,
        "mixed",
        "slice",
        "http",
        &[fast[0].addr, slow_addr],
    )
    .await?;
    let mut lr = ingress(
        ns,
        "lr",
        class,
        "lr.example.com",
        &[("/", "Prefix", "mixed")],
    );
    lr["metadata"]["annotations"] = json!({ "portico.dev/load-balance": "least-request" });
    apply_ingress(c, lr).await?;

    let proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());

    // 100 requests over 10 endpoints reach all 10, evenly.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..100 {
        let r = http.get("rr.example.com", "/").await?;
        assert_eq!(r.status, 200);
        *counts
            .entry(r.backend().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 10, "round robin reached {counts:?}");
    assert!(
        counts.values().all(|n| *n == 10),
        "round robin is even: {counts:?}"
    );

    // A cookie keeps a client on one endpoint.
    let first = http.get("sticky.example.com", "/").await?;
    let set_cookie = first
        .header("set-cookie")
        .expect("affinity cookie set")
        .to_string();
    assert!(set_cookie.starts_with("portico-affinity="), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap_or_default().to_string();
    let home = first.backend().expect("backend").to_string();
    for _ in 0..30 {
        let r = http
            .get_with("sticky.example.com", "/", &[("cookie", &cookie)])
            .await?;
        assert_eq!(r.backend(), Some(home.as_str()), "cookie affinity");
        assert!(
            r.header("set-cookie").is_none(),
            "no new cookie when the client has one"
        );
    }

    // Least request steers away from the slow endpoint: 6 clients in parallel, 20 requests each.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let http = Http::new(&proxy.http_base());
        tasks.push(tokio::spawn(async move {
            let mut slow_hits = 0;
            let mut n = 0;
            while n < 20 {
                let r = http.get("lr.example.com", "/").await?;
                assert_eq!(r.status, 200);
                if r.header("x-backend") == Some("slow") {
                    slow_hits += 1;
                }
                n += 1;
            }
            anyhow::Ok((slow_hits, n))
        }));
    }
    let (mut slow_hits, mut total) = (0, 0);
    for t in tasks {
        let (s, n) = t.await??;
        slow_hits += s;
        total += n;
    }
    // Round robin would send half (60) to the slow endpoint; least request keeps at most
    // about one request at a time there (it has the fewest in flight only when idle).
    assert_eq!(total, 120);
    assert!(
        slow_hits * 4 < total,
        "least request sent {slow_hits}/{total} requests to the slow endpoint"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    slow.abort();
    Ok(())
}

/// A minimal HTTP/1.1 server that answers every request after `delay`.
async fn slow_server(addr: SocketAddr, delay: Duration) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    loop {
        let (mut stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut have = Vec::new();
            loop {
                let Ok(n) = stream.read(&mut buf).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                have.extend_from_slice(&buf[..n]);
                while let Some(end) = have.windows(4).position(|w| w == b"\r\n\r\n") {
                    have.drain(..end + 4);
                    tokio::time::sleep(delay).await;
                    let body = br#"{"backend":"slow"}"#;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-backend: slow\r\ncontent-type: application/json\r\n\r\n",
                        body.len()
                    );
                    if stream.write_all(head.as_bytes()).await.is_err()
                        || stream.write_all(body).await.is_err()
                    {
                        return;
                    }
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_propagate_fast_and_websocket_survives_an_update() -> Result<()> {
    let inst = Instance::create("churn", json!({}), &[]).await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let three = backends("ep", 3).await?;
    publish(c, ns, "web", &three).await?;
    apply_ingress(
        c,
        ingress(
            ns,
            "web",
            class,
            "web.example.com",
            &[("/", "Prefix", "web")],
        ),
    )
    .await?;
    let proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    assert_eq!(http.get("web.example.com", "/").await?.status, 200);

    // An Ingress change is routed within 1 s.
    let applied = Instant::now();
    apply_ingress(
        c,
        ingress(
            ns,
            "new",
            class,
            "new.example.com",
            &[("/", "Prefix", "web")],
        ),
    )
    .await?;
    let took = eventually(Duration::from_secs(3), "new Ingress routed", || async {
        status_of(&http, "new.example.com", "/").await == 200
    })
    .await?;
    let since_apply = applied.elapsed();
    assert!(
        since_apply < Duration::from_secs(1),
        "new Ingress routed after {since_apply:?} (poll {took:?})"
    );

    // An endpoint removed from the slice gets no new requests.
    let removed = three[2].name.clone();
    let keep: Vec<SocketAddr> = three[..2].iter().map(|b| b.addr).collect();
    portico_tests::fixtures::apply_endpoints(c, ns, "web", "slice", "http", &keep).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..30 {
        let r = http.get("web.example.com", "/").await?;
        assert_eq!(r.status, 200);
        assert_ne!(
            r.backend(),
            Some(removed.as_str()),
            "removed endpoint still got a request"
        );
    }

    // A WebSocket echo session survives an Ingress update made during it.
    let stream = tokio::net::TcpStream::connect((proxy.ip, proxy.http_port)).await?;
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://web.example.com/ws", stream).await?;
    assert_eq!(resp.status().as_u16(), 101);
    ws.send(Message::text("before")).await?;
    let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await?
        .expect("echo")?;
    assert_eq!(echo.into_text()?.as_str(), "before");
    apply_ingress(
        c,
        ingress(
            ns,
            "web",
            class,
            "web.example.com",
            &[("/", "Prefix", "web"), ("/added", "Exact", "web")],
        ),
    )
    .await?;
    eventually(Duration::from_secs(2), "Ingress update routed", || async {
        status_of(&http, "web.example.com", "/added").await == 200
    })
    .await?;
    ws.send(Message::text("after")).await?;
    let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await?
        .expect("echo after update")?;
    assert_eq!(echo.into_text()?.as_str(), "after");
    ws.close(None).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_does_not_fail_gets() -> Result<()> {
    let inst = Instance::create("kill", json!({}), &[]).await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let mut three = backends("k", 3).await?;
    publish(c, ns, "web", &three).await?;
    apply_ingress(
        c,
        ingress(
            ns,
            "web",
            class,
            "web.example.com",
            &[("/", "Prefix", "web")],
        ),
    )
    .await?;
    let proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    // Warm the pool so the dead endpoint has pooled connections too.
    for _ in 0..9 {
        assert_eq!(http.get("web.example.com", "/").await?.status, 200);
    }
    let dead = three[1].name.clone();
    three[1].kill();
    // The slice still lists it: only retries and ejection keep GETs whole.
    let mut seen = BTreeSet::new();
    for i in 0..60 {
        let r = http.get("web.example.com", "/").await?;
        assert_eq!(
            r.status,
            200,
            "GET {i} after the kill: {}",
            String::from_utf8_lossy(&r.body)
        );
        seen.insert(r.backend().unwrap_or("?").to_string());
    }
    assert!(!seen.contains(&dead));
    assert_eq!(seen.len(), 2, "{seen:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_slow_request_finish_and_exits_zero() -> Result<()> {
    let inst = Instance::create("term", json!({}), &[]).await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let b = backends("t", 1).await?;
    publish(c, ns, "web", &b).await?;
    apply_ingress(
        c,
        ingress(
            ns,
            "web",
            class,
            "web.example.com",
            &[("/", "Prefix", "web")],
        ),
    )
    .await?;
    let mut proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    let slow = {
        let http = http.clone();
        tokio::spawn(async move { http.get("web.example.com", "/slow?delay_ms=2500").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.process.terminate();
    // Readiness fails at once, while the slow request is still in flight.
    let ready_url = format!("{}/readyz", proxy.admin_base());
    eventually(
        Duration::from_millis(500),
        "readyz fails after SIGTERM",
        || async { portico_tests::pod::http_status(&ready_url).await == Some(503) },
    )
    .await?;
    let r = slow.await??;
    assert_eq!(r.status, 200, "the in-flight request completed");
    assert_eq!(r.backend(), Some("t-0"));
    let status = proxy.process.wait_timeout(Duration::from_secs(15)).await?;
    assert!(status.success(), "proxy exit status {status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ingresses_do_not_disturb_the_others() -> Result<()> {
    let inst = Instance::create("hostile", json!({}), &[]).await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let b = backends("good", 1).await?;
    publish(c, ns, "web", &b).await?;
    apply_ingress(
        c,
        ingress(
            ns,
            "good",
            class,
            "good.example.com",
            &[("/", "Prefix", "web")],
        ),
    )
    .await?;
    let mut proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    assert_eq!(http.get("good.example.com", "/").await?.status, 200);

    // A huge path list, regex-looking paths, a missing Service.
    let huge: Vec<(String, &str, &str)> = (0..1500)
        .map(|i| (format!("/p{i}"), "Prefix", "web"))
        .collect();
    let huge_refs: Vec<(&str, &str, &str)> =
        huge.iter().map(|(p, k, s)| (p.as_str(), *k, *s)).collect();
    apply_ingress(
        c,
        ingress(ns, "huge", class, "huge.example.com", &huge_refs),
    )
    .await?;
    apply_ingress(
        c,
        ingress(
            ns,
            "regex",
            class,
            "regex.example.com",
            &[
                ("/api/(.*)", "ImplementationSpecific", "web"),
                ("/x", "Prefix", "web"),
            ],
        ),
    )
    .await?;
    apply_ingress(
        c,
        ingress(
            ns,
            "missing",
            class,
            "missing.example.com",
            &[("/", "Prefix", "no-such-service")],
        ),
    )
    .await?;
    // Then a good change: it must still be routed promptly.
    apply_ingress(
        c,
        ingress(
            ns,
            "later",
            class,
            "later.example.com",
            &[("/", "Prefix", "web")],
        ),
    )
    .await?;
    eventually(
        Duration::from_secs(2),
        "good Ingress applied after hostile ones",
        || async { status_of(&http, "later.example.com", "/").await == 200 },
    )
    .await?;
    for _ in 0..20 {
        assert_eq!(http.get("good.example.com", "/").await?.status, 200);
    }
    // Each would route these paths if it were served.
    for (host, path) in [
        ("huge.example.com", "/p1"),
        ("regex.example.com", "/x"),
        ("missing.example.com", "/"),
    ] {
        assert_eq!(http.get(host, path).await?.status, 404, "{host} is skipped");
    }
    proxy.process.check_running()?;
    let log = proxy.process.log_tail(400);
    for name in ["huge", "regex", "missing"] {
        let needle = format!("Ingress {ns}/{name} skipped");
        assert!(log.contains(&needle), "proxy log names {needle:?}:\n{log}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_timeouts_forwarded_headers_and_metrics() -> Result<()> {
    let inst = Instance::create(
        "errors",
        json!({ "timeouts": { "connect": "500ms", "request": "1s", "idle": "1s" } }),
        &[],
    )
    .await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let b = backends("echo", 1).await?;
    publish(c, ns, "echo", &b).await?;
    // A Service whose only endpoint has nothing listening, and one with no endpoints.
    let nobody = SocketAddr::new(portico_tests::netns::pod_ip(), 8080);
    portico_tests::fixtures::apply_service(c, ns, "dead", "http", 80, 8080).await?;
    portico_tests::fixtures::apply_endpoints(c, ns, "dead", "slice", "http", &[nobody]).await?;
    portico_tests::fixtures::apply_service(c, ns, "empty", "http", 80, 8080).await?;
    portico_tests::fixtures::apply_endpoints(c, ns, "empty", "slice", "http", &[]).await?;
    apply_ingress(
        c,
        ingress(
            ns,
            "errors",
            class,
            "err.example.com",
            &[
                ("/", "Prefix", "echo"),
                ("/dead", "Prefix", "dead"),
                ("/empty", "Prefix", "empty"),
            ],
        ),
    )
    .await?;
    let proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());

    // Request timeout → 504, promptly; after a few requests, so the timeout's sleep is a
    // pooled, reused one (http/timer.rs) as on a busy proxy.
    for _ in 0..4 {
        assert_eq!(http.get("err.example.com", "/").await?.status, 200);
    }
    let started = Instant::now();
    let r = http.get("err.example.com", "/slow?delay_ms=3000").await?;
    assert_eq!(r.status, 504);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "504 after {:?}",
        started.elapsed()
    );
    // Connect failure → 502; no endpoints → 503.
    assert_eq!(http.get("err.example.com", "/dead").await?.status, 502);
    assert_eq!(http.get("err.example.com", "/empty").await?.status, 503);

    // Idle timeout: a connection that sends nothing is closed after about 1 s.
    let mut idle = tokio::net::TcpStream::connect((proxy.ip, proxy.http_port)).await?;
    let opened = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf)).await??;
    assert_eq!(n, 0, "closed without a response");
    let idle_for = opened.elapsed();
    assert!(
        idle_for >= Duration::from_millis(900) && idle_for < Duration::from_secs(3),
        "closed after {idle_for:?}"
    );

    // Oversized request headers are refused (431), and the proxy keeps serving.
    let huge = "x".repeat(100 * 1024);
    let r = http
        .get_with("err.example.com", "/", &[("x-huge", &huge)])
        .await;
    assert!(
        matches!(&r, Ok(r) if r.status == 431) || r.is_err(),
        "oversized headers: {:?}",
        r.map(|r| r.status)
    );
    assert_eq!(http.get("err.example.com", "/").await?.status, 200);

    // X-Forwarded-*: client-sent values are not trusted (no --trusted-proxy-cidrs), and a
    // Connection header cannot remove what the proxy sets, only hop-by-hop extras.
    let r = http
        .get_with(
            "err.example.com",
            "/headers",
            &[
                ("x-forwarded-for", "1.2.3.4"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "evil.example.com"),
                ("connection", "x-forwarded-for, x-real-ip, x-hop"),
                ("x-hop", "1"),
            ],
        )
        .await?;
    assert_eq!(r.status, 200);
    let h = &r.json["headers"];
    let xff = h["x-forwarded-for"].as_str().unwrap_or_default();
    assert!(
        !xff.is_empty() && !xff.contains("1.2.3.4"),
        "x-forwarded-for {xff:?}"
    );
    assert!(
        xff.starts_with("10.244."),
        "x-forwarded-for is the client's pod-network address: {xff:?}"
    );
    assert_eq!(h["x-real-ip"].as_str(), Some(xff));
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "err.example.com");
    assert!(
        h.get("x-hop").is_none(),
        "header named by Connection is stripped"
    );
    assert!(
        h.get("connection")
            .is_none_or(|v| v != "x-forwarded-for, x-real-ip, x-hop")
    );
    // The same for a request with a body, which goes through hyper's client, not the
    // proxy's own (upstream/wire.rs): the spoofed fields are replaced there too, not sent
    // beside the proxy's.
    let mut post = tokio::net::TcpStream::connect((proxy.ip, proxy.http_port)).await?;
    post.write_all(
        b"POST /headers HTTP/1.1\r\nHost: err.example.com\r\nContent-Length: 5\r\n\
          X-Forwarded-For: 1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\nX-Forwarded-Proto: https\r\n\
          X-Forwarded-Host: evil.example.com\r\nConnection: close\r\n\r\nhello",
    )
    .await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), post.read_to_end(&mut answer)).await??;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_default();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let json: serde_json::Value = serde_json::from_str(body)?;
    let h = &json["headers"];
    assert_eq!(json["bodyBytes"], 5);
    assert_eq!(h["x-forwarded-for"], xff, "POST: {h}");
    assert_eq!(h["x-real-ip"], xff, "POST: {h}");
    assert_eq!(h["x-forwarded-proto"], "http", "POST: {h}");
    assert_eq!(h["x-forwarded-host"], "err.example.com", "POST: {h}");

    // Metrics: low-cardinality labels, upstream errors by kind, config generation.
    let metrics = {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let resp = client
            .get(format!("{}/metrics", proxy.admin_base()).parse()?)
            .await?;
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await?
            .to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    };
    for needle in [
        format!(
            r#"portico_requests_total{{code="5xx",ingress="errors",namespace="{ns}",service="echo"}}"#
        ),
        format!(
            r#"portico_requests_total{{code="2xx",ingress="errors",namespace="{ns}",service="echo"}}"#
        ),
        r#"portico_upstream_errors_total{kind="timeout"}"#.to_string(),
        r#"portico_upstream_errors_total{kind="connect"}"#.to_string(),
        r#"portico_upstream_errors_total{kind="no_endpoints"}"#.to_string(),
        format!(r#"portico_backend_endpoints{{namespace="{ns}",port="http",service="echo"}} 1"#),
        "portico_config_generation ".to_string(),
        "portico_config_rebuild_duration_seconds_bucket".to_string(),
        "portico_request_duration_seconds_bucket".to_string(),
    ] {
        assert!(
            metrics.contains(&needle),
            "metrics lack {needle}:\n{metrics}"
        );
    }
    assert!(
        !metrics.contains("err.example.com"),
        "no host label in metrics"
    );
    Ok(())
}
