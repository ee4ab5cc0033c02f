//! Shared setup of the proxy traffic tests (`proxy_e2e.rs`, `tls_e2e.rs`).
//!
//! ```text
//! portico-operator (one process per test binary, admin kubeconfig)
//! IngressController (per test, own namespace and class) ─▶ operator reconcile
//!   ─▶ ServiceAccount, Roles/RoleBindings per served namespace (Secrets by resourceNames),
//!      ClusterRole for the own IngressClass, IngressClass, Deployment
//!   ─▶ portico_tests::pod::run_proxy_from_deployment: the Deployment's args, its
//!      ServiceAccount's real token, on a 10.244.x.y pod address
//! backends: portico-backend processes on pod addresses, published in EndpointSlices
//! ```

#![allow(dead_code)]

pub mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{Api, Patch, PatchParams};
use portico_operator::api::IngressController;
use portico_tests::ControlPlane;
use portico_tests::operator::{Launch, Operator};
use portico_tests::pod::{ProxyPod, flag_value};
use portico_tests::process::Process;
use serde_json::{Value, json};

/// How long the operator may take to produce or update an instance's children.
pub const OPERATOR_WAIT: Duration = Duration::from_secs(30);

/// The range the tests' platform denies to endpoints (`--denied-endpoint-cidrs`), standing
/// for a node network: inside the namespace's 10.244.0.0/16, so a listener there is
/// reachable, and far above the addresses `netns::pod_ip()` hands out.
pub const DENIED_ENDPOINT_CIDR: &str = "10.244.250.0/24";

static OPERATOR: tokio::sync::OnceCell<std::sync::Mutex<Process>> =
    tokio::sync::OnceCell::const_new();

/// The control plane with CRDs installed and one `portico-operator` reconciling.
async fn cluster() -> Result<&'static ControlPlane> {
    portico_tests::netns::require();
    let cp = portico_tests::control_plane().await;
    OPERATOR
        .get_or_try_init(|| async {
            portico_tests::install_crds(&cp.client()).await?;
            let operator = Operator::launch(
                Launch::new("portico-operator-for-proxy-tests", cp.kubeconfig()).args([
                    "--leader-election=false".to_owned(),
                    "--log-format=text".to_owned(),
                    format!("--denied-endpoint-cidrs={DENIED_ENDPOINT_CIDR}"),
                    "--proxy-image=portico-proxy:test".to_owned(),
                    // Short drains keep the SIGTERM test quick; the proxy reads it from its args.
                    "--proxy-drain-seconds=1".to_owned(),
                ]),
            )?;
            anyhow::Ok(std::sync::Mutex::new(operator.process))
        })
        .await?;
    Ok(cp)
}

fn operator_log() -> String {
    OPERATOR
        .get()
        .and_then(|p| p.lock().ok().map(|p| p.log_tail(30)))
        .unwrap_or_default()
}

/// An IngressController `edge` in a fresh namespace, reconciled by the real operator.
pub struct Instance {
    pub cp: &'static ControlPlane,
    pub client: kube::Client,
    /// The instance's namespace (always served).
    pub ns: String,
    pub name: String,
    pub class: String,
    /// Served namespaces, sorted (as in `--namespaces`).
    pub served: Vec<String>,
}

impl Instance {
    /// A fresh namespace with an IngressController `edge` of class `<namespace>` (so tests
    /// never share a class), extra `spec` fields merged in. `extra_served` namespaces are
    /// selected by the instance and consent to it by annotation, as docs/contracts.md says.
    /// Returns once the operator's Deployment serves exactly these namespaces.
    pub async fn create(prefix: &str, spec: Value, extra_served: &[&str]) -> Result<Instance> {
        let cp = cluster().await?;
        let client = cp.client();
        let ns = cp.new_namespace(prefix).await;
        let name = "edge".to_string();
        let class = ns.clone();
        let mut served: Vec<String> = std::iter::once(ns.clone())
            .chain(extra_served.iter().map(|s| s.to_string()))
            .collect();
        served.sort();
        for other in extra_served {
            let consent: Namespace = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": { "name": other, "annotations": { "portico.dev/allowed-ingress-controllers": format!("{ns}/{name}") } }
            }))?;
            Api::<Namespace>::all(client.clone())
                .patch(
                    other,
                    &PatchParams::apply("portico-tests"),
                    &Patch::Apply(&consent),
                )
                .await
                .with_context(|| format!("consent annotation on {other}"))?;
        }
        let mut spec_obj = json!({ "ingressClassName": class });
        if !extra_served.is_empty() {
            spec_obj["namespaceSelector"] = json!({ "matchExpressions": [
                { "key": "kubernetes.io/metadata.name", "operator": "In", "values": served }
            ] });
        }
        if let (Some(base), Some(extra)) = (spec_obj.as_object_mut(), spec.as_object()) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        }
        let ic: IngressController = serde_json::from_value(json!({
            "apiVersion": "portico.dev/v1alpha1", "kind": "IngressController",
            "metadata": { "name": name, "namespace": ns },
            "spec": spec_obj,
        }))?;
        Api::<IngressController>::namespaced(client.clone(), &ns)
            .patch(
                &name,
                &PatchParams::apply("portico-tests").force(),
                &Patch::Apply(&ic),
            )
            .await
            .context("create the IngressController")?;
        let instance = Instance {
            cp,
            client,
            ns,
            name,
            class,
            served,
        };
        let want = instance.served.join(",");
        instance.await_proxy_arg("namespaces", &want).await?;
        Ok(instance)
    }

    /// Waits until the operator's proxy Deployment passes `--<flag>=<value>`.
    pub async fn await_proxy_arg(&self, flag: &str, value: &str) -> Result<()> {
        let deployments = Api::<Deployment>::namespaced(self.client.clone(), &self.ns);
        let name = self.deployment_name();
        eventually(
            OPERATOR_WAIT,
            &format!("the proxy Deployment passes --{flag}={value}"),
            || async {
                let Ok(Some(d)) = deployments.get_opt(&name).await else {
                    return false;
                };
                let args = d
                    .spec
                    .and_then(|s| s.template.spec)
                    .and_then(|p| p.containers.first().and_then(|c| c.args.clone()))
                    .unwrap_or_default();
                flag_value(&args, flag).as_deref() == Some(value)
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}; the operator's log ends with:\n{}", operator_log()))?;
        Ok(())
    }

    pub fn deployment_name(&self) -> String {
        format!("portico-{}", self.name)
    }

    /// Waits until the operator's Roles let the proxy read the given Secrets (namespace →
    /// names), which it derives from the Ingresses' `spec.tls`.
    pub async fn await_secret_access(
        &self,
        secrets: BTreeMap<String, BTreeSet<String>>,
    ) -> Result<()> {
        let role_name = format!("portico:{}:{}", self.ns, self.name);
        for (ns, names) in secrets {
            let roles = Api::<Role>::namespaced(self.client.clone(), &ns);
            let role_name = role_name.clone();
            eventually(
                OPERATOR_WAIT,
                &format!("Role {ns}/{role_name} lists Secrets {names:?}"),
                || {
                    let roles = roles.clone();
                    let role_name = role_name.clone();
                    let names = names.clone();
                    async move {
                        let Ok(Some(role)) = roles.get_opt(&role_name).await else {
                            return false;
                        };
                        let listed: BTreeSet<String> = role
                            .rules
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|r| {
                                r.resources
                                    .as_ref()
                                    .is_some_and(|rs| rs.iter().any(|x| x == "secrets"))
                            })
                            .flat_map(|r| r.resource_names.unwrap_or_default())
                            .collect();
                        names.is_subset(&listed)
                    }
                },
            )
            .await
            .map_err(|e| {
                anyhow::anyhow!("{e}; the operator's log ends with:\n{}", operator_log())
            })?;
        }
        Ok(())
    }

    /// Runs one proxy pod of the generated Deployment on a fresh pod address.
    pub async fn start_proxy(&self) -> Result<ProxyPod> {
        let ip = portico_tests::netns::pod_ip();
        portico_tests::pod::run_proxy_from_deployment(
            self.cp,
            &self.ns,
            &self.deployment_name(),
            ip,
        )
        .await
    }
}

