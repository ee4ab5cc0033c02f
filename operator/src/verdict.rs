//! The operator's side of the one judgement: `portico_ingress::judge()` decides which
//! Ingresses of an instance's class its proxies serve (the proxy compiles the same
//! verdicts); this turns them into the Events, Ingress status and counts the proxy may not
//! write, and into what the proxy must be allowed to read.
//!
//! ```text
//!  Ingresses + Services + Scope ─▶ Kept::judge
//!     only Ingresses that stand alone changed? ─▶ judge each alone   (HostIndex)
//!     anything else (Scope, Services, an entangled Ingress) ─▶ judge_with() all of them
//!        ─▶ Outcome per Ingress (one place: outcome())
//!     ─▶ served / rejected counts, one Warning per Rejection (its reason() is the Event
//!        reason), TLS Secrets and backend CA bundles by namespace (the proxy's RBAC)
//!     ─▶ the Ingresses whose status.loadBalancer may be wrong (Kept::unwritten)
//! ```
//!
//! A reconcile for one new Ingress among 10,000 therefore costs one check, not a
//! judgement of all of them: the operator keeps each instance's judgement ([`Kept`]) and
//! judges alone what `portico_ingress::HostIndex` says cannot change another's verdict.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerStatus};
use k8s_openapi::jiff::Timestamp;
use portico_ingress::{CaSource, Checked, HostIndex, Limits, Rejection, Scope, TenantPolicy};

use crate::resources::CONSENT_ANNOTATION;
use crate::stores::same_ingress_inputs;

/// Event reasons the judgement does not give: a served Ingress whose backend is reached
/// over TLS without verifying its certificate.
pub const UNVERIFIED_BACKEND_TLS: &str = "UnverifiedBackendTLS";

/// A served Ingress carries ingress-nginx annotations Portico does not honour.
pub const ANNOTATIONS_NOT_HONOURED: &str = "AnnotationsNotHonoured";

/// Services by namespace, then name: those of the served namespaces.
pub type Services = BTreeMap<String, BTreeMap<String, Arc<Service>>>;

/// A Warning Event to publish on an Ingress.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    pub ingress: Arc<Ingress>,
    pub reason: &'static str,
    pub note: String,
}

/// What one reconcile acts on.
#[derive(Debug, Default)]
pub struct Verdicts {
    /// Ingresses of the class served, at least in part: they get the instance's address.
    pub served: usize,
    /// Not served at all: counted as rejected, and they lose the address.
    pub rejected: usize,
    /// One per distinct rejection, oldest Ingress first; a served Ingress may have some
    /// (a lost path).
    pub warnings: Vec<Warning>,
    /// Per served namespace, the Secrets its Ingresses of the class name in `spec.tls` and
    /// in auth annotations (`portico_ingress::auth::secrets_read`; read even for a broken
    /// Ingress, so that fixing the Secret heals it).
    pub tls_secrets: BTreeMap<String, BTreeSet<String>>,
    /// Per namespace, where the CA bundles live that served backends name.
    pub backend_cas: BTreeMap<String, BTreeSet<CaSource>>,
    /// ingress-nginx annotations not honoured on served Ingresses, counted once per
    /// Ingress and annotation (the instance's `status.annotationsNotHonoured`).
    pub annotations_not_honoured: usize,
    /// Each served Ingress of the namespaces asked for, with what it is served for:
    /// [`service_ports`] says whose endpoints the proxies will dial.
    pub served_checked: Vec<(Arc<Ingress>, Arc<Checked>)>,
    /// Whether every Ingress was judged again (rather than only those that changed).
    pub in_full: bool,
}

/// What [`portico_ingress::Memo::services_at`] asks for: a value that changes whenever
/// `services` do. Each Service's namespace, name, uid and resourceVersion, hashed with a
/// key of this process and combined in any order: the same value means the same Services
/// (but for a 2^-64 chance), so a remembered check is reused only against the very
/// Services it was made with, and not looked up again for each of 10,000 Ingresses.
pub fn services_version(services: &Services) -> u64 {
    use std::hash::{BuildHasher, RandomState};
    static KEY: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(RandomState::new);
    services
        .iter()
        .flat_map(|(ns, by_name)| by_name.iter().map(move |(name, s)| (ns, name, s)))
        .map(|(ns, name, s)| {
            key.hash_one((ns, name, &s.metadata.uid, &s.metadata.resource_version))
        })
        .fold(0, |all, one| all ^ one)
}

/// A Service port as EndpointSlices name it: `(service, port name)`.
pub type ServicePort = (String, String);

/// The Service ports of the rules and default backend a served Ingress is served for.
pub fn service_ports(checked: &Checked) -> BTreeSet<ServicePort> {
    checked
        .backends()
        .map(|b| (b.service.clone(), b.port_name.clone()))
        .collect()
}

