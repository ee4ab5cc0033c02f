//! The node tier (`just test-node`, root): the chart, the operator, a team's proxies and
//! test backends as real pods under a real kubelet, from images built by tests/node/images.sh;
//! traffic to the proxy pods' IPs and through the proxy Service's NodePort (kube-proxy); a
//! rolling restart of the proxies under steady load with zero failed requests.
//!
//! Not part of `just test` (`test = false` in Cargo.toml): it needs root and the namespaces
//! tests/node/run.sh makes. Run any other way, it fails with the reason.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use portico_tests::cluster::{ControlPlane, Options};
use portico_tests::helm::helm;
use portico_tests::node::{Environment, NODE_IP, Node};
use portico_tests::{ingress_controller, poll_until};

const TEAM: &str = "team-a";
const HOST: &str = "shop.example.com";
const BACKENDS: usize = 3;

/// The time of day (UTC, milliseconds), to line failures up with the node processes' logs.
fn wall_clock() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ms = now.as_millis() % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// The next source port for a test connection. Each connection of the run gets its own, so
/// no 4-tuple is reused while the NAT of an earlier connection with it is still remembered:
/// with the kernel picking ports, about one connection in ten thousand through the NodePort
/// reused one and was refused, with nothing in the cluster changing.
fn next_source_port() -> u16 {
    use std::sync::atomic::AtomicU16;
    static NEXT: AtomicU16 = AtomicU16::new(10_000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One plain HTTP/1.1 GET on a new connection from the node's address: the status and the
/// backend that answered.
fn get(addr: SocketAddr, host: &str) -> Result<(u16, String)> {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the test client");
    }
    let response = RUNTIME.with(|rt| {
        rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut last_error = None;
            for _ in 0..10 {
                let port = next_source_port();
                if port > 64_000 {
                    bail!("the test client ran out of source ports");
                }
                let socket = tokio::net::TcpSocket::new_v4()?;
                if let Err(e) = socket.bind(SocketAddr::new(NODE_IP.into(), port)) {
                    last_error = Some(e);
                    continue;
                }
                let mut stream = tokio::time::timeout(Duration::from_secs(2), socket.connect(addr))
                    .await
                    .context("connect timed out")??;
                let request =
                    format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
                let mut response = Vec::new();
                tokio::time::timeout(Duration::from_secs(5), async {
                    stream.write_all(request.as_bytes()).await?;
                    stream.read_to_end(&mut response).await
                })
                .await
                .context("response timed out")??;
                return Ok(response);
            }
            bail!("no free source port: {last_error:?}")
        })
    })?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in {text:?}"))?;
    let backend = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-backend:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok((status, backend))
}

/// `count` requests to `addr`; how many each backend answered. Fails on any non-200.
async fn spread(addr: SocketAddr, count: usize) -> Result<BTreeMap<String, usize>> {
    tokio::task::spawn_blocking(move || {
        let mut seen = BTreeMap::new();
        for i in 0..count {
            let (status, backend) =
                get(addr, HOST).with_context(|| format!("request {i} to {addr}"))?;
            if status != 200 {
                bail!("request {i} to {addr}: status {status} from {backend:?}");
            }
            *seen.entry(backend).or_insert(0) += 1;
        }
        Ok(seen)
    })
    .await?
}

