//! The tenant policy, pure: which `IngressController` fields a namespace may set.
//!
//! ```text
//!  operator flags (chart values tenantPolicy.*, trustedNamespaces) ─▶ TenantPolicy + Settings
//!  IngressController spec + its namespace ─────────────────────────────┴─▶ violations()
//!        []  ─▶ reconcile as usual
//!        [v] ─▶ nothing applied; condition PolicyViolation=True + Warning Event naming the fields
//! ```
//!
//! Fields with an effect beyond the instance's namespace are the platform's: the proxy image
//! (it runs with the proxy's ServiceAccount, which reads other namespaces' Secrets), the
//! cluster's default class, where pods are scheduled, pod and Service annotations (read by
//! node agents, CNI plugins, cloud load balancers, DNS controllers), the load balancer
//! class, fixed node ports, the Service type, and the size of the fleet. Instances in a
//! trusted namespace (`--trusted-namespaces` or `--privileged-namespaces`) may set them all.
//!
//! The chart's ValidatingAdmissionPolicy (`charts/portico/templates/tenant-policy.yaml`)
//! refuses the same specs at admission; this is the second check, for clusters without it
//! and for objects admitted before the policy was tightened. Keep the two in step: the
//! table in docs/security.md ("What a tenant may set") lists both.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::api::{IngressControllerSpec, ServiceType};
use crate::resources::Settings;

/// Resource names an untrusted instance may request or limit.
pub const TENANT_RESOURCES: [&str; 2] = ["cpu", "memory"];

/// Defaults of the operator flags and of the chart's `tenantPolicy` values.
pub const DEFAULT_MAX_REPLICAS: i32 = 10;
pub const DEFAULT_MAX_CPU: &str = "2";
pub const DEFAULT_MAX_MEMORY: &str = "2Gi";

/// What instances outside trusted namespaces may set (operator flags; docs/configuration.md).
#[derive(Clone, Debug, PartialEq)]
pub struct TenantPolicy {
    /// Namespaces whose instances may set platform fields, besides `--trusted-namespaces`
    /// (which are trusted for them too). Unlike those, they serve no other namespace
    /// without its consent.
    pub privileged_namespaces: BTreeSet<String>,
    /// `spec.image` values allowed besides the operator's own proxy image ([`Pattern`]s).
    pub allowed_images: Vec<Pattern>,
    /// `spec.service.annotations` keys allowed ([`Pattern`]s); none by default.
    pub allowed_service_annotations: Vec<Pattern>,
    /// `spec.podAnnotations` keys allowed ([`Pattern`]s); none by default.
    pub allowed_pod_annotations: Vec<Pattern>,
    /// `spec.service.type` values allowed (unset means LoadBalancer).
    pub allowed_service_types: BTreeSet<ServiceType>,
    /// Most proxy pods: `spec.replicas` (2 when unset) or `spec.autoscaling.maxReplicas`.
    pub max_replicas: i32,
    /// Ceiling of the cpu request and limit; `None`: no ceiling.
    pub max_cpu: Option<Ceiling>,
    /// Ceiling of the memory request and limit; `None`: no ceiling.
    pub max_memory: Option<Ceiling>,
}

impl Default for TenantPolicy {
    fn default() -> Self {
        TenantPolicy {
            privileged_namespaces: BTreeSet::new(),
            allowed_images: Vec::new(),
            allowed_service_annotations: Vec::new(),
            allowed_pod_annotations: Vec::new(),
            allowed_service_types: [
                ServiceType::LoadBalancer,
                ServiceType::NodePort,
                ServiceType::ClusterIP,
            ]
            .into(),
            max_replicas: DEFAULT_MAX_REPLICAS,
            max_cpu: Ceiling::parse(DEFAULT_MAX_CPU),
            max_memory: Ceiling::parse(DEFAULT_MAX_MEMORY),
        }
    }
}

/// An exact string, or a prefix when it ends in `*` (`prometheus.io/*`,
/// `registry.example.com/portico-proxy:*`). The admission policy matches the same way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern(pub String);

