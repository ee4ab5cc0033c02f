//! `build()`: the store in, a `Snapshot` out. No IO. What is served is
//! `portico_ingress::judge()`'s verdict (class, namespace, validity, host ownership,
//! conflicts), which the operator applies too, to publish the Events the proxy may not
//! write; this compiles the served rules and logs each rejection.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use portico_ingress::{
    BackendTls, CaSource, Checked, EndpointPolicy, IngressKey, Limits, Problem, Refusal, Scope,
    TenantPolicy, Usable,
};
use tracing::warn;

use http::HeaderValue;

use super::store::Store;
use super::{ObjectKey, Snapshot};
use crate::access::basic::Htpasswd;
use crate::access::{Access, Basic};
use crate::lb::{Backend, BackendKey, Policy};
use crate::routing::nginx::NginxRoute;
use crate::routing::{
    HeaderMatch, HostPattern, HostRules, PathRule, Route, RouteBackend, RouteTable,
    UpstreamProtocol,
};
use crate::tls::client_auth::ClientCertPolicy;
use crate::tls::{CertCache, CertTable};
use crate::upstream::tls::UpstreamTls;

pub use portico_ingress::{
    DEFAULT_CLASS_ANNOTATION, LEGACY_CLASS_ANNOTATION, LOAD_BALANCE_ANNOTATION,
    MAX_PATHS_PER_INGRESS, SSL_REDIRECT_ANNOTATION,
};

/// Build settings from the command line.
#[derive(Debug, Clone)]
pub struct Params {
    pub class_name: String,
    /// The IngressController's namespace: its Ingresses may hold the catch-alls.
    pub instance_namespace: String,
    pub namespaces: BTreeSet<String>,
    pub tenant_policy: TenantPolicy,
    pub default_policy: Policy,
    pub ssl_redirect: bool,
    pub default_certificate: Option<ObjectKey>,
    /// What one Ingress may ask for (`ProxyArgs::limits`).
    pub limits: Limits,
}

/// State kept between builds so that builds stay cheap and endpoints stay shared.
#[derive(Debug, Default)]
pub struct Caches {
    pub backends: Backends,
    pub certs: CertCache,
    /// Metric handles by (Ingress, Service): resolving labels is most of a build's cost.
    route_metrics: HashMap<(ObjectKey, String), crate::metrics::RouteMetrics>,
    /// Backend TLS configs by namespace, judgement and CA Secret resourceVersion, so that
    /// a build does not make a new rustls config per backend.
    /// Each entry keeps the generation of the last build that used it.
    upstream_tls: HashMap<UpstreamTlsKey, (Arc<UpstreamTls>, u64)>,
    generation: u64,
    /// Problems met while building TLS configs, handed to the build's warnings.
    tls_warnings: Vec<String>,
    /// Parsed htpasswd Secrets by key, resourceVersion and kind (file or map), so that a
    /// rebuild keeps a table and the credentials it has verified.
    htpasswd: HashMap<ObjectKey, (String, bool, Arc<Htpasswd>)>,
    /// The judgement's per-Ingress checks, kept while an Ingress and its Services stay
    /// the same: one changed Ingress among thousands is checked alone.
    judged: portico_ingress::Memo,
    /// Each served Ingress compiled, kept while the judgement serves it the same (the
    /// same `Arc<Checked>`) and nothing but Ingresses changed: one changed Ingress among
    /// thousands is compiled alone. (One `Caches` serves one `Params`.)
    compiled: HashMap<KeptId, Kept>,
    /// How many of `compiled` use each backend: a backend is dropped when the last kept
    /// compilation using it goes, unless a compilation that was not kept uses it.
    kept_uses: HashMap<BackendKey, usize>,
    /// Backends whose last kept user went since the last build, and those that the last
    /// build's unkept compilations used: the only ones a build may have left unused.
    maybe_unused: Vec<BackendKey>,
    /// [`Store::ingress_removals`] when the route metrics were last pruned.
    metrics_pruned_at: Option<u64>,
}

impl Caches {
    /// Keeps an Ingress's compilation, counting the backends it uses.
    fn keep(&mut self, kept: Kept) {
        for b in &kept.backends {
            *self.kept_uses.entry(b.clone()).or_default() += 1;
        }
        if let Some(old) = self.compiled.insert(kept_id(&kept.ingress), kept) {
            self.forget_uses(old);
        }
    }

    /// Stops keeping an Ingress's compilation.
    fn unkeep(&mut self, id: KeptId) {
        if let Some(old) = self.compiled.remove(&id) {
            self.forget_uses(old);
        }
    }

    fn forget_uses(&mut self, old: Kept) {
        for b in old.backends {
            if let Some(n) = self.kept_uses.get_mut(&b) {
                *n -= 1;
                if *n == 0 {
                    self.kept_uses.remove(&b);
                    self.maybe_unused.push(b);
                }
            }
        }
    }

