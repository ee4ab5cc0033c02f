//! ingress-nginx's routing annotations with real requests: regex paths (and their
//! precedence over a host's other Ingresses), rewrite-target with capture groups, app-root,
//! x-forwarded-prefix, upstream-vhost, permanent and temporal redirects,
//! from-to-www-redirect; a regex that does not compile leaves its Ingress unserved with an
//! Event. Real apiserver and operator, the proxy from the operator's Deployment, real HTTP
//! in the test network namespace (portico-backend echoes the path and headers it got).

mod proxy_support;

use std::time::Duration;

use anyhow::Result;
use proxy_support::tls::warnings_on;
use proxy_support::*;
use serde_json::{Value, json};

const PREFIX: &str = "nginx.ingress.kubernetes.io";

/// An Ingress for `host` with `paths` (path, pathType) to Service `svc`, annotated.
fn annotated(
    ns: &str,
    name: &str,
    class: &str,
    host: &str,
    paths: &[(&str, &str)],
    svc: &str,
    annotations: &[(&str, &str)],
) -> Value {
    let paths: Vec<(&str, &str, &str)> = paths.iter().map(|(p, k)| (*p, *k, svc)).collect();
    let map: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (format!("{PREFIX}/{k}"), json!(v)))
        .collect();
    with_annotations(ingress(ns, name, class, host, &paths), Value::Object(map))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_routing_annotations_rewrite_redirect_and_match_regex_paths() -> Result<()> {
    let inst = Instance::create("nginx-routing", json!({}), &[]).await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let web = backends("web", 1).await?;
    publish(c, ns, "web", &web).await?;
    let other = backends("other", 1).await?;
    publish(c, ns, "other", &other).await?;

    let h = |name: &str| format!("{name}.routing.example.com");
    let ingresses = [
        // use-regex on one Ingress of a host: every path of the host is a regex.
        annotated(
            ns,
            "regex",
            class,
            &h("regex"),
            &[("/api/v[0-9]+/users", "ImplementationSpecific")],
            "web",
            &[("use-regex", "true")],
        ),
        annotated(
            ns,
            "regex-plain",
            class,
            &h("regex"),
            &[("/plain", "Exact")],
            "other",
            &[],
        ),
        annotated(
            ns,
            "rewrite",
            class,
            &h("rewrite"),
            &[("/something(/|$)(.*)", "ImplementationSpecific")],
            "web",
            &[("rewrite-target", "/$2")],
        ),
        annotated(
            ns,
            "approot",
            class,
            &h("approot"),
            &[("/", "Prefix")],
            "web",
            &[("app-root", "/app")],
        ),
        annotated(
            ns,
            "upstream",
            class,
            &h("upstream"),
            &[("/", "Prefix")],
            "web",
            &[
                ("x-forwarded-prefix", "/api"),
                ("upstream-vhost", "internal.example"),
            ],
        ),
        annotated(
            ns,
            "permanent",
            class,
            &h("permanent"),
            &[("/", "Prefix")],
            "web",
            &[
                ("permanent-redirect", "https://moved.example/here"),
                ("permanent-redirect-code", "308"),
            ],
        ),
        annotated(
            ns,
            "temporal",
            class,
            &h("temporal"),
            &[("/", "Prefix")],
            "web",
            &[("temporal-redirect", "https://elsewhere.example/")],
        ),
        annotated(
            ns,
            "www",
            class,
            "shop.routing.example.com",
            &[("/", "Prefix")],
            "web",
            &[("from-to-www-redirect", "true")],
        ),
        annotated(
            ns,
            "badregex",
            class,
            &h("badregex"),
            &[("/a(b", "ImplementationSpecific")],
            "web",
            &[("use-regex", "true")],
        ),
    ];
    for ing in ingresses {
        apply_ingress(c, ing).await?;
    }
    let proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    eventually(
        Duration::from_secs(10),
        "the rewrite Ingress is served",
        || async { status_of(&http, &h("rewrite"), "/something").await == 200 },
    )
    .await?;

    // use-regex: nginx's `location ~* "^<path>"`, case-insensitive, anchored at the start.
    let r = http.get(&h("regex"), "/API/V12/users/7").await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.backend(), Some("web-0"));
    assert_eq!(
        r.json["path"], "/API/V12/users/7",
        "no rewrite: the path as sent"
    );
    assert_eq!(status_of(&http, &h("regex"), "/api/vx/users").await, 404);
    // The other Ingress of the host, without the annotation: its Exact path is a regex too,
    // as in ingress-nginx (so `/plain` matches `/PLAINER`).
    let r = http.get(&h("regex"), "/PLAINER").await?;
    assert_eq!((r.status, r.backend()), (200, Some("other-0")));

    // rewrite-target with capture groups; the query is kept.
    for (path, want_path, want_query) in [
        ("/something/new?x=1&y=2", "/new", json!("x=1&y=2")),
        ("/something", "/", Value::Null),
        ("/SomeThing/a/b/", "/a/b/", Value::Null),
    ] {
        let r = http.get(&h("rewrite"), path).await?;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.json["path"], want_path, "{path}");
        assert_eq!(r.json["query"], want_query, "{path}");
    }

    // app-root: only `/` is redirected.
    let r = http.get(&h("approot"), "/").await?;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("http://approot.routing.example.com/app")
    );
    let r = http.get(&h("approot"), "/app").await?;
    assert_eq!((r.status, r.json["path"].as_str()), (200, Some("/app")));

    // x-forwarded-prefix and upstream-vhost: what the upstream gets; the client's host
    // stays in X-Forwarded-Host.
    let r = http.get(&h("upstream"), "/x").await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["headers"]["x-forwarded-prefix"], "/api");
    assert_eq!(r.json["headers"]["host"], "internal.example");
    assert_eq!(
        r.json["headers"]["x-forwarded-host"],
        h("upstream").as_str()
    );

    // permanent-redirect (with its code) and temporal-redirect (default 302): every path,
    // the backend never reached.
    for (host, code, location) in [
        ("permanent", 308, "https://moved.example/here"),
        ("temporal", 302, "https://elsewhere.example/"),
    ] {
        for path in ["/", "/deep/path?q=1"] {
            let r = http.get(&h(host), path).await?;
            assert_eq!(r.status, code, "{host}{path}");
            assert_eq!(r.header("location"), Some(location), "{host}{path}");
            assert!(r.header("x-backend").is_none(), "{host}{path}");
        }
    }

    // from-to-www-redirect: www.<host> → <host> (308); the host itself is served.
    let r = http.get("www.shop.routing.example.com", "/a/b?c=1").await?;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some("http://shop.routing.example.com/a/b?c=1")
    );
    assert_eq!(
        status_of(&http, "shop.routing.example.com", "/a").await,
        200
    );
    assert_eq!(
        status_of(&http, "www.www.shop.routing.example.com", "/").await,
        404,
        "only the name the Ingress names and its www twin"
    );

    // A regex that does not compile: not served, and said so.
    assert_eq!(status_of(&http, &h("badregex"), "/ab").await, 404);
    eventually(
        OPERATOR_WAIT,
        "an IngressRejected Event on badregex",
        || async {
            warnings_on(c, ns, "badregex", "IngressRejected")
                .await
                .iter()
                .any(|n| n.contains("is not a regular expression Portico can use"))
        },
    )
    .await?;
    Ok(())
}
