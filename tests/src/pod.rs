//! A Deployment's pod, run as a local process.
//!
//! There is no kubelet here, so the traffic tests and the demo do what the kubelet would: read
//! the Deployment the operator generated, take its container's arguments and its
//! ServiceAccount, fetch a real token for that ServiceAccount (TokenRequest), and run
//! `portico-proxy` with them. The one addition is `--bind-address <pod ip>`: in a cluster each
//! pod has its own IP, here each "pod" gets its own 10.244.x.y address.

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

use crate::cluster::ControlPlane;
use crate::process::Process;

/// A proxy pod running as a local process.
#[derive(Debug)]
pub struct ProxyPod {
    pub ip: IpAddr,
    pub http_port: u16,
    pub https_port: u16,
    pub admin_port: u16,
    pub args: Vec<String>,
    pub service_account: String,
    pub process: Process,
}

impl ProxyPod {
    /// `http://<ip>:<http port>`
    pub fn http_base(&self) -> String {
        format!("http://{}:{}", self.ip, self.http_port)
    }

    /// `http://<ip>:<admin port>`
    pub fn admin_base(&self) -> String {
        format!("http://{}:{}", self.ip, self.admin_port)
    }
}

/// The value of `--name` in `args` (`--name=value` or `--name value`).
pub fn flag_value(args: &[String], name: &str) -> Option<String> {
    let long = format!("--{name}");
    let with_eq = format!("--{name}=");
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if let Some(v) = arg.strip_prefix(&with_eq) {
            return Some(v.to_string());
        }
        if *arg == long {
            return it.next().cloned();
        }
    }
    None
}

/// What the kubelet would take from a Deployment's pod template to start its first container.
#[derive(Debug, Clone)]
pub struct PodTemplate {
    pub namespace: String,
    pub pod_name: String,
    /// The container's command after the entrypoint, then its args, with `$(VAR)` expanded.
    pub args: Vec<String>,
    /// The container's environment: literal values and the downward-API fields
    /// `metadata.namespace`, `metadata.name`, `status.podIP`, `status.podIPs`.
    pub env: Vec<(String, String)>,
    pub service_account: String,
}

impl PodTemplate {
    /// Reads Deployment `namespace/name`; `ip` stands for the pod's IP in `status.podIP`
    /// (and its only one in `status.podIPs`).
    pub async fn from_deployment(
        cp: &ControlPlane,
        namespace: &str,
        name: &str,
        ip: IpAddr,
    ) -> Result<PodTemplate> {
        let deployment = Api::<Deployment>::namespaced(cp.client(), namespace)
            .get(name)
            .await
            .with_context(|| format!("get deployment {namespace}/{name}"))?;
        let pod = deployment
            .spec
            .and_then(|s| s.template.spec)
            .ok_or_else(|| anyhow!("deployment {namespace}/{name} has no pod spec"))?;
        let container = pod
            .containers
            .first()
            .ok_or_else(|| anyhow!("deployment {namespace}/{name} has no container"))?;
        let pod_name = format!("{name}-local-{}", ip.to_string().replace(['.', ':'], "-"));
        let mut env: Vec<(String, String)> = Vec::new();
        for var in container.env.clone().unwrap_or_default() {
            let field = var
                .value_from
                .as_ref()
                .and_then(|f| f.field_ref.as_ref())
                .map(|f| f.field_path.as_str());
            let value = match (var.value, field) {
                (Some(v), _) => v,
                (None, Some("metadata.namespace")) => namespace.to_string(),
                (None, Some("metadata.name")) => pod_name.clone(),
                (None, Some("status.podIP" | "status.podIPs")) => ip.to_string(),
                _ => continue,
            };
            env.push((var.name, value));
        }
        // The image's entrypoint is the binary itself; a command, when set, starts with it.
        let mut args = container.command.clone().unwrap_or_default();
        if !args.is_empty() {
            args.remove(0);
        }
        args.extend(container.args.clone().unwrap_or_default());
        let args = args.iter().map(|a| expand(a, &env)).collect();
        let service_account = pod
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into());
        Ok(PodTemplate {
            namespace: namespace.into(),
            pod_name,
            args,
            env,
            service_account,
        })
    }
}