    /// Drops the backends no compilation uses any more: those kept compilations stopped
    /// using, unless `loose` (this build's compilations that were not kept) uses them.
    fn drop_unused_backends(&mut self, loose: BTreeSet<BackendKey>) {
        for key in std::mem::take(&mut self.maybe_unused) {
            if !self.kept_uses.contains_key(&key) && !loose.contains(&key) {
                self.backends.remove(&key);
            }
        }
        // Next build, what only these used may have gone.
        self.maybe_unused.extend(loose);
    }
}

/// A kept compilation's key: the address of the judgement's `Arc<IngressKey>` for one
/// version of an Ingress (the memo's, the same while the Ingress is unchanged). [`Kept`]
/// holds that `Arc`, so the address names no other Ingress while the entry exists; a
/// lookup hashes a word instead of two names.
type KeptId = usize;

fn kept_id(ingress: &Arc<IngressKey>) -> KeptId {
    Arc::as_ptr(ingress) as KeptId
}

/// An Ingress's compiled routes, and what compiling them read, to be read again.
#[derive(Debug)]
struct Kept {
    ingress: Arc<IngressKey>,
    checked: Arc<Checked>,
    others: u64,
    compiled: Arc<Compiled>,
    backends: Vec<BackendKey>,
    referenced: Referenced,
    generation: u64,
}

/// The result of one build: the snapshot and the warnings to log.
#[derive(Debug)]
pub struct Output {
    pub snapshot: Snapshot,
    pub warnings: Vec<String>,
    /// Secrets the build read or wanted: the config loop watches exactly these, by name.
    pub referenced_secrets: BTreeSet<ObjectKey>,
    /// ConfigMaps the build read or wanted (backend CA bundles), watched the same way.
    pub referenced_config_maps: BTreeSet<ObjectKey>,
}

/// Shared backends by Service: `Arc<Backend>` survives rebuilds, so endpoint churn only
/// swaps endpoint sets.
#[derive(Debug, Default)]
pub struct Backends {
    by_service: HashMap<ObjectKey, HashMap<String, Arc<Backend>>>,
    /// Which endpoints are never dialled (portico-ingress's rule, with this pod's addresses
    /// and the platform's denied ranges).
    policy: EndpointPolicy,
    /// Per Service port, the endpoints refused at its last update: a refusal is logged when
    /// it appears, not at every endpoint change of the Service.
    refused: HashMap<BackendKey, BTreeSet<SocketAddr>>,
}

impl Backends {
    /// Backends that refuse what `policy` (and the fixed classes) refuse.
    pub fn with_policy(policy: EndpointPolicy) -> Self {
        Backends {
            policy,
            ..Backends::default()
        }
    }

    fn get_or_create(&mut self, store: &Store, key: BackendKey) -> Arc<Backend> {
        let svc = ObjectKey::new(&key.namespace, &key.service);
        if let Some(b) = self
            .by_service
            .get(&svc)
            .and_then(|ports| ports.get(&key.port_name))
        {
            return b.clone();
        }
        let backend = Arc::new(Backend::new(key.clone()));
        self.load(store, &svc, &backend);
        crate::metrics::set_backend_endpoints(&backend);
        self.by_service
            .entry(svc)
            .or_default()
            .insert(key.port_name, backend.clone());
        backend
    }

    /// Recomputes the endpoint sets of one Service's backends from the store.
    pub fn refresh(&mut self, store: &Store, service: &ObjectKey) -> bool {
        let backends: Vec<Arc<Backend>> = self
            .by_service
            .get(service)
            .into_iter()
            .flat_map(|ports| ports.values().cloned())
            .collect();
        let mut changed = false;
        for backend in backends {
            changed |= self.load(store, service, &backend);
        }
        changed
    }

    /// Sets one backend's endpoints from the store, minus the refused ones.
    fn load(&mut self, store: &Store, service: &ObjectKey, backend: &Backend) -> bool {
        let found = endpoints_for(store, service, &backend.key.port_name, &self.policy);
        let refused: BTreeSet<SocketAddr> = found.refused.iter().map(|(a, _)| *a).collect();
        let before = self.refused.get(&backend.key);
        for (addr, why) in &found.refused {
            if before.is_some_and(|b| b.contains(addr)) || !crate::metrics::allow_refusal_log() {
                continue;
            }
            warn!(
                service = %service,
                port = %backend.key.port_name,
                endpoint = %addr,
                reason = why.label(),
                "endpoint refused, never dialled: {addr} is {why}"
            );
        }
        crate::metrics::set_refused_endpoints(&backend.key, refused.len());
        if refused.is_empty() {
            self.refused.remove(&backend.key);
        } else {
            self.refused.insert(backend.key.clone(), refused);
        }
        let changed = backend.update(found.addrs, found.terminating);
        if changed {
            crate::metrics::set_backend_endpoints(backend);
        }
        changed
    }

    fn remove(&mut self, key: &BackendKey) {
        let svc = ObjectKey::new(&key.namespace, &key.service);
        if let Some(ports) = self.by_service.get_mut(&svc) {
            if let Some(b) = ports.remove(&key.port_name) {
                crate::metrics::remove_backend_endpoints(&b);
            }
            if ports.is_empty() {
                self.by_service.remove(&svc);
            }
        }
        self.refused.remove(key);
    }

