//! The proxy Deployment `portico-<name>`: `portico-proxy` with exactly the flags of
//! docs/contracts.md, hardened (non-root, read-only root, no capabilities) and able to
//! bind ports below 1024 through the namespaced sysctl `net.ipv4.ip_unprivileged_port_start`.

use std::time::Duration;

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
use crate::api::{
    EncodedSlashes, TlsVersion, UnderscoreHeaders, normalize_duration, parse_duration,
};

/// The unprivileged user of the distroless proxy image.
pub const PROXY_UID: i64 = 65532;

/// The proxy's command line, in contract order.
pub fn args(inputs: &Inputs) -> Vec<String> {
    let spec = &inputs.instance.spec;
    let ports = spec.ports();
    let tls = spec.tls.clone().unwrap_or_default();
    let http = spec.http.clone().unwrap_or_default();
    let mut args = vec![
        format!("--ingress-class={}", inputs.class_name()),
        format!("--namespaces={}", inputs.served_namespaces.join(",")),
        format!("--http-port={}", ports.http),
        format!("--https-port={}", ports.https),
        format!("--admin-port={}", ports.admin),
        format!("--load-balance={}", spec.load_balance_arg()),
        // The CRD accepts compound durations (`1h30m`); the proxy takes one unit.
        format!(
            "--connect-timeout={}",
            normalize_duration(spec.connect_timeout())
        ),
        format!(
            "--request-timeout={}",
            normalize_duration(spec.request_timeout())
        ),
        format!("--idle-timeout={}", normalize_duration(spec.idle_timeout())),
        format!("--retries={}", spec.retries()),
    ];
    if let Some(cidrs) = spec.trusted_proxy_cidrs.as_ref().filter(|c| !c.is_empty()) {
        args.push(format!("--trusted-proxy-cidrs={}", cidrs.join(",")));
    }
    if !inputs.settings.denied_endpoint_cidrs.is_empty() {
        let cidrs: Vec<String> = inputs
            .settings
            .denied_endpoint_cidrs
            .iter()
            .map(ToString::to_string)
            .collect();
        args.push(format!("--denied-endpoint-cidrs={}", cidrs.join(",")));
    }
    if let Some(secret) = spec.default_certificate_secret() {
        args.push(format!(
            "--default-certificate={}/{secret}",
            inputs.namespace
        ));
    }
    args.extend([
        format!("--ssl-redirect={}", tls.redirect.unwrap_or(true)),
        format!("--hsts={}", tls.hsts.unwrap_or(false)),
        format!(
            "--min-tls-version={}",
            match tls.min_version.unwrap_or_default() {
                TlsVersion::V1_2 => "1.2",
                TlsVersion::V1_3 => "1.3",
            }
        ),
        format!(
            "--tunnel-idle-timeout={}",
            normalize_duration(
                spec.timeouts
                    .as_ref()
                    .and_then(|t| t.tunnel_idle.as_deref())
                    .unwrap_or("1h")
            )
        ),
        format!(
            "--max-connections={}",
            http.max_connections.unwrap_or(16_384)
        ),
        format!(
            "--backend-tls-allow-unverified={}",
            spec.backend_tls_allow_unverified()
        ),
        format!(
            "--max-connections-per-endpoint={}",
            http.max_connections_per_endpoint.unwrap_or(1024)
        ),
        format!(
            "--http2-max-concurrent-streams={}",
            http.http2_max_concurrent_streams.unwrap_or(100)
        ),
        format!(
            "--http2-initial-stream-window={}",
            http.http2_initial_stream_window_size.unwrap_or(65_536)
        ),
        format!(
            "--max-request-body-size={}",
            http.max_request_body_size.as_deref().unwrap_or("1m")
        ),
        format!(
            "--encoded-slashes={}",
            match http.encoded_slashes.unwrap_or_default() {
                EncodedSlashes::Reject => "reject",
                EncodedSlashes::Keep => "keep",
            }
        ),
        format!(
            "--underscores-in-headers={}",
            match http.headers_with_underscores.unwrap_or_default() {
                UnderscoreHeaders::Drop => "drop",
                UnderscoreHeaders::Keep => "keep",
            }
        ),
        format!(
            "--drain-period={}",
            crate::api::format_duration(inputs.settings.drain_period)
        ),
        "--log-format=json".to_owned(),
    ]);
    args
}

/// Long enough for the drain period plus the longest request it lets finish.
pub fn termination_grace_period(inputs: &Inputs) -> i64 {
    let request =
        parse_duration(inputs.instance.spec.request_timeout()).unwrap_or(Duration::from_secs(60));
    let total = inputs.settings.drain_period + request + Duration::from_secs(5);
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
