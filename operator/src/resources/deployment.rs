//! The proxy Deployment `portico-<name>`: `portico-proxy` with exactly the flags of
//! docs/contracts.md, hardened (non-root, read-only root, no capabilities) and able to
//! bind ports below 1024 through the namespaced sysctl `net.ipv4.ip_unprivileged_port_start`.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecurityContext, Sysctl,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Inputs;
use portico_ingress::{Duration, LogFormat, NamespacedName, ProxyArgs};

use crate::api::{EncodedSlashes, TlsVersion, UnderscoreHeaders};

/// The unprivileged user of the distroless proxy image.
pub const PROXY_UID: i64 = 65532;

/// The proxy's command line: the shared [`ProxyArgs`] the proxy parses, filled from the
/// spec (already schema-checked) and the operator's settings.
pub fn proxy_args(inputs: &Inputs) -> ProxyArgs {
    let spec = &inputs.instance.spec;
    let ports = spec.ports();
    let tls = spec.tls.clone().unwrap_or_default();
    let http = spec.http.clone().unwrap_or_default();
    let policy = inputs
        .settings
        .routing_policy(&inputs.namespace, &inputs.name);
    let mut a = ProxyArgs::new(
        inputs.class_name(),
        &inputs.namespace,
        inputs.served_namespaces.clone(),
    );
    // The schema bounds every number and the pattern every duration and size; a value
    // outside them keeps the proxy's default rather than a command line it would refuse.
    let port = |p: i32, default: u16| u16::try_from(p).unwrap_or(default);
    let count =
        |v: Option<i32>, default: u32| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(default);
    let duration = |v: &str, default: Duration| v.parse().unwrap_or(default);
    a.host_ownership = policy.host_ownership;
    a.catch_all_namespaces = policy.catch_all_namespaces.into_iter().collect();
    a.http_port = port(ports.http, a.http_port);
    a.https_port = port(ports.https, a.https_port);
    a.admin_port = port(ports.admin, a.admin_port);
    a.load_balance = spec.load_balance();
    a.connect_timeout = duration(spec.connect_timeout(), a.connect_timeout);
    a.request_timeout = duration(spec.request_timeout(), a.request_timeout);
    a.idle_timeout = duration(spec.idle_timeout(), a.idle_timeout);
    a.retries = u32::try_from(spec.retries()).unwrap_or(a.retries);
    a.trusted_proxy_cidrs = spec
        .trusted_proxy_cidrs
        .iter()
        .flatten()
        .filter_map(|c| c.parse().ok())
        .collect();
    a.default_certificate = spec
        .default_certificate_secret()
        .map(|secret| NamespacedName {
            namespace: inputs.namespace.clone(),
            name: secret.to_owned(),
        });
    a.ssl_redirect = tls.redirect.unwrap_or(true);
    a.hsts = tls.hsts.unwrap_or(false);
    a.min_tls_version = match tls.min_version.unwrap_or_default() {
        TlsVersion::V1_2 => portico_ingress::TlsVersion::V1_2,
        TlsVersion::V1_3 => portico_ingress::TlsVersion::V1_3,
    };
    if let Some(d) = spec
        .timeouts
        .as_ref()
        .and_then(|t| t.tunnel_idle.as_deref())
    {
        a.tunnel_idle_timeout = duration(d, a.tunnel_idle_timeout);
    }
    a.max_connections = count(http.max_connections, a.max_connections);
    a.backend_tls_allow_unverified = spec.backend_tls_allow_unverified();
    a.max_connections_per_endpoint = count(
        http.max_connections_per_endpoint,
        a.max_connections_per_endpoint,
    );
    a.http2_max_concurrent_streams = count(
        http.http2_max_concurrent_streams,
        a.http2_max_concurrent_streams,
    );
    a.http2_initial_stream_window = count(
        http.http2_initial_stream_window_size,
        a.http2_initial_stream_window,
    );
    if let Some(size) = http.max_request_body_size.as_deref() {
        a.max_request_body_size = size.parse().unwrap_or(a.max_request_body_size);
    }
    a.proxy_protocol = http.proxy_protocol.unwrap_or(false);
    a.encoded_slashes = match http.encoded_slashes.unwrap_or_default() {
        EncodedSlashes::Reject => portico_ingress::EncodedSlashes::Reject,
        EncodedSlashes::Keep => portico_ingress::EncodedSlashes::Keep,
    };
    a.underscores_in_headers = match http.headers_with_underscores.unwrap_or_default() {
        UnderscoreHeaders::Drop => portico_ingress::UnderscoreHeaders::Drop,
        UnderscoreHeaders::Keep => portico_ingress::UnderscoreHeaders::Keep,
    };
    a.denied_endpoint_cidrs = inputs.settings.denied_endpoint_cidrs.clone();
    a.accept_risk_annotations = spec
        .ingress_nginx
        .as_ref()
        .and_then(|n| n.accept_risk.clone())
        .unwrap_or_default();
    a.access_log = spec
        .access_log
        .as_ref()
        .and_then(|l| l.enabled)
        .unwrap_or(false);
    a.drain_period = Duration(inputs.settings.drain_period);
    a.log_format = LogFormat::Json;
    a
}

