//! The operator process: options, startup checks, admin server, leader election and
//! clean shutdown around [`crate::controller::run`].
//!
//! ```text
//!  main ─▶ Options ─▶ run ─▶ client + CRD check ─▶ admin server (/metrics /healthz /readyz)
//!                            └─▶ loop { acquire Lease ─▶ controller ∥ renew ─▶ lost? stand by }
//!  SIGTERM ─▶ stop the controller ─▶ release the Lease ─▶ exit 0
//! ```

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, bail};
use ipnet::IpNet;
use kube::api::ListParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::admin::{self, AdminState};
use crate::api::IngressController;
use crate::controller::{self, Context};
use crate::leader::{LeaderElector, LeaseConfig, default_identity};
use crate::metrics::Metrics;
use crate::policy;
use crate::resources::Settings;

/// Command line of `portico-operator`; every flag also reads `PORTICO_<FLAG>`.
#[derive(clap::Parser, Clone, Debug)]
#[command(
    name = "portico-operator",
    version,
    about = "Reconciles IngressController resources into isolated proxy fleets"
)]
pub struct Options {
    /// Image of portico-proxy for instances that do not set spec.image.
    #[arg(long, env = "PORTICO_PROXY_IMAGE", default_value = concat!("ghcr.io/portico-dev/portico-proxy:", env!("CARGO_PKG_VERSION")))]
    pub proxy_image: String,

    /// Namespaces whose instances may serve any namespace their selector matches, without
    /// the namespace's consent annotation, and may set every field the tenant policy keeps
    /// for the platform.
    #[arg(long, env = "PORTICO_TRUSTED_NAMESPACES", value_delimiter = ',')]
    pub trusted_namespaces: Vec<String>,

    /// Instances (`<namespace>/<name>`) whose served namespaces trust each other: one host's
    /// paths merge across those namespaces, as in ingress-nginx, instead of the host
    /// belonging to the namespace of its oldest Ingress.
    #[arg(long, env = "PORTICO_HOST_OWNERSHIP_EXEMPT", value_delimiter = ',', value_parser = parse_instance)]
    pub host_ownership_exempt: Vec<String>,

    /// Namespaces whose `defaultBackend` and host-less rules are honoured by any instance
    /// serving them (by default only the instance's own namespace's are).
    #[arg(long, env = "PORTICO_CATCH_ALL_NAMESPACES", value_delimiter = ',')]
    pub catch_all_namespaces: Vec<String>,

    /// Ranges no proxy may dial, whatever an EndpointSlice says: the node and
    /// control-plane networks (the proxies' --denied-endpoint-cidrs).
    #[arg(long, env = "PORTICO_DENIED_ENDPOINT_CIDRS", value_delimiter = ',')]
    pub denied_endpoint_cidrs: Vec<IpNet>,
    /// The only namespaces instances may live in and serve; the operator then watches and
    /// writes namespaced objects only there, so namespaced Roles suffice (the chart's
    /// `watchNamespaces`). Empty: every namespace.
    #[arg(long, env = "PORTICO_WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,

    /// Namespaces whose instances may set the fields the tenant policy keeps for the
    /// platform (image, default class, scheduling, annotations, Service type and ports,
    /// beyond the ceilings), without serving other namespaces unasked.
    #[arg(long, env = "PORTICO_PRIVILEGED_NAMESPACES", value_delimiter = ',')]
    pub privileged_namespaces: Vec<String>,

    /// Proxy images other namespaces may set in spec.image, besides --proxy-image; an entry
    /// ending in `*` is a prefix.
    #[arg(long, env = "PORTICO_ALLOWED_PROXY_IMAGES", value_delimiter = ',')]
    pub allowed_proxy_images: Vec<String>,

