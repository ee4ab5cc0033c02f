//! Access control at the edge, tried the way a client would: ingress-nginx's source
//! ranges, basic auth, external auth, rate limits and `satisfy`, and the client address
//! they key on (the peer, a trusted `X-Forwarded-For`, or a PROXY protocol header). Real
//! apiserver and operator, the proxy from the operator's Deployment, raw HTTP/1.1 from
//! chosen source addresses inside the test network namespace.

mod proxy_support;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy_support::tls::warnings_on;
use proxy_support::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

const N: &str = "nginx.ingress.kubernetes.io";
/// Clients the proxy trusts for `X-Forwarded-For` (spec.trustedProxyCIDRs).
const TRUSTED: &str = "10.244.200.0/24";
/// The range the Ingresses allow.
const ALLOWED: &str = "10.244.201.0/24";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// One HTTP/1.1 exchange on a new connection from `source`, after `preface` (a PROXY
/// protocol header, or nothing). `None` when the proxy closed without answering.
async fn raw_get(
    proxy: SocketAddr,
    source: IpAddr,
    preface: &[u8],
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Option<(u16, String)>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let mut stream = tokio::time::timeout(Duration::from_secs(5), socket.connect(proxy))
        .await
        .context("connect timed out")??;
    let mut req = Vec::from(preface);
    req.extend(request_head(host, path, headers).bytes());
    exchange(&mut stream, &req).await
}

fn request_head(host: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// Writes `request`, reads to the end: the status and the whole response, or `None` when
/// the proxy closed without answering.
async fn exchange<S>(stream: &mut S, request: &[u8]) -> Result<Option<(u16, String)>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // A proxy that closes at once may reset the connection under the write.
    if stream.write_all(request).await.is_err() {
        return Ok(None);
    }
    let mut out = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await {
        Err(_) => bail!("no answer within 10s"),
        Ok(Err(_)) if out.is_empty() => return Ok(None),
        Ok(_) => {}
    }
    if out.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP response: {text:?}"))?;
    Ok(Some((status, text)))
}

/// `raw_get` from `source` with no preface, which must be answered.
async fn answer(
    proxy: SocketAddr,
    source: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String)> {
    raw_get(proxy, ip(source), b"", host, path, headers)
        .await?
        .with_context(|| format!("no answer for {host}{path}"))
}

