//! Ingresses written for ingress-nginx, served as they are: each `nginx.ingress.kubernetes.io/*`
//! annotation is honoured, or said not to be (an Event, a status count), and one that
//! decides who may reach the app fails closed. Real apiserver and operator, the proxy from
//! the operator's Deployment, real HTTP in the test network namespace.

mod proxy_support;

use std::time::Duration;

use anyhow::Result;
use kube::api::{Api, Patch, PatchParams};
use portico_operator::api::IngressController;
use proxy_support::tls::warnings_on;
use proxy_support::*;
use serde_json::{Value, json};

fn nginx_ingress(ns: &str, name: &str, class: &str, annotations: Value) -> Value {
    let host = format!("{name}.nginx.example.com");
    with_annotations(
        ingress(ns, name, class, &host, &[("/", "Prefix", "web")]),
        annotations,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_annotations_are_honoured_reported_or_fail_closed() -> Result<()> {
    let inst = Instance::create("nginx-compat", json!({}), &[]).await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let b = backends("web", 2).await?;
    publish(c, ns, "web", &b).await?;
    let prefix = "nginx.ingress.kubernetes.io";
    for (name, annotations) in [
        ("plain", json!({})),
        (
            "auth",
            json!({ format!("{prefix}/auth-snippet"): "return 200;" }),
        ),
        (
            "snippet",
            json!({ format!("{prefix}/configuration-snippet"): "more_set_headers \"X-A: b\";" }),
        ),
        (
            "allowlist",
            json!({ format!("{prefix}/whitelist-source-range"): "10.0.0.0/8" }),
        ),
        (
            "mirror",
            json!({ format!("{prefix}/mirror-target"): "http://mirror.example/", format!("{prefix}/ssl-redirect"): "false" }),
        ),
        (
            "force",
            json!({ format!("{prefix}/force-ssl-redirect"): "true" }),
        ),
        (
            "hash",
            json!({ format!("{prefix}/upstream-hash-by"): "$http_x_user" }),
        ),
        (
            "grpc",
            json!({ format!("{prefix}/backend-protocol"): "GRPC" }),
        ),
        (
            "aliased",
            json!({ format!("{prefix}/server-alias"): "other-name.nginx.example.com" }),
        ),
        (
            "by-uri",
            json!({ format!("{prefix}/upstream-hash-by"): "$request_uri" }),
        ),
        (
            "by-cookie",
            json!({ format!("{prefix}/upstream-hash-by"): "$cookie_session" }),
        ),
    ] {
        apply_ingress(c, nginx_ingress(ns, name, class, annotations)).await?;
    }
    let proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    eventually(
        Duration::from_secs(10),
        "the plain Ingress is served",
        || async { status_of(&http, "plain.nginx.example.com", "/").await == 200 },
    )
    .await?;

    // Fail closed: served to no one, rather than served open.
    for name in ["auth", "snippet"] {
        assert_eq!(
            status_of(&http, &format!("{name}.nginx.example.com"), "/").await,
            404,
            "{name} is not served"
        );
    }
    for (name, annotation) in [
        ("auth", "auth-snippet"),
        ("snippet", "configuration-snippet"),
    ] {
        eventually(
            OPERATOR_WAIT,
            &format!("an IngressRejected Event on {name} naming {annotation}"),
            || async {
                warnings_on(c, ns, name, "IngressRejected")
                    .await
                    .iter()
                    .any(|n| n.contains(annotation) && n.contains("not served"))
            },
        )
        .await?;
    }

    // Not honoured, but harmless: served, with an Event and a count.
    assert_eq!(status_of(&http, "mirror.nginx.example.com", "/").await, 200);
    eventually(
        OPERATOR_WAIT,
        "an AnnotationsNotHonoured Event on mirror",
        || async {
            warnings_on(c, ns, "mirror", "AnnotationsNotHonoured")
                .await
                .iter()
                .any(|n| n.contains("mirror-target (not supported)"))
        },
    )
    .await?;
    let instances = Api::<IngressController>::namespaced(c.clone(), ns);
    eventually(
        OPERATOR_WAIT,
        "status: 9 served, 2 rejected, 1 annotation not honoured",
        || async {
            instances
                .get(&inst.name)
                .await
                .ok()
                .and_then(|i| i.status)
                .is_some_and(|s| {
                    (
                        s.ingresses_served,
                        s.ingresses_rejected,
                        s.annotations_not_honoured,
                    ) == (9, 2, 1)
                })
        },
    )
    .await?;

    // Honoured: force-ssl-redirect without a TLS section, and a header hash.
    let r = http.get("force.nginx.example.com", "/x?y=1").await?;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some("https://force.nginx.example.com/x?y=1")
    );
    for user in ["alice", "bob", "carol"] {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..10 {
            let r = http
                .get_with("hash.nginx.example.com", "/", &[("x-user", user)])
                .await?;
            seen.insert(r.backend().unwrap_or_default().to_owned());
        }
        assert_eq!(seen.len(), 1, "{user} always reaches one backend: {seen:?}");
    }

    // backend-protocol: GRPC: the backend gets cleartext HTTP/2, as a gRPC server needs,
    // from a Service port that says nothing about it.
    let r = http
        .get_with(
            "grpc.nginx.example.com",
            "/pkg.Service/Method",
            &[("content-type", "application/grpc")],
        )
        .await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["version"], "HTTP/2.0", "{:?}", r.json);

    // Hash keys ingress-nginx users write: the URI, a cookie.
    for (host, headers) in [
        ("by-uri.nginx.example.com", vec![]),
        (
            "by-cookie.nginx.example.com",
            vec![("cookie", "session=abc")],
        ),
        (
            "by-cookie.nginx.example.com",
            vec![("cookie", "session=xyz")],
        ),
    ] {
        for path in ["/a?x=1", "/b", "/c/d"] {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..8 {
                let r = http.get_with(host, path, &headers).await?;
                seen.insert(r.backend().unwrap_or_default().to_owned());
            }
            assert_eq!(seen.len(), 1, "{host}{path} {headers:?}: {seen:?}");
        }
    }

    // whitelist-source-range is honoured now: this client (a 10.244.x.y pod address) is
    // inside 10.0.0.0/8.
    assert_eq!(
        status_of(&http, "allowlist.nginx.example.com", "/").await,
        200
    );

    // server-alias: the Ingress's rules answer for the alias too.
    assert_eq!(
        status_of(&http, "other-name.nginx.example.com", "/").await,
        200
    );

    // The instance may accept the risk for one annotation: that Ingress is then served,
    // ignoring it; the others stay refused.
    let patch = json!({ "spec": { "ingressNginx": { "acceptRisk": ["auth-snippet"] } } });
    instances
        .patch(&inst.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    inst.await_proxy_arg("accept-risk-annotations", "auth-snippet")
        .await?;
    let proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    eventually(
        OPERATOR_WAIT,
        "the auth Ingress is served once the risk is accepted",
        || async { status_of(&http, "auth.nginx.example.com", "/").await == 200 },
    )
    .await?;
    assert_eq!(
        status_of(&http, "snippet.nginx.example.com", "/").await,
        404
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_by_header_cookie_and_weight() -> Result<()> {
    let inst = Instance::create("nginx-canary", json!({}), &[]).await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let stable = backends("stable", 1).await?;
    let canary = backends("canary", 1).await?;
    publish(c, ns, "stable", &stable).await?;
    publish(c, ns, "canary", &canary).await?;
    let host = "canary.nginx.example.com";
    let prefix = "nginx.ingress.kubernetes.io";
    // The canary is applied first: it pairs with its primary whatever their ages.
    let mut canary_ing = ingress(ns, "app-canary", class, host, &[("/", "Prefix", "canary")]);
    canary_ing["metadata"]["annotations"] = json!({
        format!("{prefix}/canary"): "true",
        format!("{prefix}/canary-by-header"): "X-Canary",
        format!("{prefix}/canary-by-cookie"): "canary",
        format!("{prefix}/canary-weight"): "20",
    });
    apply_ingress(c, canary_ing).await?;
    apply_ingress(
        c,
        ingress(ns, "app", class, host, &[("/", "Prefix", "stable")]),
    )
    .await?;
    let proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    eventually(
        Duration::from_secs(10),
        "the canary answers to its header",
        || async {
            http.get_with(host, "/", &[("x-canary", "always")])
                .await
                .is_ok_and(|r| r.backend() == Some("canary-0"))
        },
    )
    .await?;
    for (headers, want) in [
        (vec![("x-canary", "always")], "canary-0"),
        (vec![("x-canary", "never")], "stable-0"),
        (vec![("cookie", "canary=always")], "canary-0"),
        (vec![("cookie", "a=b; canary=never")], "stable-0"),
        // The header decides before the cookie, as in ingress-nginx.
        (
            vec![("x-canary", "never"), ("cookie", "canary=always")],
            "stable-0",
        ),
    ] {
        for _ in 0..5 {
            let r = http.get_with(host, "/", &headers).await?;
            assert_eq!(r.backend(), Some(want), "{headers:?}");
        }
    }
    // A header pattern: another canary, on another host, by a regex on one header.
    let pattern_host = "pattern.nginx.example.com";
    let mut by_pattern = ingress(
        ns,
        "tier-canary",
        class,
        pattern_host,
        &[("/", "Prefix", "canary")],
    );
    by_pattern["metadata"]["annotations"] = json!({
        format!("{prefix}/canary"): "true",
        format!("{prefix}/canary-by-header"): "X-Tier",
        format!("{prefix}/canary-by-header-pattern"): "^(alpha|beta)-",
    });
    apply_ingress(c, by_pattern).await?;
    apply_ingress(
        c,
        ingress(
            ns,
            "tier",
            class,
            pattern_host,
            &[("/", "Prefix", "stable")],
        ),
    )
    .await?;
    eventually(Duration::from_secs(10), "the pattern canary", || async {
        http.get_with(pattern_host, "/", &[("x-tier", "beta-7")])
            .await
            .is_ok_and(|r| r.backend() == Some("canary-0"))
    })
    .await?;
    for (tier, want) in [
        ("alpha-1", "canary-0"),
        ("gamma-1", "stable-0"),
        ("xbeta-1", "stable-0"),
    ] {
        let r = http
            .get_with(pattern_host, "/", &[("x-tier", tier)])
            .await?;
        assert_eq!(r.backend(), Some(want), "{tier}");
    }

    // By weight: 20% of 1,000 requests, within ±3 points.
    let mut to_canary = 0;
    for _ in 0..1000 {
        let r = http.get(host, "/").await?;
        assert_eq!(r.status, 200);
        if r.backend() == Some("canary-0") {
            to_canary += 1;
        }
    }
    assert!(
        (170..=230).contains(&to_canary),
        "{to_canary} of 1000 went to the canary, want 200 ± 30"
    );
    // No Event says the canary conflicts: it is paired, not competing.
    assert!(
        warnings_on(c, ns, "app-canary", "IngressConflict")
            .await
            .is_empty()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ranges_allow_and_deny_by_client_address() -> Result<()> {
    // The test client is trusted as a front proxy, so its X-Forwarded-For names the
    // client Portico judges (as behind a cloud load balancer).
    let inst = Instance::create(
        "nginx-ranges",
        json!({ "trustedProxyCIDRs": ["10.244.0.0/16"] }),
        &[],
    )
    .await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let b = backends("web", 1).await?;
    publish(c, ns, "web", &b).await?;
    let prefix = "nginx.ingress.kubernetes.io";
    for (name, annotations) in [
        (
            "allow",
            json!({ format!("{prefix}/whitelist-source-range"): "198.51.100.0/24, 2001:db8::/32" }),
        ),
        (
            "deny",
            json!({ format!("{prefix}/denylist-source-range"): "203.0.113.0/24" }),
        ),
        (
            "broken",
            json!({ format!("{prefix}/whitelist-source-range"): "198.51.100.0/24, not-a-range" }),
        ),
    ] {
        apply_ingress(c, nginx_ingress(ns, name, class, annotations)).await?;
    }
    let proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    eventually(
        Duration::from_secs(10),
        "the deny Ingress is served",
        || async { status_of(&http, "deny.nginx.example.com", "/").await == 200 },
    )
    .await?;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    for (host, client, want) in [
        ("allow", "198.51.100.7", 200),
        ("allow", "2001:db8::1", 200),
        ("allow", "203.0.113.5", 403),
        ("allow", "192.0.2.1", 403),
        ("deny", "203.0.113.5", 403),
        ("deny", "198.51.100.7", 200),
    ] {
        let r = http
            .get_with(&format!("{host}.nginx.example.com"), "/", &from(client))
            .await?;
        assert_eq!(r.status, want, "{host} from {client}");
        if want == 403 {
            assert!(
                r.backend().is_none(),
                "a refused request never reaches the backend"
            );
        }
    }
    // Without a forwarded address the client is the peer, a 10.244.x.y address: not in
    // the allow list.
    assert_eq!(status_of(&http, "allow.nginx.example.com", "/").await, 403);
    // An unreadable range list is not served open: not served at all.
    assert_eq!(status_of(&http, "broken.nginx.example.com", "/").await, 404);
    eventually(
        OPERATOR_WAIT,
        "an IngressRejected Event on the broken range list",
        || async {
            warnings_on(c, ns, "broken", "IngressRejected")
                .await
                .iter()
                .any(|n| n.contains("not-a-range"))
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_http_errors_and_default_backend() -> Result<()> {
    let inst = Instance::create("nginx-errors", json!({}), &[]).await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let web = backends("web", 1).await?;
    publish(c, ns, "web", &web).await?;
    let pages = backends("errpage", 1).await?;
    publish(c, ns, "errpages", &pages).await?;
    // A Service whose EndpointSlice lists nothing.
    portico_tests::fixtures::apply_service(c, ns, "nothing", "http", 80, 8080).await?;
    let prefix = "nginx.ingress.kubernetes.io";
    let annotations = json!({
        format!("{prefix}/default-backend"): "errpages",
        format!("{prefix}/custom-http-errors"): "404,503",
    });
    let mut errors = ingress(
        ns,
        "errors",
        class,
        "errors.nginx.example.com",
        &[("/", "Prefix", "web")],
    );
    errors["metadata"]["annotations"] = annotations.clone();
    apply_ingress(c, errors).await?;
    let mut empty = ingress(
        ns,
        "empty",
        class,
        "empty.nginx.example.com",
        &[("/", "Prefix", "nothing")],
    );
    empty["metadata"]["annotations"] = annotations;
    apply_ingress(c, empty).await?;
    let proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    eventually(
        Duration::from_secs(10),
        "the errors Ingress is served",
        || async {
            http.get("errors.nginx.example.com", "/")
                .await
                .is_ok_and(|r| r.backend() == Some("web-0"))
        },
    )
    .await?;
    // A 404 from the backend: the default backend answers, told what happened.
    let r = http
        .get_with(
            "errors.nginx.example.com",
            "/missing?status=404",
            &[("accept", "application/json")],
        )
        .await?;
    assert_eq!(r.backend(), Some("errpage-0"));
    let h = &r.json["headers"];
    assert_eq!(h["x-code"], "404");
    assert_eq!(h["x-original-uri"], "/missing?status=404");
    assert_eq!(h["x-format"], "application/json");
    assert_eq!(h["x-namespace"], ns);
    assert_eq!(h["x-ingress-name"], "errors");
    assert_eq!(h["x-service-name"], "web");
    // A status not in the list passes through.
    let r = http
        .get("errors.nginx.example.com", "/oops?status=500")
        .await?;
    assert_eq!((r.status, r.backend()), (500, Some("web-0")));
    // A Service without endpoints: the default backend, with X-Code 503.
    let r = http.get("empty.nginx.example.com", "/").await?;
    assert_eq!(r.backend(), Some("errpage-0"));
    assert_eq!(r.json["headers"]["x-code"], "503");
    Ok(())
}
