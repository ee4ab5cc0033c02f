//! The `IngressController` custom resource (`portico.dev/v1alpha1`).
//!
//! ```text
//!   IngressController (spec) ──▶ reconcile ──▶ SA, RBAC, Deployment, Service,
//!          ▲                                   IngressClass, PDB, HPA
//!          └──── status (conditions, addresses, served namespaces) ◀──┘
//! ```
//!
//! Every spec field is optional and has a safe default, resolved by the accessor methods on
//! [`IngressControllerSpec`] so that builders never repeat the defaults. The schema itself
//! refuses bad input: ranges, enums and patterns per field, and CEL rules
//! (`x-kubernetes-validations`) where a rule spans fields, so `kubectl apply` fails with a
//! message that says what to fix.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A duration such as `250ms`, `5s`, `2m` or `1h30m`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

/// Spec of an `IngressController`: one isolated proxy fleet serving one IngressClass.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "portico.dev",
    version = "v1alpha1",
    kind = "IngressController",
    plural = "ingresscontrollers",
    shortname = "pic",
    category = "portico",
    namespaced,
    status = "IngressControllerStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "An isolated Portico proxy fleet that serves one IngressClass.",
    printcolumn = r#"{"name":"Class","type":"string","jsonPath":".status.ingressClassName"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Address","type":"string","jsonPath":".status.addresses[0].value"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.replicas) && has(self.autoscaling))").message("set either replicas or autoscaling, not both: the HorizontalPodAutoscaler owns the replica count"))]
pub struct IngressControllerSpec {
    /// The IngressClass this instance owns (default: the resource's name). Class names are
    /// cluster-wide; a class owned by another instance is never taken over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub ingress_class_name: Option<String>,

    /// Mark the IngressClass as the cluster default, so class-less Ingresses are served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_class: Option<bool>,

    /// Take over the IngressClass when another controller owns it (ingress-nginx's
    /// `nginx`): it is deleted and recreated for this instance, so that Ingresses of the
    /// class (and the legacy `kubernetes.io/ingress.class` annotation) move without edits.
    /// Never takes another Portico instance's class. The platform's field (tenant policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt_ingress_class: Option<bool>,

    /// Which namespaces' Ingresses to serve (default: only this instance's namespace).
    /// A selected namespace other than the instance's own is served only with its consent
    /// (annotation `portico.dev/allowed-ingress-controllers`) or when the operator trusts
    /// the instance's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Number of proxy pods (default 2). Mutually exclusive with `autoscaling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,

    /// Compute resources of the proxy container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node selector of the proxy pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Tolerations of the proxy pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Affinity of the proxy pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Topology spread constraints of the proxy pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,

    /// Extra annotations on the proxy pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_annotations: Option<BTreeMap<String, String>>,

    /// Proxy image (default: the operator's `--proxy-image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// The Service in front of the proxy pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceConfig>,

    /// Ports the proxy listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Ports>,

    /// The default load-balancing algorithm (Ingresses may override it by annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancing: Option<LoadBalancing>,

    /// TLS defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,

    /// Upstream and client timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,

    /// Retries of idempotent requests on connect failure, each on another endpoint (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub retries: Option<i32>,

    /// Peers whose `X-Forwarded-*` headers the proxy keeps (for example the cloud load
    /// balancer's range); everyone else's are replaced. Default: none.
    #[serde(
        default,
        rename = "trustedProxyCIDRs",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(max = 32), inner(length(min = 3, max = 64)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("trustedProxyCIDRs must be CIDRs such as 10.0.0.0/8 or fd00::/8"))]
    pub trusted_proxy_cidrs: Option<Vec<String>>,

    /// TLS to backends whose Service port has `appProtocol: https`.
    #[serde(
        default,
        rename = "backendTLS",
        skip_serializing_if = "Option::is_none"
    )]
    pub backend_tls: Option<BackendTlsSettings>,

    /// How the proxy judges untrusted requests (docs/security.md, "Edge hardening").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,

    /// One JSON line per request on the proxy's stdout (docs/configuration.md, "Access
    /// log"). Default: off.
    #[serde(default, rename = "accessLog", skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLogSettings>,

    /// How Ingresses written for ingress-nginx are served
    /// (docs/migrating-from-ingress-nginx.md).
    #[serde(
        default,
        rename = "ingressNginx",
        skip_serializing_if = "Option::is_none"
    )]
    pub ingress_nginx: Option<IngressNginxSettings>,

    /// Scale the fleet with a HorizontalPodAutoscaler on CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,

    /// The PodDisruptionBudget (default: `maxUnavailable: 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption: Option<Disruption>,
}

/// Kubernetes Service type of the proxy Service.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum ServiceType {
    #[default]
    LoadBalancer,
    NodePort,
    ClusterIP,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::NodePort => "NodePort",
            ServiceType::ClusterIP => "ClusterIP",
        }
    }
}

