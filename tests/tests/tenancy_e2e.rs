//! Tenancy, tried as a hostile tenant would: one class serving the instance's namespace and
//! three consenting tenants, where tenant B tries every way to take tenant A's host, catch
//! its traffic or serve a certificate for it. Real apiserver and operator, the proxy from
//! the operator's Deployment with its ServiceAccount's token, real HTTP and TLS in the test
//! network namespace; what came out is asserted, on the wire and in the Events.

mod proxy_support;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use portico_tests::certs::Ca;
use proxy_support::tls::*;
use proxy_support::*;
use serde_json::{Value, json};

fn rule(host: &str, paths: &[(&str, &str, &str)]) -> Value {
    let paths: Vec<Value> = paths
        .iter()
        .map(|(path, kind, svc)| {
            json!({ "path": path, "pathType": kind,
                    "backend": { "service": { "name": svc, "port": { "name": "http" } } } })
        })
        .collect();
    if host.is_empty() {
        json!({ "http": { "paths": paths } })
    } else {
        json!({ "host": host, "http": { "paths": paths } })
    }
}

fn ingress_of(ns: &str, name: &str, annotations: Value, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": { "name": name, "namespace": ns, "annotations": annotations },
        "spec": spec,
    })
}

/// The value of an unlabelled-but-for-`state` gauge line in Prometheus text.
fn gauge(metrics: &str, line_prefix: &str) -> Option<i64> {
    metrics
        .lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_take_another_namespaces_host_catch_all_or_certificate() -> Result<()> {
    let cp = portico_tests::control_plane().await;
    portico_tests::netns::require();
    let owner = cp.new_namespace("ten-owner").await;
    let attacker = cp.new_namespace("ten-attacker").await;
    let guest = cp.new_namespace("ten-guest").await;
    let inst = Instance::create("ten-home", json!({}), &[&owner, &attacker, &guest]).await?;
    let (c, home, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let mut running = Vec::new();
    for (ns, name) in [
        (home, "home"),
        (owner.as_str(), "owner"),
        (attacker.as_str(), "attacker"),
        (guest.as_str(), "guest"),
    ] {
        let b = backends(name, 1).await?;
        publish(c, ns, "web", &b).await?;
        running.push(b);
    }

    // The owner comes first: its host, a wildcard, a certificate, and a share with the guest.
    let ca = Ca::new("tenancy-ca")?;
    let owner_leaf = ca.server(&["app.example.com"])?;
    let attacker_leaf = ca.server(&["app.example.com"])?;
    apply_tls_secret(
        c,
        &owner,
        "app-cert",
        &owner_leaf.cert_pem,
        &owner_leaf.key_pem,
    )
    .await?;
    apply_tls_secret(
        c,
        &attacker,
        "app-cert",
        &attacker_leaf.cert_pem,
        &attacker_leaf.key_pem,
    )
    .await?;
    apply_ingress(
        c,
        ingress_of(
            &owner,
            "site",
            // Plain HTTP keeps the checks short; the certificate is checked over TLS below.
            json!({ "portico.dev/share-host-with": guest, "portico.dev/ssl-redirect": "false" }),
            json!({ "ingressClassName": class,
                    "tls": [{ "hosts": ["app.example.com"], "secretName": "app-cert" }],
                    "rules": [rule("app.example.com", &[("/app", "Prefix", "web")]),
                              rule("*.owner.example.com", &[("/", "Prefix", "web")])] }),
        ),
    )
    .await?;
    apply_ingress(
        c,
        ingress_of(
            home,
            "default",
            json!({}),
            json!({ "ingressClassName": class,
                    "defaultBackend": { "service": { "name": "web", "port": { "name": "http" } } } }),
        ),
    )
    .await?;
    // creationTimestamp has one-second resolution: the attacker is newer for sure.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Every takeover the issue names, each its own Ingress so each gets its own Event.
    let takeovers: [(&str, Value, &str); 7] = [
        (
            "longer-prefix",
            json!({ "rules": [rule("app.example.com", &[("/app/admin", "Prefix", "web")])] }),
            "HostNotOwned",
        ),
        (
            "exact-copy",
            json!({ "rules": [rule("app.example.com", &[("/app", "Exact", "web")])] }),
            "HostNotOwned",
        ),
        (
            "sub-path",
            json!({ "rules": [rule("app.example.com", &[("/other", "Prefix", "web")])] }),
            "HostNotOwned",
        ),
        (
            "under-wildcard",
            json!({ "rules": [rule("x.owner.example.com", &[("/", "Prefix", "web")])] }),
            "HostNotOwned",
        ),
        (
            "catch-all",
            json!({ "defaultBackend": { "service": { "name": "web", "port": { "name": "http" } } } }),
            "CatchAllNotAllowed",
        ),
        (
            "host-less",
            json!({ "rules": [rule("", &[("/", "Prefix", "web")])] }),
            "CatchAllNotAllowed",
        ),
        (
            "certificate",
            json!({ "tls": [{ "hosts": ["app.example.com"], "secretName": "app-cert" }],
                    "rules": [rule("attacker.example.com", &[("/", "Prefix", "web")])] }),
            "CertificateNotOwned",
        ),
    ];
    for (name, mut spec, _) in takeovers.clone() {
        spec["ingressClassName"] = json!(class);
        apply_ingress(c, ingress_of(&attacker, name, json!({}), spec)).await?;
    }
    // The guest the owner named may add a path; it is newer than the owner too.
    apply_ingress(
        c,
        ingress_of(
            &guest,
            "shared",
            json!({}),
            json!({ "ingressClassName": class,
                    "rules": [rule("app.example.com", &[("/guest", "Prefix", "web")])] }),
        ),
    )
    .await?;
    let secrets = BTreeMap::from([
        (owner.clone(), ["app-cert".to_owned()].into()),
        (attacker.clone(), ["app-cert".to_owned()].into()),
    ]);
    inst.await_secret_access(secrets).await?;

    let proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    eventually(
        Duration::from_secs(10),
        "the guest's shared path is served",
        || async {
            http.get("app.example.com", "/guest")
                .await
                .is_ok_and(|r| r.backend() == Some("guest-0"))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; proxy log:\n{}", proxy.process.log_tail(40)))?;

    // The owner's traffic is unchanged by every attempt.
    for (host, path, want) in [
        ("app.example.com", "/app", Some("owner-0")),
        ("app.example.com", "/app/admin", Some("owner-0")),
        ("app.example.com", "/guest/x", Some("guest-0")),
        // The owner's host matches no path: 404, not the home namespace's default backend
        // and not the attacker's catch-alls.
        ("app.example.com", "/other", None),
        ("x.owner.example.com", "/", Some("owner-0")),
        ("attacker.example.com", "/", Some("attacker-0")),
        // Hosts no one owns get the instance's own default backend, not the attacker's.
        ("nowhere.example.com", "/", Some("home-0")),
    ] {
        let r = http.get(host, path).await?;
        match want {
            Some(backend) => assert_eq!(r.backend(), Some(backend), "{host}{path}"),
            None => assert_eq!(r.status, 404, "{host}{path}: {:?}", r.backend()),
        }
    }
    // Over HTTPS too: the exact-path copy is not reached, and the certificate is the owner's.
    let https = std::net::SocketAddr::new(proxy.ip, proxy.https_port);
    let cert = served_cert(https, "app.example.com").await?;
    assert_eq!(cert, der(&owner_leaf), "the owner's certificate is served");
    assert_ne!(cert, der(&attacker_leaf));

    // Each attempt is refused with an Event on the attacker's Ingress that says why.
    for (name, _, reason) in &takeovers {
        eventually(
            OPERATOR_WAIT,
            &format!("a {reason} Event on {attacker}/{name}"),
            || async { !warnings_on(c, &attacker, name, reason).await.is_empty() },
        )
        .await?;
    }
    let note = warnings_on(c, &attacker, "longer-prefix", "HostNotOwned").await;
    assert!(
        note[0].contains(&format!(
            "host app.example.com belongs to namespace {owner} (its oldest Ingress is {owner}/site)"
        )),
        "{note:?}"
    );
    assert!(
        warnings_on(c, &guest, "shared", "HostNotOwned")
            .await
            .is_empty(),
        "the guest was shared the host"
    );

    // One judgement: the operator's counts and the proxy's agree. Served: the owner's,
    // the home default, the guest's, and the attacker's certificate Ingress for its own host
    // (its certificate ignored); rejected: the six other takeovers.
    let (want_served, want_rejected) = (4, 6);
    eventually(
        OPERATOR_WAIT,
        "the instance's status counts 4 served, 6 rejected",
        || async {
            let api =
                kube::Api::<portico_operator::api::IngressController>::namespaced(c.clone(), home);
            api.get(&inst.name)
                .await
                .ok()
                .and_then(|i| i.status)
                .is_some_and(|s| {
                    (s.ingresses_served, s.ingresses_rejected) == (want_served, want_rejected)
                })
        },
    )
    .await?;
    let metrics = Http::new(&proxy.admin_base())
        .get("admin", "/metrics")
        .await?;
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    assert_eq!(
        (
            gauge(&metrics, "portico_ingresses{state=\"served\"}"),
            gauge(&metrics, "portico_ingresses{state=\"skipped\"}"),
        ),
        (Some(i64::from(want_served)), Some(i64::from(want_rejected))),
        "{metrics}"
    );
    Ok(())
}