    /// How many backends are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_service.values().map(HashMap::len).sum()
    }
}

/// The endpoints of one Service port.
#[derive(Debug, Default, PartialEq)]
pub struct Endpoints {
    /// Ready ones, else serving-and-terminating ones; never a refused one.
    pub addrs: Vec<SocketAddr>,
    /// `addrs` are the terminating fallback.
    pub terminating: bool,
    /// Endpoints the slices name but the proxy never dials, and why.
    pub refused: Vec<(SocketAddr, Refusal)>,
}

/// The endpoints of one Service port: `ready` ones, else serving-and-terminating ones,
/// without those `policy` refuses (portico-ingress's rule). A port left with none answers
/// 503, as one without endpoints does.
pub fn endpoints_for(
    store: &Store,
    service: &ObjectKey,
    port_name: &str,
    policy: &EndpointPolicy,
) -> Endpoints {
    let mut ready = Vec::new();
    let mut terminating = Vec::new();
    let mut refused = Vec::new();
    for slice in store.slices_of(service) {
        for &(addr, usable) in slice.port(port_name) {
            if let Some(why) = portico_ingress::refused(addr, policy) {
                refused.push((addr, why));
                continue;
            }
            match usable {
                Usable::Ready => ready.push(addr),
                Usable::Terminating => terminating.push(addr),
            }
        }
    }
    let (addrs, terminating) = if ready.is_empty() && !terminating.is_empty() {
        (terminating, true)
    } else {
        (ready, false)
    };
    Endpoints {
        addrs,
        terminating,
        refused,
    }
}

/// One Ingress's served rules, compiled but not yet inserted.
#[derive(Debug, Clone)]
struct Compiled {
    rules: Vec<(HostPattern, PathRule)>,
    default: Option<Arc<Route>>,
}