/// `externalTrafficPolicy` of the proxy Service.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ExternalTrafficPolicy {
    Cluster,
    Local,
}

/// The proxy Service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.nodePorts) || !has(self.type) || self.type != 'ClusterIP'").message("service.nodePorts needs service.type NodePort or LoadBalancer"))]
#[x_kube(validation = Rule::new("!has(self.loadBalancerClass) || !has(self.type) || self.type == 'LoadBalancer'").message("service.loadBalancerClass needs service.type LoadBalancer"))]
#[x_kube(validation = Rule::new("!has(self.externalTrafficPolicy) || !has(self.type) || self.type != 'ClusterIP'").message("service.externalTrafficPolicy needs service.type NodePort or LoadBalancer"))]
pub struct ServiceConfig {
    /// Service type (default LoadBalancer).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<ServiceType>,
    /// Annotations on the Service (for cloud load balancer settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// `spec.loadBalancerClass` of the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub load_balancer_class: Option<String>,
    /// `spec.externalTrafficPolicy` of the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<ExternalTrafficPolicy>,
    /// Fixed node ports (default: allocated by the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_ports: Option<NodePorts>,
}

/// Fixed node ports of the proxy Service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.http) || !has(self.https) || self.http != self.https").message("service.nodePorts.http and service.nodePorts.https must differ"))]
pub struct NodePorts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub http: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub https: Option<i32>,
}

/// Ports the proxy listens on (and the Service exposes).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.http != self.https && self.http != self.admin && self.https != self.admin").message("ports.http, ports.https and ports.admin must all differ"))]
pub struct Ports {
    /// Plain HTTP (default 80).
    #[serde(default = "default_http_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub http: i32,
    /// TLS (default 443).
    #[serde(default = "default_https_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub https: i32,
    /// `/metrics`, `/healthz`, `/readyz` (default 9090; not exposed by the Service).
    #[serde(default = "default_admin_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub admin: i32,
}

fn default_http_port() -> i32 {
    80
}
fn default_https_port() -> i32 {
    443
}
fn default_admin_port() -> i32 {
    9090
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            http: default_http_port(),
            https: default_https_port(),
            admin: default_admin_port(),
        }
    }
}

/// Load-balancing algorithm across the endpoints of a backend.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Algorithm {
    #[default]
    RoundRobin,
    /// Power of two random choices by in-flight requests.
    LeastRequest,
    /// Affinity by `hashOn`.
    ConsistentHash,
}

/// What `ConsistentHash` hashes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum HashOn {
    Cookie,
    #[serde(rename = "ClientIP")]
    ClientIp,
    Header,
}

/// The instance's default load balancing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.algorithm) || self.algorithm != 'ConsistentHash' || has(self.hashOn)").message("loadBalancing.algorithm ConsistentHash needs loadBalancing.hashOn (Cookie, ClientIP or Header)"))]
#[x_kube(validation = Rule::new("!has(self.hashOn) || (has(self.algorithm) && self.algorithm == 'ConsistentHash')").message("loadBalancing.hashOn is only used with algorithm ConsistentHash"))]
#[x_kube(validation = Rule::new("!has(self.hashOn) || self.hashOn != 'Header' || has(self.headerName)").message("loadBalancing.hashOn Header needs loadBalancing.headerName"))]
#[x_kube(validation = Rule::new("!has(self.headerName) || (has(self.hashOn) && self.hashOn == 'Header')").message("loadBalancing.headerName is only used with hashOn Header"))]
pub struct LoadBalancing {
    /// Default RoundRobin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<Algorithm>,
    /// Affinity key for ConsistentHash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<HashOn>,
    /// The request header hashed when `hashOn` is Header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
    )]
    pub header_name: Option<String>,
}

/// Minimum TLS protocol version.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

/// TLS defaults of the instance.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Tls {
    /// Name of a `kubernetes.io/tls` Secret in the instance's namespace, served when SNI
    /// matches no Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub default_certificate_secret: Option<String>,
    /// Redirect HTTP to HTTPS (308) for hosts that have TLS (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<bool>,
    /// Send `Strict-Transport-Security` on HTTPS responses (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<bool>,
    /// Minimum TLS version, "1.2" (default) or "1.3".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<TlsVersion>,
}

/// Timeouts, as durations like `250ms`, `5s`, `2m`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// Upstream connect timeout (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    pub connect: Option<String>,
    /// Whole-request timeout (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    pub request: Option<String>,
    /// Idle connection timeout (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    pub idle: Option<String>,
    /// Idle timeout of an upgraded (WebSocket) connection (default 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    pub tunnel_idle: Option<String>,
}

