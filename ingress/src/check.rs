//! `check()`: one Ingress, with the Services of its namespace, in; its typed rules or the
//! reasons it cannot be served out. An Ingress with any problem is not served at all (a
//! half-served Ingress would be harder to notice than a missing one).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressSpec};

use crate::host::HostPattern;
use crate::judge::SHARE_HOST_ANNOTATION;
use crate::load_balance::LoadBalance;
use crate::path::{PathKind, PathMatch};

pub const LOAD_BALANCE_ANNOTATION: &str = "portico.dev/load-balance";
pub const SSL_REDIRECT_ANNOTATION: &str = "portico.dev/ssl-redirect";
/// More paths than this in one Ingress and it is rejected as hostile.
pub const MAX_PATHS_PER_INGRESS: usize = 1000;
/// At most this many distinct problems are reported per Ingress (each becomes an Event).
pub const MAX_PROBLEMS: usize = 10;

/// Bounds on what one Ingress may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_paths: usize,
    /// `appProtocol: https` backends without a CA bundle are served, their certificate
    /// unverified (the instance's `backendTLS.allowUnverified`). When false, such a backend
    /// makes its Ingress unservable: a backend no one can authenticate is not reached.
    pub allow_unverified_backend_tls: bool,
    /// ingress-nginx annotations (without the prefix) that would fail closed, which the
    /// instance serves anyway, ignoring them (`spec.ingressNginx.acceptRisk`).
    pub accept_risk: BTreeSet<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_paths: MAX_PATHS_PER_INGRESS,
            allow_unverified_backend_tls: true,
            accept_risk: BTreeSet::new(),
        }
    }
}

/// On a Service: the name the proxy sends as SNI and verifies the backend's certificate
/// against (default: the Service's cluster DNS name, `<service>.<namespace>.svc`).
pub const BACKEND_TLS_SERVER_NAME_ANNOTATION: &str = "portico.dev/backend-tls-server-name";
/// On a Service: a Secret in the Service's namespace whose `ca.crt` verifies the backend.
pub const BACKEND_TLS_CA_ANNOTATION: &str = "portico.dev/backend-tls-ca-secret";
/// On a Service: a ConfigMap in the Service's namespace whose `ca.crt` verifies the backend
/// (`kube-root-ca.crt` for certificates the cluster CA signed; trust-manager bundles).
pub const BACKEND_TLS_CA_CONFIGMAP_ANNOTATION: &str = "portico.dev/backend-tls-ca-configmap";

/// Whether a Service port's `appProtocol` asks for TLS to the backend.
pub fn is_tls_app_protocol(app_protocol: Option<&str>) -> bool {
    matches!(
        app_protocol.map(str::to_ascii_lowercase).as_deref(),
        Some("https") | Some("kubernetes.io/https")
    )
}

/// Why an Ingress cannot be served. The text is what users read in Events and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
pub enum Problem {
    #[error("annotation {LOAD_BALANCE_ANNOTATION}: {0}")]
    LoadBalanceAnnotation(String),
    #[error("annotation {SSL_REDIRECT_ANNOTATION}: {0:?} is not \"true\" or \"false\"")]
    SslRedirectAnnotation(String),
    #[error("annotation {SHARE_HOST_ANNOTATION}: {0:?} is not a namespace name")]
    ShareHostAnnotation(String),
    #[error("annotation {}{name}: {reason}", crate::nginx::NGINX_PREFIX)]
    NginxAnnotation { name: String, reason: String },
    #[error("{count} paths, more than the limit of {limit}")]
    TooManyPaths { count: usize, limit: usize },
    #[error("invalid host {0:?}")]
    InvalidHost(String),
    #[error("spec.tls: invalid host {0:?}")]
    InvalidTlsHost(String),
    #[error("unknown pathType {0:?}")]
    UnknownPathType(String),
    #[error("path {0:?} must start with '/'")]
    PathNotAbsolute(String),
    #[error("path longer than {0} bytes")]
    PathTooLong(usize),
    #[error("path {0:?} contains {1:?}")]
    PathCharacter(String, char),
    #[error("path {0:?} contains {1:?}: regular expressions are not supported")]
    RegexPath(String, char),
    #[error("path {0:?} is not a regular expression Portico can use: {1}")]
    RegexPathInvalid(String, String),
    #[error("backend without service (resource backends are not supported)")]
    ResourceBackend,
    #[error("backend service {0} has no port")]
    NoPort(String),
    #[error("backend service {0} port has neither name nor number")]
    PortWithoutNameOrNumber(String),
    #[error("Service {0} not found")]
    ServiceNotFound(String),
    #[error("Service {0} is of type ExternalName, which is not served")]
    ExternalName(String),
    #[error("Service {service} has no port {port}")]
    UnknownPort { service: String, port: String },
    #[error(
        "Service {0}: annotation {BACKEND_TLS_SERVER_NAME_ANNOTATION} is not a DNS name: {1:?}"
    )]
    BackendTlsServerName(String, String),
    #[error("Service {service}: annotation {annotation} is not an object name: {value:?}")]
    BackendTlsCa {
        service: String,
        annotation: &'static str,
        value: String,
    },
    #[error(
        "Service {0}: set {BACKEND_TLS_CA_ANNOTATION} or {BACKEND_TLS_CA_CONFIGMAP_ANNOTATION}, not both"
    )]
    BackendTlsCaTwice(String),
    #[error(
        "Service {0} is reached over TLS without a CA to verify it ({BACKEND_TLS_CA_ANNOTATION}), and this instance does not allow unverified backend TLS"
    )]
    UnverifiedBackendTls(String),
}

