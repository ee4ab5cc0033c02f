//! `build()`: the store in, a `Snapshot` out. No IO. A bad Ingress is skipped (with a
//! warning naming it); the others are served. The oldest Ingress wins a host+path conflict.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use kube::ResourceExt;

use super::store::Store;
use super::{ObjectKey, Snapshot};
use crate::lb::{Backend, BackendKey, Policy};
use crate::routing::{
    HostPattern, PathKind, PathMatch, PathRule, Route, RouteBackend, RouteTable, UpstreamProtocol,
};
use crate::tls::{CertCache, CertTable};

pub const LOAD_BALANCE_ANNOTATION: &str = "portico.dev/load-balance";
pub const SSL_REDIRECT_ANNOTATION: &str = "portico.dev/ssl-redirect";
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// More paths than this in one Ingress and it is skipped as hostile.
pub const MAX_PATHS_PER_INGRESS: usize = 1000;

/// Build settings from the command line.
#[derive(Debug, Clone)]
pub struct Params {
    pub class_name: String,
    pub namespaces: BTreeSet<String>,
    pub default_policy: Policy,
    pub ssl_redirect: bool,
    pub default_certificate: Option<ObjectKey>,
}

/// State kept between builds so that builds stay cheap and endpoints stay shared.
#[derive(Debug, Default)]
pub struct Caches {
    pub backends: Backends,
    pub certs: CertCache,
    /// Metric handles by (Ingress, Service): resolving labels is most of a build's cost.
    route_metrics: HashMap<(ObjectKey, String), crate::metrics::RouteMetrics>,
}

/// The result of one build: the snapshot and the warnings to log.
#[derive(Debug)]
pub struct Output {
    pub snapshot: Snapshot,
    pub warnings: Vec<String>,
}

/// Shared backends by Service: `Arc<Backend>` survives rebuilds, so endpoint churn only
/// swaps endpoint sets.
#[derive(Debug, Default)]
pub struct Backends {
    by_service: HashMap<ObjectKey, HashMap<String, Arc<Backend>>>,
}

impl Backends {
    fn get_or_create(&mut self, store: &Store, key: BackendKey) -> Arc<Backend> {
        let svc = ObjectKey::new(&key.namespace, &key.service);
        let ports = self.by_service.entry(svc.clone()).or_default();
        if let Some(b) = ports.get(&key.port_name) {
            return b.clone();
        }
        let backend = Arc::new(Backend::new(key.clone()));
        let (addrs, terminating) = endpoints_for(store, &svc, &key.port_name);
        backend.update(addrs, terminating);
        crate::metrics::set_backend_endpoints(&backend);
        ports.insert(key.port_name, backend.clone());
        backend
    }

    /// Recomputes the endpoint sets of one Service's backends from the store.
    pub fn refresh(&self, store: &Store, service: &ObjectKey) -> bool {
        let mut changed = false;
        for (port_name, backend) in self.by_service.get(service).into_iter().flatten() {
            let (addrs, terminating) = endpoints_for(store, service, port_name);
            if backend.update(addrs, terminating) {
                crate::metrics::set_backend_endpoints(backend);
                changed = true;
            }
        }
        changed
    }

    fn retain(&mut self, used: &BTreeSet<BackendKey>) {
        for (svc, ports) in self.by_service.iter_mut() {
            ports.retain(|port, b| {
                let keep = used.contains(&BackendKey::new(&svc.namespace, &svc.name, port));
                if !keep {
                    crate::metrics::remove_backend_endpoints(b);
                }
                keep
            });
        }
        self.by_service.retain(|_, ports| !ports.is_empty());
    }
}