pub fn build(store: &Store, params: &Params, caches: &mut Caches, generation: u64) -> Output {
    caches.generation = generation;
    let mut warnings = Vec::new();
    let mut table = RouteTable::with_capacity(store.ingresses.len());
    let mut certs = CertTable::default();
    let mut used_backends = BTreeSet::new();
    let mut referenced = Referenced::default();
    let (mut served, mut skipped) = (0, 0);

    // The shared judgement decides what is served; this only compiles it.
    let limits = &params.limits;
    let scope = Scope {
        class: &params.class_name,
        is_default_class: store
            .ingress_classes
            .get(&params.class_name)
            .is_some_and(portico_ingress::is_default_class),
        instance_namespace: &params.instance_namespace,
        served_namespaces: &params.namespaces,
        policy: &params.tenant_policy,
        limits,
    };
    // Every Service change counts among the store's other changes.
    caches.judged.services_at(store.others_version());
    let judgement = portico_ingress::judge_with(
        &mut caches.judged,
        &scope,
        store.ingresses.values().map(AsRef::as_ref),
        |ns, name| {
            store
                .services
                .get(&ObjectKey::new(ns, name))
                .map(AsRef::as_ref)
        },
    );

    let regex_hosts = regex_hosts(&judgement);

    // Oldest first, so that among certificates for one host the oldest Ingress's wins.
    for verdict in &judgement.verdicts {
        let key = &verdict.key;
        // Secrets are referenced (watched) even when the Ingress turns out bad, so fixing
        // them heals it.
        if params.namespaces.contains(&key.namespace) {
            for name in verdict.secrets_read() {
                referenced
                    .secrets
                    .insert(ObjectKey::new(&key.namespace, name));
            }
        }
        let reasons: Vec<String> = verdict.rejections.iter().map(ToString::to_string).collect();
        let omitted = match verdict.omitted {
            0 => String::new(),
            n => format!(" (and {n} more)"),
        };
        let compiled = match (&verdict.checked, verdict.served) {
            (Some(checked), true) => compile_kept(
                key,
                checked,
                store,
                params,
                caches,
                &mut used_backends,
                &mut referenced,
            ),
            _ => Err(None),
        };
        let compiled = match compiled {
            Ok(c) => c,
            Err(problem) => {
                let reasons: Vec<String> = reasons.into_iter().chain(problem).collect();
                warnings.push(format!(
                    "Ingress {key} skipped: {}{omitted}",
                    reasons.join("; ")
                ));
                skipped += 1;
                continue;
            }
        };
        served += 1;
        if let Some(checked) = verdict
            .checked
            .as_ref()
            .filter(|c| !c.not_honoured.is_empty())
        {
            warnings.push(format!(
                "Ingress {key}: {}",
                portico_ingress::nginx::not_honoured_note(&checked.not_honoured)
            ));
        }
        if !reasons.is_empty() {
            warnings.push(format!(
                "Ingress {key} partly served: {}{omitted}",
                reasons.join("; ")
            ));
        }
        let canary = verdict.checked.as_ref().and_then(|c| c.canary.as_ref());
        for (host, rule) in &compiled.rules {
            let mut rule = rule.clone();
            if regex_hosts.contains(host)
                && let Some(regex) = rule.path.as_regex()
            {
                rule.path = regex;
            }
            match canary {
                // The judgement paired it with the primary holding this host+path.
                Some(c) => attach_canary(table.host_rules_mut(host), rule, c),
                // Refused only when this Ingress names the same host+path twice (or, on
                // a regex host, a path another Ingress of the host names too): the first
                // stays.
                None => {
                    let _ = table.host_rules_mut(host).insert(rule);
                }
            }
        }
        if let Some(route) = &compiled.default {
            let _ = table.set_default_backend(route.clone());
        }
        // Handshakes for the Ingress's hosts ask for a client certificate; its routes
        // judge it (tls/client_auth.rs).
        if let Some(checked) = verdict.checked.as_ref().filter(|c| {
            c.auth
                .client_cert
                .as_ref()
                .is_some_and(|cc| cc.verify != portico_ingress::auth::Verify::Off)
        }) {
            for rule in &checked.rules {
                match &rule.host {
                    HostPattern::Exact(h) => {
                        certs.ask_client_cert.insert(h.to_string());
                    }
                    HostPattern::Wildcard(s) => {
                        certs.ask_client_cert_wildcard.insert(s.to_string());
                    }
                    HostPattern::Any => certs.ask_client_cert_all = true,
                }
            }
        }
        for tls in &verdict.certificates {
            let Some(secret) = &tls.secret else { continue };
            let secret_key = ObjectKey::new(&key.namespace, secret);
            let host = &tls.host;
            let Some(secret) = store.secrets.get(&secret_key) else {
                warnings.push(format!(
                    "Ingress {key}: TLS Secret {secret_key} not found (or not readable); host {host} gets the default certificate"
                ));
                continue;
            };
            match caches.certs.get(&secret_key, secret) {
                Ok(ck) => {
                    let map = match host {
                        HostPattern::Exact(h) => Some((&mut certs.exact, h)),
                        HostPattern::Wildcard(s) => Some((&mut certs.wildcard, s)),
                        HostPattern::Any => None,
                    };
                    if let Some((map, h)) = map {
                        map.entry(h.to_string()).or_insert(ck);
                    }
                }
                Err(e) => warnings.push(format!(
                    "Ingress {key}: TLS Secret {secret_key} is invalid ({e}); host {host} gets the default certificate"
                )),
            }
        }
    }
    www_redirects(&judgement, params, caches, &mut table);
    // A tenant's host is answered 404 when no path matches, never by another namespace's
    // default backend (without one, it is 404 anyway).
    let has_default = table.has_default_backend();
    for verdict in judgement.served().filter(|_| has_default) {
        for rule in verdict.checked.iter().flat_map(|c| &c.rules) {
            if !judgement.default_backend_serves(&rule.host) {
                table.host_rules_mut(&rule.host).isolated = true;
            }
        }
    }
    table.finish();

    if let Some(dc) = &params.default_certificate {
        referenced.secrets.insert(dc.clone());
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

    // Ingresses no longer served are no longer kept; then what no one uses goes.
    let gone: Vec<Kept> = caches
        .compiled
        .extract_if(|_, k| k.generation != generation)
        .map(|(_, k)| k)
        .collect();
    for old in gone {
        caches.forget_uses(old);
    }
    caches.drop_unused_backends(used_backends);
    caches.certs.retain(|k| referenced.secrets.contains(k));
    caches
        .htpasswd
        .retain(|k, _| referenced.secrets.contains(k));
    caches
        .upstream_tls
        .retain(|_, (_, used)| *used == generation);
    warnings.append(&mut caches.tls_warnings);
    // Ingresses that are gone take their series with them: a tenant churning Ingress
    // names must not grow the proxy's memory and every scrape without bound.
    // (Only after an Ingress went: pruning reads every series.)
    if caches.metrics_pruned_at != Some(store.ingress_removals()) {
        caches.metrics_pruned_at = Some(store.ingress_removals());
        caches.route_metrics.retain(|(ing, _), metrics| {
            let keep = store.ingresses.contains_key(ing);
            if !keep {
                metrics.remove();
            }
            keep
        });
    }

    Output {
        snapshot: Snapshot {
            generation,
            routes: table,
            certs,
            ingresses_served: served,
            ingresses_skipped: skipped,
        },
        warnings,
        referenced_secrets: referenced.secrets,
        referenced_config_maps: referenced.config_maps,
    }
}

/// A canary rule joins its primary's path: `canary-by-header` and `canary-by-cookie` as
/// rules with a request condition (`always` to the canary, `never` to the primary; header
/// before cookie, as ingress-nginx checks them), and `canary-weight` as the primary's
/// route split by weight between both.
fn attach_canary(rules: &mut HostRules, canary: PathRule, c: &portico_ingress::nginx::Canary) {
    let Some(primary) = rules.plain_route(&canary.path).cloned() else {
        return;
    };
    // As in ingress-nginx, a canary inherits its primary's other annotations: above all
    // who may reach the path, so that a canary header never skips the primary's auth.
    let canary = PathRule {
        route: Arc::new(Route {
            ingress: canary.route.ingress.clone(),
            service: canary.route.service.clone(),
            backends: canary.route.backends.clone(),
            policy: canary.route.policy.clone(),
            https_redirect: primary.https_redirect,
            metrics: canary.route.metrics.clone(),
            rotor: Default::default(),
            access: primary.access.clone(),
            error_backend: primary.error_backend.clone(),
            traffic: primary.traffic.clone(),
            nginx: primary.nginx.clone(),
        }),
        ..canary
    };
    let mut conditional = Vec::new();
    if let Some(name) = c
        .by_header
        .as_deref()
        .and_then(|n| http::HeaderName::from_bytes(n.as_bytes()).ok())
    {
        let header = |value: &str| HeaderMatch::Header {
            name: name.clone(),
            value: value.to_owned(),
        };
        match (&c.header_value, &c.header_pattern) {
            (Some(value), _) => conditional.push((header(value), canary.route.clone())),
            (None, Some(pattern)) => conditional.push((
                HeaderMatch::HeaderPattern {
                    name: name.clone(),
                    pattern: pattern.clone(),
                },
                canary.route.clone(),
            )),
            (None, None) => {
                conditional.push((header("always"), canary.route.clone()));
                conditional.push((header("never"), primary.clone()));
            }
        }
    }
    if let Some(name) = &c.by_cookie {
        let cookie = |value: &str| HeaderMatch::Cookie {
            name: name.clone(),
            value: value.to_owned(),
        };
        conditional.push((cookie("always"), canary.route.clone()));
        conditional.push((cookie("never"), primary.clone()));
    }
    for (condition, route) in conditional {
        let _ = rules.insert(PathRule {
            path: canary.path.clone(),
            headers: vec![condition],
            route,
        });
    }
    if c.weight > 0 {
        let scaled = |backends: &[RouteBackend], weight: u32| -> Vec<RouteBackend> {
            backends
                .iter()
                .map(|b| RouteBackend {
                    weight: b.weight.saturating_mul(weight),
                    ..b.clone()
                })
                .collect()
        };
        let mut backends = scaled(&primary.backends, c.weight_total - c.weight);
        backends.extend(scaled(&canary.route.backends, c.weight));
        let split = Arc::new(Route {
            ingress: primary.ingress.clone(),
            service: primary.service.clone(),
            backends,
            policy: primary.policy.clone(),
            https_redirect: primary.https_redirect,
            metrics: primary.metrics.clone(),
            rotor: Default::default(),
            access: primary.access.clone(),
            error_backend: primary.error_backend.clone(),
            // The primary's Ingress decides its path's limits, logging and rewrites.
            traffic: primary.traffic.clone(),
            nginx: primary.nginx.clone(),
        });
        rules.set_plain_route(&canary.path, split);
    }
}

/// ingress-nginx treats every path of a host as a regular expression when one of the
/// host's Ingresses uses regex paths (`use-regex` or `rewrite-target`): these hosts.
fn regex_hosts(judgement: &portico_ingress::Judgement<'_>) -> HashSet<HostPattern> {
    judgement
        .served()
        .filter_map(|v| v.checked.as_ref())
        .filter(|c| c.nginx_routing.regex_paths())
        .flat_map(|c| c.rules.iter().map(|r| r.host.clone()))
        .collect()
}

/// ingress-nginx's `from-to-www-redirect`: for each exact host of such an Ingress, the
/// other name (`www.<host>` or `<host>` without `www.`) answers 308 to it, when no Ingress
/// serves that name and (with host ownership) no other namespace owns it. Call after every
/// Ingress's rules are in `table`.
fn www_redirects(
    judgement: &portico_ingress::Judgement<'_>,
    params: &Params,
    caches: &mut Caches,
    table: &mut RouteTable,
) {
    for verdict in judgement.served() {
        let Some(checked) = verdict
            .checked
            .as_ref()
            .filter(|c| c.nginx_routing.from_to_www)
        else {
            continue;
        };
        let key = ObjectKey::new(&verdict.key.namespace, &verdict.key.name);
        for rule in &checked.rules {
            let HostPattern::Exact(to) = &rule.host else {
                continue;
            };
            let other = match to.strip_prefix("www.") {
                Some(bare) => bare.to_owned(),
                None => format!("www.{to}"),
            };
            let Ok(other) = HostPattern::parse(&other) else {
                continue;
            };
            let wildcard = match &other {
                HostPattern::Exact(h) => h
                    .split_once('.')
                    .map(|(_, s)| HostPattern::Wildcard(s.into())),
                _ => None,
            };
            let foreign = |h: &HostPattern| {
                judgement
                    .owner(h)
                    .is_some_and(|o| o.namespace != key.namespace)
            };
            if params.tenant_policy.host_ownership
                && (foreign(&other) || wildcard.as_ref().is_some_and(foreign))
            {
                continue;
            }
            let rules = table.host_rules_mut(&other);
            if !rules.is_empty() {
                continue;
            }
            let metrics = caches
                .route_metrics
                .entry((key.clone(), String::new()))
                .or_insert_with(|| crate::metrics::RouteMetrics::new(&key.namespace, &key.name, ""))
                .clone();
            let route = Arc::new(Route {
                ingress: key.clone(),
                service: String::new(),
                backends: Vec::new(),
                policy: params.default_policy.clone(),
                https_redirect: false,
                metrics,
                rotor: Default::default(),
                access: None,
                error_backend: None,
                traffic: Default::default(),
                nginx: Some(Box::new(NginxRoute {
                    www_redirect_to: Some(to.to_string()),
                    ..NginxRoute::default()
                })),
            });
            if let Ok(path) =
                portico_ingress::PathMatch::new(portico_ingress::PathKind::Prefix, "/")
            {
                let _ = rules.insert(PathRule {
                    path,
                    headers: vec![],
                    route,
                });
            }
        }
    }
}

/// Secrets and ConfigMaps a build read or wants: the proxy watches exactly these.
#[derive(Debug, Default)]
struct Referenced {
    secrets: BTreeSet<ObjectKey>,
    config_maps: BTreeSet<ObjectKey>,
    /// The backend TLS configs used (`Caches::upstream_tls` keys).
    upstream_tls: Vec<UpstreamTlsKey>,
}

/// Namespace, judgement and CA bundle version of a backend TLS config.
type UpstreamTlsKey = (String, BackendTls, String);

impl Referenced {
    fn extend(&mut self, other: &Referenced) {
        self.secrets.extend(other.secrets.iter().cloned());
        self.config_maps.extend(other.config_maps.iter().cloned());
        self.upstream_tls.extend(other.upstream_tls.iter().cloned());
    }
}

/// The TLS config for a backend, from the cache while its CA bundle is unchanged. A CA
/// object that is missing or holds no certificate yields a config that verifies against
/// nothing (fail closed); the object is watched, so fixing it heals the route.
fn upstream_tls_for(
    namespace: &str,
    t: &BackendTls,
    store: &Store,
    caches: &mut Caches,
    referenced: &mut Referenced,
) -> Option<Arc<UpstreamTls>> {
    // The bundle's PEM (or why there is none) and a version for the cache key.
    let ca: Option<(Result<&[u8], &str>, String)> = t.ca.as_ref().map(|source| {
        let (set, name) = match source {
            CaSource::Secret(n) => (&mut referenced.secrets, n),
            CaSource::ConfigMap(n) => (&mut referenced.config_maps, n),
        };
        let key = ObjectKey::new(namespace, name);
        set.insert(key.clone());
        let found = match source {
            CaSource::Secret(_) => store.secrets.get(&key).map(|s| {
                let pem = s
                    .data
                    .as_ref()
                    .and_then(|d| d.get("ca.crt"))
                    .map(|b| &b.0[..]);
                (pem, s.metadata.resource_version.clone())
            }),
            CaSource::ConfigMap(_) => store.config_maps.get(&key).map(|c| {
                let pem = c
                    .data
                    .as_ref()
                    .and_then(|d| d.get("ca.crt"))
                    .map(|s| s.as_bytes());
                (pem, c.metadata.resource_version.clone())
            }),
        };
        match found {
            Some((Some(pem), rv)) => (Ok(pem), rv.unwrap_or_default()),
            Some((None, rv)) => (Err("no ca.crt"), rv.unwrap_or_default()),
            None => (Err("not found"), "missing".to_string()),
        }
    });
    let rv = ca.as_ref().map(|(_, rv)| rv.clone()).unwrap_or_default();
    let cache_key = (namespace.to_string(), t.clone(), rv);
    referenced.upstream_tls.push(cache_key.clone());
    let generation = caches.generation;
    if let Some((c, used)) = caches.upstream_tls.get_mut(&cache_key) {
        *used = generation;
        return Some(c.clone());
    }
    let bundle = ca.map(|(pem, _)| {
        pem.map_err(str::to_string)
            .and_then(crate::upstream::tls::ca_from_pem)
    });
    if let (Some(Err(e)), Some(source)) = (&bundle, &t.ca) {
        caches.tls_warnings.push(format!(
            "backend CA {source:?} in {namespace} unusable ({e}): TLS to {} fails until it is fixed",
            t.server_name
        ));
    }
    match crate::upstream::tls::upstream_tls(&t.server_name, bundle) {
        Ok(c) => {
            let c = Arc::new(c);
            caches
                .upstream_tls
                .insert(cache_key, (c.clone(), generation));
            Some(c)
        }
        Err(e) => {
            caches
                .tls_warnings
                .push(format!("backend TLS in {namespace} unusable: {e}"));
            None
        }
    }
}

/// An Ingress's access control; `None` when it has none. A basic-auth Secret that is
/// missing, unreadable or without a usable user is an error: the Ingress is not served
/// (it must not be served open), and the Secret is watched, so fixing it heals it.
fn compile_access(
    key: &ObjectKey,
    checked: &Checked,
    store: &Store,
    caches: &mut Caches,
) -> Result<Option<Arc<Access>>, Option<String>> {
    let auth = &checked.auth;
    let ranges = &checked.source_ranges;
    if ranges.is_empty()
        && auth.basic.is_none()
        && auth.external.is_none()
        && auth.rate_limit.is_none()
        && auth.client_cert.is_none()
    {
        return Ok(None);
    }
    let client_cert = match &auth.client_cert {
        None => None,
        Some(cc) => {
            let secret_key = ObjectKey::new(&key.namespace, &cc.secret);
            let pem = store
                .secrets
                .get(&secret_key)
                .and_then(|s| s.data.as_ref()?.get("ca.crt"))
                .map(|b| &b.0[..]);
            let policy = ClientCertPolicy::new(cc.clone(), pem).map_err(|e| {
                Some(format!(
                    "client certificate CA Secret {secret_key} unusable ({e}): not served until it is fixed"
                ))
            })?;
            Some(policy)
        }
    };
    let basic = match &auth.basic {
        None => None,
        Some(b) => {
            let secret_key = ObjectKey::new(&key.namespace, &b.secret);
            let secret = store.secrets.get(&secret_key).ok_or_else(|| {
                Some(format!(
                    "basic auth Secret {secret_key} not found (or not readable): not served until it is"
                ))
            })?;
            let rv = secret.metadata.resource_version.clone().unwrap_or_default();
            let users = match caches.htpasswd.get(&secret_key) {
                Some((cached_rv, map, users))
                    if *cached_rv == rv && *map == b.map && !rv.is_empty() =>
                {
                    users.clone()
                }
                _ => {
                    let data = secret.data.as_ref();
                    let (users, skipped) = if b.map {
                        let entries = data.into_iter().flatten().filter_map(|(k, v)| {
                            std::str::from_utf8(&v.0).ok().map(|v| (k.as_str(), v))
                        });
                        Htpasswd::parse(entries)
                    } else {
                        let file = data
                            .and_then(|d| d.get("auth"))
                            .and_then(|v| std::str::from_utf8(&v.0).ok())
                            .ok_or_else(|| Some(format!("basic auth Secret {secret_key} has no key \"auth\" (an htpasswd file)")))?;
                        Htpasswd::parse_file(file)
                    };
                    if !skipped.is_empty() {
                        caches.tls_warnings.push(format!(
                            "basic auth Secret {secret_key}: entries left out (they let no one in): {}",
                            skipped.join("; ")
                        ));
                    }
                    let users = Arc::new(users);
                    caches
                        .htpasswd
                        .insert(secret_key.clone(), (rv, b.map, users.clone()));
                    users
                }
            };
            if users.is_empty() {
                return Err(Some(format!(
                    "basic auth Secret {secret_key} holds no usable user: not served until it does"
                )));
            }
            let challenge = HeaderValue::from_str(&format!("Basic realm=\"{}\"", b.realm))
                .map_err(|_| Some("auth-realm is not a header value".to_owned()))?;
            Some(Basic { users, challenge })
        }
    };
    Ok(Some(Arc::new(Access {
        id: {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut h);
            h.finish()
        },
        ingress: key.to_string(),
        source_ranges: (!ranges.is_empty()).then(|| ranges.clone()),
        basic,
        external: auth.external.clone(),
        rate_limit: auth.rate_limit.clone(),
        satisfy_any: auth.satisfy_any,
        client_cert,
    })))
}