/// The proxy's command line, in contract order.
pub fn args(inputs: &Inputs) -> Vec<String> {
    proxy_args(inputs).to_args()
}

/// Long enough for the drain period plus the longest request it lets finish.
pub fn termination_grace_period(inputs: &Inputs) -> i64 {
    let request = proxy_args(inputs).request_timeout.get();
    let total = inputs.settings.drain_period + request + std::time::Duration::from_secs(5);
    i64::try_from(total.as_secs()).unwrap_or(i64::MAX).max(30)
}

fn port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            scheme: Some("HTTP".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

pub fn build(inputs: &Inputs) -> Deployment {
    let spec = &inputs.instance.spec;
    let ports = spec.ports();
    let mut pod_labels = inputs.labels();
    pod_labels.extend(inputs.selector_labels());

    let container = Container {
        name: "proxy".into(),
        image: Some(
            spec.image
                .clone()
                .unwrap_or_else(|| inputs.settings.proxy_image.clone()),
        ),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(args(inputs)),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            // The proxy never dials its own addresses (an EndpointSlice could name them).
            field_env("POD_IPS", "status.podIPs"),
        ]),
        ports: Some(vec![
            port("http", ports.http),
            port("https", ports.https),
            port("admin", ports.admin),
        ]),
        readiness_probe: Some(probe("/readyz", 5, 2)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        resources: spec.resources.clone(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(PROXY_UID),
            run_as_group: Some(PROXY_UID),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };

    let pod = PodSpec {
        service_account_name: Some(inputs.proxy_name()),
        automount_service_account_token: Some(true),
        containers: vec![container],
        termination_grace_period_seconds: Some(termination_grace_period(inputs)),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            // A safe, namespaced sysctl: lets the non-root proxy bind 80 and 443.
            sysctls: Some(vec![Sysctl {
                name: "net.ipv4.ip_unprivileged_port_start".into(),
                value: "0".into(),
            }]),
            ..PodSecurityContext::default()
        }),
        node_selector: spec.node_selector.clone(),
        tolerations: spec.tolerations.clone(),
        affinity: spec.affinity.clone(),
        topology_spread_constraints: spec.topology_spread_constraints.clone(),
        ..PodSpec::default()
    };

    Deployment {
        metadata: inputs.owned_meta(inputs.proxy_name()),
        spec: Some(DeploymentSpec {
            // Left to the HorizontalPodAutoscaler when autoscaling is on.
            replicas: match spec.autoscaling {
                Some(_) => None,
                None => Some(
                    spec.replicas
                        .unwrap_or(crate::api::IngressControllerSpec::DEFAULT_REPLICAS),
                ),
            },
            selector: LabelSelector {
                match_labels: Some(inputs.selector_labels()),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                // Never go below the desired count: start a new pod before draining an old one.
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: spec.pod_annotations.clone(),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}