/// `n` backends named `<prefix>-<i>` on fresh pod addresses, port 8080.
pub async fn backends(prefix: &str, n: usize) -> Result<Vec<portico_tests::backend::Backend>> {
    let mut out = Vec::new();
    for i in 0..n {
        let addr = SocketAddr::new(portico_tests::netns::pod_ip(), 8080);
        out.push(portico_tests::backend::spawn(addr, &format!("{prefix}-{i}")).await?);
    }
    Ok(out)
}

/// Service `name` (port `http` 80 → 8080) with an EndpointSlice listing `backends`.
pub async fn publish(
    client: &kube::Client,
    ns: &str,
    name: &str,
    backends: &[portico_tests::backend::Backend],
) -> Result<()> {
    portico_tests::fixtures::apply_service(client, ns, name, "http", 80, 8080).await?;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    portico_tests::fixtures::apply_endpoints(client, ns, name, "slice", "http", &addrs).await?;
    Ok(())
}

pub async fn apply_ingress(client: &kube::Client, ingress: Value) -> Result<()> {
    portico_tests::fixtures::apply_ingress(client, ingress).await?;
    Ok(())
}

/// An Ingress of `class` with one rule: `host` and `(path, pathType, service)` on port `http`.
pub fn ingress(
    ns: &str,
    name: &str,
    class: &str,
    host: &str,
    paths: &[(&str, &str, &str)],
) -> Value {
    let paths: Vec<(&str, &str, &str, &str)> =
        paths.iter().map(|(p, k, s)| (*p, *k, *s, "http")).collect();
    portico_tests::fixtures::ingress(ns, name, class, host, &paths)
}

/// `ingress` with its `metadata.annotations` set to `annotations` (a JSON object).
pub fn with_annotations(mut ingress: Value, annotations: Value) -> Value {
    ingress["metadata"]["annotations"] = annotations;
    ingress
}

/// One HTTP exchange's outcome.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub json: Value,
}

impl Reply {
    /// The name of the backend that answered (from portico-backend's JSON).
    pub fn backend(&self) -> Option<&str> {
        self.json["backend"].as_str()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A plain HTTP/1.1 client (keep-alive pool) pointed at one proxy pod.
#[derive(Clone)]
pub struct Http {
    base: String,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
}

impl Http {
    pub fn new(base: &str) -> Http {
        Http {
            base: base.to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn get(&self, host: &str, path: &str) -> Result<Reply> {
        self.get_with(host, path, &[]).await
    }

    pub async fn get_with(
        &self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply> {
        let mut req = http::Request::get(format!("{}{path}", self.base)).header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Empty::new())?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .with_context(|| format!("GET {host}{path}: no answer within 10s"))??;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            body,
            json,
        })
    }
}

/// Polls `check` until it returns true ([`portico_tests::poll_until`]); fails after
/// `within`. Returns how long it took.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    portico_tests::poll_until(what, within, || {
        let done = check();
        async move { done.await.then_some(()) }
    })
    .await?;
    Ok(start.elapsed())
}

/// Status of `GET host path`, or 0 when the proxy did not answer.
pub async fn status_of(http: &Http, host: &str, path: &str) -> u16 {
    http.get(host, path).await.map(|r| r.status).unwrap_or(0)
}

pub fn pod_addr(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}
