//! `portico-demo` (`just demo`): from `helm install` to routed traffic, on this machine.
//!
//! Runs inside the private network namespace of tests/netns.sh:
//! ```text
//!  control plane (etcd, kube-apiserver, kube-controller-manager) on 127.0.0.1
//!  helm install charts/portico ─▶ operator (the chart's Deployment, run locally with its SA token)
//!  team-a/edge, team-b/edge (IngressControllers) ─▶ proxy Deployments ─▶ one local pod each
//!  backends on 10.244.10.x / 10.244.20.x, published in EndpointSlices
//!  client ─▶ proxy pod 10.244.100.1 (class team-a) / 10.244.100.2 (class team-b)
//! ```
//! Ctrl-C at any point stops everything it started (the children die with it).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use portico_tests::cluster::{ControlPlane, KUBERNETES_VERSION, Options};
use portico_tests::fixtures::{apply_endpoints, apply_ingress, apply_service, ingress};
use portico_tests::{backend, helm, pod};
use serde_json::json;

fn step(msg: &str) {
    println!("\n\x1b[1m==> {msg}\x1b[0m");
}

#[tokio::main]
async fn main() -> Result<()> {
    portico_tests::netns::require();
    let started = Instant::now();

    step(&format!(
        "starting a local control plane (etcd, kube-apiserver {KUBERNETES_VERSION}, kube-controller-manager)"
    ));
    let dir = portico_tests::target_dir().join("demo");
    let _ = std::fs::remove_dir_all(&dir);
    let opts = Options {
        dir,
        controller_manager: true,
        port: 0,
        node_address: None,
    };
    let cp = tokio::task::spawn_blocking(move || ControlPlane::start(&opts)).await??;
    println!(
        "    apiserver {} (admin kubeconfig {})",
        cp.server(),
        cp.kubeconfig().display()
    );
    let client = cp.client();

    step("helm install portico charts/portico --namespace portico-system --create-namespace");
    let chart = portico_tests::workspace_root().join("charts/portico");
    let chart = chart.to_string_lossy();
    let out = helm::helm(
        cp.kubeconfig(),
        &[
            "install",
            "portico",
            &chart,
            "--namespace",
            "portico-system",
            "--create-namespace",
            "--wait=false",
        ],
    )?;
    for line in String::from_utf8_lossy(&out.stdout).lines().take(6) {
        println!("    {line}");
    }

    step("starting the operator (the chart's Deployment, as its ServiceAccount)");
    let operator_deployment = Api::<Deployment>::namespaced(client.clone(), "portico-system")
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .find_map(|d| d.metadata.name)
        .context("the chart installed no Deployment in portico-system")?;
    let _operator = pod::run_operator_from_deployment(
        &cp,
        "portico-system",
        &operator_deployment,
        IpAddr::V4(Ipv4Addr::new(10, 244, 99, 1)),
    )
    .await?;
    println!("    portico-operator running ({operator_deployment})");

    step("two teams: namespaces team-a and team-b, each with its own IngressController");
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("portico.dev", "v1alpha1", "IngressController"),
        "ingresscontrollers",
    );
    for team in ["team-a", "team-b"] {
        let ns: Namespace = serde_json::from_value(
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": team } }),
        )?;
        Api::<Namespace>::all(client.clone())
            .patch(
                team,
                &PatchParams::apply("portico-demo"),
                &Patch::Apply(&ns),
            )
            .await?;
        let ic: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "portico.dev/v1alpha1", "kind": "IngressController",
            "metadata": { "name": "edge", "namespace": team },
            "spec": { "ingressClassName": team, "replicas": 1 }
        }))?;
        Api::<DynamicObject>::namespaced_with(client.clone(), team, &resource)
            .patch(
                "edge",
                &PatchParams::apply("portico-demo"),
                &Patch::Apply(&ic),
            )
            .await?;
        println!("    {team}/edge  → IngressClass {team}");
    }

    step("sample backends on pod addresses, published through EndpointSlices");
    let mut backends = Vec::new();
    let mut plan: Vec<(&str, &str, Vec<SocketAddr>)> = Vec::new();
    let addr = |c: u8, d: u8| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 244, c, d)), 8080);
    plan.push((
        "team-a",
        "shop",
        vec![addr(10, 1), addr(10, 2), addr(10, 3)],
    ));
    plan.push(("team-a", "api", vec![addr(11, 1), addr(11, 2)]));
    plan.push(("team-b", "blog", vec![addr(20, 1), addr(20, 2)]));
    for (ns, svc, addrs) in &plan {
        for (i, a) in addrs.iter().enumerate() {
            backends.push(backend::spawn(*a, &format!("{svc}-{}", i + 1)).await?);
        }
        apply_service(&client, ns, svc, "http", 80, 8080).await?;
        apply_endpoints(&client, ns, svc, "slice", "http", addrs).await?;
        println!(
            "    {ns}/{svc}: {}",
            addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    step("Ingresses");
    apply_ingress(
        &client,
        ingress(
            "team-a",
            "shop",
            "team-a",
            "shop.example.com",
            &[
                ("/", "Prefix", "shop", "http"),
                ("/api", "Prefix", "api", "http"),
            ],
        ),
    )
    .await?;
    apply_ingress(
        &client,
        ingress(
            "team-b",
            "blog",
            "team-b",
            "blog.example.com",
            &[("/", "Prefix", "blog", "http")],
        ),
    )
    .await?;
    // Team B tries to get its Ingress served by team A's class; team-b has not consented.
    apply_ingress(
        &client,
        ingress(
            "team-b",
            "sneaky",
            "team-a",
            "sneaky.example.com",
            &[("/", "Prefix", "blog", "http")],
        ),
    )
    .await?;
    // A broken Ingress in team A's class: skipped alone, with an Event, never a reload.
    apply_ingress(
        &client,
        ingress(
            "team-a",
            "broken",
            "team-a",
            "broken.example.com",
            &[("/v(1|2)/.*", "Prefix", "shop", "http")],
        ),
    )
    .await?;
    println!(
        "    team-a/broken  class team-a  broken.example.com  /v(1|2)/.* (a regex: not an Ingress path)"
    );
    println!("    team-a/shop    class team-a  shop.example.com  / → shop, /api → api");
    println!("    team-b/blog    class team-b  blog.example.com  / → blog");
    println!(
        "    team-b/sneaky  class team-a  sneaky.example.com (team-b never consented to team-a's class)"
    );

    step("running each team's proxy pod from the Deployment the operator generated");
    let mut proxies = BTreeMap::new();
    for (i, team) in ["team-a", "team-b"].into_iter().enumerate() {
        let deployments = Api::<Deployment>::namespaced(client.clone(), team);
        let deadline = Instant::now() + Duration::from_secs(60);
        let name = loop {
            let found = deployments
                .list(&Default::default())
                .await?
                .items
                .into_iter()
                .find_map(|d| d.metadata.name);
            if let Some(name) = found {
                break name;
            }
            if Instant::now() > deadline {
                bail!(
                    "the operator created no Deployment in {team} within 60s; see {}",
                    portico_tests::process::log_dir().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let ip = IpAddr::V4(Ipv4Addr::new(10, 244, 100, 1 + i as u8));
        let proxy = pod::run_proxy_from_deployment(&cp, team, &name, ip).await?;
        println!(
            "    {team}/{name} pod on {ip}: args {}",
            proxy.args.join(" ")
        );
        // What the kubelet and the deployment controller would report once the pod is ready.
        let generation = deployments.get(&name).await?.metadata.generation;
        let status = json!({ "status": {
            "observedGeneration": generation, "replicas": 1, "updatedReplicas": 1,
            "readyReplicas": 1, "availableReplicas": 1,
        }});
        deployments
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        proxies.insert(team, proxy);
    }

    let http: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let get = |base: String, host: &'static str, path: &'static str| {
        let http = http.clone();
        async move {
            let req = http::Request::get(format!("{base}{path}"))
                .header("host", host)
                .body(Empty::new())?;
            let resp = tokio::time::timeout(Duration::from_secs(5), http.request(req)).await??;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            let backend = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["backend"].as_str().map(str::to_string))
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&body)
                        .trim()
                        .chars()
                        .take(60)
                        .collect()
                });
            anyhow::Ok((status.as_u16(), backend))
        }
    };
    let a = proxies["team-a"].http_base();
    let b = proxies["team-b"].http_base();

    step("host and path routing (through team A's proxy)");
    for (host, path) in [
        ("shop.example.com", "/"),
        ("shop.example.com", "/api/orders"),
        ("shop.example.com", "/apifoo"),
        ("unknown.example.com", "/"),
    ] {
        let (status, backend) = get(a.clone(), host, path).await?;
        println!(
            "    GET {:<40} → {status} {backend}",
            format!("http://{host}{path}")
        );
    }

    step("load balancing: 12 requests to shop.example.com (round robin over 3 endpoints)");
    let mut counts = BTreeMap::new();
    for _ in 0..12 {
        let (_, backend) = get(a.clone(), "shop.example.com", "/").await?;
        *counts.entry(backend).or_insert(0) += 1;
    }
    for (backend, n) in &counts {
        println!("    {backend:<8} {}", "#".repeat(*n));
    }

    step("isolation between teams");
    let (s1, b1) = get(b.clone(), "blog.example.com", "/").await?;
    println!("    team B's proxy, blog.example.com   → {s1} {b1}");
    let (s2, _) = get(a.clone(), "blog.example.com", "/").await?;
    println!("    team A's proxy, blog.example.com   → {s2} (class team-b is not team A's)");
    let (s3, _) = get(a.clone(), "sneaky.example.com", "/").await?;
    println!(
        "    team A's proxy, sneaky.example.com → {s3} (team-b/sneaky names class team-a, but team-b is not served by team-a)"
    );

    step("a bad Ingress breaks only itself");
    let (s4, b4) = get(a.clone(), "shop.example.com", "/").await?;
    println!("    team A's proxy, shop.example.com   → {s4} {b4} (still served)");
    let (s5, _) = get(a.clone(), "broken.example.com", "/v1/x").await?;
    println!("    team A's proxy, broken.example.com → {s5} (skipped)");
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), "team-a");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<_> = events
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("broken"))
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            for e in found {
                println!(
                    "    Event on Ingress team-a/broken: {} {}: {}",
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default()
                );
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    step("status written by the operator (kubectl get ingresscontrollers -A)");
    for team in ["team-a", "team-b"] {
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), team, &resource);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut ic = api.get("edge").await?;
        while !is_ready(&ic) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            ic = api.get("edge").await?;
        }
        let status = &ic.data["status"];
        let conditions: Vec<String> = status["conditions"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        format!(
                            "{}={}",
                            c["type"].as_str().unwrap_or("?"),
                            c["status"].as_str().unwrap_or("?")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "    {team}/edge: class {}, ready replicas {}, addresses {}, served namespaces {}, ingresses served {} rejected {}, conditions {}",
            status["ingressClassName"],
            status["readyReplicas"],
            status["addresses"],
            status["servedNamespaces"],
            status["ingressesServed"],
            status["ingressesRejected"],
            conditions.join(" ")
        );
    }
    for (ns, name) in [
        ("team-a", "shop"),
        ("team-a", "broken"),
        ("team-b", "blog"),
        ("team-b", "sneaky"),
    ] {
        let ing = Api::<k8s_openapi::api::networking::v1::Ingress>::namespaced(client.clone(), ns)
            .get(name)
            .await?;
        let lb = ing
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .unwrap_or_default();
        let addrs: Vec<String> = lb
            .iter()
            .filter_map(|i| i.ip.clone().or(i.hostname.clone()))
            .collect();
        println!(
            "    Ingress {ns}/{name}: status.loadBalancer {}",
            if addrs.is_empty() {
                "(none: not served)".to_string()
            } else {
                addrs.join(", ")
            }
        );
    }

    if let Some(secs) = std::env::var("PORTICO_DEMO_HOLD")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        println!("\nholding for {secs}s (PORTICO_DEMO_HOLD); Ctrl-C stops everything");
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    println!(
        "\ndemo finished in {:.0}s; logs of every process are in {}",
        started.elapsed().as_secs_f64(),
        portico_tests::process::log_dir().display()
    );
    drop(backends);
    drop(proxies);
    cp.stop();
    Ok(())
}

fn is_ready(ic: &DynamicObject) -> bool {
    ic.data["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}
