//! Safe endpoints, tried as a hostile tenant would: selector-less Services whose
//! EndpointSlices name the proxy pod's own admin port, cloud metadata addresses and a range
//! the platform denies, each with a real listener there (so a request that got through
//! would be answered), sent for real through the proxy that the operator's Deployment
//! describes. Loopback and link-local addresses are tried too: the apiserver refuses those
//! slices itself; the proxy's own refusal of them is proved by unit tests
//! (`portico-ingress` endpoint table, `proxy` build tests), which need no apiserver.

mod proxy_support;

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use portico_tests::pod::ProxyPod;
use proxy_support::tls::warnings_on;
use proxy_support::*;
use serde_json::{Value, json};

/// Makes `ip` an address of the test network namespace (on its loopback), as the pod
/// network would make it reachable from a proxy pod.
fn add_local_address(ip: &str) -> Result<()> {
    let out = Command::new("ip")
        .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
        .output()
        .context("run ip addr add")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !stderr.contains("File exists") {
        bail!("ip addr add {ip}: {stderr}");
    }
    Ok(())
}

/// What the endpointslice controller would write for the proxy Service once the proxy pod
/// has an IP: a slice with the Service's labels (the operator's among them) listing the
/// pod. There is no such controller (nor kubelet) here; the operator reads this to know
/// the proxies' own addresses.
async fn publish_proxy_pod(inst: &Instance, proxy: &ProxyPod) -> Result<()> {
    let service_name = inst.deployment_name();
    let service = Api::<Service>::namespaced(inst.client.clone(), &inst.ns)
        .get(&service_name)
        .await
        .context("the proxy Service")?;
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.insert("kubernetes.io/service-name".into(), service_name.clone());
    labels.insert(
        "endpointslice.kubernetes.io/managed-by".into(),
        "endpointslice-controller.k8s.io".into(),
    );
    let name = format!("{service_name}-pods");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": name, "namespace": inst.ns, "labels": labels },
        "addressType": "IPv4",
        "ports": [
            { "name": "http", "port": proxy.http_port, "protocol": "TCP" },
            { "name": "https", "port": proxy.https_port, "protocol": "TCP" },
        ],
        "endpoints": [{ "addresses": [proxy.ip.to_string()],
            "conditions": { "ready": true, "serving": true, "terminating": false } }],
    }))?;
    Api::<EndpointSlice>::namespaced(inst.client.clone(), &inst.ns)
        .patch(
            &name,
            &PatchParams::apply("endpointslice-controller.k8s.io").force(),
            &Patch::Apply(&slice),
        )
        .await
        .context("the proxy Service's EndpointSlice")?;
    Ok(())
}

/// A hand-written slice for Service `service` (port `http`), as a tenant writes it.
fn slice(ns: &str, service: &str, address_type: &str, endpoints: &[SocketAddr]) -> Value {
    let port = endpoints.first().map_or(8080, |a| a.port());
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": format!("{service}-hand"), "namespace": ns,
            "labels": { "kubernetes.io/service-name": service } },
        "addressType": address_type,
        "ports": [{ "name": "http", "port": port, "protocol": "TCP" }],
        "endpoints": endpoints.iter().map(|a| json!({
            "addresses": [a.ip().to_string()],
            "conditions": { "ready": true, "serving": true, "terminating": false }
        })).collect::<Vec<_>>(),
    })
}

async fn apply_slice(c: &kube::Client, ns: &str, slice: Value) -> Result<(), kube::Error> {
    let slice: EndpointSlice = serde_json::from_value(slice).expect("slice JSON");
    let name = slice.metadata.name.clone().unwrap_or_default();
    Api::<EndpointSlice>::namespaced(c.clone(), ns)
        .patch(
            &name,
            &PatchParams::apply("tenant").force(),
            &Patch::Apply(&slice),
        )
        .await
        .map(|_| ())
}

/// A selector-less Service `name` (port `http` 80), its hand-written slice, and an
/// Ingress `name` routing `<name>.test` to it.
async fn tenant_service(
    inst: &Instance,
    name: &str,
    address_type: &str,
    endpoints: &[SocketAddr],
) -> Result<()> {
    let (c, ns) = (&inst.client, inst.ns.as_str());
    let target = endpoints.first().map_or(8080, |a| a.port());
    portico_tests::fixtures::apply_service(c, ns, name, "http", 80, target).await?;
    apply_slice(c, ns, slice(ns, name, address_type, endpoints))
        .await
        .with_context(|| format!("the apiserver refused the slice of {name}"))?;
    apply_ingress(
        c,
        ingress(
            ns,
            name,
            &inst.class,
            &format!("{name}.test"),
            &[("/", "Prefix", name)],
        ),
    )
    .await
}

