//! Shared setup of the proxy traffic tests (`proxy_e2e.rs`, `tls_e2e.rs`).
//!
//! ```text
//! IngressController (real object, via the API) ─▶ portico_operator::resources builders
//!   ─▶ ServiceAccount, Roles/RoleBindings per served namespace (Secrets by resourceNames),
//!      ClusterRole for the own IngressClass, IngressClass, Deployment   (applied as the operator would)
//!   ─▶ portico_tests::pod::run_proxy_from_deployment: the Deployment's args, its
//!      ServiceAccount's real token, on a 10.244.x.y pod address
//! backends: portico-backend processes on pod addresses, published in EndpointSlices
//! ```
//! The operator's own reconcile loop is not used here: the children come from the
//! operator's pure builders, so the proxy still runs with exactly the args and RBAC the
//! operator generates.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use portico_operator::api::IngressController;
use portico_operator::resources::{self, Inputs, Settings};
use portico_tests::ControlPlane;
use portico_tests::pod::ProxyPod;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// An IngressController with its operator-built children, ready to run proxy pods.
pub struct Instance {
    pub cp: &'static ControlPlane,
    pub client: kube::Client,
    /// The instance's namespace (always served).
    pub ns: String,
    pub name: String,
    pub class: String,
    pub served: Vec<String>,
    pub ic: IngressController,
    pub settings: Settings,
}

async fn apply_ns<K>(client: &kube::Client, obj: &K) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let ns = obj
        .namespace()
        .context("namespaced object without namespace")?;
    Api::<K>::namespaced(client.clone(), &ns)
        .patch(
            &obj.name_any(),
            &PatchParams::apply(resources::FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await
        .with_context(|| {
            format!(
                "apply {} {ns}/{}",
                K::kind(&Default::default()),
                obj.name_any()
            )
        })?;
    Ok(())
}

async fn apply_cluster<K>(client: &kube::Client, obj: &K) -> Result<()>
where
    K: Resource<Scope = ClusterResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::all(client.clone())
        .patch(
            &obj.name_any(),
            &PatchParams::apply(resources::FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await
        .with_context(|| format!("apply {} {}", K::kind(&Default::default()), obj.name_any()))?;
    Ok(())
}

impl Instance {
    /// A fresh namespace with an IngressController `edge` of class `<namespace>` (so tests
    /// never share a class), extra `spec` fields merged in, serving its own namespace plus
    /// `extra_served` (namespaces the test created; the operator would require consent).
    pub async fn create(prefix: &str, spec: Value, extra_served: &[&str]) -> Result<Instance> {
        portico_tests::netns::require();
        let cp = portico_tests::control_plane().await;
        let client = cp.client();
        portico_tests::install_crds(&client).await?;
        let ns = cp.new_namespace(prefix).await;
        let name = "edge".to_string();
        let class = ns.clone();
        let mut spec_obj = json!({ "ingressClassName": class });
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
        let ic = Api::<IngressController>::namespaced(client.clone(), &ns)
            .patch(
                &name,
                &PatchParams::apply("portico-tests").force(),
                &Patch::Apply(&ic),
            )
            .await
            .context("create the IngressController")?;
        let mut served = vec![ns.clone()];
        served.extend(extra_served.iter().map(|s| s.to_string()));
        let settings = Settings {
            drain_period: Duration::from_secs(1),
            ..Settings::default()
        };
        let instance = Instance {
            cp,
            client,
            ns,
            name,
            class,
            served,
            ic,
            settings,
        };
        instance.apply_children(BTreeMap::new()).await?;
        Ok(instance)
    }

    /// (Re)applies the children as the operator would, with the proxy allowed to read the
    /// named TLS Secrets (namespace → names).
    pub async fn apply_children(
        &self,
        tls_secrets: BTreeMap<String, BTreeSet<String>>,
    ) -> Result<()> {
        let inputs = Inputs::new(&self.ic, self.served.clone(), tls_secrets, &self.settings)?;
        let c = &self.client;
        apply_ns(c, &resources::service_account::build(&inputs)).await?;
        for ns in resources::rbac::role_namespaces(&inputs) {
            apply_ns(c, &resources::rbac::role(&inputs, &ns)).await?;
            apply_ns(c, &resources::rbac::role_binding(&inputs, &ns)).await?;
        }
        apply_cluster(c, &resources::rbac::cluster_role(&inputs)).await?;
        apply_cluster(c, &resources::rbac::cluster_role_binding(&inputs)).await?;
        apply_cluster(c, &resources::ingress_class::build(&inputs)).await?;
        apply_ns(c, &resources::deployment::build(&inputs)).await?;
        Ok(())
    }

    /// Runs one proxy pod of the generated Deployment on a fresh pod address.
    pub async fn start_proxy(&self) -> Result<ProxyPod> {
        let ip = portico_tests::netns::pod_ip();
        portico_tests::pod::run_proxy_from_deployment(
            self.cp,
            &self.ns,
            &resources::proxy_name(&self.name),
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

/// Polls `check` every 20 ms until it returns true; fails after `within`. Returns how long
/// it took.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return Ok(start.elapsed());
        }
        if start.elapsed() > within {
            bail!("{what}: not true within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Status of `GET host path`, or 0 when the proxy did not answer.
pub async fn status_of(http: &Http, host: &str, path: &str) -> u16 {
    http.get(host, path).await.map(|r| r.status).unwrap_or(0)
}

pub fn pod_addr(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}