/// [`compile`], or what it gave last time when nothing it reads has changed since. What a
/// kept compilation uses stays in [`Caches::compiled`]; `used_backends` and `referenced`
/// get what was compiled afresh or not kept.
fn compile_kept(
    ingress: &Arc<IngressKey>,
    checked: &Arc<Checked>,
    store: &Store,
    params: &Params,
    caches: &mut Caches,
    used_backends: &mut BTreeSet<BackendKey>,
    referenced: &mut Referenced,
) -> Result<Arc<Compiled>, Option<String>> {
    let others = store.others_version();
    let generation = caches.generation;
    if let Some(kept) = caches.compiled.get_mut(&kept_id(ingress))
        && Arc::ptr_eq(&kept.checked, checked)
        && kept.others == others
    {
        kept.generation = generation;
        referenced.extend(&kept.referenced);
        for tls in &kept.referenced.upstream_tls {
            if let Some((_, used)) = caches.upstream_tls.get_mut(tls) {
                *used = generation;
            }
        }
        return Ok(kept.compiled.clone());
    }
    let key = ObjectKey::new(&ingress.namespace, &ingress.name);
    let (mut backends, mut read) = (BTreeSet::new(), Referenced::default());
    let warnings = caches.tls_warnings.len();
    let result = compile(
        &key,
        checked,
        store,
        params,
        caches,
        &mut backends,
        &mut read,
    )
    .map(Arc::new);
    referenced.extend(&read);
    match &result {
        // A build that warned warns again next time: it is not kept.
        Ok(compiled) if caches.tls_warnings.len() == warnings => {
            caches.keep(Kept {
                ingress: ingress.clone(),
                checked: checked.clone(),
                others,
                compiled: compiled.clone(),
                backends: backends.into_iter().collect(),
                referenced: read,
                generation,
            });
        }
        _ => {
            caches.unkeep(kept_id(ingress));
            used_backends.extend(backends);
        }
    }
    result
}