/// The proxy's access log.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessLogSettings {
    /// Write one JSON line per request on stdout; an Ingress turns its own lines off with
    /// `nginx.ingress.kubernetes.io/enable-access-log: "false"`. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// ingress-nginx compatibility of the instance.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngressNginxSettings {
    /// `nginx.ingress.kubernetes.io/*` annotations (names without the prefix, e.g.
    /// `auth-snippet`) that decide who may reach an app and are not supported yet, which this
    /// instance serves anyway, ignoring them. By default an Ingress carrying one is not
    /// served at all (fail closed); list one here only when its protection is not needed
    /// or is provided elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        inner(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))
    )]
    pub accept_risk: Option<Vec<String>>,
}

/// TLS to backends. A Service names its CA with the annotation
/// `portico.dev/backend-tls-ca-secret` (a Secret in its namespace, key `ca.crt`) and may
/// set the verified name with `portico.dev/backend-tls-server-name` (default
/// `<service>.<namespace>.svc`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackendTlsSettings {
    /// Reach backends that name no CA without verifying their certificate (default true,
    /// as ingress-nginx; each such Ingress gets a Warning Event). `false`: such Ingresses
    /// are not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_unverified: Option<bool>,
}

/// Request hardening of the instance. The defaults are the safe ones; each setting loosens
/// one rule for apps that need it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpSettings {
    /// Every connection to the HTTP and HTTPS ports opens with a PROXY protocol header
    /// (v1 or v2) from the load balancer in front, naming the client; a connection without
    /// a valid header is closed. Turn it on only when nothing but that load balancer can
    /// reach the proxy pods (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<bool>,
    /// `Reject` (default): a path holding `%2F`, `%5C` or a backslash gets 400. `Keep`:
    /// they are passed on as they are, encoded, and never treated as separators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoded_slashes: Option<EncodedSlashes>,
    /// `Drop` (default): request headers whose names hold `_` are removed, so a backend
    /// that folds `_` into `-` cannot be handed a forged `X_Forwarded_For`. `Keep`: passed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_with_underscores: Option<UnderscoreHeaders>,
    /// Largest request body, in ingress-nginx's syntax: bytes with an optional `k`, `m` or
    /// `g` suffix; `0` is no limit (default `1m`, as ingress-nginx). 413 beyond it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,12}[kKmMgG]?$"))]
    pub max_request_body_size: Option<String>,
    /// Open downstream connections per proxy pod (default 16384); beyond it a new
    /// connection is closed at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_connections: Option<i32>,
    /// Upstream connections in use (requests in flight) per backend endpoint and proxy pod
    /// (default 1024); a request beyond it waits up to the connect timeout, then gets 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_connections_per_endpoint: Option<i32>,
    /// Concurrent streams per downstream HTTP/2 connection (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10_000))]
    pub http2_max_concurrent_streams: Option<i32>,
    /// Initial flow-control window of a downstream HTTP/2 stream in bytes (default 65536).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 65_535, max = 16_777_216))]
    pub http2_initial_stream_window_size: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum EncodedSlashes {
    #[default]
    Reject,
    Keep,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UnderscoreHeaders {
    #[default]
    Drop,
    Keep,
}

/// A HorizontalPodAutoscaler on CPU.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not exceed autoscaling.maxReplicas"))]
pub struct Autoscaling {
    /// Default 1.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Default 80.
    #[serde(
        default,
        rename = "targetCPUUtilizationPercentage",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: Option<i32>,
}

fn default_min_replicas() -> i32 {
    1
}

/// The PodDisruptionBudget: at most one of the two fields.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.minAvailable) && has(self.maxUnavailable))").message("set disruption.minAvailable or disruption.maxUnavailable, not both"))]
pub struct Disruption {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

/// Observed state of an instance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressControllerStatus {
    /// `Ready`, `Progressing`, `Degraded`, `ClassConflict`, `PolicyViolation`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The IngressClass this instance serves (or claims, under ClassConflict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_class_name: Option<String>,
    /// Ready proxy pods, from the Deployment.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Where the fleet is reachable, from the proxy Service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    /// Namespaces whose Ingresses this instance serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub served_namespaces: Vec<String>,
    /// Ingresses of this class that the proxies serve, at least in part.
    #[serde(default)]
    pub ingresses_served: i32,
    /// Ingresses of this class that are not served: in a namespace the instance may not
    /// serve, invalid, or losing every host+path to an older Ingress. Each has a Warning
    /// Event saying why.
    #[serde(default)]
    pub ingresses_rejected: i32,
    /// `nginx.ingress.kubernetes.io/*` annotations on served Ingresses that Portico does
    /// not honour (counted once per Ingress and annotation); each such Ingress has an
    /// `AnnotationsNotHonoured` Warning Event listing them.
    #[serde(default)]
    pub annotations_not_honoured: i32,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One address of the proxy Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// `LoadBalancerIP`, `LoadBalancerHostname`, `ClusterIP`.
    #[serde(rename = "type")]
    pub type_: String,
    pub value: String,
    /// Node ports, for NodePort Services (`http`, `https`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_ports: BTreeMap<String, i32>,
}

/// Condition types.
pub mod conditions {
    pub const READY: &str = "Ready";
    pub const PROGRESSING: &str = "Progressing";
    pub const DEGRADED: &str = "Degraded";
    pub const CLASS_CONFLICT: &str = "ClassConflict";
    /// The spec sets fields the tenant policy keeps for trusted namespaces.
    pub const POLICY_VIOLATION: &str = "PolicyViolation";
}

/// Resolved defaults: the only place defaults live.
impl IngressControllerSpec {
    pub const DEFAULT_REPLICAS: i32 = 2;

    /// Whether backends without a CA are reached unverified (`--backend-tls-allow-unverified`).
    pub fn backend_tls_allow_unverified(&self) -> bool {
        self.backend_tls
            .as_ref()
            .and_then(|b| b.allow_unverified)
            .unwrap_or(true)
    }

    /// The IngressClass name: `spec.ingressClassName`, else the instance name.
    pub fn class_name<'a>(&'a self, instance_name: &'a str) -> &'a str {
        self.ingress_class_name.as_deref().unwrap_or(instance_name)
    }
    pub fn is_default_class(&self) -> bool {
        self.default_class.unwrap_or(false)
    }
    pub fn ports(&self) -> Ports {
        self.ports.clone().unwrap_or_default()
    }
    pub fn service_type(&self) -> ServiceType {
        self.service
            .as_ref()
            .and_then(|s| s.type_)
            .unwrap_or_default()
    }
    /// The proxy's `--load-balance` (docs/contracts.md).
    pub fn load_balance(&self) -> portico_ingress::LoadBalance {
        use portico_ingress::LoadBalance;
        let lb = self.load_balancing.clone().unwrap_or_default();
        match (lb.algorithm.unwrap_or_default(), lb.hash_on) {
            (Algorithm::RoundRobin, _) => LoadBalance::RoundRobin,
            (Algorithm::LeastRequest, _) => LoadBalance::LeastRequest,
            (Algorithm::ConsistentHash, Some(HashOn::ClientIp)) => LoadBalance::ClientIp,
            (Algorithm::ConsistentHash, Some(HashOn::Header)) => LoadBalance::Header(
                lb.header_name
                    .unwrap_or_else(|| "X-Portico-Hash".to_owned()),
            ),
            // The schema requires hashOn with ConsistentHash; a cookie is the safe default.
            (Algorithm::ConsistentHash, Some(HashOn::Cookie) | None) => LoadBalance::Cookie,
        }
    }
    pub fn connect_timeout(&self) -> &str {
        self.timeouts
            .as_ref()
            .and_then(|t| t.connect.as_deref())
            .unwrap_or("5s")
    }
    pub fn request_timeout(&self) -> &str {
        self.timeouts
            .as_ref()
            .and_then(|t| t.request.as_deref())
            .unwrap_or("60s")
    }
    pub fn idle_timeout(&self) -> &str {
        self.timeouts
            .as_ref()
            .and_then(|t| t.idle.as_deref())
            .unwrap_or("60s")
    }
    pub fn retries(&self) -> i32 {
        self.retries.unwrap_or(2)
    }
    pub fn default_certificate_secret(&self) -> Option<&str> {
        self.tls
            .as_ref()
            .and_then(|t| t.default_certificate_secret.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxy_parses_every_duration_form_the_schema_admits() {
        // DURATION_PATTERN is `^([0-9]+(ms|s|m|h))+$`: one or more number-unit pairs.
        assert_eq!(DURATION_PATTERN, r"^([0-9]+(ms|s|m|h))+$");
        for ok in [
            "250ms",
            "5s",
            "2m",
            "1h",
            "1h30m",
            "1s500ms",
            "0s",
            "99999999999h",
        ] {
            assert!(ok.parse::<portico_ingress::Duration>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn load_balance_follows_contract() {
        let mut spec = IngressControllerSpec::default();
        assert_eq!(spec.load_balance().to_string(), "round-robin");
        spec.load_balancing = Some(LoadBalancing {
            algorithm: Some(Algorithm::ConsistentHash),
            hash_on: Some(HashOn::Header),
            header_name: Some("X-User".into()),
        });
        assert_eq!(spec.load_balance().to_string(), "header:X-User");
    }

    #[test]
    fn empty_spec_deserializes() {
        let spec: IngressControllerSpec = serde_json::from_str("{}").expect("empty spec");
        assert_eq!(spec, IngressControllerSpec::default());
    }
}