/// A servable Ingress, typed: what the proxy turns into routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The `portico.dev/load-balance` annotation, else ingress-nginx's, when set.
    pub load_balance: Option<LoadBalance>,
    /// The `portico.dev/ssl-redirect` annotation, else ingress-nginx's, when set.
    pub ssl_redirect: Option<bool>,
    /// ingress-nginx's `force-ssl-redirect`: 308 to HTTPS whether the host has TLS or not.
    pub force_ssl_redirect: bool,
    /// ingress-nginx's `default-backend` (resolved on the Service's first port) and the
    /// statuses it answers instead of the rule's backend (`custom-http-errors`).
    pub error_backend: Option<Backend>,
    pub custom_http_errors: Vec<u16>,
    /// ingress-nginx's source ranges: which client addresses may reach it.
    pub source_ranges: crate::source_range::SourceRanges,
    /// ingress-nginx's basic and external auth, rate limits, client certificates, satisfy.
    pub auth: Arc<crate::auth::Auth>,
    /// Set when this is a canary Ingress: its rules take part of the traffic of the
    /// primary Ingress of the same host and path (the judgement pairs them).
    pub canary: Option<crate::nginx::Canary>,
    /// ingress-nginx annotations Portico does not honour (the Ingress is served without
    /// them; an Event lists them).
    pub not_honoured: Vec<crate::nginx::AnnotationVerdict>,
    /// ingress-nginx's body size, timeout, retry and access log annotations.
    pub traffic: Arc<crate::traffic::Traffic>,
    /// ingress-nginx's routing annotations: regex paths, rewrite, redirects, upstream
    /// Host and prefix. With regex paths, `rules` hold `PathKind::Regex` matches.
    pub nginx_routing: Arc<crate::nginx::Routing>,
    /// One per path, in spec order.
    pub rules: Vec<Rule>,
    pub default_backend: Option<Backend>,
    /// Hosts with TLS; an entry without hosts covers all rule hosts. `secret` is `None`
    /// when `secretName` is empty (the host still counts as TLS for redirects).
    pub tls: Vec<TlsHost>,
}

impl Checked {
    /// The backends it is served for: each rule's, then the default backend.
    pub fn backends(&self) -> impl Iterator<Item = &Backend> {
        self.rules
            .iter()
            .map(|r| &r.backend)
            .chain(self.default_backend.iter())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub host: HostPattern,
    pub path: PathMatch,
    pub backend: Backend,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsHost {
    pub host: HostPattern,
    pub secret: Option<String>,
}

/// A Service port an Ingress names, resolved against the Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// The Service's name (in the Ingress's namespace).
    pub service: String,
    /// The port as the Ingress names it: its name, else its number.
    pub port_label: String,
    /// The Service port's name (`""` if unnamed, which is how EndpointSlice ports match).
    pub port_name: String,
    pub app_protocol: Option<String>,
    /// For `appProtocol: https`: how the backend's certificate is checked.
    pub tls: Option<BackendTls>,
}

/// TLS to a backend: the SNI sent and verified, and where (same namespace) the CA bundle
/// that verifies it lives; `None`: not verified (allowed by the instance).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendTls {
    pub server_name: String,
    pub ca: Option<CaSource>,
}