/// The `kubectl get pods -A -o wide` view, from the API.
async fn pods_table(client: &kube::Client) -> Result<String> {
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let mut rows = vec![[
        "NAMESPACE".to_string(),
        "NAME".into(),
        "READY".into(),
        "STATUS".into(),
        "RESTARTS".into(),
        "IP".into(),
        "NODE".into(),
    ]];
    for pod in pods.items {
        let status = pod.status.clone().unwrap_or_default();
        let containers = status.container_statuses.clone().unwrap_or_default();
        let ready = containers.iter().filter(|c| c.ready).count();
        let restarts: i32 = containers.iter().map(|c| c.restart_count).sum();
        let phase = if pod.metadata.deletion_timestamp.is_some() {
            "Terminating".to_string()
        } else {
            containers
                .iter()
                .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
                .or(status.phase.clone())
                .unwrap_or_default()
        };
        rows.push([
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
            format!(
                "{ready}/{}",
                pod.spec.as_ref().map(|s| s.containers.len()).unwrap_or(0)
            ),
            phase,
            restarts.to_string(),
            status.pod_ip.clone().unwrap_or_else(|| "<none>".into()),
            pod.spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_else(|| "<none>".into()),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    Ok(rows
        .iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("   ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// A Service's endpoints, one per address with its conditions: R ready, S serving,
/// T terminating.
fn endpoints_summary(slices: &[EndpointSlice]) -> String {
    let mut eps: Vec<String> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .map(|ep| {
            let c = ep.conditions.clone().unwrap_or_default();
            let flag = |v: Option<bool>, t: &'static str| if v == Some(true) { t } else { "" };
            format!(
                "{}[{}{}{}]",
                ep.addresses.join(","),
                flag(c.ready, "R"),
                flag(c.serving, "S"),
                flag(c.terminating, "T"),
            )
        })
        .collect();
    eps.sort();
    eps.join(" ")
}

fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until `want` pods match `selector` in `namespace`, all Running and Ready and none
/// terminating; returns them. On timeout the error carries the pods view and the kubelet's log.
async fn wait_pods_ready(
    client: &kube::Client,
    node: &mut Node,
    namespace: &str,
    selector: &str,
    want: usize,
    within: Duration,
) -> Result<Vec<Pod>> {
    let api = Api::<Pod>::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + within;
    loop {
        node.check_running()?;
        let pods = api
            .list(&ListParams::default().labels(selector))
            .await?
            .items;
        if pods.len() == want && pods.iter().all(pod_ready) {
            return Ok(pods);
        }
        if Instant::now() > deadline {
            bail!(
                "{want} Ready pods {selector} in {namespace} not there within {within:?}:\n{}\nkubelet:\n{}",
                pods_table(client).await.unwrap_or_default(),
                node.log_tail("kubelet", 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn backend_objects(namespace: &str, image: &str) -> Result<(Deployment, Service)> {
    let deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "shop", "namespace": namespace },
        "spec": {
            "replicas": BACKENDS,
            "selector": { "matchLabels": { "app": "shop" } },
            "template": {
                "metadata": { "labels": { "app": "shop" } },
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "automountServiceAccountToken": false,
                    "securityContext": { "runAsNonRoot": true, "seccompProfile": { "type": "RuntimeDefault" } },
                    "containers": [{
                        "name": "shop",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "args": ["--listen=0.0.0.0:8080", "--name=$(POD_NAME)"],
                        "env": [{ "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }],
                        "ports": [{ "name": "http", "containerPort": 8080 }],
                        "readinessProbe": { "tcpSocket": { "port": "http" }, "periodSeconds": 2 },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": { "drop": ["ALL"] },
                        },
                    }],
                },
            },
        },
    }))?;
    let service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": "shop", "namespace": namespace },
        "spec": {
            "selector": { "app": "shop" },
            "ports": [{ "name": "http", "port": 80, "targetPort": "http" }],
        },
    }))?;
    Ok((deployment, service))
}

/// Requests through `addr` from `workers` threads, each on a new connection, until `stop`;
/// returns (succeeded, failed, the first failures).
fn steady_load(
    addr: SocketAddr,
    workers: usize,
    stop: Arc<AtomicBool>,
    limit: Duration,
) -> std::thread::JoinHandle<(u64, u64, Vec<String>)> {
    std::thread::spawn(move || {
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let started = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                        let failure = match get(addr, HOST) {
                            Ok((200, _)) => None,
                            Ok((status, backend)) => {
                                Some(format!("status {status} from {backend:?}"))
                            }
                            Err(e) => Some(format!("{e:#}")),
                        };
                        match failure {
                            None => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(failure) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                if let Ok(mut e) = errors.lock()
                                    && e.len() < 10
                                {
                                    e.push(format!(
                                        "at {:.2}s ({}): {failure}",
                                        started.elapsed().as_secs_f64(),
                                        wall_clock()
                                    ));
                                }
                            }
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                });
            }
        });
        let errors = errors.lock().map(|e| e.clone()).unwrap_or_default();
        (
            ok.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
            errors,
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_operator_and_proxies_run_as_pods_and_roll_without_failed_requests() -> Result<()> {
    let env = Environment::from_env()?;
    let started = Instant::now();
    let step = |what: &str| println!("==> [{:>5.1}s] {what}", started.elapsed().as_secs_f64());

    step("control plane (apiserver on the node's address) and the node");
    let cp_env = env.clone();
    let (cp, mut node) = tokio::task::spawn_blocking(move || -> Result<(ControlPlane, Node)> {
        let cp = ControlPlane::start(&Options {
            dir: cp_env.dir.join("control-plane"),
            controller_manager: true,
            port: 6443,
            node_address: Some(NODE_IP),
        })?;
        let node = Node::start(&cp, &cp_env)?;
        Ok((cp, node))
    })
    .await??;
    let client = cp.client();
    node.wait_ready(&client, Duration::from_secs(120)).await?;
    step("node Ready");

    // The chart, as a platform team installs it: the default images are the ones imported.
    step("helm install portico charts/portico");
    let chart = portico_tests::workspace_root().join("charts/portico");
    let kubeconfig = cp.kubeconfig().to_path_buf();
    tokio::task::spawn_blocking(move || {
        helm(
            &kubeconfig,
            &[
                "install",
                "portico",
                chart.to_str().context("chart path")?,
                "--namespace",
                "portico-system",
                "--create-namespace",
            ],
        )
    })
    .await??;
    let operator_pods = wait_pods_ready(
        &client,
        &mut node,
        "portico-system",
        "app.kubernetes.io/name=portico",
        1,
        Duration::from_secs(120),
    )
    .await?;
    let operator_image = operator_pods[0]
        .spec
        .as_ref()
        .map(|s| s.containers[0].image.clone().unwrap_or_default())
        .unwrap_or_default();
    assert_eq!(operator_image, env.image_ref("portico-operator")?);
    step("operator pod Running and Ready");

    // A team's instance and its backends.
    let team = Api::<Namespace>::all(client.clone());
    team.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({ "metadata": { "name": TEAM } }))?,
    )
    .await?;
    let (backend_deployment, backend_service) = backend_objects(TEAM, &env.image_ref("backend")?)?;
    Api::<Deployment>::namespaced(client.clone(), TEAM)
        .create(&PostParams::default(), &backend_deployment)
        .await?;
    Api::<Service>::namespaced(client.clone(), TEAM)
        .create(&PostParams::default(), &backend_service)
        .await?;
    let ic = ingress_controller(
        TEAM,
        "edge",
        serde_json::json!({
            "ingressClassName": TEAM,
            "replicas": 2,
            "service": { "type": "NodePort" },
        }),
    )?;
    Api::<portico_operator::api::IngressController>::namespaced(client.clone(), TEAM)
        .create(&PostParams::default(), &ic)
        .await?;
    let ingress: Ingress = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": { "name": "shop", "namespace": TEAM },
        "spec": {
            "ingressClassName": TEAM,
            "rules": [{
                "host": HOST,
                "http": { "paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": { "service": { "name": "shop", "port": { "name": "http" } } },
                }] },
            }],
        },
    }))?;
    Api::<Ingress>::namespaced(client.clone(), TEAM)
        .create(&PostParams::default(), &ingress)
        .await?;

    let backends = wait_pods_ready(
        &client,
        &mut node,
        TEAM,
        "app=shop",
        BACKENDS,
        Duration::from_secs(90),
    )
    .await?;
    step("backend pods Running and Ready");
    // The EndpointSlice controller (kube-controller-manager), not the test, lists them.
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), TEAM);
    let slice_addresses = poll_until(
        "the shop EndpointSlice with 3 ready endpoints",
        Duration::from_secs(30),
        || {
            let slices = slices.clone();
            async move {
                let list = slices
                    .list(&ListParams::default().labels("kubernetes.io/service-name=shop"))
                    .await
                    .ok()?;
                let mut ready = Vec::new();
                for slice in &list.items {
                    let manager = slice
                        .metadata
                        .labels
                        .as_ref()?
                        .get("endpointslice.kubernetes.io/managed-by")?;
                    if manager != "endpointslice-controller.k8s.io" {
                        return None;
                    }
                    for ep in &slice.endpoints {
                        if ep.conditions.as_ref().and_then(|c| c.ready) == Some(true) {
                            ready.extend(ep.addresses.iter().cloned());
                        }
                    }
                }
                (ready.len() == BACKENDS).then_some(ready)
            }
        },
    )
    .await?;
    let mut pod_ips: Vec<String> = backends
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    let mut slice_ips = slice_addresses.clone();
    pod_ips.sort();
    slice_ips.sort();
    assert_eq!(
        slice_ips, pod_ips,
        "the EndpointSlice lists the backend pods"
    );
    println!("    EndpointSlice shop (endpointslice-controller.k8s.io): {slice_ips:?}");

    let proxy_selector = "app.kubernetes.io/instance=edge,app.kubernetes.io/name=portico";
    let proxies = wait_pods_ready(
        &client,
        &mut node,
        TEAM,
        proxy_selector,
        2,
        Duration::from_secs(120),
    )
    .await?;
    step("proxy pods Running and Ready");
    println!("{}", pods_table(&client).await?);

    // Traffic to each proxy pod's IP, routed and balanced over the three backends.
    let backend_names: Vec<String> = backends
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    for proxy in &proxies {
        let ip: std::net::IpAddr = proxy
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .context("proxy pod IP")?
            .parse()?;
        let seen = poll_until(
            "routed traffic to the proxy pod",
            Duration::from_secs(30),
            || async move { spread(SocketAddr::new(ip, 80), 30).await.ok() },
        )
        .await?;
        println!(
            "    GET http://{HOST}/ ×30 → proxy pod {} ({ip}): {seen:?}",
            proxy.metadata.name.clone().unwrap_or_default()
        );
        assert_eq!(
            seen.keys().cloned().collect::<Vec<_>>(),
            {
                let mut n = backend_names.clone();
                n.sort();
                n
            },
            "every backend pod answers through the proxy pod"
        );
        assert_eq!(seen.values().sum::<usize>(), 30);
    }

    // Through the Service's NodePort on the node's address: kube-proxy's rules.
    let service = Api::<Service>::namespaced(client.clone(), TEAM)
        .get("portico-edge")
        .await?;
    let node_port = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|ports| ports.iter().find(|p| p.name.as_deref() == Some("http")))
        .and_then(|p| p.node_port)
        .context("the proxy Service has no http NodePort")?;
    let node_addr = SocketAddr::new(NODE_IP.into(), u16::try_from(node_port)?);
    let seen = poll_until(
        "traffic through the NodePort",
        Duration::from_secs(30),
        || async move { spread(node_addr, 30).await.ok() },
    )
    .await?;
    println!("    GET http://{HOST}/ ×30 → NodePort {node_addr} (kube-proxy): {seen:?}");
    assert_eq!(
        seen.len(),
        BACKENDS,
        "every backend pod answers through the NodePort"
    );

    // A rolling restart (what `kubectl rollout restart` does) under steady load through the
    // NodePort: the kubelet sends the old pods SIGTERM, they fail readiness and drain, the
    // EndpointSlice and kube-proxy drop them. No request may fail.
    let old: Vec<String> = proxies
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    // The same load with nothing changing first: what the path itself fails, if anything.
    step("steady load through the NodePort, nothing changing");
    let steady_stop = Arc::new(AtomicBool::new(false));
    let steady = steady_load(node_addr, 4, steady_stop.clone(), Duration::from_secs(60));
    tokio::time::sleep(Duration::from_secs(15)).await;
    steady_stop.store(true, Ordering::Relaxed);
    let (steady_ok, steady_failed, steady_errors) =
        tokio::task::spawn_blocking(move || steady.join())
            .await?
            .map_err(|_| anyhow::anyhow!("load thread panicked"))?;
    println!(
        "    steady load through the NodePort for 15s, nothing changing: {steady_ok} succeeded, {steady_failed} failed"
    );
    assert!(
        steady_failed == 0,
        "{steady_failed} requests failed with nothing changing; first: {steady_errors:#?}"
    );

    step("rollout restart of deployment/portico-edge under load");
    let stop = Arc::new(AtomicBool::new(false));
    let load_started = Instant::now();
    let load = steady_load(node_addr, 4, stop.clone(), Duration::from_secs(300));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), TEAM);
    let restarted_at = format!("{:?}", std::time::SystemTime::now());
    deployments
        .patch(
            "portico-edge",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "spec": { "template": { "metadata": { "annotations": {
                    "kubectl.kubernetes.io/restartedAt": restarted_at,
                } } } }
            })),
        )
        .await?;
    let pods = Api::<Pod>::namespaced(client.clone(), TEAM);
    // What kube-proxy is fed: the proxy Service's endpoints over the rollout, as they change.
    let endpoint_log = Arc::new(std::sync::Mutex::new((String::new(), Vec::<String>::new())));
    let rollout_started = Instant::now();
    let rolled = poll_until(
        "the rollout to finish (old proxy pods gone, 2 new Ready)",
        Duration::from_secs(240),
        || {
            let pods = pods.clone();
            let old = old.clone();
            let slices = slices.clone();
            let endpoint_log = endpoint_log.clone();
            async move {
                let selector = "kubernetes.io/service-name=portico-edge";
                let now = match slices.list(&ListParams::default().labels(selector)).await {
                    Ok(list) => endpoints_summary(&list.items),
                    Err(e) => format!("(list failed: {e})"),
                };
                if let Ok(mut log) = endpoint_log.lock()
                    && log.0 != now
                {
                    let at = load_started.elapsed().as_secs_f64();
                    log.1
                        .push(format!("at {at:5.2}s ({}): {now}", wall_clock()));
                    log.0 = now;
                }
                let list = pods
                    .list(&ListParams::default().labels(proxy_selector))
                    .await
                    .ok()?;
                let names: Vec<String> = list
                    .items
                    .iter()
                    .filter_map(|p| p.metadata.name.clone())
                    .collect();
                let done = list.items.len() == 2
                    && list.items.iter().all(pod_ready)
                    && names.iter().all(|n| !old.contains(n));
                done.then_some(names)
            }
        },
    )
    .await;
    let rollout_took = rollout_started.elapsed();
    // A little more load on the new pods alone, then stop.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed, errors) = tokio::task::spawn_blocking(move || load.join())
        .await?
        .map_err(|_| anyhow::anyhow!("load thread panicked"))?;
    let new =
        rolled.with_context(|| format!("rollout under load: {ok} succeeded, {failed} failed"))?;
    let endpoint_log = endpoint_log.lock().map(|l| l.1.clone()).unwrap_or_default();
    step("rollout done");
    println!(
        "    the proxy Service's endpoints over the rollout (R ready, S serving, T terminating; seconds since the load started):"
    );
    for line in &endpoint_log {
        println!("      {line}");
    }
    println!("{}", pods_table(&client).await?);
    println!(
        "    rolling restart {old:?} → {new:?} in {:.1}s: {ok} requests through the NodePort succeeded, {failed} failed",
        rollout_took.as_secs_f64()
    );
    assert!(
        failed == 0,
        "{failed} of {} requests failed over the rolling restart; first: {errors:#?}",
        ok + failed
    );
    assert!(ok > 100, "too little load over the restart: {ok} requests");
    // The old pods left on their own after the drain period (10s), not when the kubelet's
    // SIGKILL ended the grace period (75s).
    assert!(
        rollout_took < Duration::from_secs(60),
        "the rollout took {rollout_took:?}: did the old proxies exit after draining?"
    );

    node.stop();
    cp.stop();
    Ok(())
}