/// Expands `$(VAR)` the way the kubelet does for container args.
fn expand(arg: &str, env: &[(String, String)]) -> String {
    let mut out = arg.to_string();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    out
}

/// Runs the pod of Deployment `namespace/name` as a local `portico-proxy` on `ip`, and waits
/// until its `/readyz` answers 200.
pub async fn run_proxy_from_deployment(
    cp: &ControlPlane,
    namespace: &str,
    name: &str,
    ip: IpAddr,
) -> Result<ProxyPod> {
    let pod = PodTemplate::from_deployment(cp, namespace, name, ip).await?;
    run_proxy(cp, namespace, &pod.service_account, pod.args, pod.env, ip).await
}

/// Runs the operator Deployment `namespace/name` (for example the Helm chart's) as a local
/// `portico-operator` process with its args and its ServiceAccount's real token.
pub async fn run_operator_from_deployment(
    cp: &ControlPlane,
    namespace: &str,
    name: &str,
    ip: IpAddr,
) -> Result<Process> {
    let pod = PodTemplate::from_deployment(cp, namespace, name, ip).await?;
    let token = cp
        .service_account_token(namespace, &pod.service_account)
        .await?;
    let dir = crate::scratch_dir("operator");
    let kubeconfig = cp.write_kubeconfig(&token, &dir.join("kubeconfig"))?;
    let mut cmd = Command::new(crate::bin_path("portico-operator"));
    // Like --bind-address for the proxy: in a cluster the pod has an address of its own.
    cmd.args(&pod.args)
        .env("KUBECONFIG", &kubeconfig)
        .env("PORTICO_LOG_FORMAT", "text")
        .env("PORTICO_ADMIN_ADDRESS", ip.to_string());
    for (k, v) in &pod.env {
        cmd.env(k, v);
    }
    let mut process = Process::spawn(&format!("operator-{namespace}-{}", pod.pod_name), cmd)?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    process.check_running()?;
    Ok(process)
}

/// Runs `portico-proxy` with `args` as ServiceAccount `namespace/service_account` on `ip`.
pub async fn run_proxy(
    cp: &ControlPlane,
    namespace: &str,
    service_account: &str,
    args: Vec<String>,
    env: Vec<(String, String)>,
    ip: IpAddr,
) -> Result<ProxyPod> {
    let token = cp.service_account_token(namespace, service_account).await?;
    let dir = crate::scratch_dir("pod");
    let kubeconfig = cp.write_kubeconfig(&token, &dir.join("kubeconfig"))?;
    let port = |flag: &str, default: u16| -> Result<u16> {
        match flag_value(&args, flag) {
            Some(v) => v.parse().with_context(|| format!("--{flag}={v}")),
            None => Ok(default),
        }
    };
    let http_port = port("http-port", 80)?;
    let https_port = port("https-port", 443)?;
    let admin_port = port("admin-port", 9090)?;

    let mut cmd = Command::new(crate::bin_path("portico-proxy"));
    cmd.args(&args)
        .arg(format!("--bind-address={ip}"))
        .env("KUBECONFIG", &kubeconfig);
    cmd.env("PORTICO_LOG_FORMAT", "text")
        .env("POD_NAMESPACE", namespace)
        .env("POD_IP", ip.to_string());
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let mut process = Process::spawn(&format!("proxy-{namespace}-{ip}"), cmd)?;

    let deadline = Instant::now() + Duration::from_secs(30);
    let ready_url = format!("http://{ip}:{admin_port}/readyz");
    loop {
        process.check_running()?;
        if http_status(&ready_url).await == Some(200) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "proxy on {ip} not ready within 30s:\n{}",
                process.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(ProxyPod {
        ip,
        http_port,
        https_port,
        admin_port,
        args,
        service_account: service_account.into(),
        process,
    })
}

/// The status of a plain GET, or None when nothing answers.
pub async fn http_status(url: &str) -> Option<u16> {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = url.parse().ok()?;
    let response = tokio::time::timeout(Duration::from_secs(2), client.get(uri))
        .await
        .ok()?
        .ok()?;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    Some(status)
}