async fn status_from(proxy: SocketAddr, source: &str, host: &str, headers: &[(&str, &str)]) -> u16 {
    match raw_get(proxy, ip(source), b"", host, "/", headers).await {
        Ok(Some((status, _))) => status,
        _ => 0,
    }
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn body_json(response: &str) -> Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A stand-in auth service: `Bearer good` is alice (200, `X-User`, a cookie), `Bearer
/// bad` is forbidden, anything else is 401. Counts its calls.
async fn auth_service(addr: SocketAddr) -> Result<Arc<AtomicUsize>> {
    let listener = TcpListener::bind(addr).await?;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let original = req
                        .headers()
                        .get("x-original-url")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    async move {
                        let resp = match auth.as_str() {
                            "Bearer good" => http::Response::builder()
                                .status(200)
                                .header("x-user", "alice")
                                .header("x-auth-saw", original)
                                .header("set-cookie", "authsession=1; Path=/"),
                            "Bearer bad" => http::Response::builder().status(403),
                            "Bearer broken" => http::Response::builder().status(502),
                            _ => http::Response::builder()
                                .status(401)
                                .header("www-authenticate", "Bearer realm=\"auth\""),
                        };
                        Ok::<_, Infallible>(resp.body(Full::new(Bytes::new())).expect("response"))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(calls)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// apr1 (`openssl passwd -apr1 -salt abcdefgh secret`) and bcrypt (OpenBSD's test vector
/// for `U*U`, cost 5).
const HTPASSWD: &str = "alice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\n\
                        bob:$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ranges_basic_and_external_auth_and_satisfy() -> Result<()> {
    let inst = Instance::create("access", json!({ "trustedProxyCIDRs": [TRUSTED] }), &[]).await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let b = backends("web", 1).await?;
    publish(c, ns, "web", &b).await?;
    let auth_addr = SocketAddr::new(portico_tests::netns::pod_ip(), 9000);
    let auth_calls = auth_service(auth_addr).await?;
    proxy_support::tls::apply_opaque_secret(c, ns, "users", json!({ "auth": HTPASSWD })).await?;
    let on = |name: &str, annotations: Value| {
        with_annotations(
            ingress(
                ns,
                name,
                class,
                &format!("{name}.access.example"),
                &[("/", "Prefix", "web")],
            ),
            annotations,
        )
    };
    let auth_url = format!("http://{auth_addr}/verify?uri=$escaped_request_uri");
    for ing in [
        on(
            "ranges",
            json!({ format!("{N}/whitelist-source-range"): ALLOWED }),
        ),
        on(
            "basic",
            json!({ format!("{N}/auth-type"): "basic", format!("{N}/auth-secret"): "users",
                    format!("{N}/auth-realm"): "Staff only" }),
        ),
        on(
            "external",
            json!({ format!("{N}/auth-url"): auth_url,
                    format!("{N}/auth-response-headers"): "X-User, X-Auth-Saw",
                    format!("{N}/auth-signin"): "http://signin.example/start" }),
        ),
        on(
            "cached",
            json!({ format!("{N}/auth-url"): auth_url,
                    format!("{N}/auth-cache-key"): "$http_authorization",
                    format!("{N}/auth-cache-duration"): "200 1m" }),
        ),
        on(
            "any",
            json!({ format!("{N}/whitelist-source-range"): ALLOWED,
                    format!("{N}/auth-type"): "basic", format!("{N}/auth-secret"): "users",
                    format!("{N}/satisfy"): "any" }),
        ),
        on(
            "all",
            json!({ format!("{N}/whitelist-source-range"): ALLOWED,
                    format!("{N}/auth-type"): "basic", format!("{N}/auth-secret"): "users" }),
        ),
        on(
            "no-secret",
            json!({ format!("{N}/auth-type"): "basic", format!("{N}/auth-secret"): "missing" }),
        ),
        on(
            "guarded",
            json!({ format!("{N}/auth-type"): "basic", format!("{N}/auth-secret"): "users" }),
        ),
        // A canary of the guarded host with no auth of its own: it inherits the primary's.
        with_annotations(
            ingress(
                ns,
                "guarded-canary",
                class,
                "guarded.access.example",
                &[("/", "Prefix", "web")],
            ),
            json!({ format!("{N}/canary"): "true", format!("{N}/canary-by-header"): "X-Canary" }),
        ),
        on(
            "elsewhere",
            json!({ format!("{N}/auth-type"): "basic", format!("{N}/auth-secret"): "kube-system/users" }),
        ),
    ] {
        apply_ingress(c, ing).await?;
    }
    // The proxy may read the auth Secret, by name: the operator added it to the Role.
    inst.await_secret_access([(ns.to_owned(), ["users".to_owned()].into())].into())
        .await?;
    let proxy = inst.start_proxy().await?;
    let addr = SocketAddr::new(proxy.ip, proxy.http_port);
    let inside = "10.244.201.5";
    let outside = "10.244.202.5";
    let trusted = "10.244.200.9";
    eventually(
        Duration::from_secs(15),
        "the Ingresses are served",
        || async {
            status_from(addr, inside, "ranges.access.example", &[]).await == 200
                && status_from(addr, inside, "basic.access.example", &[]).await == 401
        },
    )
    .await?;

    // Source ranges: by the peer, and by X-Forwarded-For only from a trusted proxy.
    assert_eq!(
        status_from(addr, inside, "ranges.access.example", &[]).await,
        200
    );
    assert_eq!(
        status_from(addr, outside, "ranges.access.example", &[]).await,
        403
    );
    let xff = |client: &'static str| [("X-Forwarded-For", client)];
    assert_eq!(
        status_from(
            addr,
            trusted,
            "ranges.access.example",
            &xff("10.244.201.77")
        )
        .await,
        200,
        "a trusted proxy's client inside the range"
    );
    assert_eq!(
        status_from(
            addr,
            trusted,
            "ranges.access.example",
            &xff("10.244.202.77")
        )
        .await,
        403,
        "a trusted proxy's client outside the range"
    );
    assert_eq!(
        status_from(
            addr,
            outside,
            "ranges.access.example",
            &xff("10.244.201.77")
        )
        .await,
        403,
        "an untrusted peer cannot claim an allowed address"
    );
    // A trusted proxy's forwarding fields are believed and extended, and the backend gets
    // each once: the proxy's own, never the client's copy beside them.
    let (_, resp) = raw_get(
        addr,
        ip(trusted),
        b"",
        "ranges.access.example",
        "/",
        &[
            ("X-Forwarded-For", "10.244.201.77"),
            ("X-Real-IP", "10.244.201.78"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "front.access.example"),
        ],
    )
    .await?
    .context("no answer from behind the trusted proxy")?;
    let seen = &body_json(&resp)["headers"];
    assert_eq!(
        seen["x-forwarded-for"],
        format!("10.244.201.77, {trusted}"),
        "{seen}"
    );
    assert_eq!(seen["x-real-ip"], "10.244.201.77", "{seen}");
    assert_eq!(seen["x-forwarded-proto"], "https", "{seen}");
    assert_eq!(seen["x-forwarded-host"], "front.access.example", "{seen}");

    // Basic auth: apr1 and bcrypt entries; a challenge with the realm otherwise.
    let (status, resp) = answer(addr, outside, "basic.access.example", "/", &[]).await?;
    assert_eq!(status, 401);
    assert_eq!(
        header(&resp, "www-authenticate"),
        Some("Basic realm=\"Staff only\"")
    );
    for (user, password, want) in [
        ("alice", "secret", 200),
        ("bob", "U*U", 200),
        ("alice", "Secret", 401),
        ("bob", "U*V", 401),
        ("carol", "secret", 401),
    ] {
        let creds = basic(user, password);
        assert_eq!(
            status_from(
                addr,
                outside,
                "basic.access.example",
                &[("Authorization", &creds)]
            )
            .await,
            want,
            "{user}:{password}"
        );
    }

    // External auth: allowed with its headers (the client's own X-User is replaced),
    // denied, redirected to sign in, and 500 for an auth service that fails.
    let (status, resp) = answer(
        addr,
        outside,
        "external.access.example",
        "/p?q=1",
        &[("Authorization", "Bearer good"), ("X-User", "mallory")],
    )
    .await?;
    assert_eq!(status, 200, "{resp}");
    let doc = body_json(&resp);
    assert_eq!(doc["headers"]["x-user"], "alice", "{doc}");
    assert_eq!(
        doc["headers"]["x-auth-saw"], "http://external.access.example/p?q=1",
        "{doc}"
    );
    assert_eq!(header(&resp, "set-cookie"), Some("authsession=1; Path=/"));
    let (status, resp) = answer(
        addr,
        outside,
        "external.access.example",
        "/",
        &[("X-User", "mallory"), ("Authorization", "Bearer bad")],
    )
    .await?;
    assert_eq!(status, 403, "{resp}");
    let (status, resp) = answer(addr, outside, "external.access.example", "/p?q=1", &[]).await?;
    assert_eq!(status, 302, "{resp}");
    assert_eq!(
        header(&resp, "location"),
        Some("http://signin.example/start?rd=http%3A//external.access.example/p%3Fq%3D1")
    );
    assert_eq!(
        status_from(
            addr,
            outside,
            "external.access.example",
            &[("Authorization", "Bearer broken")]
        )
        .await,
        500
    );

    // auth-cache-key: the second request with the same key does not call the service.
    let creds = [("Authorization", "Bearer good")];
    assert_eq!(
        status_from(addr, outside, "cached.access.example", &creds).await,
        200
    );
    let before = auth_calls.load(Ordering::Relaxed);
    for _ in 0..5 {
        assert_eq!(
            status_from(addr, outside, "cached.access.example", &creds).await,
            200
        );
    }
    assert_eq!(
        auth_calls.load(Ordering::Relaxed),
        before,
        "answered from the cache"
    );

    // satisfy any: the range or a password; satisfy all: both.
    let alice = basic("alice", "secret");
    let with_alice = [("Authorization", alice.as_str())];
    for (host, source, creds, want) in [
        ("any", inside, false, 200),
        ("any", outside, false, 401),
        ("any", outside, true, 200),
        ("all", inside, false, 401),
        ("all", outside, true, 403),
        ("all", inside, true, 200),
    ] {
        let headers: &[(&str, &str)] = if creds { &with_alice } else { &[] };
        assert_eq!(
            status_from(addr, source, &format!("{host}.access.example"), headers).await,
            want,
            "satisfy {host} from {source}, credentials {creds}"
        );
    }

    // A canary header does not skip the primary's auth.
    for canary in ["always", "never"] {
        assert_eq!(
            status_from(
                addr,
                outside,
                "guarded.access.example",
                &[("X-Canary", canary)]
            )
            .await,
            401,
            "X-Canary: {canary} without credentials"
        );
    }
    assert_eq!(
        status_from(
            addr,
            outside,
            "guarded.access.example",
            &[("X-Canary", "always"), ("Authorization", &alice)]
        )
        .await,
        200
    );

    // A missing Secret, or one of another namespace: not served, never served open.
    assert_eq!(
        status_from(addr, inside, "no-secret.access.example", &[]).await,
        404
    );
    assert_eq!(
        status_from(addr, inside, "elsewhere.access.example", &[]).await,
        404
    );
    eventually(
        OPERATOR_WAIT,
        "an IngressRejected Event naming the other namespace's Secret",
        || async {
            warnings_on(c, ns, "elsewhere", "IngressRejected")
                .await
                .iter()
                .any(|n| n.contains("auth-secret") && n.contains("own namespace"))
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_their_rate_and_their_memory() -> Result<()> {
    // The test's HTTP client connects from 10.244.0.1: it plays the trusted balancer.
    let inst = Instance::create(
        "limits",
        json!({ "trustedProxyCIDRs": ["10.244.0.1/32"] }),
        &[],
    )
    .await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let b = backends("web", 1).await?;
    publish(c, ns, "web", &b).await?;
    let rate = 20u32;
    apply_ingress(
        c,
        with_annotations(
            ingress(
                ns,
                "limited",
                class,
                "limited.access.example",
                &[("/", "Prefix", "web")],
            ),
            json!({ format!("{N}/limit-rps"): rate.to_string(),
                    format!("{N}/limit-burst-multiplier"): "1",
                    format!("{N}/limit-whitelist"): "10.244.203.0/24" }),
        ),
    )
    .await?;
    let proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    let host = "limited.access.example";
    eventually(Duration::from_secs(15), "the Ingress is served", || async {
        status_of(&http, host, "/").await == 200
    })
    .await?;

    // One client (through the trusted proxy) sends as fast as it can for 3 s after its
    // burst is spent: about `rate` a second get through, the rest get 429.
    let client_headers = [("X-Forwarded-For", "10.244.210.1")];
    for _ in 0..(2 * rate) {
        http.get_with(host, "/", &client_headers).await?;
    }
    let window = Duration::from_secs(3);
    let start = Instant::now();
    let (mut allowed, mut limited) = (0u32, 0u32);
    let mut retry_after = None;
    while start.elapsed() < window {
        let r = http.get_with(host, "/", &client_headers).await?;
        match r.status {
            200 => allowed += 1,
            429 => {
                limited += 1;
                retry_after = r.header("retry-after").map(str::to_owned);
            }
            other => bail!("unexpected status {other}"),
        }
    }
    let expected = f64::from(rate) * window.as_secs_f64();
    println!(
        "rate limit {rate}/s over {window:?}: {allowed} allowed, {limited} limited (expected {expected})"
    );
    assert!(
        (f64::from(allowed) - expected).abs() <= expected * 0.10,
        "{allowed} allowed in {window:?}, expected {expected} ±10%"
    );
    assert!(
        limited > allowed,
        "the client sent faster than the limit: {limited} limited"
    );
    assert_eq!(retry_after.as_deref(), Some("1"));
    // Another client, and an exempt one, are not held back by the first.
    assert_eq!(
        http.get_with(host, "/", &[("X-Forwarded-For", "10.244.210.2")])
            .await?
            .status,
        200
    );
    for _ in 0..(3 * rate) {
        assert_eq!(
            http.get_with(host, "/", &[("X-Forwarded-For", "10.244.203.9")])
                .await?
                .status,
            200,
            "limit-whitelist"
        );
    }

    // 100,000 distinct client addresses: the proxy's memory stays flat (the table is
    // allocated once and replaces entries).
    let pid = proxy.process.id();
    let flood = |from: u32, to: u32| {
        let http = http.clone();
        async move {
            let mut tasks = Vec::new();
            let workers = 8u32;
            for w in 0..workers {
                let http = http.clone();
                tasks.push(tokio::spawn(async move {
                    let mut i = from + w;
                    while i < to {
                        let addr = std::net::Ipv4Addr::from(0x0b00_0000u32 + i).to_string();
                        let _ = http
                            .get_with(host, "/", &[("X-Forwarded-For", &addr)])
                            .await;
                        i += workers;
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    };
    flood(0, 10_000).await;
    let before = rss_kib(pid);
    let start = Instant::now();
    flood(10_000, 110_000).await;
    let after = rss_kib(pid);
    println!(
        "100,000 distinct clients in {:?}: proxy RSS {before} KiB -> {after} KiB",
        start.elapsed()
    );
    assert!(before > 0, "read the proxy's RSS");
    assert!(
        after < before + 16 * 1024,
        "the proxy grew from {before} KiB to {after} KiB over 100,000 client addresses"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_names_the_client_and_is_required() -> Result<()> {
    let inst = Instance::create(
        "proxyproto",
        json!({ "http": { "proxyProtocol": true } }),
        &[],
    )
    .await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let b = backends("web", 1).await?;
    publish(c, ns, "web", &b).await?;
    apply_ingress(
        c,
        with_annotations(
            ingress(
                ns,
                "ranges",
                class,
                "pp.access.example",
                &[("/", "Prefix", "web")],
            ),
            json!({ format!("{N}/whitelist-source-range"): ALLOWED }),
        ),
    )
    .await?;
    inst.await_proxy_arg("proxy-protocol", "true").await?;
    let proxy = inst.start_proxy().await?;
    let addr = SocketAddr::new(proxy.ip, proxy.http_port);
    let lb = ip("10.244.202.1");
    let v1 = |client: &str| {
        format!(
            "PROXY TCP4 {client} {} 40000 {}\r\n",
            proxy.ip, proxy.http_port
        )
        .into_bytes()
    };
    let v2 = |client: &str| {
        // Signature, version 2 PROXY, TCP over IPv4, 12 address bytes.
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.extend([0x21, 0x11, 0, 12]);
        let IpAddr::V4(src) = ip(client) else {
            unreachable!("IPv4")
        };
        let IpAddr::V4(dst) = proxy.ip else {
            unreachable!("IPv4")
        };
        h.extend(src.octets());
        h.extend(dst.octets());
        h.extend(40000u16.to_be_bytes());
        h.extend(proxy.http_port.to_be_bytes());
        h
    };
    eventually(Duration::from_secs(15), "the Ingress is served", || async {
        matches!(
            raw_get(addr, lb, &v1("10.244.201.9"), "pp.access.example", "/", &[]).await,
            Ok(Some((200, _)))
        )
    })
    .await?;
    // The header's client decides, not the balancer's address.
    for (name, preface, want) in [
        ("v1 inside", v1("10.244.201.9"), 200),
        ("v1 outside", v1("10.244.202.9"), 403),
        ("v2 inside", v2("10.244.201.10"), 200),
        ("v2 outside", v2("10.244.202.10"), 403),
    ] {
        let got = raw_get(addr, lb, &preface, "pp.access.example", "/", &[]).await?;
        assert_eq!(got.map(|(s, _)| s), Some(want), "{name}");
    }
    // The backend sees the header's client as X-Forwarded-For.
    let (_, resp) = raw_get(addr, lb, &v1("10.244.201.9"), "pp.access.example", "/", &[])
        .await?
        .context("no answer")?;
    assert_eq!(
        body_json(&resp)["headers"]["x-forwarded-for"],
        "10.244.201.9"
    );
    // Without a header (or with a malformed one), the connection is closed unanswered,
    // even from an allowed address.
    assert_eq!(
        raw_get(addr, ip("10.244.201.9"), b"", "pp.access.example", "/", &[]).await?,
        None
    );
    assert_eq!(
        raw_get(
            addr,
            lb,
            b"PROXY TCP4 10.244.201.9\r\n",
            "pp.access.example",
            "/",
            &[]
        )
        .await?,
        None
    );
    Ok(())
}

/// One HTTP/1.1 exchange over TLS with SNI `sni`, presenting `client` when asked.
async fn tls_get(
    proxy: SocketAddr,
    sni: &str,
    host: &str,
    client: Option<&portico_tests::certs::Leaf>,
    headers: &[(&str, &str)],
) -> Result<Option<(u16, String)>> {
    let (mut stream, _) =
        proxy_support::tls::tls_connect_as(proxy, sni, &[b"http/1.1"], client).await?;
    exchange(&mut stream, request_head(host, "/", headers).as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_required_optional_and_invalid() -> Result<()> {
    let inst = Instance::create("clientcert", json!({}), &[]).await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let b = backends("web", 1).await?;
    publish(c, ns, "web", &b).await?;
    let server_ca = portico_tests::certs::Ca::new("server-ca")?;
    let serving = server_ca.server(&["*.certs.example"])?;
    proxy_support::tls::apply_tls_secret(c, ns, "serving", &serving.cert_pem, &serving.key_pem)
        .await?;
    let client_ca = portico_tests::certs::Ca::new("client-ca")?;
    let alice = client_ca.client("alice")?;
    let stranger = portico_tests::certs::Ca::new("other-ca")?.client("mallory")?;
    proxy_support::tls::apply_opaque_secret(
        c,
        ns,
        "client-ca",
        json!({ "ca.crt": client_ca.cert_pem }),
    )
    .await?;
    let tls_ingress = |name: &str, annotations: Value| {
        let host = format!("{name}.certs.example");
        let mut ing = with_annotations(
            ingress(ns, name, class, &host, &[("/", "Prefix", "web")]),
            annotations,
        );
        ing["spec"]["tls"] = json!([{ "hosts": [host], "secretName": "serving" }]);
        ing
    };
    for ing in [
        tls_ingress(
            "required",
            json!({ format!("{N}/auth-tls-secret"): format!("{ns}/client-ca"),
                    format!("{N}/auth-tls-verify-client"): "on",
                    format!("{N}/auth-tls-pass-certificate-to-upstream"): "true" }),
        ),
        tls_ingress(
            "optional",
            json!({ format!("{N}/auth-tls-secret"): "client-ca",
                    format!("{N}/auth-tls-verify-client"): "optional" }),
        ),
        tls_ingress(
            "paged",
            json!({ format!("{N}/auth-tls-secret"): "client-ca",
                    format!("{N}/auth-tls-error-page"): "http://errors.example/cert" }),
        ),
        tls_ingress("open", json!({})),
    ] {
        apply_ingress(c, ing).await?;
    }
    let proxy = inst.start_proxy().await?;
    let tls = SocketAddr::new(proxy.ip, proxy.https_port);
    let get = |name: &'static str, client: Option<&'static portico_tests::certs::Leaf>| {
        let host = format!("{name}.certs.example");
        async move { tls_get(tls, &host, &host, client, &[]).await }
    };
    // 'static borrows for the closure: the leaves live for the whole test.
    let alice: &'static _ = Box::leak(Box::new(alice));
    let stranger: &'static _ = Box::leak(Box::new(stranger));
    eventually(
        Duration::from_secs(15),
        "the Ingresses are served",
        || async { matches!(get("open", None).await, Ok(Some((200, _)))) },
    )
    .await?;

    // Required: a certificate of the CA passes, and the backend sees it; none, or one of
    // another CA, gets 400.
    let (status, resp) = get("required", Some(alice)).await?.context("no answer")?;
    assert_eq!(status, 200, "{resp}");
    let doc = body_json(&resp);
    assert_eq!(doc["headers"]["ssl-client-verify"], "SUCCESS", "{doc}");
    assert!(
        doc["headers"]["ssl-client-cert"]
            .as_str()
            .is_some_and(|c| c.starts_with("-----BEGIN%20CERTIFICATE-----")),
        "{doc}"
    );
    for (what, client) in [("no certificate", None), ("another CA's", Some(stranger))] {
        let got = get("required", client).await?.map(|(s, _)| s);
        assert_eq!(got, Some(400), "required, {what}");
    }

    // Optional: none is fine (and a client cannot claim otherwise); a bad one is not.
    let (status, resp) = tls_get(
        tls,
        "optional.certs.example",
        "optional.certs.example",
        None,
        &[("ssl-client-verify", "SUCCESS")],
    )
    .await?
    .context("no answer")?;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(body_json(&resp)["headers"]["ssl-client-verify"], "NONE");
    assert_eq!(
        get("optional", Some(stranger)).await?.map(|(s, _)| s),
        Some(400)
    );
    assert_eq!(
        get("optional", Some(alice)).await?.map(|(s, _)| s),
        Some(200)
    );

    // auth-tls-error-page: a refusal is a redirect there.
    let (status, resp) = get("paged", None).await?.context("no answer")?;
    assert_eq!(status, 302, "{resp}");
    assert_eq!(
        header(&resp, "location"),
        Some("http://errors.example/cert")
    );

    // A handshake for a host that does not ask cannot be used for one that requires a
    // certificate (the same wildcard certificate covers both).
    let got = tls_get(
        tls,
        "open.certs.example",
        "required.certs.example",
        Some(alice),
        &[],
    )
    .await?
    .map(|(s, _)| s);
    assert_eq!(got, Some(400), "SNI open, Host required");
    // And plain HTTP has no certificate to show.
    let http = Http::new(&proxy.http_base());
    let plain = http.get("required.certs.example", "/").await?.status;
    assert!(
        plain == 400 || plain == 308,
        "plain HTTP to a host requiring a certificate: {plain}"
    );
    Ok(())
}