    /// Service annotation keys other namespaces may set; an entry ending in `*` is a prefix.
    #[arg(
        long,
        env = "PORTICO_ALLOWED_SERVICE_ANNOTATIONS",
        value_delimiter = ','
    )]
    pub allowed_service_annotations: Vec<String>,

    /// Pod annotation keys other namespaces may set; an entry ending in `*` is a prefix.
    #[arg(long, env = "PORTICO_ALLOWED_POD_ANNOTATIONS", value_delimiter = ',')]
    pub allowed_pod_annotations: Vec<String>,

    /// Service types other namespaces may use (an unset type is LoadBalancer).
    #[arg(
        long,
        env = "PORTICO_ALLOWED_SERVICE_TYPES",
        value_delimiter = ',',
        default_values = ["LoadBalancer", "NodePort", "ClusterIP"],
        value_parser = ["LoadBalancer", "NodePort", "ClusterIP"]
    )]
    pub allowed_service_types: Vec<String>,

    /// Most proxy pods an instance in another namespace may ask for (spec.replicas, 2 when
    /// unset, or spec.autoscaling.maxReplicas).
    #[arg(long, env = "PORTICO_MAX_REPLICAS", default_value_t = policy::DEFAULT_MAX_REPLICAS, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub max_replicas: i32,

    /// Ceiling of the proxy's cpu request and limit for other namespaces; empty for none.
    #[arg(long, env = "PORTICO_MAX_CPU", default_value = policy::DEFAULT_MAX_CPU, value_parser = ceiling)]
    pub max_cpu: String,

    /// Ceiling of the proxy's memory request and limit for other namespaces; empty for none.
    #[arg(long, env = "PORTICO_MAX_MEMORY", default_value = policy::DEFAULT_MAX_MEMORY, value_parser = ceiling)]
    pub max_memory: String,

    /// Port of /metrics, /healthz and /readyz.
    #[arg(long, env = "PORTICO_ADMIN_PORT", default_value_t = 8080)]
    pub admin_port: u16,

    /// Address the admin server binds.
    #[arg(long, env = "PORTICO_ADMIN_ADDRESS", default_value = "0.0.0.0")]
    pub admin_address: IpAddr,

    /// Elect a leader through a Lease so that only one replica reconciles.
    #[arg(long, env = "PORTICO_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "portico-system")]
    pub leader_election_namespace: String,

    /// Name of the leader Lease.
    #[arg(long, env = "PORTICO_LEASE_NAME", default_value = "portico-operator")]
    pub lease_name: String,

    /// The proxies' --drain-period, in seconds.
    #[arg(long, env = "PORTICO_PROXY_DRAIN_SECONDS", default_value_t = 10)]
    pub proxy_drain_seconds: u64,

    /// Log format: json or text.
    #[arg(long, env = "PORTICO_LOG_FORMAT", default_value = "json", value_parser = ["json", "text"])]
    pub log_format: String,

    /// Log filter, e.g. `info` or `portico_operator=debug,kube=info`.
    #[arg(long, env = "PORTICO_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// A resource ceiling flag: a quantity, or empty for none.
fn ceiling(s: &str) -> Result<String, String> {
    match policy::parse_quantity(s) {
        _ if s.is_empty() => Ok(String::new()),
        Some(n) if n >= 0 => Ok(s.to_owned()),
        _ => Err(format!(
            "{s:?} is not a resource quantity such as 2, 500m or 4Gi (empty: no ceiling)"
        )),
    }
}