async fn metrics_of(proxy: &ProxyPod) -> String {
    Http::new(&proxy.admin_base())
        .get("metrics", "/metrics")
        .await
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_at_the_proxy_metadata_or_denied_addresses_get_503_and_an_event() -> Result<()> {
    let inst = Instance::create("safe-endpoints", json!({}), &[]).await?;
    let (c, ns) = (&inst.client, inst.ns.as_str());
    let proxy = inst.start_proxy().await?;
    publish_proxy_pod(&inst, &proxy).await?;
    let http = Http::new(&proxy.http_base());

    // Listeners where the hostile endpoints point. Each answers when asked directly, so a
    // 503 through the proxy is the proxy refusing, not the address being unreachable.
    add_local_address("100.100.100.200")?;
    add_local_address("168.63.129.16")?;
    let metadata: SocketAddr = "100.100.100.200:8080".parse()?;
    let wireserver: SocketAddr = "168.63.129.16:8080".parse()?;
    let denied: SocketAddr = "10.244.250.7:8080".parse()?;
    let own_admin = SocketAddr::new(proxy.ip, proxy.admin_port);
    let _listeners = [
        portico_tests::backend::spawn(metadata, "metadata").await?,
        portico_tests::backend::spawn(wireserver, "wireserver").await?,
        portico_tests::backend::spawn(denied, "node").await?,
    ];
    let good = backends("good", 1).await?;
    for (addr, path, name) in [
        (metadata, "/", Some("metadata")),
        (wireserver, "/", Some("wireserver")),
        (denied, "/", Some("node")),
        (own_admin, "/healthz", None),
    ] {
        let reply = Http::new(&format!("http://{addr}"))
            .get("direct", path)
            .await
            .with_context(|| format!("{addr} answers directly"))?;
        assert_eq!(reply.status, 200, "{addr}{path} answers directly");
        assert_eq!(reply.backend(), name, "{addr} is who we think");
    }

    // A tenant points Services at them, one each, and one at a good pod and two of them.
    let cases: [(&str, Vec<SocketAddr>); 4] = [
        ("own", vec![own_admin]),
        ("metadata", vec![metadata]),
        ("wireserver", vec![wireserver]),
        ("denied", vec![denied]),
    ];
    for (name, endpoints) in &cases {
        tenant_service(&inst, name, "IPv4", endpoints).await?;
    }
    tenant_service(&inst, "mixed", "IPv4", &[good[0].addr, metadata, denied]).await?;
    // The metadata address inside NAT64's well-known prefix: the apiserver accepts it (it
    // is no IPv6 loopback or link-local), and a NAT64 gateway would carry it to
    // 169.254.169.254. There is none here, so only the refusal and its Event are shown.
    let nat64: SocketAddr = "[64:ff9b::a9fe:a9fe]:80".parse()?;
    tenant_service(&inst, "nat64", "IPv6", &[nat64]).await?;

    // The mixed Service serves from its good endpoint only.
    eventually(OPERATOR_WAIT, "mixed.test is served", || async {
        status_of(&http, "mixed.test", "/").await == 200
    })
    .await?;
    for _ in 0..30 {
        let reply = http.get("mixed.test", "/").await?;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.backend(),
            Some("good-0"),
            "only the good endpoint serves"
        );
    }

    // Each refused one: the proxy has seen its slice (the gauge counts the refusal), and
    // requests get 503.
    for (name, endpoints) in cases.iter().chain([&("nat64", vec![nat64])]) {
        let needle = format!(
            r#"portico_backend_endpoints_refused{{namespace="{ns}",port="http",service="{name}"}} {}"#,
            endpoints.len()
        );
        eventually(
            OPERATOR_WAIT,
            &format!("the proxy counts {name}'s refused endpoint"),
            || async { metrics_of(&proxy).await.contains(&needle) },
        )
        .await?;
        for path in ["/", "/healthz", "/latest/meta-data/"] {
            assert_eq!(
                status_of(&http, &format!("{name}.test"), path).await,
                503,
                "{name}.test{path}"
            );
        }
    }
    let metrics = metrics_of(&proxy).await;
    assert!(
        metrics.contains(&format!(
            r#"portico_backend_endpoints_refused{{namespace="{ns}",port="http",service="mixed"}} 2"#
        )),
        "{metrics}"
    );
    assert!(
        !metrics.contains(&format!(
            r#"portico_backend_endpoints_refused{{namespace="{ns}",port="http",service="good"}}"#
        )),
        "no series for a Service without refused endpoints"
    );
    assert!(
        proxy.process.log_tail(400).contains("endpoint refused"),
        "the proxy logs the refusals:\n{}",
        proxy.process.log_tail(40)
    );

    // The operator tells each Ingress why.
    let wanted: [(&str, String); 6] = [
        (
            "own",
            format!("{own_admin} (an address of the proxy pod itself)"),
        ),
        (
            "metadata",
            format!("{metadata} (a cloud metadata service address)"),
        ),
        (
            "wireserver",
            format!("{wireserver} (a cloud metadata service address)"),
        ),
        (
            "denied",
            format!("{denied} (in {DENIED_ENDPOINT_CIDR}, a range the platform denies"),
        ),
        ("mixed", format!("{denied} (in {DENIED_ENDPOINT_CIDR}")),
        (
            "nat64",
            format!("{nat64} (a cloud metadata service address)"),
        ),
    ];
    for (name, fragment) in &wanted {
        let notes = eventually_some(&format!("an EndpointRefused Event on {name}"), || async {
            let notes = warnings_on(c, ns, name, "EndpointRefused").await;
            notes
                .iter()
                .any(|n| n.contains(fragment.as_str()))
                .then_some(notes)
        })
        .await?;
        assert!(
            notes
                .iter()
                .all(|n| n.contains(&format!("Service {ns}/{name}"))),
            "{notes:?}"
        );
    }
    let mixed = warnings_on(c, ns, "mixed", "EndpointRefused").await;
    assert!(
        mixed
            .iter()
            .any(|n| n.contains(&format!("{metadata} (a cloud metadata"))),
        "{mixed:?}"
    );
    assert!(
        mixed.iter().all(|n| !n.contains(&good[0].addr.to_string())),
        "the good endpoint is not named: {mixed:?}"
    );

    // Fixed by the tenant: the Event's reason goes away with the endpoint, traffic flows.
    apply_slice(c, ns, slice(ns, "metadata", "IPv4", &[good[0].addr])).await?;
    eventually(OPERATOR_WAIT, "metadata.test served once fixed", || async {
        status_of(&http, "metadata.test", "/").await == 200
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apiserver_refuses_loopback_and_link_local_endpoints_itself() -> Result<()> {
    let inst = Instance::create("apiserver-endpoints", json!({}), &[]).await?;
    let (c, ns) = (&inst.client, inst.ns.as_str());
    // A listener on a link-local address: a slice naming it would be reachable.
    add_local_address("169.254.169.254")?;
    let link_local: SocketAddr = "169.254.169.254:8080".parse()?;
    let _listener = portico_tests::backend::spawn(link_local, "imds").await?;
    let reply = Http::new(&format!("http://{link_local}"))
        .get("direct", "/")
        .await?;
    assert_eq!(
        reply.backend(),
        Some("imds"),
        "reachable from the pod network"
    );
    for (addr, says) in [
        ("127.0.0.1:8080", "loopback"),
        ("169.254.169.254:8080", "link-local"),
        ("169.254.3.4:8080", "link-local"),
        ("0.0.0.0:8080", "unspecified"),
    ] {
        let addr: SocketAddr = addr.parse()?;
        let family = if addr.ip().is_ipv4() { "IPv4" } else { "IPv6" };
        match apply_slice(c, ns, slice(ns, "local", family, &[addr])).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{addr}: {status:?}");
                assert!(status.message.contains(says), "{addr}: {}", status.message);
            }
            other => bail!("the apiserver did not refuse a slice naming {addr}: {other:?}"),
        }
    }
    // IPv6 forms that carry IPv4 loopback: one the apiserver refuses, one it takes (and the
    // proxy refuses; see the other test for the NAT64 form of the metadata address).
    let mapped: IpAddr = "::ffff:127.0.0.1".parse()?;
    assert!(
        apply_slice(
            c,
            ns,
            slice(ns, "local", "IPv6", &[SocketAddr::new(mapped, 80)])
        )
        .await
        .is_err(),
        "an IPv4-mapped loopback address is refused"
    );
    Ok(())
}

/// Polls `check` until it returns `Some`; fails after `OPERATOR_WAIT`.
async fn eventually_some<T, F, Fut>(what: &str, check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    portico_tests::poll_until(what, OPERATOR_WAIT, check).await
}