/// The endpoints of one Service port: `ready` ones, else serving-and-terminating ones.
pub fn endpoints_for(
    store: &Store,
    service: &ObjectKey,
    port_name: &str,
) -> (Vec<SocketAddr>, bool) {
    let mut ready = Vec::new();
    let mut terminating = Vec::new();
    for slice in store.slices_of(service) {
        if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
            continue;
        }
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| {
                p.name.as_deref().unwrap_or("") == port_name
                    && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
            })
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in &slice.endpoints {
            let cond = ep.conditions.clone().unwrap_or_default();
            let is_ready = cond.ready.unwrap_or(true);
            let is_serving = cond.serving.unwrap_or(is_ready);
            let is_terminating = cond.terminating.unwrap_or(false);
            for a in &ep.addresses {
                let Ok(ip) = a.parse::<IpAddr>() else {
                    continue;
                };
                let addr = SocketAddr::new(ip, port);
                if is_ready {
                    ready.push(addr);
                } else if is_serving && is_terminating {
                    terminating.push(addr);
                }
            }
        }
    }
    if ready.is_empty() && !terminating.is_empty() {
        (terminating, true)
    } else {
        (ready, false)
    }
}

/// Whether this instance serves the Ingress: `spec.ingressClassName`, then the legacy
/// annotation, class-less only when our class is the cluster default.
pub fn is_our_class(ing: &Ingress, params: &Params, store: &Store) -> bool {
    if let Some(class) = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
    {
        return class == params.class_name;
    }
    if let Some(class) = ing.annotations().get(LEGACY_CLASS_ANNOTATION) {
        return *class == params.class_name;
    }
    store
        .ingress_classes
        .get(&params.class_name)
        .and_then(|c| c.annotations().get(DEFAULT_CLASS_ANNOTATION).cloned())
        .is_some_and(|v| v == "true")
}

/// One Ingress, compiled but not yet inserted.
struct Compiled {
    rules: Vec<(HostPattern, PathRule)>,
    default: Option<Arc<Route>>,
    tls: Vec<(HostPattern, ObjectKey)>,
}

pub fn build(store: &Store, params: &Params, caches: &mut Caches, generation: u64) -> Output {
    let mut warnings = Vec::new();
    let mut table = RouteTable::default();
    let mut certs = CertTable::default();
    let mut used_backends = BTreeSet::new();
    let mut referenced_secrets = BTreeSet::new();
    let (mut served, mut skipped) = (0, 0);

    // Oldest first: creationTimestamp, then namespace/name.
    let mut ingresses: Vec<(&ObjectKey, &Ingress)> = store
        .ingresses
        .iter()
        .filter(|(k, ing)| {
            params.namespaces.contains(&k.namespace) && is_our_class(ing, params, store)
        })
        .collect();
    ingresses.sort_by(|(ka, a), (kb, b)| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
            .then(ka.cmp(kb))
    });

    for (key, ing) in ingresses {
        // Secrets are referenced (watched) even when the Ingress turns out bad, so fixing
        // them heals it.
        for tls in ing.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
            if let Some(name) = tls.secret_name.as_deref().filter(|n| !n.is_empty()) {
                referenced_secrets.insert(ObjectKey::new(&key.namespace, name));
            }
        }
        let compiled = match compile(key, ing, store, params, caches, &mut used_backends) {
            Ok(c) => c,
            Err(reason) => {
                warnings.push(format!("Ingress {key} skipped: {reason}"));
                skipped += 1;
                continue;
            }
        };
        served += 1;
        for (host, rule) in compiled.rules {
            let path = rule.path.clone();
            if let Err(winner) = table.host_rules_mut(&host).insert(rule)
                && winner.ingress != *key
            {
                warnings.push(format!(
                    "Ingress {key}: host {host} path {:?} ({:?}) conflicts with older Ingress {}; not served",
                    path.as_str(),
                    path.kind,
                    winner.ingress
                ));
            }
        }
        if let Some(route) = compiled.default
            && let Err(winner) = table.set_default_backend(route)
        {
            warnings.push(format!(
                "Ingress {key}: defaultBackend ignored, older Ingress {} has one",
                winner.ingress
            ));
        }
        for (host, secret_key) in compiled.tls {
            let Some(secret) = store.secrets.get(&secret_key) else {
                warnings.push(format!(
                    "Ingress {key}: TLS Secret {secret_key} not found (or not readable); host {host} gets the default certificate"
                ));
                continue;
            };
            match caches.certs.get(&secret_key, secret) {
                Ok(ck) => {
                    let map = match &host {
                        HostPattern::Exact(h) => Some((&mut certs.exact, h)),
                        HostPattern::Wildcard(s) => Some((&mut certs.wildcard, s)),
                        HostPattern::Any => None,
                    };
                    if let Some((map, h)) = map {
                        map.entry(h.clone()).or_insert(ck);
                    }
                }
                Err(e) => warnings.push(format!(
                    "Ingress {key}: TLS Secret {secret_key} is invalid ({e}); host {host} gets the default certificate"
                )),
            }
        }
    }
    table.finish();

    if let Some(dc) = &params.default_certificate {
        referenced_secrets.insert(dc.clone());
        match store.secrets.get(dc) {
            Some(secret) => match caches.certs.get(dc, secret) {
                Ok(ck) => certs.default = Some(ck),
                Err(e) => warnings.push(format!("default certificate Secret {dc} is invalid: {e}")),
            },
            None => warnings.push(format!(
                "default certificate Secret {dc} not found (or not readable)"
            )),
        }
    }

    caches.backends.retain(&used_backends);
    caches.certs.retain(|k| referenced_secrets.contains(k));
    // Forget handles of Ingresses that are gone (their exported series stay, as counters do).
    let live: std::collections::HashSet<&ObjectKey> = store.ingresses.keys().collect();
    caches
        .route_metrics
        .retain(|(ing, _), _| live.contains(ing));

    Output {
        snapshot: Snapshot {
            generation,
            routes: table,
            certs,
            ingresses_served: served,
            ingresses_skipped: skipped,
            referenced_secrets,
        },
        warnings,
    }
}