impl Options {
    pub fn settings(&self) -> Settings {
        let names = |list: &[String]| -> BTreeSet<String> {
            list.iter().filter(|n| !n.is_empty()).cloned().collect()
        };
        let patterns = |list: &[String]| -> Vec<policy::Pattern> {
            list.iter()
                .filter(|n| !n.is_empty())
                .map(|p| policy::Pattern(p.clone()))
                .collect()
        };
        Settings {
            proxy_image: self.proxy_image.clone(),
            trusted_namespaces: names(&self.trusted_namespaces),
            drain_period: std::time::Duration::from_secs(self.proxy_drain_seconds),
            host_ownership_exempt: self.host_ownership_exempt.iter().cloned().collect(),
            catch_all_namespaces: names(&self.catch_all_namespaces),
            denied_endpoint_cidrs: self.denied_endpoint_cidrs.clone(),
            policy: policy::TenantPolicy {
                privileged_namespaces: names(&self.privileged_namespaces),
                allowed_images: patterns(&self.allowed_proxy_images),
                allowed_service_annotations: patterns(&self.allowed_service_annotations),
                allowed_pod_annotations: patterns(&self.allowed_pod_annotations),
                allowed_service_types: self
                    .allowed_service_types
                    .iter()
                    .filter_map(|t| policy::parse_service_type(t))
                    .collect(),
                max_replicas: self.max_replicas,
                // Both were checked by `ceiling` when parsed.
                max_cpu: policy::Ceiling::parse(&self.max_cpu),
                max_memory: policy::Ceiling::parse(&self.max_memory),
            },
            watch_namespaces: Some(names(&self.watch_namespaces)).filter(|n| !n.is_empty()),
        }
    }
}

/// `<namespace>/<name>` of an IngressController.
fn parse_instance(s: &str) -> Result<String, String> {
    match s.trim().split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(format!("{ns}/{name}"))
        }
        _ => Err(format!(
            "expected NAMESPACE/NAME of an IngressController, got {s:?}"
        )),
    }
}

/// Installs the JSON (or text) log subscriber.
pub fn init_logging(options: &Options) {
    let filter = tracing_subscriber::EnvFilter::try_new(&options.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if options.log_format == "text" {
        builder.init();
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    }
}

/// Fails with a clear message when the CRD is not installed.
pub async fn check_crd(client: &Client) -> anyhow::Result<()> {
    let api: Api<IngressController> = Api::all(client.clone());
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => bail!(
            "CustomResourceDefinition ingresscontrollers.portico.dev is not installed: apply crds/ or install the Helm chart"
        ),
        Err(e) => Err(e).context("cannot reach the Kubernetes API"),
    }
}