/// An object holding a CA bundle under the key `ca.crt`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CaSource {
    Secret(String),
    ConfigMap(String),
}

/// The problems of `ingress`; empty when it can be served. `services` finds a Service of
/// the Ingress's namespace by name.
pub fn validate<'s>(
    ingress: &Ingress,
    services: impl Fn(&str) -> Option<&'s Service>,
    limits: &Limits,
) -> Vec<Problem> {
    check(ingress, services, limits).err().unwrap_or_default()
}

/// `ingress` typed and resolved, or every distinct problem (at most [`MAX_PROBLEMS`]).
pub fn check<'s>(
    ingress: &Ingress,
    services: impl Fn(&str) -> Option<&'s Service>,
    limits: &Limits,
) -> Result<Checked, Vec<Problem>> {
    let namespace = ingress.metadata.namespace.as_deref().unwrap_or_default();
    let mut problems = Problems::default();
    let empty_spec = IngressSpec::default();
    let spec = ingress.spec.as_ref().unwrap_or(&empty_spec);
    let annotation = |key: &str| {
        ingress
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
    };

    let load_balance = match annotation(LOAD_BALANCE_ANNOTATION).map(|v| v.parse()) {
        None => None,
        Some(Ok(lb)) => Some(lb),
        Some(Err(e)) => {
            problems.push(Problem::LoadBalanceAnnotation(e));
            None
        }
    };
    let ssl_redirect = match annotation(SSL_REDIRECT_ANNOTATION).map(|s| s.trim()) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            problems.push(Problem::SslRedirectAnnotation(other.to_string()));
            None
        }
    };

    if let Err(p) = crate::judge::share_host_with(ingress) {
        problems.push(p);
    }
    let nginx = crate::nginx::read(ingress, &limits.accept_risk);
    for p in nginx.refusals.iter().cloned() {
        problems.push(p);
    }
    let load_balance = load_balance.or_else(|| nginx.settings.load_balance.clone());
    let ssl_redirect = ssl_redirect.or(nginx.settings.ssl_redirect);
    let app_protocol = nginx.settings.app_protocol;
    // ingress-nginx: with use-regex or a rewrite target, every path is a regex, whatever
    // its pathType (`location ~* "^<path>"`).
    let regex_paths = nginx.settings.routing.regex_paths();

    let rules = spec.rules.as_deref().unwrap_or_default();
    let path_count: usize = rules
        .iter()
        .map(|r| r.http.as_ref().map_or(0, |h| h.paths.len()))
        .sum();
    if path_count > limits.max_paths {
        // Looking further into a hostile Ingress is work it should not get to cause.
        problems.push(Problem::TooManyPaths {
            count: path_count,
            limit: limits.max_paths,
        });
        return Err(problems.0);
    }

    let mut tls = Vec::new();
    for t in spec.tls.iter().flatten() {
        let secret = t
            .secret_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let hosts: Vec<&str> = match &t.hosts {
            Some(h) if !h.is_empty() => h.iter().map(String::as_str).collect(),
            _ => rules.iter().filter_map(|r| r.host.as_deref()).collect(),
        };
        for h in hosts {
            match HostPattern::parse(h) {
                Ok(host) => tls.push(TlsHost {
                    host,
                    secret: secret.clone(),
                }),
                Err(Problem::InvalidHost(h)) => problems.push(Problem::InvalidTlsHost(h)),
                Err(other) => problems.push(other),
            }
        }
    }

    // Resolved once per (Service, port) however many paths name it.
    let mut resolved: HashMap<(String, String), Result<Backend, Problem>> = HashMap::new();
    let mut backend = |b: &IngressBackend| -> Result<Backend, Problem> {
        let key = (
            b.service
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default(),
            b.service
                .as_ref()
                .and_then(|s| s.port.as_ref())
                .map(|p| format!("{:?}/{:?}", p.name, p.number))
                .unwrap_or_default(),
        );
        resolved
            .entry(key)
            .or_insert_with(|| resolve(namespace, b, &services, limits, app_protocol))
            .clone()
    };

    let mut checked_rules = Vec::with_capacity(path_count);
    for rule in rules {
        let host = HostPattern::parse(rule.host.as_deref().unwrap_or(""));
        if let Err(p) = &host {
            problems.push(p.clone());
        }
        for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
            let path = PathKind::parse(&p.path_type).and_then(|kind| {
                let text = p.path.as_deref().unwrap_or("/");
                if regex_paths {
                    PathMatch::regex(text)
                } else {
                    PathMatch::new(kind, text)
                }
            });
            let backend = backend(&p.backend);
            match (&host, path, backend) {
                (Ok(host), Ok(path), Ok(backend)) => checked_rules.push(Rule {
                    host: host.clone(),
                    path,
                    backend,
                }),
                (_, path, backend) => {
                    problems.extend(path.err());
                    problems.extend(backend.err());
                }
            }
        }
    }
    // ingress-nginx's server-alias: the same rules for more hosts (host-less rules stay
    // host-less). The judgement applies host ownership to each alias like any host.
    if !nginx.settings.server_alias.is_empty() {
        let hosted: Vec<Rule> = checked_rules
            .iter()
            .filter(|r| !matches!(r.host, HostPattern::Any))
            .cloned()
            .collect();
        for alias in &nginx.settings.server_alias {
            checked_rules.extend(hosted.iter().map(|r| Rule {
                host: alias.clone(),
                ..r.clone()
            }));
        }
    }
    let default_backend = match spec.default_backend.as_ref().map(&mut backend) {
        None => None,
        Some(Ok(b)) => Some(b),
        Some(Err(p)) => {
            problems.push(p);
            None
        }
    };

    // ingress-nginx's default-backend: the named Service on its first port.
    let error_backend = match nginx.settings.default_backend.as_deref() {
        None => None,
        Some(name) => {
            let first_port = services(name)
                .and_then(|svc| svc.spec.as_ref()?.ports.as_ref()?.first().map(|p| p.port));
            let named = k8s_openapi::api::networking::v1::IngressBackend {
                service: Some(k8s_openapi::api::networking::v1::IngressServiceBackend {
                    name: name.to_owned(),
                    port: Some(k8s_openapi::api::networking::v1::ServiceBackendPort {
                        number: Some(first_port.unwrap_or(0)),
                        name: None,
                    }),
                }),
                resource: None,
            };
            match backend(&named) {
                Ok(b) => Some(b),
                Err(p) => {
                    problems.push(p);
                    None
                }
            }
        }
    };

    if !problems.0.is_empty() {
        return Err(problems.0);
    }
    Ok(Checked {
        load_balance,
        ssl_redirect,
        force_ssl_redirect: nginx.settings.force_ssl_redirect,
        canary: nginx.settings.canary.clone(),
        source_ranges: nginx.settings.source_ranges.clone(),
        auth: shared(nginx.settings.auth.clone(), &NO_AUTH),
        error_backend,
        custom_http_errors: nginx.settings.custom_http_errors.clone(),
        not_honoured: nginx.not_honoured().cloned().collect(),
        traffic: shared(nginx.settings.traffic, &NO_TRAFFIC),
        nginx_routing: shared(nginx.settings.routing, &NO_ROUTING),
        rules: checked_rules,
        default_backend,
        tls,
    })
}