fn compile(
    key: &ObjectKey,
    ing: &Ingress,
    store: &Store,
    params: &Params,
    caches: &mut Caches,
    used_backends: &mut BTreeSet<BackendKey>,
) -> Result<Compiled, String> {
    let empty_spec = Default::default();
    let spec = ing.spec.as_ref().unwrap_or(&empty_spec);
    let annotations = ing.annotations();
    let policy = match annotations.get(LOAD_BALANCE_ANNOTATION) {
        Some(v) => v
            .parse::<Policy>()
            .map_err(|e| format!("annotation {LOAD_BALANCE_ANNOTATION}: {e}"))?,
        None => params.default_policy.clone(),
    };
    let ssl_redirect = match annotations.get(SSL_REDIRECT_ANNOTATION).map(|s| s.trim()) {
        None => params.ssl_redirect,
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(format!(
                "annotation {SSL_REDIRECT_ANNOTATION}: {other:?} is not \"true\" or \"false\""
            ));
        }
    };

    let rules: &[k8s_openapi::api::networking::v1::IngressRule] =
        spec.rules.as_deref().unwrap_or_default();
    let path_count: usize = rules
        .iter()
        .map(|r| r.http.as_ref().map_or(0, |h| h.paths.len()))
        .sum();
    if path_count > MAX_PATHS_PER_INGRESS {
        return Err(format!(
            "{path_count} paths, more than the limit of {MAX_PATHS_PER_INGRESS}"
        ));
    }

    // TLS hosts of this Ingress; an entry without hosts covers all its rule hosts.
    let mut tls = Vec::new();
    for t in spec.tls.iter().flatten() {
        let secret = t
            .secret_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .map(|n| ObjectKey::new(&key.namespace, n));
        let hosts: Vec<String> = match &t.hosts {
            Some(h) if !h.is_empty() => h.clone(),
            _ => rules.iter().filter_map(|r| r.host.clone()).collect(),
        };
        for h in hosts {
            let host = HostPattern::parse(&h).map_err(|e| format!("spec.tls: {e}"))?;
            if let Some(s) = &secret {
                tls.push((host, s.clone()));
            } else {
                tls.push((host, ObjectKey::new(&key.namespace, "")));
            }
        }
    }
    let has_tls = |host: &HostPattern| -> bool {
        tls.iter().any(|(t, _)| match (t, host) {
            (HostPattern::Any, _) | (_, HostPattern::Any) => false,
            (t, HostPattern::Exact(h)) => t.matches(h),
            (t, h) => t == h,
        })
    };

    let mut routes: HashMap<(String, String), Arc<Route>> = HashMap::new();
    let mut route_for = |backend: &IngressBackend,
                         https_redirect: bool|
     -> Result<Arc<Route>, String> {
        let svc_backend = backend
            .service
            .as_ref()
            .ok_or("backend without service (resource backends are not supported)")?;
        let port = svc_backend
            .port
            .as_ref()
            .ok_or_else(|| format!("backend service {} has no port", svc_backend.name))?;
        let port_label = match (&port.name, port.number) {
            (Some(n), _) if !n.is_empty() => n.clone(),
            (_, Some(n)) => n.to_string(),
            _ => {
                return Err(format!(
                    "backend service {} port has neither name nor number",
                    svc_backend.name
                ));
            }
        };
        if let Some(r) = routes.get(&(
            svc_backend.name.clone(),
            format!("{port_label}/{https_redirect}"),
        )) {
            return Ok(r.clone());
        }
        let svc_key = ObjectKey::new(&key.namespace, &svc_backend.name);
        let svc = store
            .services
            .get(&svc_key)
            .ok_or_else(|| format!("Service {svc_key} not found"))?;
        if svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            return Err(format!(
                "Service {svc_key} is of type ExternalName, which is not served"
            ));
        }
        let (port_name, app_protocol) =
            resolve_service_port(svc, port.name.as_deref(), port.number)
                .ok_or_else(|| format!("Service {svc_key} has no port {port_label}"))?;
        let bkey = BackendKey::new(&key.namespace, &svc_backend.name, &port_name);
        used_backends.insert(bkey.clone());
        let backend = caches.backends.get_or_create(store, bkey);
        let route = Arc::new(Route {
            ingress: key.clone(),
            service: svc_backend.name.clone(),
            backends: vec![RouteBackend {
                backend,
                protocol: UpstreamProtocol::from_app_protocol(app_protocol.as_deref()),
                weight: 1,
            }],
            policy: policy.clone(),
            https_redirect,
            metrics: caches
                .route_metrics
                .entry((key.clone(), svc_backend.name.clone()))
                .or_insert_with(|| {
                    crate::metrics::RouteMetrics::new(&key.namespace, &key.name, &svc_backend.name)
                })
                .clone(),
        });
        routes.insert(
            (
                svc_backend.name.clone(),
                format!("{port_label}/{https_redirect}"),
            ),
            route.clone(),
        );
        Ok(route)
    };

    let mut compiled_rules = Vec::new();
    for rule in rules {
        let host = HostPattern::parse(rule.host.as_deref().unwrap_or(""))?;
        let redirect = ssl_redirect && has_tls(&host);
        for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
            let kind = PathKind::parse(&p.path_type)?;
            let path = PathMatch::new(kind, p.path.as_deref().unwrap_or("/"))?;
            let route = route_for(&p.backend, redirect)?;
            compiled_rules.push((
                host.clone(),
                PathRule {
                    path,
                    headers: vec![],
                    route,
                },
            ));
        }
    }
    let default = match &spec.default_backend {
        Some(b) => Some(route_for(b, false)?),
        None => None,
    };
    let tls = tls
        .into_iter()
        .filter(|(_, s)| !s.name.is_empty())
        .collect();
    Ok(Compiled {
        rules: compiled_rules,
        default,
        tls,
    })
}

/// Finds the Service port an Ingress names (by name or number); returns its name (`""` if
/// unnamed, which is how EndpointSlice ports match) and appProtocol.
fn resolve_service_port(
    svc: &Service,
    name: Option<&str>,
    number: Option<i32>,
) -> Option<(String, Option<String>)> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let port = spec
        .ports
        .iter()
        .flatten()
        .find(|p| match name.filter(|n| !n.is_empty()) {
            Some(n) => p.name.as_deref() == Some(n),
            None => Some(p.port) == number,
        })?;
    Some((
        port.name.clone().unwrap_or_default(),
        port.app_protocol.clone(),
    ))
}

#[cfg(test)]
mod tests;