/// Resolves when `rx` turns true (or its sender goes away).
async fn until_true(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// A client (in-cluster or KUBECONFIG) that counts every request it sends in
/// `portico_operator_api_requests_total`.
pub async fn client(metrics: &Metrics) -> anyhow::Result<Client> {
    let config = kube::Config::infer()
        .await
        .context("cannot build a Kubernetes client (in-cluster or KUBECONFIG)")?;
    let metrics = metrics.clone();
    let count = tower::util::MapRequestLayer::new(move |request: http::Request<_>| {
        metrics.count_request(&request);
        request
    });
    Ok(kube::client::ClientBuilder::try_from(config)
        .context("cannot build a Kubernetes client")?
        .with_layer(&count)
        .build())
}

/// Runs the operator until `stop` turns true.
pub async fn run(options: Options, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let client = client(&metrics).await?;
    check_crd(&client).await?;

    let ready = Arc::new(AtomicBool::new(false));
    let addr = SocketAddr::new(options.admin_address, options.admin_port);
    let listener = admin::bind(addr)
        .await
        .with_context(|| format!("cannot bind the admin server to {addr}"))?;
    info!(%addr, "admin server listening");
    let admin = tokio::spawn(admin::serve(
        listener,
        AdminState {
            metrics: metrics.clone(),
            ready: ready.clone(),
        },
    ));

    let identity = default_identity();
    let ctx = Arc::new(Context::new(
        client.clone(),
        options.settings(),
        metrics.clone(),
        Some(identity.clone()),
    ));
    ready.store(true, Ordering::Relaxed);

    if !options.leader_election {
        info!("leader election disabled; reconciling");
        controller::run(ctx, until_true(stop)).await;
        admin.abort();
        return Ok(());
    }

    let config = LeaseConfig::new(
        options.leader_election_namespace.clone(),
        options.lease_name.clone(),
        identity,
    );
    let elector = LeaderElector::new(client, config);
    info!(lease = %format!("{}/{}", options.leader_election_namespace, options.lease_name), identity = %elector.config().identity, "waiting for leadership");
    loop {
        if !elector.acquire(&mut stop.clone()).await {
            break;
        }
        metrics.leader.set(1);
        info!("leading: reconciling");
        let (lost_tx, lost_rx) = watch::channel(false);
        let hold = async {
            let lost = elector.hold(&mut stop.clone()).await;
            let _ = lost_tx.send(true);
            lost
        };
        let stop_or_lost = {
            let stop = stop.clone();
            async move {
                tokio::select! {
                    () = until_true(stop) => {}
                    () = until_true(lost_rx) => {}
                }
            }
        };
        let (lost, ()) = tokio::join!(hold, controller::run(ctx.clone(), stop_or_lost));
        metrics.leader.set(0);
        if !lost {
            if let Err(e) = elector.release().await {
                warn!(error = %e, "could not release the leader Lease; it expires on its own");
            }
            break;
        }
        warn!("lost leadership: stopped reconciling, standing by");
    }
    admin.abort();
    info!("stopped");
    Ok(())
}

/// A receiver that turns true on SIGTERM or SIGINT.
pub fn shutdown_signal() -> anyhow::Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: shutting down"),
            _ = int.recv() => info!("SIGINT: shutting down"),
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn policy_flags_default_to_the_policy_defaults() {
        let options = Options::try_parse_from(["portico-operator"]).expect("defaults parse");
        assert_eq!(options.settings().policy, policy::TenantPolicy::default());
    }

    #[test]
    fn policy_flags_reach_the_settings() {
        let options = Options::try_parse_from([
            "portico-operator",
            "--trusted-namespaces=platform",
            "--privileged-namespaces=edge,",
            "--allowed-proxy-images=registry.example.com/proxy:*",
            "--allowed-service-annotations=a/b,c/*",
            "--allowed-service-types=ClusterIP",
            "--max-replicas=4",
            "--max-cpu=",
            "--max-memory=512Mi",
        ])
        .expect("parses");
        let settings = options.settings();
        let p = &settings.policy;
        assert_eq!(p.privileged_namespaces, ["edge".to_owned()].into());
        assert_eq!(
            p.allowed_images,
            [policy::Pattern("registry.example.com/proxy:*".into())]
        );
        assert_eq!(p.allowed_service_annotations.len(), 2);
        assert!(p.allowed_pod_annotations.is_empty());
        assert_eq!(
            p.allowed_service_types,
            [crate::api::ServiceType::ClusterIP].into()
        );
        assert_eq!(p.max_replicas, 4);
        assert_eq!(p.max_cpu, None, "empty: no ceiling");
        assert_eq!(p.max_memory, policy::Ceiling::parse("512Mi"));
        assert!(policy::trusted("platform", &settings));
        assert_eq!(
            settings.watch_namespaces, None,
            "every namespace by default"
        );
        assert!(settings.watches("anywhere"));
        assert!(policy::trusted("edge", &settings));
        assert!(!policy::trusted("team-a", &settings));
    }

    #[test]
    fn watch_namespaces_confine_instances() {
        let options =
            Options::try_parse_from(["portico-operator", "--watch-namespaces=team-a,shop"])
                .expect("parses");
        let settings = options.settings();
        assert_eq!(
            settings.watch_namespaces,
            Some(["shop".to_owned(), "team-a".to_owned()].into())
        );
        assert!(settings.watches("shop"));
        assert!(!settings.watches("team-b"));
    }

    #[test]
    fn bad_policy_flags_are_refused_naming_the_flag() {
        for (flag, mention) in [
            ("--max-cpu=two", "--max-cpu"),
            ("--max-memory=-1Gi", "--max-memory"),
            ("--allowed-service-types=Ingress", "--allowed-service-types"),
            ("--max-replicas=0", "--max-replicas"),
        ] {
            let error = Options::try_parse_from(["portico-operator", flag])
                .expect_err(flag)
                .to_string();
            assert!(error.contains(mention), "{flag}: {error}");
        }
    }
}