/// What the operator reports of one Ingress of the class, read from its verdict.
#[derive(Debug)]
struct Outcome {
    ingress: Arc<Ingress>,
    served: bool,
    /// (reason, note) of each Warning Event.
    warnings: Vec<(&'static str, String)>,
    /// The Secrets of its namespace it names; none when the namespace is not served.
    secrets: BTreeSet<String>,
    backend_cas: BTreeSet<CaSource>,
    not_honoured: usize,
    /// What it is served for, when served.
    checked: Option<Arc<Checked>>,
    /// Judged in a served namespace: its hosts are in the [`HostIndex`].
    indexed: bool,
}

/// The one place a verdict becomes what the operator reports.
fn outcome(
    verdict: &portico_ingress::Verdict<'_>,
    ingress: Arc<Ingress>,
    scope: &Scope<'_>,
    instance_name: &str,
) -> Outcome {
    let class = scope.class;
    let indexed = scope.served_namespaces.contains(&verdict.key.namespace);
    let mut out = Outcome {
        ingress,
        served: verdict.served,
        warnings: Vec::new(),
        secrets: verdict.secrets_read().cloned().collect(),
        backend_cas: BTreeSet::new(),
        not_honoured: 0,
        checked: None,
        indexed,
    };
    let count = verdict.rejections.len();
    for (i, rejection) in verdict.rejections.iter().enumerate() {
        let mut note = match rejection {
            Rejection::NamespaceNotServed(ns) => format!(
                "IngressClass {class} does not serve namespace {ns}: it needs the annotation \
                 {CONSENT_ANNOTATION}: \"{}/{instance_name}\" (or the instance's namespace \
                 trusted by the operator) and a match of spec.namespaceSelector",
                scope.instance_namespace,
            ),
            Rejection::Invalid(problem) => {
                format!("not served by IngressClass {class}: {problem}")
            }
            other => format!("IngressClass {class}: {other}"),
        };
        if i + 1 == count && verdict.omitted > 0 {
            note.push_str(&format!(" (and {} more)", verdict.omitted));
        }
        out.warnings.push((rejection.reason(), note));
    }
    let Some(checked) = verdict.checked.as_ref().filter(|_| verdict.served) else {
        return out;
    };
    if !checked.not_honoured.is_empty() {
        out.not_honoured = checked.not_honoured.len();
        out.warnings.push((
            ANNOTATIONS_NOT_HONOURED,
            format!(
                "IngressClass {class}: {}",
                portico_ingress::nginx::not_honoured_note(&checked.not_honoured)
            ),
        ));
    }
    let mut unverified = BTreeSet::new();
    for b in checked.backends() {
        match b.tls.as_ref().map(|t| &t.ca) {
            Some(Some(ca)) => {
                out.backend_cas.insert(ca.clone());
            }
            Some(None) => {
                unverified.insert(b.service.clone());
            }
            None => {}
        }
    }
    out.checked = Some(Arc::clone(checked));
    if !unverified.is_empty() {
        out.warnings.push((
            UNVERIFIED_BACKEND_TLS,
            format!(
                "IngressClass {class} reaches Service(s) {} over TLS without verifying \
                 their certificate: name a CA with {} or {} on the Service, or set \
                 spec.backendTLS.allowUnverified: false on the instance to refuse this",
                unverified.into_iter().collect::<Vec<_>>().join(", "),
                portico_ingress::BACKEND_TLS_CA_ANNOTATION,
                portico_ingress::BACKEND_TLS_CA_CONFIGMAP_ANNOTATION,
            ),
        ));
    }
    out
}

/// What a judgement was made against: the same Ingresses judged against anything else
/// are judged again, all of them.
#[derive(Debug, PartialEq)]
struct Against {
    class: String,
    is_default_class: bool,
    instance_namespace: String,
    served_namespaces: BTreeSet<String>,
    policy: TenantPolicy,
    limits: Limits,
    services: u64,
    instance_name: String,
}

/// Oldest first, as `portico_ingress::oldest_first` orders Ingresses.
type Order = (Option<Timestamp>, String, String);

fn order_of(ingress: &Ingress) -> Order {
    let m = &ingress.metadata;
    (
        m.creation_timestamp.as_ref().map(|t| t.0),
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

/// An object's identity in the store.
type Named = (String, String);

fn named(ingress: &Ingress) -> Named {
    let m = &ingress.metadata;
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

/// A store's objects are immutable `Arc`s: one that was not replaced is the same
/// allocation. Holding every one judged keeps their addresses from being reused.
fn address(ingress: &Arc<Ingress>) -> usize {
    Arc::as_ptr(ingress) as usize
}

/// Addresses hash cheaply: 10,000 of them are looked up in every reconcile.
type ByAddress<V> = HashMap<usize, V, foldhash::fast::FixedState>;

/// One instance's judgement, kept between reconciles (see the module docs).
#[derive(Debug, Default)]
pub struct Kept {
    memo: portico_ingress::Memo,
    against: Option<Against>,
    /// Every Ingress of the last input, by address and by name.
    seen: ByAddress<Arc<Ingress>>,
    names: HashMap<Named, usize>,
    /// The Ingresses of the class, oldest first.
    outcomes: BTreeMap<Order, Outcome>,
    /// How many of them each namespace holds.
    namespaces: BTreeMap<String, usize>,
    /// Those with warnings.
    warned: BTreeSet<Order>,
    index: HostIndex,
    served: usize,
    not_honoured: usize,
    /// Names per namespace, counted over the outcomes naming them.
    secrets: BTreeMap<String, BTreeMap<String, usize>>,
    backend_cas: BTreeMap<String, BTreeMap<CaSource, usize>>,
    /// The load balancer status every Ingress not in `unwritten` was last checked
    /// against; `None`: all of them need checking.
    written: Option<IngressLoadBalancerStatus>,
    unwritten: BTreeSet<Order>,
}

/// What changed in the store since the last judgement.
struct Changes<'i> {
    /// New or replaced objects (of any class the input holds).
    fresh: Vec<&'i Arc<Ingress>>,
    /// New objects of Ingresses whose judged fields did not change (a status write, the
    /// operator's own among them): kept in place of the old ones, not judged again.
    refreshed: Vec<&'i Arc<Ingress>>,
    /// Deleted ones, by name.
    gone: Vec<Named>,
    /// Ingresses of the class that leave (replaced or deleted) and those that come.
    leaving: Vec<Order>,
    coming: Vec<&'i Arc<Ingress>>,
}

impl Kept {
    /// Judges the Ingresses of `scope`'s class among `ingresses` (the store's own objects:
    /// the class's, from `Cache::of_class`, or the whole store; others are ignored): only
    /// those that changed since the last call when each stands alone, else all of them.
    /// `services(namespaces)` gives the Services of the served namespaces that hold
    /// Ingresses of the class. [`Verdicts::served_checked`] lists the served
    /// Ingresses of the namespaces `with_served` names.
    pub fn judge(
        &mut self,
        scope: &Scope<'_>,
        ingresses: &[Arc<Ingress>],
        services: impl FnOnce(&BTreeSet<String>) -> Services,
        instance_name: &str,
        with_served: &BTreeSet<String>,
    ) -> Verdicts {
        let same_class = self.against.as_ref().is_some_and(|a| {
            a.class == scope.class && a.is_default_class == scope.is_default_class
        });
        let changes = same_class.then(|| self.changes(scope, ingresses));
        let namespaces = match &changes {
            Some(changes) => self.namespaces_after(changes, scope.served_namespaces),
            None => namespaces_of_class(scope, ingresses),
        };
        let services = services(&namespaces);
        let against = Against {
            class: scope.class.to_owned(),
            is_default_class: scope.is_default_class,
            instance_namespace: scope.instance_namespace.to_owned(),
            served_namespaces: scope.served_namespaces.clone(),
            policy: scope.policy.clone(),
            limits: scope.limits.clone(),
            services: services_version(&services),
            instance_name: instance_name.to_owned(),
        };
        let in_full = match changes {
            Some(changes) if self.against.as_ref() == Some(&against) => {
                !self.update(changes, scope, &services, instance_name)
            }
            _ => true,
        };
        if in_full {
            self.judge_all(scope, ingresses, &services, against.services, instance_name);
            self.against = Some(against);
        }
        let mut out = Verdicts {
            served: self.served,
            rejected: self.outcomes.len() - self.served,
            annotations_not_honoured: self.not_honoured,
            in_full,
            ..Verdicts::default()
        };
        for order in &self.warned {
            let o = &self.outcomes[order];
            out.warnings
                .extend(o.warnings.iter().map(|(reason, note)| Warning {
                    ingress: o.ingress.clone(),
                    reason,
                    note: note.clone(),
                }));
        }
        out.tls_secrets = counted(&self.secrets);
        out.backend_cas = counted(&self.backend_cas);
        if self.namespaces.keys().any(|ns| with_served.contains(ns)) {
            out.served_checked = self
                .outcomes
                .iter()
                .filter(|(order, _)| with_served.contains(&order.1))
                .filter_map(|(_, o)| Some((o.ingress.clone(), o.checked.clone()?)))
                .collect();
        }
        out
    }

    /// The Ingresses of the class whose `status.loadBalancer` may not be what their
    /// verdict says with `load_balancer` (all of them when it changed), and whether each
    /// is served.
    pub fn unwritten(
        &self,
        load_balancer: &IngressLoadBalancerStatus,
    ) -> Vec<(Arc<Ingress>, bool)> {
        let pair = |o: &Outcome| (o.ingress.clone(), o.served);
        if self.written.as_ref() == Some(load_balancer) {
            self.unwritten
                .iter()
                .filter_map(|order| self.outcomes.get(order))
                .map(pair)
                .collect()
        } else {
            self.outcomes.values().map(pair).collect()
        }
    }

    /// Whether `(namespace, name)` was among the Ingresses last judged.
    pub fn held(&self, named: &(String, String)) -> bool {
        self.names.contains_key(named)
    }

    /// Every [`unwritten`](Self::unwritten) status now says what `load_balancer` says.
    pub fn written(&mut self, load_balancer: &IngressLoadBalancerStatus) {
        self.written = Some(load_balancer.clone());
        self.unwritten.clear();
    }

    /// Every Ingress judged again.
    fn judge_all(
        &mut self,
        scope: &Scope<'_>,
        ingresses: &[Arc<Ingress>],
        services: &Services,
        version: u64,
        instance_name: &str,
    ) {
        // Only the memo's checks outlive a judgement in full; every status is checked
        // again (`written` is `None`), since any verdict may have changed.
        *self = Kept {
            memo: std::mem::take(&mut self.memo),
            ..Kept::default()
        };
        self.memo.services_at(version);
        let by_address: ByAddress<&Arc<Ingress>> =
            ingresses.iter().map(|i| (address(i), i)).collect();
        let judgement = portico_ingress::judge_with(
            &mut self.memo,
            scope,
            ingresses.iter().map(AsRef::as_ref),
            lookup(services),
        );
        let mut outcomes = Vec::with_capacity(judgement.verdicts.len());
        for verdict in &judgement.verdicts {
            let ingress = by_address[&(std::ptr::from_ref(verdict.ingress) as usize)].clone();
            outcomes.push(outcome(verdict, ingress, scope, instance_name));
        }
        drop(judgement);
        for outcome in outcomes {
            if outcome.indexed {
                self.index.add(&outcome.ingress);
            }
            self.insert(outcome);
        }
        for ingress in ingresses {
            self.seen.insert(address(ingress), ingress.clone());
            self.names.insert(named(ingress), address(ingress));
        }
    }

    /// What changed since the last judgement, found by address: an object the store did
    /// not replace is the very `Arc` held in `seen`.
    fn changes<'i>(&self, scope: &Scope<'_>, ingresses: &'i [Arc<Ingress>]) -> Changes<'i> {
        let mut fresh: Vec<&Arc<Ingress>> = Vec::new();
        let mut refreshed: Vec<&Arc<Ingress>> = Vec::new();
        for i in ingresses
            .iter()
            .filter(|i| !self.seen.contains_key(&address(i)))
        {
            let old = self.names.get(&named(i)).and_then(|a| self.seen.get(a));
            match old {
                Some(old) if same_ingress_inputs(old, i) => refreshed.push(i),
                _ => fresh.push(i),
            }
        }
        let kept = ingresses.len() - fresh.len();
        let mut gone: Vec<Named> = Vec::new();
        if kept < self.seen.len() {
            let replaced = fresh
                .iter()
                .filter(|i| self.names.contains_key(&named(i)))
                .count();
            if kept + replaced < self.seen.len() {
                let present: std::collections::HashSet<Named> =
                    ingresses.iter().map(|i| named(i)).collect();
                gone = self
                    .names
                    .keys()
                    .filter(|n| !present.contains(*n))
                    .cloned()
                    .collect();
            }
        }
        let leaving = fresh
            .iter()
            .map(|i| named(i))
            .chain(gone.iter().cloned())
            .filter_map(|name| self.names.get(&name).and_then(|a| self.seen.get(a)))
            .map(|old| order_of(old))
            .filter(|order| self.outcomes.contains_key(order))
            .collect();
        let coming = fresh
            .iter()
            .copied()
            .filter(|i| portico_ingress::belongs_to_class(i, scope.class, scope.is_default_class))
            .collect();
        Changes {
            fresh,
            refreshed,
            gone,
            leaving,
            coming,
        }
    }

    /// The served namespaces that hold Ingresses of the class once `changes` are in.
    fn namespaces_after(
        &self,
        changes: &Changes<'_>,
        served: &BTreeSet<String>,
    ) -> BTreeSet<String> {
        let mut delta: BTreeMap<&str, isize> = BTreeMap::new();
        for order in &changes.leaving {
            *delta.entry(order.1.as_str()).or_default() -= 1;
        }
        for ingress in &changes.coming {
            let ns = ingress.metadata.namespace.as_deref().unwrap_or_default();
            *delta.entry(ns).or_default() += 1;
        }
        let mut out: BTreeSet<String> = self
            .namespaces
            .iter()
            .filter(|(ns, count)| {
                let change = delta.get(ns.as_str()).copied().unwrap_or(0);
                (**count).cast_signed() + change > 0
            })
            .map(|(ns, _)| ns.clone())
            .collect();
        out.extend(
            delta
                .iter()
                .filter(|(ns, change)| **change > 0 && !self.namespaces.contains_key(**ns))
                .map(|(ns, _)| (*ns).to_owned()),
        );
        out.retain(|ns| served.contains(ns));
        out
    }

    /// Applies `changes` when every Ingress of the class that leaves or comes stands
    /// alone; false otherwise, and then the caller judges everything in full (which
    /// rebuilds what this left half done).
    fn update(
        &mut self,
        changes: Changes<'_>,
        scope: &Scope<'_>,
        services: &Services,
        instance_name: &str,
    ) -> bool {
        let Changes {
            fresh,
            refreshed,
            gone,
            leaving,
            coming,
        } = changes;
        // The new object stands in for the old, whose status is checked again as after a
        // judgement (another writer's status is put right).
        for ingress in refreshed {
            let old = self
                .names
                .insert(named(ingress), address(ingress))
                .and_then(|a| self.seen.remove(&a));
            self.seen.insert(address(ingress), ingress.clone());
            let Some(order) = old.map(|old| order_of(&old)) else {
                continue;
            };
            if let Some(o) = self.outcomes.get_mut(&order) {
                o.ingress = ingress.clone();
                self.unwritten.insert(order);
            }
        }
        if fresh.is_empty() && gone.is_empty() {
            return true;
        }
        // Each must stand alone among the Ingresses that stay and the others that
        // come. (A failure leaves the index half changed: judge_all rebuilds it.)
        for order in &leaving {
            let o = &self.outcomes[order];
            if o.indexed {
                self.index.remove(&o.ingress);
                if !self.index.stands_alone(&o.ingress) {
                    return false;
                }
            }
        }
        for ingress in &coming {
            let ns = ingress.metadata.namespace.as_deref().unwrap_or_default();
            if scope.served_namespaces.contains(ns) {
                if !self.index.stands_alone(ingress) {
                    return false;
                }
                self.index.add(ingress);
            }
        }
        // Out with the old; each newcomer judged by itself.
        for order in leaving {
            self.take(&order);
        }
        let lookup = lookup(services);
        for ingress in coming {
            let judgement = portico_ingress::judge(scope, [ingress.as_ref()], &lookup);
            let outcome = outcome(
                &judgement.verdicts[0],
                ingress.clone(),
                scope,
                instance_name,
            );
            self.unwritten.insert(order_of(ingress));
            self.insert(outcome);
        }
        for name in gone {
            if let Some(a) = self.names.remove(&name) {
                self.seen.remove(&a);
            }
        }
        for ingress in fresh {
            if let Some(old) = self.names.insert(named(ingress), address(ingress)) {
                self.seen.remove(&old);
            }
            self.seen.insert(address(ingress), ingress.clone());
        }
        true
    }

    fn insert(&mut self, o: Outcome) {
        let order = order_of(&o.ingress);
        let ns = order.1.clone();
        if o.served {
            self.served += 1;
        }
        self.not_honoured += o.not_honoured;
        count(&mut self.secrets, &ns, &o.secrets);
        count(&mut self.backend_cas, &ns, &o.backend_cas);
        *self.namespaces.entry(ns).or_default() += 1;
        if !o.warnings.is_empty() {
            self.warned.insert(order.clone());
        }
        self.outcomes.insert(order, o);
    }

    fn take(&mut self, order: &Order) {
        let Some(o) = self.outcomes.remove(order) else {
            return;
        };
        self.warned.remove(order);
        if o.served {
            self.served -= 1;
        }
        self.not_honoured -= o.not_honoured;
        uncount(&mut self.secrets, &order.1, &o.secrets);
        uncount(&mut self.backend_cas, &order.1, &o.backend_cas);
        if let Some(count) = self.namespaces.get_mut(&order.1) {
            *count -= 1;
            if *count == 0 {
                self.namespaces.remove(&order.1);
            }
        }
    }
}

fn count<T: Ord + Clone>(
    counts: &mut BTreeMap<String, BTreeMap<T, usize>>,
    ns: &str,
    names: &BTreeSet<T>,
) {
    if names.is_empty() {
        return;
    }
    let by_name = counts.entry(ns.to_owned()).or_default();
    for name in names {
        *by_name.entry(name.clone()).or_default() += 1;
    }
}

fn uncount<T: Ord>(
    counts: &mut BTreeMap<String, BTreeMap<T, usize>>,
    ns: &str,
    names: &BTreeSet<T>,
) {
    let Some(by_name) = counts.get_mut(ns) else {
        return;
    };
    for name in names {
        if let Some(count) = by_name.get_mut(name) {
            *count -= 1;
            if *count == 0 {
                by_name.remove(name);
            }
        }
    }
    if by_name.is_empty() {
        counts.remove(ns);
    }
}

fn counted<T: Ord + Clone>(
    counts: &BTreeMap<String, BTreeMap<T, usize>>,
) -> BTreeMap<String, BTreeSet<T>> {
    counts
        .iter()
        .map(|(ns, by_name)| (ns.clone(), by_name.keys().cloned().collect()))
        .collect()
}

/// The served namespaces that hold Ingresses of the class, read from every Ingress.
fn namespaces_of_class(scope: &Scope<'_>, ingresses: &[Arc<Ingress>]) -> BTreeSet<String> {
    ingresses
        .iter()
        .filter(|i| portico_ingress::belongs_to_class(i, scope.class, scope.is_default_class))
        .filter_map(|i| i.metadata.namespace.as_deref())
        .filter(|ns| scope.served_namespaces.contains(*ns))
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

fn lookup<'s>(services: &'s Services) -> impl Fn(&str, &str) -> Option<&'s Service> + 's {
    |ns, name| {
        services
            .get(ns)
            .and_then(|s| s.get(name))
            .map(AsRef::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn ingress(ns: &str, name: &str, created: &str, spec: Value) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name, "uid": format!("{ns}-{name}"), "creationTimestamp": created},
            "spec": spec,
        }))
        .expect("ingress")
    }