/// `value` in an `Arc`, the one shared default when it is the default. The three parts of
/// [`Checked`] behind one say what ingress-nginx's auth, traffic and routing annotations
/// ask for; most Ingresses set none of them, and a remembered `Checked` per Ingress (at
/// 10,000 Ingresses) then takes 600 bytes instead of 1,400.
fn shared<T: Default + PartialEq>(value: T, default: &LazyLock<Arc<T>>) -> Arc<T> {
    if value == T::default() {
        Arc::clone(default)
    } else {
        Arc::new(value)
    }
}

static NO_AUTH: LazyLock<Arc<crate::auth::Auth>> = LazyLock::new(Arc::default);
static NO_TRAFFIC: LazyLock<Arc<crate::traffic::Traffic>> = LazyLock::new(Arc::default);
static NO_ROUTING: LazyLock<Arc<crate::nginx::Routing>> = LazyLock::new(Arc::default);

/// Distinct problems in the order found, at most [`MAX_PROBLEMS`].
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, p: Problem) {
        if self.0.len() < MAX_PROBLEMS && !self.0.contains(&p) {
            self.0.push(p);
        }
    }

    fn extend(&mut self, p: Option<Problem>) {
        if let Some(p) = p {
            self.push(p);
        }
    }
}

fn resolve<'s>(
    namespace: &str,
    backend: &IngressBackend,
    services: &impl Fn(&str) -> Option<&'s Service>,
    limits: &Limits,
    app_protocol: Option<&'static str>,
) -> Result<Backend, Problem> {
    let svc_backend = backend.service.as_ref().ok_or(Problem::ResourceBackend)?;
    let name = &svc_backend.name;
    let port = svc_backend
        .port
        .as_ref()
        .ok_or_else(|| Problem::NoPort(name.clone()))?;
    let port_label = match (&port.name, port.number) {
        (Some(n), _) if !n.is_empty() => n.clone(),
        (_, Some(n)) => n.to_string(),
        _ => return Err(Problem::PortWithoutNameOrNumber(name.clone())),
    };
    let svc =
        services(name).ok_or_else(|| Problem::ServiceNotFound(format!("{namespace}/{name}")))?;
    let svc_spec = svc.spec.as_ref();
    if svc_spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        return Err(Problem::ExternalName(format!("{namespace}/{name}")));
    }
    let wanted = port.name.as_deref().filter(|n| !n.is_empty());
    let found = svc_spec
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .find(|p| match wanted {
            Some(n) => p.name.as_deref() == Some(n),
            None => Some(p.port) == port.number,
        })
        .ok_or_else(|| Problem::UnknownPort {
            service: format!("{namespace}/{name}"),
            port: port_label.clone(),
        })?;
    // ingress-nginx's backend-protocol annotation overrides the port's appProtocol.
    let app_protocol = app_protocol
        .map(str::to_owned)
        .or_else(|| found.app_protocol.clone());
    let tls = if is_tls_app_protocol(app_protocol.as_deref()) {
        Some(backend_tls(namespace, name, svc, limits)?)
    } else {
        None
    };
    Ok(Backend {
        service: name.clone(),
        port_label,
        port_name: found.name.clone().unwrap_or_default(),
        app_protocol,
        tls,
    })
}