fn compile(
    key: &ObjectKey,
    checked: &Checked,
    store: &Store,
    params: &Params,
    caches: &mut Caches,
    used_backends: &mut BTreeSet<BackendKey>,
    referenced: &mut Referenced,
) -> Result<Compiled, Option<String>> {
    let policy = match &checked.load_balance {
        // The shared grammar accepts only header names `http` does; this is a safety net.
        Some(lb) => Policy::try_from(lb.clone())
            .map_err(|e| Some(Problem::LoadBalanceAnnotation(e).to_string()))?,
        None => params.default_policy.clone(),
    };
    let ssl_redirect = checked.ssl_redirect.unwrap_or(params.ssl_redirect);
    let has_tls = |host: &HostPattern| -> bool {
        checked.tls.iter().any(|t| match (&t.host, host) {
            (HostPattern::Any, _) | (_, HostPattern::Any) => false,
            (t, HostPattern::Exact(h)) => t.matches(h),
            (t, h) => t == h,
        })
    };

    // ingress-nginx routing annotations: shared by the Ingress's routes, except a rewrite,
    // which needs its rule's regex (such routes are made per path).
    let nginx = NginxRoute::from_routing(&checked.nginx_routing);
    let rewrite_target = checked.nginx_routing.rewrite_target.as_ref();

    // One Route per (Service port, redirect), shared by the paths that name it.
    let mut routes: HashMap<(String, String), Arc<Route>> = HashMap::new();
    // ingress-nginx's default-backend, shared by the Ingress's routes.
    let error_backend = checked.error_backend.as_ref().map(|b| {
        let bkey = BackendKey::new(&key.namespace, &b.service, &b.port_name);
        used_backends.insert(bkey.clone());
        Arc::new(crate::routing::ErrorBackend {
            backend: caches.backends.get_or_create(store, bkey),
            service: b.service.clone(),
            codes: checked.custom_http_errors.clone(),
        })
    });
    // Who may reach this Ingress (ingress-nginx's access control): shared by its routes.
    let access = compile_access(key, checked, store, caches)?;
    let mut route_for = |b: &portico_ingress::Backend,
                         https_redirect: bool,
                         rewrite_path: Option<&portico_ingress::PathMatch>|
     -> Arc<Route> {
        let rewrite = rewrite_path.zip(rewrite_target);
        let cache_key = (
            b.service.clone(),
            match rewrite {
                Some((path, _)) => format!("{}/{https_redirect}/{}", b.port_label, path.as_str()),
                None => format!("{}/{https_redirect}", b.port_label),
            },
        );
        if let Some(r) = routes.get(&cache_key) {
            return r.clone();
        }
        let bkey = BackendKey::new(&key.namespace, &b.service, &b.port_name);
        used_backends.insert(bkey.clone());
        let backend = caches.backends.get_or_create(store, bkey);
        let tls = b
            .tls
            .as_ref()
            .and_then(|t| upstream_tls_for(&key.namespace, t, store, caches, referenced));
        let route = Arc::new(Route {
            ingress: key.clone(),
            service: b.service.clone(),
            backends: vec![RouteBackend {
                backend,
                protocol: UpstreamProtocol::from_app_protocol(b.app_protocol.as_deref()),
                weight: 1,
                tls,
            }],
            policy: policy.clone(),
            https_redirect,
            metrics: caches
                .route_metrics
                .entry((key.clone(), b.service.clone()))
                .or_insert_with(|| {
                    crate::metrics::RouteMetrics::new(&key.namespace, &key.name, &b.service)
                })
                .clone(),
            rotor: Default::default(),
            access: access.clone(),
            error_backend: error_backend.clone(),
            traffic: checked.traffic.as_ref().into(),
            nginx: match rewrite {
                Some((path, target)) => Some(Box::new(NginxRoute {
                    rewrite: Some((path.clone(), target.clone())),
                    ..nginx.clone().unwrap_or_default()
                })),
                None => nginx.clone().map(Box::new),
            },
        });
        routes.insert(cache_key, route.clone());
        route
    };

    let mut rules = Vec::with_capacity(checked.rules.len());
    for rule in &checked.rules {
        let redirect = checked.force_ssl_redirect || (ssl_redirect && has_tls(&rule.host));
        rules.push((
            rule.host.clone(),
            PathRule {
                path: rule.path.clone(),
                headers: vec![],
                route: route_for(&rule.backend, redirect, Some(&rule.path)),
            },
        ));
    }
    let default = checked
        .default_backend
        .as_ref()
        .map(|b| route_for(b, false, None));
    Ok(Compiled { rules, default })
}

#[cfg(test)]
mod tests;