    fn site(host: &str, path: &str, service: &str) -> Value {
        json!({"ingressClassName": "web", "rules": [{"host": host, "http": {"paths": [
            {"path": path, "pathType": "Prefix", "backend": {"service": {"name": service, "port": {"number": 80}}}}]}}]})
    }

    fn services(namespaces: &[&str]) -> Services {
        namespaces
            .iter()
            .map(|ns| {
                let svc: Service = serde_json::from_value(json!({
                    "metadata": {"namespace": ns, "name": "site"},
                    "spec": {"ports": [{"name": "http", "port": 80}]},
                }))
                .expect("service");
                (
                    (*ns).to_owned(),
                    [("site".to_owned(), Arc::new(svc))].into(),
                )
            })
            .collect()
    }

    const T0: &str = "2026-01-01T00:00:00Z";
    const T1: &str = "2026-01-02T00:00:00Z";

    fn scope_for<'s>(
        served: &'s BTreeSet<String>,
        policy: &'s TenantPolicy,
        limits: &'s Limits,
    ) -> Scope<'s> {
        Scope {
            class: "web",
            is_default_class: false,
            instance_namespace: "a",
            served_namespaces: served,
            policy,
            limits,
        }
    }

    fn run(all: &[Ingress], served: &[&str]) -> (Kept, Verdicts) {
        let served_namespaces: BTreeSet<String> = served.iter().map(|s| (*s).to_owned()).collect();
        let (policy, limits) = (TenantPolicy::default(), Limits::default());
        let scope = scope_for(&served_namespaces, &policy, &limits);
        let all: Vec<Arc<Ingress>> = all.iter().cloned().map(Arc::new).collect();
        let mut kept = Kept::default();
        let v = kept.judge(&scope, &all, |_| services(served), "web", &all_namespaces());
        (kept, v)
    }

    /// Names of the Ingresses of the class, served or not, oldest first.
    fn names(kept: &Kept, served: bool) -> Vec<String> {
        kept.outcomes
            .values()
            .filter(|o| o.served == served)
            .map(|o| name(&o.ingress))
            .collect()
    }

    fn all_namespaces() -> BTreeSet<String> {
        ["a", "b", "c"].map(String::from).into()
    }

    fn name(i: &Ingress) -> String {
        i.metadata.name.clone().unwrap_or_default()
    }

    #[test]
    fn invalid_conflicting_and_unserved_ingresses_are_told_apart() {
        let all = [
            ingress("a", "good", T0, site("good.com", "/", "site")),
            ingress("a", "regex", T0, site("r.com", "/api/(.*)", "site")),
            ingress("a", "missing", T0, site("m.com", "/", "nope")),
            ingress("b", "newer", T1, site("good.com", "/", "site")),
            ingress("c", "elsewhere", T0, site("e.com", "/", "site")),
        ];
        let (kept, v) = run(&all, &["a", "b"]);
        assert_eq!(names(&kept, true), ["good"]);
        assert_eq!(
            names(&kept, false),
            ["missing", "regex", "elsewhere", "newer"],
            "oldest first"
        );
        assert_eq!((v.served, v.rejected), (1, 4));
        let warnings: Vec<_> = v
            .warnings
            .iter()
            .map(|w| (name(&w.ingress), w.reason, w.note.as_str()))
            .collect();
        assert_eq!(warnings.len(), 4, "{warnings:#?}");
        assert_eq!(
            warnings[0],
            (
                "missing".into(),
                "IngressRejected",
                "not served by IngressClass web: Service a/nope not found"
            )
        );
        assert_eq!(
            warnings[1],
            (
                "regex".into(),
                "IngressRejected",
                "not served by IngressClass web: path \"/api/(.*)\" contains '(': regular expressions are not supported"
            )
        );
        assert_eq!(
            (warnings[2].0.as_str(), warnings[2].1),
            ("elsewhere", "NamespaceNotServed")
        );
        assert_eq!(
            warnings[3],
            (
                "newer".into(),
                "HostNotOwned",
                "IngressClass web: host good.com belongs to namespace a (its oldest Ingress is \
                 a/good); rules for it are not served unless an Ingress there names this \
                 namespace in portico.dev/share-host-with"
            )
        );
    }

    #[test]
    fn a_partly_conflicting_ingress_is_still_served() {
        let mut newer = site("good.com", "/", "site");
        newer["rules"][0]["http"]["paths"]
            .as_array_mut()
            .expect("paths")
            .push(json!({"path": "/own", "pathType": "Prefix", "backend": {"service": {"name": "site", "port": {"number": 80}}}}));
        let all = [
            ingress("a", "good", T0, site("good.com", "/", "site")),
            ingress("a", "newer", T1, newer),
        ];
        let (_, v) = run(&all, &["a"]);
        assert_eq!((v.served, v.rejected), (2, 0));
        assert_eq!(v.warnings.len(), 1);
        assert_eq!(v.warnings[0].reason, "IngressConflict");
    }

    /// The operator's memo trusts `services_version`: a Service that loses the port an
    /// unchanged Ingress names must still take the Ingress out of service, and the same
    /// Services give the same version.
    #[test]
    fn a_changed_service_is_seen_through_the_memo() {
        let mut ing = ingress("a", "web", T0, site("a.test", "/", "site"));
        ing.metadata.resource_version = Some("1".into());
        let service = |version: &str, port: u16| -> Services {
            let svc: Service = serde_json::from_value(json!({
                "metadata": {"namespace": "a", "name": "site", "uid": "svc", "resourceVersion": version},
                "spec": {"ports": [{"name": "http", "port": port}]},
            }))
            .expect("service");
            [("a".to_owned(), [("site".to_owned(), Arc::new(svc))].into())].into()
        };
        let served: BTreeSet<String> = ["a".to_owned()].into();
        let (policy, limits) = (TenantPolicy::default(), Limits::default());
        let scope = scope_for(&served, &policy, &limits);
        let all = [Arc::new(ing)];
        let mut kept = Kept::default();
        let before = service("7", 80);
        assert_eq!(
            services_version(&before),
            services_version(&service("7", 80))
        );
        let v = kept.judge(&scope, &all, |_| before.clone(), "web", &BTreeSet::new());
        assert_eq!(v.served, 1);
        let v = kept.judge(&scope, &all, |_| before.clone(), "web", &BTreeSet::new());
        assert_eq!(v.served, 1, "remembered");
        assert!(!v.in_full);
        let after = service("8", 81);
        assert_ne!(services_version(&before), services_version(&after));
        let v = kept.judge(&scope, &all, |_| after.clone(), "web", &BTreeSet::new());
        assert_eq!(v.served, 0, "port 80 is gone");
        assert!(v.in_full, "other Services: judged again");
        assert_ne!(
            services_version(&before),
            services_version(&Services::new())
        );
    }

    /// Everything a reconcile acts on, comparable.
    fn report(v: &Verdicts) -> String {
        let warnings: Vec<_> = v
            .warnings
            .iter()
            .map(|w| (name(&w.ingress), w.reason, &w.note))
            .collect();
        let served: Vec<_> = v
            .served_checked
            .iter()
            .map(|(i, c)| (name(i), c.as_ref()))
            .collect();
        format!(
            "{} {} {} {warnings:?} {:?} {:?} {served:?}",
            v.served, v.rejected, v.annotations_not_honoured, v.tls_secrets, v.backend_cas
        )
    }

    /// A kept judgement, updated change by change (some alone, some in full), says what a
    /// judgement of everything from nothing says, after every change; and the changes
    /// that stand alone are judged alone.
    #[test]
    fn a_kept_judgement_says_what_a_full_one_says() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let served: BTreeSet<String> = ["a".to_owned(), "b".to_owned()].into();
        let (policy, limits) = (TenantPolicy::default(), Limits::default());
        let scope = scope_for(&served, &policy, &limits);
        let services = services(&["a", "b"]);
        let hosts = ["x.t", "*.t", "y.t", "z.u"];
        let times = [T0, T1];
        let make = |next: &mut dyn FnMut(usize) -> usize, ns: &str, name: &str| {
            // Mostly unique hosts (they stand alone), sometimes shared ones.
            let host = if next(3) == 0 {
                hosts[next(hosts.len())].to_owned()
            } else {
                format!("{name}.{ns}.test")
            };
            let mut spec = site(&host, ["/", "/p"][next(2)], ["site", "nope"][next(4) / 3]);
            if next(8) == 0 {
                spec["ingressClassName"] = json!("other");
            }
            if next(6) == 0 {
                spec["tls"] = json!([{"hosts": [host], "secretName": format!("cert-{}", next(3))}]);
            }
            Arc::new(ingress(ns, name, times[next(2)], spec))
        };
        let mut store: Vec<Arc<Ingress>> = Vec::new();
        let mut kept = Kept::default();
        let mut alone = 0;
        for round in 0..400 {
            match next(5) {
                0 | 1 => {
                    let ns = ["a", "b", "c"][next(3)];
                    let name = format!("i{round}");
                    store.push(make(&mut next, ns, &name));
                }
                2 if !store.is_empty() => {
                    let at = next(store.len());
                    let old = store[at].clone();
                    let (ns, name) = named(&old);
                    let mut new = make(&mut next, &ns, &name);
                    Arc::make_mut(&mut new).metadata.creation_timestamp =
                        old.metadata.creation_timestamp.clone();
                    store[at] = new;
                }
                3 if !store.is_empty() => {
                    let at = next(store.len());
                    store.swap_remove(at);
                }
                _ => {
                    // The same object again, only its status or version new.
                    if let Some(at) = (!store.is_empty()).then(|| next(store.len())) {
                        store[at] = Arc::new(Ingress::clone(&store[at]));
                    }
                }
            }
            let mut asked = BTreeSet::new();
            let v = kept.judge(
                &scope,
                &store,
                |namespaces| {
                    asked = namespaces.clone();
                    services.clone()
                },
                "web",
                &all_namespaces(),
            );
            assert_eq!(asked, namespaces_of_class(&scope, &store), "round {round}");
            if !v.in_full {
                alone += 1;
            }
            let fresh = Kept::default().judge(
                &scope,
                &store,
                |_| services.clone(),
                "web",
                &all_namespaces(),
            );
            assert_eq!(report(&v), report(&fresh), "round {round}");
        }
        assert!(alone > 150, "{alone} of 400 judged alone");
    }

    /// After a change judged alone only the changed Ingress's status is checked again; a
    /// new address, or a judgement in full, checks every one.
    #[test]
    fn only_changed_ingresses_have_their_status_checked_again() {
        let served: BTreeSet<String> = ["a".to_owned()].into();
        let (policy, limits) = (TenantPolicy::default(), Limits::default());
        let scope = scope_for(&served, &policy, &limits);
        let services = services(&["a"]);
        let mut store: Vec<Arc<Ingress>> = (0..5)
            .map(|i| {
                Arc::new(ingress(
                    "a",
                    &format!("i{i}"),
                    T0,
                    site(&format!("h{i}.test"), "/", "site"),
                ))
            })
            .collect();
        let mut kept = Kept::default();
        let judge = |kept: &mut Kept, store: &[Arc<Ingress>]| {
            kept.judge(&scope, store, |_| services.clone(), "web", &BTreeSet::new())
        };
        let lb: IngressLoadBalancerStatus =
            serde_json::from_value(json!({"ingress": [{"ip": "10.0.0.1"}]})).expect("lb");
        judge(&mut kept, &store);
        assert_eq!(kept.unwritten(&lb).len(), 5, "first judgement: all");
        kept.written(&lb);
        assert!(kept.unwritten(&lb).is_empty());
        store.push(Arc::new(ingress(
            "a",
            "new",
            T1,
            site("new.test", "/", "site"),
        )));
        let v = judge(&mut kept, &store);
        assert!(!v.in_full);
        let unwritten: Vec<_> = kept
            .unwritten(&lb)
            .iter()
            .map(|(i, s)| (name(i), *s))
            .collect();
        assert_eq!(unwritten, [("new".to_owned(), true)]);
        // Not written (a failed reconcile): still there after another judgement.
        judge(&mut kept, &store);
        assert_eq!(kept.unwritten(&lb).len(), 1);
        kept.written(&lb);
        let other: IngressLoadBalancerStatus =
            serde_json::from_value(json!({"ingress": [{"ip": "10.0.0.2"}]})).expect("lb");
        assert_eq!(kept.unwritten(&other).len(), 6, "a new address: all");
        // A second Ingress on a host already named is judged with all the others.
        store.push(Arc::new(ingress(
            "a",
            "late",
            T1,
            site("h0.test", "/", "site"),
        )));
        let v = judge(&mut kept, &store);
        assert!(v.in_full);
        assert_eq!(kept.unwritten(&lb).len(), 7);
        kept.written(&lb);
        // Status writes make new objects of all seven, "late" among them, which shares its
        // host and so could not be judged alone: nothing judged changed, so they replace
        // the old objects without a judgement, and their statuses are checked again.
        let mut written = |i: &Arc<Ingress>| {
            let mut i = Ingress::clone(i);
            i.metadata.resource_version = Some("2".into());
            i.status = Some(serde_json::from_value(json!({"loadBalancer": lb})).expect("status"));
            Arc::new(i)
        };
        store = store.iter().map(&mut written).collect();
        let v = judge(&mut kept, &store);
        assert!(!v.in_full, "a status write is not a change to judge");
        assert_eq!(
            (v.served, v.rejected),
            (6, 1),
            "late's path conflicts, as before"
        );
        let unwritten = kept.unwritten(&lb);
        assert_eq!(unwritten.len(), 7);
        assert!(
            unwritten
                .iter()
                .all(|(i, _)| store.iter().any(|s| Arc::ptr_eq(s, i))),
            "the new objects are the ones reported"
        );
    }
}