impl Pattern {
    pub fn matches(&self, value: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => value.starts_with(prefix),
            None => value == self.0,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A resource ceiling: the quantity as written, and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Ceiling {
    pub text: String,
    nanos: i128,
}

impl Ceiling {
    /// `None` for an empty string or something that is not a quantity.
    pub fn parse(text: &str) -> Option<Ceiling> {
        Some(Ceiling {
            text: text.to_owned(),
            nanos: parse_quantity(text)?,
        })
    }
}

/// One field the policy refuses, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The field path, `spec.nodeSelector`.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Is `namespace` trusted with the platform's fields?
pub fn trusted(namespace: &str, settings: &Settings) -> bool {
    settings.trusted_namespaces.contains(namespace)
        || settings.policy.privileged_namespaces.contains(namespace)
}

/// Every field of `spec` the tenant policy refuses to an instance in `namespace`; empty
/// when the namespace is trusted or the spec keeps to the policy.
pub fn violations(
    spec: &IngressControllerSpec,
    namespace: &str,
    settings: &Settings,
) -> Vec<Violation> {
    if trusted(namespace, settings) {
        return Vec::new();
    }
    let policy = &settings.policy;
    let mut out = Vec::new();
    let mut refuse = |field: &str, reason: String| {
        out.push(Violation {
            field: field.to_owned(),
            reason,
        })
    };
    const PLATFORM: &str = "only instances in namespaces the platform trusts may set it";

    if let Some(image) = &spec.image
        && *image != settings.proxy_image
        && !policy.allowed_images.iter().any(|p| p.matches(image))
    {
        refuse(
            "spec.image",
            format!(
                "image {image} is not allowed; allowed: {}",
                std::iter::once(settings.proxy_image.clone())
                    .chain(policy.allowed_images.iter().map(ToString::to_string))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    if spec.default_class == Some(true) {
        refuse(
            "spec.defaultClass",
            format!("the cluster's default IngressClass is the platform's; {PLATFORM}"),
        );
    }
    if spec.adopt_ingress_class == Some(true) {
        refuse(
            "spec.adoptIngressClass",
            format!("taking over another controller's IngressClass is the platform's; {PLATFORM}"),
        );
    }
    if spec.node_selector.as_ref().is_some_and(|m| !m.is_empty()) {
        refuse("spec.nodeSelector", format!("scheduling; {PLATFORM}"));
    }
    if spec.tolerations.as_ref().is_some_and(|t| !t.is_empty()) {
        refuse("spec.tolerations", format!("scheduling; {PLATFORM}"));
    }
    if spec.affinity.as_ref().is_some_and(|a| {
        a.node_affinity.is_some() || a.pod_affinity.is_some() || a.pod_anti_affinity.is_some()
    }) {
        refuse("spec.affinity", format!("scheduling; {PLATFORM}"));
    }
    if let Some(keys) = disallowed_keys(
        spec.pod_annotations.as_ref(),
        &policy.allowed_pod_annotations,
    ) {
        refuse(
            "spec.podAnnotations",
            format!("keys not allowed by the tenant policy: {keys}"),
        );
    }

    let service = spec.service.clone().unwrap_or_default();
    if let Some(keys) = disallowed_keys(
        service.annotations.as_ref(),
        &policy.allowed_service_annotations,
    ) {
        refuse(
            "spec.service.annotations",
            format!("keys not allowed by the tenant policy: {keys}"),
        );
    }
    if service.load_balancer_class.is_some() {
        refuse(
            "spec.service.loadBalancerClass",
            format!("the load balancer implementation is the platform's; {PLATFORM}"),
        );
    }
    if service
        .node_ports
        .as_ref()
        .is_some_and(|p| p.http.is_some() || p.https.is_some())
    {
        refuse(
            "spec.service.nodePorts",
            format!("a fixed port on every node is the platform's; {PLATFORM}"),
        );
    }
    let type_ = spec.service_type();
    if !policy.allowed_service_types.contains(&type_) {
        refuse(
            "spec.service.type",
            format!(
                "{} is not allowed (an unset type is LoadBalancer); allowed: {}",
                type_.as_str(),
                policy
                    .allowed_service_types
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }

    let (field, replicas) = match &spec.autoscaling {
        Some(a) => ("spec.autoscaling.maxReplicas", a.max_replicas),
        None => (
            "spec.replicas",
            spec.replicas
                .unwrap_or(IngressControllerSpec::DEFAULT_REPLICAS),
        ),
    };
    if replicas > policy.max_replicas {
        refuse(
            field,
            format!(
                "{replicas} proxy pods exceed the tenant policy's ceiling of {}",
                policy.max_replicas
            ),
        );
    }

    if let Some(resources) = &spec.resources {
        if resources.claims.as_ref().is_some_and(|c| !c.is_empty()) {
            refuse(
                "spec.resources.claims",
                format!("devices are the platform's; {PLATFORM}"),
            );
        }
        for (kind, map) in [
            ("requests", &resources.requests),
            ("limits", &resources.limits),
        ] {
            for (name, value) in map.iter().flatten() {
                let field = format!("spec.resources.{kind}.{name}");
                let ceiling = match name.as_str() {
                    "cpu" => &policy.max_cpu,
                    "memory" => &policy.max_memory,
                    _ => {
                        refuse(
                            &field,
                            format!(
                                "only {} may be requested or limited; {PLATFORM}",
                                TENANT_RESOURCES.join(" and ")
                            ),
                        );
                        continue;
                    }
                };
                match (parse_quantity(&value.0), ceiling) {
                    (None, _) => {
                        refuse(&field, format!("{:?} is not a resource quantity", value.0))
                    }
                    (Some(v), Some(max)) if v > max.nanos => refuse(
                        &field,
                        format!(
                            "{} exceeds the tenant policy's ceiling of {}",
                            value.0, max.text
                        ),
                    ),
                    _ => {}
                }
            }
        }
    }
    out
}

/// The keys of `map` no pattern allows, comma-separated; `None` when all are allowed.
fn disallowed_keys(map: Option<&BTreeMap<String, String>>, allowed: &[Pattern]) -> Option<String> {
    let keys: Vec<&str> = map
        .into_iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .filter(|k| !allowed.iter().any(|p| p.matches(k)))
        .collect();
    (!keys.is_empty()).then(|| keys.join(", "))
}

/// A Kubernetes resource quantity (`500m`, `2`, `1.5Gi`, `1e3`, `+.5`) in nano-units,
/// rounded up (a ceiling compared against a value rounded up cannot be slipped under by
/// precision). `None` when it is not a quantity or too large to hold.
pub fn parse_quantity(text: &str) -> Option<i128> {
    let s = text.trim();
    let (negative, s) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let mantissa: i128 = digits.parse().ok()?;
    // value = mantissa * 2^binary * 10^decimal, in nano-units (10^9 per unit).
    let (binary, decimal): (u32, i32) = match suffix {
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "" => (0, 0),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        exponent => {
            let e = exponent.strip_prefix(['e', 'E'])?;
            let e = e.strip_prefix('+').unwrap_or(e);
            if e.is_empty()
                || !e
                    .trim_start_matches('-')
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            {
                return None;
            }
            (0, e.parse::<i32>().ok().filter(|e| e.abs() <= 30)?)
        }
    };
    let scale = 9 + decimal - i32::try_from(fraction.len()).ok()?;
    let mut numerator = mantissa.checked_mul(1i128.checked_shl(binary)?)?;
    let mut denominator: i128 = 1;
    if scale >= 0 {
        numerator = numerator.checked_mul(10i128.checked_pow(scale.unsigned_abs())?)?;
    } else {
        denominator = 10i128.checked_pow(scale.unsigned_abs())?;
    }
    let value = numerator / denominator + i128::from(numerator % denominator != 0);
    Some(if negative { -value } else { value })
}

/// Parses the value of `--allowed-service-types`.
pub fn parse_service_type(s: &str) -> Option<ServiceType> {
    [
        ServiceType::LoadBalancer,
        ServiceType::NodePort,
        ServiceType::ClusterIP,
    ]
    .into_iter()
    .find(|t| t.as_str() == s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Autoscaling, NodePorts, ServiceConfig};
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelector, ResourceClaim, ResourceRequirements, Toleration,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    const OWN: &str = "ghcr.io/portico-dev/portico-proxy:0.1.0";

    fn settings(policy: TenantPolicy) -> Settings {
        Settings {
            proxy_image: OWN.into(),
            trusted_namespaces: ["platform".to_owned()].into(),
            policy,
            ..Settings::default()
        }
    }

    fn fields(spec: &IngressControllerSpec, ns: &str, policy: TenantPolicy) -> Vec<String> {
        violations(spec, ns, &settings(policy))
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    fn quantities(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                .collect(),
        )
    }

    fn map(keys: &[&str]) -> Option<BTreeMap<String, String>> {
        Some(
            keys.iter()
                .map(|k| ((*k).to_owned(), "x".to_owned()))
                .collect(),
        )
    }

    /// One spec per privileged field, each refused alone from a tenant namespace.
    fn privileged_cases() -> Vec<(&'static str, IngressControllerSpec)> {
        let service = |s: ServiceConfig| IngressControllerSpec {
            service: Some(s),
            ..Default::default()
        };
        vec![
            (
                "spec.image",
                IngressControllerSpec {
                    image: Some("evil.example.com/miner:latest".into()),
                    ..Default::default()
                },
            ),
            (
                "spec.defaultClass",
                IngressControllerSpec {
                    default_class: Some(true),
                    ..Default::default()
                },
            ),
            (
                "spec.nodeSelector",
                IngressControllerSpec {
                    node_selector: map(&["node-role.kubernetes.io/control-plane"]),
                    ..Default::default()
                },
            ),
            (
                "spec.tolerations",
                IngressControllerSpec {
                    tolerations: Some(vec![Toleration {
                        operator: Some("Exists".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
            ),
            (
                "spec.affinity",
                IngressControllerSpec {
                    affinity: Some(Affinity {
                        node_affinity: Some(NodeAffinity {
                            required_during_scheduling_ignored_during_execution: Some(
                                NodeSelector::default(),
                            ),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ),
            (
                "spec.podAnnotations",
                IngressControllerSpec {
                    pod_annotations: map(&["cni.projectcalico.org/ipAddrs"]),
                    ..Default::default()
                },
            ),
            (
                "spec.service.annotations",
                service(ServiceConfig {
                    annotations: map(&["external-dns.alpha.kubernetes.io/hostname"]),
                    ..Default::default()
                }),
            ),
            (
                "spec.service.loadBalancerClass",
                service(ServiceConfig {
                    load_balancer_class: Some("example.com/internal".into()),
                    ..Default::default()
                }),
            ),
            (
                "spec.service.nodePorts",
                service(ServiceConfig {
                    type_: Some(ServiceType::NodePort),
                    node_ports: Some(NodePorts {
                        http: Some(30080),
                        https: None,
                    }),
                    ..Default::default()
                }),
            ),
            (
                "spec.replicas",
                IngressControllerSpec {
                    replicas: Some(11),
                    ..Default::default()
                },
            ),
            (
                "spec.autoscaling.maxReplicas",
                IngressControllerSpec {
                    autoscaling: Some(Autoscaling {
                        min_replicas: 1,
                        max_replicas: 50,
                        target_cpu_utilization_percentage: None,
                    }),
                    ..Default::default()
                },
            ),
            (
                "spec.resources.limits.cpu",
                IngressControllerSpec {
                    resources: Some(ResourceRequirements {
                        limits: quantities(&[("cpu", "2500m"), ("memory", "2Gi")]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ),
            (
                "spec.resources.requests.memory",
                IngressControllerSpec {
                    resources: Some(ResourceRequirements {
                        requests: quantities(&[("memory", "3G")]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ),
            (
                "spec.resources.limits.nvidia.com/gpu",
                IngressControllerSpec {
                    resources: Some(ResourceRequirements {
                        limits: quantities(&[("nvidia.com/gpu", "1")]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ),
            (
                "spec.resources.claims",
                IngressControllerSpec {
                    resources: Some(ResourceRequirements {
                        claims: Some(vec![ResourceClaim {
                            name: "gpu".into(),
                            request: None,
                        }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ),
        ]
    }

    #[test]
    fn each_privileged_field_is_refused_to_a_tenant_and_allowed_to_the_platform() {
        for (field, spec) in privileged_cases() {
            assert_eq!(
                fields(&spec, "team-a", TenantPolicy::default()),
                [field],
                "{spec:?}"
            );
            assert_eq!(
                fields(&spec, "platform", TenantPolicy::default()),
                Vec::<String>::new(),
                "--trusted-namespaces are trusted with {field}"
            );
            let privileged = TenantPolicy {
                privileged_namespaces: ["edge".to_owned()].into(),
                ..TenantPolicy::default()
            };
            assert!(
                fields(&spec, "edge", privileged).is_empty(),
                "--privileged-namespaces are trusted with {field}"
            );
        }
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let spec = IngressControllerSpec {
            image: Some("evil.example.com/miner:latest".into()),
            default_class: Some(true),
            node_selector: map(&["kubernetes.io/hostname"]),
            pod_annotations: map(&["k8s.v1.cni.cncf.io/networks"]),
            replicas: Some(100),
            service: Some(ServiceConfig {
                annotations: map(&["metallb.universe.tf/loadBalancerIPs"]),
                load_balancer_class: Some("example.com/public".into()),
                node_ports: Some(NodePorts {
                    http: None,
                    https: Some(30443),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            fields(&spec, "team-a", TenantPolicy::default()),
            [
                "spec.image",
                "spec.defaultClass",
                "spec.nodeSelector",
                "spec.podAnnotations",
                "spec.service.annotations",
                "spec.service.loadBalancerClass",
                "spec.service.nodePorts",
                "spec.replicas",
            ]
        );
    }

    #[test]
    fn what_a_tenant_may_set() {
        let ok = IngressControllerSpec {
            image: Some(OWN.into()),
            default_class: Some(false),
            node_selector: Some(BTreeMap::new()),
            tolerations: Some(Vec::new()),
            affinity: Some(Affinity::default()),
            replicas: Some(10),
            resources: Some(ResourceRequirements {
                requests: quantities(&[("cpu", "100m"), ("memory", "64Mi")]),
                limits: quantities(&[("cpu", "2"), ("memory", "2Gi")]),
                ..Default::default()
            }),
            service: Some(ServiceConfig {
                type_: Some(ServiceType::ClusterIP),
                annotations: Some(BTreeMap::new()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            fields(&ok, "team-a", TenantPolicy::default()),
            Vec::<String>::new()
        );
        assert_eq!(
            fields(
                &IngressControllerSpec::default(),
                "team-a",
                TenantPolicy::default()
            ),
            Vec::<String>::new(),
            "the defaults keep to the default policy"
        );
    }

    #[test]
    fn allow_lists_take_exact_strings_and_prefixes() {
        let policy = TenantPolicy {
            allowed_images: vec![
                Pattern("registry.example.com/portico-proxy:*".into()),
                Pattern("mirror.example.com/proxy:1.0".into()),
            ],
            allowed_service_annotations: vec![Pattern(
                "service.beta.kubernetes.io/aws-load-balancer-internal".into(),
            )],
            allowed_pod_annotations: vec![Pattern("prometheus.io/*".into())],
            ..TenantPolicy::default()
        };
        let image = |i: &str| IngressControllerSpec {
            image: Some(i.into()),
            ..Default::default()
        };
        for allowed in [
            OWN,
            "registry.example.com/portico-proxy:0.2.0",
            "mirror.example.com/proxy:1.0",
        ] {
            assert!(
                fields(&image(allowed), "t", policy.clone()).is_empty(),
                "{allowed}"
            );
        }
        for refused in [
            "registry.example.com/portico-proxy-evil:1",
            "mirror.example.com/proxy:1.0.1",
            "ghcr.io/portico-dev/portico-proxy:latest",
        ] {
            assert_eq!(
                fields(&image(refused), "t", policy.clone()),
                ["spec.image"],
                "{refused}"
            );
        }
        let annotated = IngressControllerSpec {
            pod_annotations: map(&["prometheus.io/scrape", "prometheus.io/port"]),
            service: Some(ServiceConfig {
                annotations: map(&["service.beta.kubernetes.io/aws-load-balancer-internal"]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(fields(&annotated, "t", policy.clone()).is_empty());
        let mut spec = annotated.clone();
        spec.pod_annotations = map(&["prometheus.io/scrape", "linkerd.io/inject"]);
        let v = violations(&spec, "t", &settings(policy.clone()));
        assert_eq!(v.len(), 1);
        assert_eq!(
            v[0].to_string(),
            "spec.podAnnotations: keys not allowed by the tenant policy: linkerd.io/inject"
        );
    }

    #[test]
    fn service_types_and_ceilings_are_the_platforms_choice() {
        let cluster_ip_only = TenantPolicy {
            allowed_service_types: [ServiceType::ClusterIP].into(),
            max_replicas: 1,
            max_cpu: None,
            max_memory: None,
            ..TenantPolicy::default()
        };
        let v = violations(
            &IngressControllerSpec::default(),
            "t",
            &settings(cluster_ip_only.clone()),
        );
        let text: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "spec.service.type: LoadBalancer is not allowed (an unset type is LoadBalancer); allowed: ClusterIP",
                "spec.replicas: 2 proxy pods exceed the tenant policy's ceiling of 1",
            ],
            "an unset type is LoadBalancer and unset replicas are 2"
        );
        let big = IngressControllerSpec {
            replicas: Some(1),
            service: Some(ServiceConfig {
                type_: Some(ServiceType::ClusterIP),
                ..Default::default()
            }),
            resources: Some(ResourceRequirements {
                limits: quantities(&[("cpu", "64"), ("memory", "1Ti")]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(
            fields(&big, "t", cluster_ip_only).is_empty(),
            "no resource ceiling"
        );
        let not_a_quantity = IngressControllerSpec {
            resources: Some(ResourceRequirements {
                limits: quantities(&[("cpu", "lots")]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            fields(&not_a_quantity, "t", TenantPolicy::default()),
            ["spec.resources.limits.cpu"],
            "what cannot be compared is refused"
        );
    }

    #[test]
    fn quantities_parse_exactly_and_round_up() {
        let n = |s: &str| parse_quantity(s);
        assert_eq!(n("2"), Some(2_000_000_000));
        assert_eq!(n("2000m"), n("2"));
        assert_eq!(n("1.5"), Some(1_500_000_000));
        assert_eq!(n(".5"), n("500m"));
        assert_eq!(n("+1"), n("1"));
        assert_eq!(n("-1"), Some(-1_000_000_000));
        assert_eq!(n("1Ki"), Some(1024 * 1_000_000_000));
        assert_eq!(n("2Gi"), Some(2 * (1i128 << 30) * 1_000_000_000));
        assert_eq!(n("1.5Gi"), Some(3 * (1i128 << 29) * 1_000_000_000));
        assert_eq!(n("1e3"), n("1k"));
        assert_eq!(n("1E-3"), n("1m"));
        assert_eq!(n("1n"), Some(1));
        assert_eq!(n("0.1n"), Some(1), "rounded up");
        assert!(n("2Gi") > n("2G"));
        assert!(n("2001m") > n("2"));
        for bad in [
            "", "Gi", "1.2.3", "1Gb", "abc", "1e", "1e+", "--1", "1 Gi", "9e99",
        ] {
            assert_eq!(n(bad), None, "{bad:?}");
        }
        assert_eq!(
            n("999999999999999999999999999999Ei"),
            None,
            "too large to hold"
        );
    }

    #[test]
    fn service_types_parse_by_their_kubernetes_names() {
        assert_eq!(parse_service_type("NodePort"), Some(ServiceType::NodePort));
        assert_eq!(parse_service_type("nodeport"), None);
    }
}