fn backend_tls(
    namespace: &str,
    name: &str,
    svc: &Service,
    limits: &Limits,
) -> Result<BackendTls, Problem> {
    let annotations = svc.metadata.annotations.as_ref();
    let server_name = match annotations.and_then(|a| a.get(BACKEND_TLS_SERVER_NAME_ANNOTATION)) {
        Some(n) => match HostPattern::parse(n) {
            Ok(HostPattern::Exact(h)) => h.to_string(),
            _ => {
                return Err(Problem::BackendTlsServerName(
                    format!("{namespace}/{name}"),
                    n.clone(),
                ));
            }
        },
        None => format!("{name}.{namespace}.svc"),
    };
    let named = |annotation: &'static str| -> Result<Option<String>, Problem> {
        match annotations.and_then(|a| a.get(annotation)) {
            Some(s) if is_object_name(s.trim()) => Ok(Some(s.trim().to_string())),
            Some(s) => Err(Problem::BackendTlsCa {
                service: format!("{namespace}/{name}"),
                annotation,
                value: s.clone(),
            }),
            None => Ok(None),
        }
    };
    let ca = match (
        named(BACKEND_TLS_CA_ANNOTATION)?,
        named(BACKEND_TLS_CA_CONFIGMAP_ANNOTATION)?,
    ) {
        (Some(_), Some(_)) => {
            return Err(Problem::BackendTlsCaTwice(format!("{namespace}/{name}")));
        }
        (Some(secret), None) => Some(CaSource::Secret(secret)),
        (None, Some(config_map)) => Some(CaSource::ConfigMap(config_map)),
        (None, None) => None,
    };
    if ca.is_none() && !limits.allow_unverified_backend_tls {
        return Err(Problem::UnverifiedBackendTls(format!("{namespace}/{name}")));
    }
    Ok(BackendTls { server_name, ca })
}

/// A DNS-1123 label, as namespace and Service names are.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain, as Secret names are.
pub(crate) fn is_object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests;
