//! What the reconciler reads: the kinds it watches, reflected into stores held in its
//! context, and the change streams that drive the controller from the same watches.
//!
//! ```text
//!  watch Ingress, Service (per watched namespace), Namespace, IngressController
//!     ─▶ managedFields dropped ─▶ reflector ─▶ Store ───────────▶ reconcile reads
//!                                     └─▶ changes(fingerprint) ─▶ controller trigger
//!                                         (drops what changes nothing reconcile reads:
//!                                          status-only, managedFields-only, resync echoes)
//! ```
//!
//! One watch per kind: the same events fill the store and wake the controller, so the
//! reconciler lists nothing it watches, and its own status writes (Ingress
//! `status.loadBalancer`, the instance's status) do not wake it again. A deletion always
//! passes; a deletion missed while a watch was down is caught by the periodic resync.
//!
//! kube's shared reflector (`store_shared` + `subscribe`) would do the store part too, but its
//! subscribers are not told of deletions, which change verdicts here (a deleted Ingress
//! frees its host); so each store has one consumer, the controller, through
//! `Controller::watches_stream`.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::IngressController;
use crate::endpoints;
use crate::resources::MANAGED_SELECTOR;
use crate::verdict::Services;

/// The reflected objects of one kind: one store per watched namespace for namespaced
/// kinds (one for the cluster without `--watch-namespaces`), each with its objects
/// grouped where the kind is read by group (Services and hand-written EndpointSlices by
/// namespace, Ingresses by class).
pub struct Cache<K: Resource<DynamicType = ()> + Clone + 'static> {
    stores: Vec<Store<K>>,
    /// Beside `stores`, one each; empty for kinds read whole.
    grouped: Vec<Grouped<K>>,
    by: By,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Cache {
            stores: self.stores.clone(),
            grouped: self.grouped.clone(),
            by: self.by,
        }
    }
}

/// What a [`Cache`]'s objects are grouped by.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum By {
    Nothing,
    Namespace,
    Class,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Cache<K> {
    fn new(reflected: Vec<(Store<K>, Option<Grouped<K>>)>, by: By) -> Self {
        let (stores, grouped): (Vec<_>, Vec<_>) = reflected.into_iter().unzip();
        let grouped: Vec<Grouped<K>> = grouped.into_iter().flatten().collect();
        let by = if grouped.len() == stores.len() {
            by
        } else {
            By::Nothing
        };
        Cache {
            stores,
            grouped,
            by,
        }
    }

    /// The object `namespace/name` (`name` for cluster-scoped kinds).
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        let key = reflector::ObjectRef::new(name);
        let key = match namespace {
            Some(ns) => key.within(ns),
            None => key,
        };
        self.stores.iter().find_map(|s| s.get(&key))
    }

    /// Every object.
    pub fn state(&self) -> Vec<Arc<K>> {
        self.stores.iter().flat_map(Store::state).collect()
    }

    /// No object at all.
    pub fn is_empty(&self) -> bool {
        self.stores.iter().all(Store::is_empty)
    }

    /// The namespaces that hold an object: from the groups when this kind is grouped by
    /// namespace, else by reading every object.
    pub fn namespaces(&self) -> BTreeSet<String> {
        if self.by != By::Namespace {
            return self
                .state()
                .iter()
                .filter_map(|o| o.meta().namespace.clone())
                .collect();
        }
        self.grouped
            .iter()
            .flat_map(Grouped::keys)
            .flatten()
            .collect()
    }

    /// The objects of `namespace`: its group when this kind is grouped by namespace, else
    /// by reading every object.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        if self.by != By::Namespace {
            return self
                .state()
                .into_iter()
                .filter(|o| o.meta().namespace.as_deref() == Some(namespace))
                .collect();
        }
        let key = Some(namespace.to_owned());
        self.grouped.iter().flat_map(|g| g.get(&key)).collect()
    }

    /// Resolves once every store has been listed in full; false when a reflector is gone.
    /// One waiter per store only: kube's readiness signal wakes just the last task that
    /// polled it, so reconciles wait on [`Stores::ready`] instead.
    pub async fn listed(&self) -> bool {
        for s in &self.stores {
            if s.wait_until_ready().await.is_err() {
                return false;
            }
        }
        true
    }
}

impl Cache<Ingress> {
    /// The Ingresses that belong to `class` (with the class-less ones when it is the
    /// default): its groups when Ingresses are grouped by class, else by reading every
    /// Ingress.
    pub fn of_class(&self, class: &str, is_default: bool) -> Vec<Arc<Ingress>> {
        if self.by != By::Class {
            return self
                .state()
                .into_iter()
                .filter(|i| portico_ingress::belongs_to_class(i, class, is_default))
                .collect();
        }
        let named = Some(class.to_owned());
        let mut out: Vec<Arc<Ingress>> = self.grouped.iter().flat_map(|g| g.get(&named)).collect();
        if is_default {
            out.extend(self.grouped.iter().flat_map(|g| g.get(&None)));
        }
        out
    }
}

/// An Ingress's group: the class it asks for, `None` without one.
fn class_key(ingress: &Ingress) -> Option<String> {
    portico_ingress::class_of(ingress).map(str::to_owned)
}

fn namespace_key<K: Resource>(object: &K) -> Option<String> {
    object.meta().namespace.clone()
}

/// An object's identity in its store.
type Named = (String, String);

/// What a [`Grouped`] groups its objects by: the key read from each.
type GroupKey<K> = fn(&K) -> Option<String>;

/// A store's objects grouped by a key read from each (an object's namespace, an
/// Ingress's class), kept from the same watch events as the store and in the same way (a
/// relist replaces them when it is complete), holding the store's own `Arc`s. kube's
/// reflector store has no index: finding the Services of a few namespaces, the namespaces
/// that hold a hand-written EndpointSlice, or the Ingresses of one class read every such
/// object of the cluster. With 10,000 of each in other namespaces or another class that
/// was most of the operator's CPU per new Ingress (`just bench --phases scale,operator`).
pub struct Grouped<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    key: GroupKey<K>,
    groups: Arc<RwLock<Groups<K>>>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Clone for Grouped<K> {
    fn clone(&self) -> Self {
        Grouped {
            store: self.store.clone(),
            key: self.key,
            groups: self.groups.clone(),
        }
    }
}

struct Groups<K> {
    members: HashMap<Option<String>, HashMap<Named, Arc<K>>>,
    /// Each object's group, for an update that moves it (an Ingress's class can change).
    group_of: HashMap<Named, Option<String>>,
}

impl<K> Groups<K> {
    fn remove(&mut self, named: &Named) {
        if let Some(key) = self.group_of.remove(named)
            && let Some(members) = self.members.get_mut(&key)
        {
            members.remove(named);
            if members.is_empty() {
                self.members.remove(&key);
            }
        }
    }

    fn insert(&mut self, named: Named, key: Option<String>, object: Arc<K>) {
        if self.group_of.get(&named) != Some(&key) {
            self.remove(&named);
            self.group_of.insert(named.clone(), key.clone());
        }
        self.members.entry(key).or_default().insert(named, object);
    }
}

fn named<K: Resource>(object: &K) -> Named {
    let meta = object.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Grouped<K> {
    /// Groups `store`'s objects by `key`; [`Grouped::apply`] must follow every event the
    /// store's writer applies, after it.
    pub fn new(store: Store<K>, key: GroupKey<K>) -> Self {
        Grouped {
            store,
            key,
            groups: Arc::new(RwLock::new(Groups {
                members: HashMap::new(),
                group_of: HashMap::new(),
            })),
        }
    }

    /// Follows one watch event, after the store has: the object the store now holds goes
    /// to its group. A (re)list is taken from the store once it is complete, as the store
    /// takes it; until then both keep what they had.
    pub fn apply(&self, event: &watcher::Event<K>) {
        let mut groups = self.groups.write().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Apply(o) => match self.store.get(&reflector::ObjectRef::from_obj(o)) {
                Some(held) => groups.insert(named(o), (self.key)(o), held),
                None => groups.remove(&named(o)),
            },
            watcher::Event::Delete(o) => groups.remove(&named(o)),
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
            watcher::Event::InitDone => {
                groups.members.clear();
                groups.group_of.clear();
                for held in self.store.state() {
                    let key = (self.key)(&held);
                    groups.insert(named(held.as_ref()), key, held);
                }
            }
        }
    }

    fn keys(&self) -> Vec<Option<String>> {
        let groups = self.groups.read().unwrap_or_else(|e| e.into_inner());
        groups.members.keys().cloned().collect()
    }

    fn get(&self, key: &Option<String>) -> Vec<Arc<K>> {
        let groups = self.groups.read().unwrap_or_else(|e| e.into_inner());
        groups
            .members
            .get(key)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// What a reflected kind keeps beside its store.
pub enum Index<K> {
    None,
    /// Its objects by namespace, for [`Cache::in_namespace`] and [`Cache::namespaces`].
    ByNamespace,
    /// Its objects by the class `key` reads, for [`Cache::of_class`].
    ByClass(GroupKey<K>),
}

/// Reflects a namespaced kind over the APIs `--watch-namespaces` allows.
pub fn reflect_scoped<K>(
    client: &Client,
    scope: Option<&BTreeSet<String>>,
    config: &watcher::Config,
    fingerprint: fn(&K) -> u64,
    index: Index<K>,
) -> (Cache<K>, Vec<Changes<K>>)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let (by, key) = match index {
        Index::None => (By::Nothing, None),
        Index::ByNamespace => (By::Namespace, Some(namespace_key::<K> as GroupKey<K>)),
        Index::ByClass(key) => (By::Class, Some(key)),
    };
    let (reflected, changes) = crate::apply::scoped::<K>(client, scope)
        .into_iter()
        .map(|api| {
            let (store, grouped, changes) = reflect_into(api, config.clone(), fingerprint, key);
            ((store, grouped), changes)
        })
        .unzip();
    (Cache::new(reflected, by), changes)
}

/// Reflects a cluster-scoped kind.
pub fn reflect_cluster<K>(
    client: &Client,
    config: &watcher::Config,
    fingerprint: fn(&K) -> u64,
) -> (Cache<K>, Changes<K>)
where
    K: Resource<DynamicType = (), Scope = ClusterResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let (store, changes) = reflect(Api::all(client.clone()), config.clone(), fingerprint);
    (Cache::new(vec![(store, None)], By::Nothing), changes)
}

/// Everything reconcile reads, reflected: what it serves (Ingresses, Services,
/// Namespaces, EndpointSlices) and what it writes (the children it applies, which it then
/// applies only when they differ from what it last applied).
#[derive(Clone)]
pub struct Stores {
    pub ingresses: Cache<Ingress>,
    pub services: Cache<Service>,
    pub namespaces: Cache<Namespace>,
    pub ingress_classes: Cache<IngressClass>,
    pub service_accounts: Cache<ServiceAccount>,
    pub deployments: Cache<Deployment>,
    pub pdbs: Cache<PodDisruptionBudget>,
    pub hpas: Cache<HorizontalPodAutoscaler>,
    pub roles: Cache<Role>,
    pub role_bindings: Cache<RoleBinding>,
    pub cluster_roles: Cache<ClusterRole>,
    pub cluster_role_bindings: Cache<ClusterRoleBinding>,
    pub slices: endpoints::Slices,
    /// Turns true once every store has been listed in full (see [`Stores::signal_ready`]).
    ready: tokio::sync::watch::Receiver<bool>,
}

/// A stream of changed objects, for `Controller::watches_stream`.
pub type Changes<K> = futures::stream::BoxStream<'static, Result<K, watcher::Error>>;

/// The change streams that fill [`Stores`]; each must be polled (by the controller) for
/// its store to fill.
pub struct Streams {
    pub ingresses: Vec<Changes<Ingress>>,
    pub services: Vec<Changes<Service>>,
    pub namespaces: Changes<Namespace>,
    pub ingress_classes: Changes<IngressClass>,
    pub service_accounts: Vec<Changes<ServiceAccount>>,
    pub deployments: Vec<Changes<Deployment>>,
    pub pdbs: Vec<Changes<PodDisruptionBudget>>,
    pub hpas: Vec<Changes<HorizontalPodAutoscaler>>,
    pub roles: Vec<Changes<Role>>,
    pub role_bindings: Vec<Changes<RoleBinding>>,
    pub cluster_roles: Changes<ClusterRole>,
    pub cluster_role_bindings: Changes<ClusterRoleBinding>,
    pub slices: endpoints::SliceStreams,
}

impl Stores {
    /// The stores and the streams that fill them, over the APIs `--watch-namespaces` allows.
    pub fn reflect(client: &Client, scope: Option<&BTreeSet<String>>) -> (Stores, Streams) {
        let all = watcher::Config::default().any_semantic();
        let managed = watcher::Config::default()
            .labels(MANAGED_SELECTOR)
            .any_semantic();
        let (ingresses, ingress_changes) = reflect_scoped(
            client,
            scope,
            &all,
            ingress_fingerprint,
            Index::ByClass(class_key),
        );
        let (services, service_changes) =
            reflect_scoped(client, scope, &all, service_fingerprint, Index::ByNamespace);
        let (namespaces, namespace_changes) = reflect_cluster(client, &all, namespace_fingerprint);
        let (ingress_classes, class_changes) = reflect_cluster(client, &all, content_fingerprint);
        let (service_accounts, sa_changes) =
            reflect_scoped(client, scope, &managed, content_fingerprint, Index::None);
        let (deployments, deployment_changes) =
            reflect_scoped(client, scope, &managed, content_fingerprint, Index::None);
        let (pdbs, pdb_changes) =
            reflect_scoped(client, scope, &managed, content_fingerprint, Index::None);
        let (hpas, hpa_changes) =
            reflect_scoped(client, scope, &managed, content_fingerprint, Index::None);
        let (roles, role_changes) =
            reflect_scoped(client, scope, &managed, content_fingerprint, Index::None);
        let (role_bindings, rb_changes) =
            reflect_scoped(client, scope, &managed, content_fingerprint, Index::None);
        let (cluster_roles, cr_changes) = reflect_cluster(client, &managed, content_fingerprint);
        let (cluster_role_bindings, crb_changes) =
            reflect_cluster(client, &managed, content_fingerprint);
        let (slices, slice_changes) = endpoints::Slices::reflect(client, scope);
        let (_, ready) = tokio::sync::watch::channel(false);
        (
            Stores {
                ingresses,
                services,
                namespaces,
                ingress_classes,
                service_accounts,
                deployments,
                pdbs,
                hpas,
                roles,
                role_bindings,
                cluster_roles,
                cluster_role_bindings,
                slices,
                ready,
            },
            Streams {
                ingresses: ingress_changes,
                services: service_changes,
                namespaces: namespace_changes,
                ingress_classes: class_changes,
                service_accounts: sa_changes,
                deployments: deployment_changes,
                pdbs: pdb_changes,
                hpas: hpa_changes,
                roles: role_changes,
                role_bindings: rb_changes,
                cluster_roles: cr_changes,
                cluster_role_bindings: crb_changes,
                slices: slice_changes,
            },
        )
    }

    /// The one task that waits for every store's first full list and then tells
    /// [`Stores::ready`]'s waiters (kube's own readiness signal wakes only one waiter);
    /// `run` spawns it next to the controller that fills the stores.
    pub fn signal_ready(&mut self) -> impl Future<Output = ()> + Send + 'static {
        let (tx, rx) = tokio::sync::watch::channel(false);
        self.ready = rx;
        let stores = self.clone();
        async move {
            let listed = stores.ingresses.listed().await
                && stores.services.listed().await
                && stores.namespaces.listed().await
                && stores.ingress_classes.listed().await
                && stores.service_accounts.listed().await
                && stores.deployments.listed().await
                && stores.pdbs.listed().await
                && stores.hpas.listed().await
                && stores.roles.listed().await
                && stores.role_bindings.listed().await
                && stores.cluster_roles.listed().await
                && stores.cluster_role_bindings.listed().await
                && stores.slices.listed().await;
            if listed {
                let _ = tx.send(true);
            }
        }
    }

    /// Resolves once every store has been listed in full; false when that will not happen
    /// (the controller stopped, or [`Stores::signal_ready`] was not run).
    pub async fn ready(&self) -> bool {
        self.ready.clone().wait_for(|ready| *ready).await.is_ok()
    }

    /// The Services of `namespaces`, by namespace and name.
    pub fn services_in(&self, namespaces: &BTreeSet<String>) -> Services {
        namespaces
            .iter()
            .filter_map(|ns| {
                let by_name: BTreeMap<String, Arc<Service>> = self
                    .services
                    .in_namespace(ns)
                    .into_iter()
                    .map(|s| (s.name_any(), s))
                    .collect();
                (!by_name.is_empty()).then(|| (ns.clone(), by_name))
            })
            .collect()
    }

    /// The Namespaces that could be served by `instance`: its own without a selector,
    /// else those the selector matches.
    pub fn candidate_namespaces(
        &self,
        instance: &IngressController,
        own: &str,
    ) -> Result<Vec<Arc<Namespace>>, crate::tenancy::InvalidSelector> {
        match &instance.spec.namespace_selector {
            None => Ok(self.namespaces.get(None, own).into_iter().collect()),
            Some(selector) => {
                let selector = Selector::try_from(selector.clone())
                    .map_err(|e| crate::tenancy::InvalidSelector::new(e.to_string()))?;
                Ok(self
                    .namespaces
                    .state()
                    .into_iter()
                    .filter(|ns| selector.matches(ns.labels()))
                    .collect())
            }
        }
    }
}

/// Reflects `api` into a store; the returned stream yields the objects whose
/// `fingerprint` changed, and every deleted one.
pub fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    fingerprint: fn(&K) -> u64,
) -> (Store<K>, Changes<K>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, _, changes) = reflect_into(api, config, fingerprint, None);
    (store, changes)
}

/// [`reflect`], with the store's objects grouped by `group_by` too.
fn reflect_into<K>(
    api: Api<K>,
    config: watcher::Config,
    fingerprint: fn(&K) -> u64,
    group_by: Option<GroupKey<K>>,
) -> (Store<K>, Option<Grouped<K>>, Changes<K>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let grouped = group_by.map(|key| Grouped::new(store.clone(), key));
    let follower = grouped.clone();
    let events = watcher(api, config)
        .default_backoff()
        // managedFields are often the largest part of an object and never read here.
        .modify(|o: &mut K| o.managed_fields_mut().clear())
        .reflect(writer)
        .inspect(move |event| {
            if let (Some(grouped), Ok(event)) = (&follower, event) {
                grouped.apply(event);
            }
        });
    (store, grouped, changes(events, fingerprint).boxed())
}

/// The objects of a watch whose fingerprint differs from the last one seen for them (by
/// uid), and every deleted one; unchanged updates yield nothing. What a (re)list finds is
/// yielded when the list is complete, once the store holds it too, so that a reconcile it
/// wakes reads it there.
pub fn changes<K, S>(
    events: S,
    fingerprint: fn(&K) -> u64,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut listed: Vec<K> = Vec::new();
    let key = |o: &K| {
        o.meta()
            .uid
            .clone()
            .unwrap_or_else(|| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
    };
    events.flat_map(move |event| {
        let mut changed = |o: &K| {
            let print = fingerprint(o);
            seen.insert(key(o), print) != Some(print)
        };
        let out: Vec<Result<K, watcher::Error>> = match event {
            Err(e) => vec![Err(e)],
            Ok(watcher::Event::Apply(o)) => {
                if changed(&o) {
                    vec![Ok(o)]
                } else {
                    vec![]
                }
            }
            Ok(watcher::Event::Delete(o)) => {
                seen.remove(&key(&o));
                vec![Ok(o)]
            }
            Ok(watcher::Event::Init) => {
                listed.clear();
                vec![]
            }
            Ok(watcher::Event::InitApply(o)) => {
                if changed(&o) {
                    listed.push(o);
                }
                vec![]
            }
            Ok(watcher::Event::InitDone) => {
                std::mem::take(&mut listed).into_iter().map(Ok).collect()
            }
        };
        futures::stream::iter(out)
    })
}

pub fn hash_json(value: &impl Serialize) -> u64 {
    let mut hasher = DefaultHasher::new();
    // Serializing typed Kubernetes objects cannot fail; an error hashes as empty.
    serde_json::to_vec(value)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

/// Whether two versions of one Ingress differ only in what [`ingress_fingerprint`] leaves
/// out (its status, resourceVersion, managedFields): nothing a judgement reads. A field
/// comparison, not two fingerprints, as it runs for each of 10,000 status writes.
pub fn same_ingress_inputs(a: &Ingress, b: &Ingress) -> bool {
    a.metadata.uid == b.metadata.uid
        && a.metadata.creation_timestamp == b.metadata.creation_timestamp
        && a.metadata.labels == b.metadata.labels
        && a.metadata.annotations == b.metadata.annotations
        && a.metadata.deletion_timestamp == b.metadata.deletion_timestamp
        && a.spec == b.spec
}

/// What reconcile reads of an Ingress: labels, annotations, spec, deletion; not its status
/// (which the operator writes) nor managedFields.
pub fn ingress_fingerprint(i: &Ingress) -> u64 {
    hash_json(&(
        &i.metadata.labels,
        &i.metadata.annotations,
        &i.metadata.deletion_timestamp,
        &i.spec,
    ))
}

/// What reconcile reads of a Service: labels, annotations, spec, and the status (the proxy
/// Service's load balancer address becomes the instance's).
pub fn service_fingerprint(s: &Service) -> u64 {
    hash_json(&(
        &s.metadata.labels,
        &s.metadata.annotations,
        &s.metadata.deletion_timestamp,
        &s.spec,
        &s.status,
    ))
}

/// What reconcile reads of a Namespace: labels (selectors) and annotations (consent).
pub fn namespace_fingerprint(n: &Namespace) -> u64 {
    hash_json(&(
        &n.metadata.labels,
        &n.metadata.annotations,
        &n.metadata.deletion_timestamp,
    ))
}

/// Everything but the resourceVersion and managedFields: for the children the operator
/// applies, whose every change (a hand edit to undo, a Deployment's ready replicas) counts.
pub fn content_fingerprint<K: Resource + Clone + Serialize>(o: &K) -> u64 {
    let mut o = o.clone();
    o.meta_mut().resource_version = None;
    o.meta_mut().managed_fields = None;
    hash_json(&o)
}

/// What wakes an instance's reconcile: its spec (generation), labels, annotations and
/// finalizers, and its deletion; not the status it writes itself.
pub fn instance_fingerprint(ic: &IngressController) -> u64 {
    hash_json(&(
        &ic.metadata.generation,
        &ic.metadata.labels,
        &ic.metadata.annotations,
        &ic.metadata.finalizers,
        &ic.metadata.deletion_timestamp,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;
    use serde_json::json;

    fn ingress(uid: &str, host: &str, address: Option<&str>) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"namespace": "a", "name": uid, "uid": uid, "resourceVersion": host,
                "managedFields": [{"manager": address.unwrap_or("x")}]},
            "spec": {"rules": [{"host": host}]},
            "status": {"loadBalancer": {"ingress": address.map(|ip| vec![json!({"ip": ip})])}},
        }))
        .expect("ingress")
    }

    #[tokio::test]
    async fn status_only_and_managed_fields_only_changes_and_relists_wake_nothing() {
        use watcher::Event::*;
        let events = vec![
            Init,
            InitApply(ingress("one", "a.example", None)),
            InitApply(ingress("two", "b.example", None)),
            InitDone,
            // The operator's own status write, with its managedFields entry.
            Apply(ingress("one", "a.example", Some("10.0.0.1"))),
            // A relist finding nothing new.
            Init,
            InitApply(ingress("one", "a.example", Some("10.0.0.1"))),
            InitApply(ingress("two", "b.example", None)),
            InitDone,
            // A spec change, then a deletion.
            Apply(ingress("two", "c.example", None)),
            Delete(ingress("one", "a.example", Some("10.0.0.1"))),
        ];
        let out: Vec<String> = changes(
            stream::iter(events.into_iter().map(Ok)),
            ingress_fingerprint,
        )
        .map(|r| {
            let i = r.expect("no errors");
            format!(
                "{} {}",
                i.name_any(),
                i.spec.expect("spec").rules.expect("rules")[0]
                    .host
                    .clone()
                    .unwrap_or_default()
            )
        })
        .collect()
        .await;
        assert_eq!(
            out,
            [
                "one a.example",
                "two b.example",
                "two c.example",
                "one a.example"
            ]
        );
    }

    #[test]
    fn services_by_namespace_follow_the_store_through_relists_and_deletions() {
        use watcher::Event::*;
        let service = |ns: &str, name: &str| -> Service {
            serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}}))
                .expect("service")
        };
        let (store, mut writer) = reflector::store::<Service>();
        let index = Grouped::new(store.clone(), namespace_key);
        let indexed = Cache::new(vec![(store.clone(), Some(index.clone()))], By::Namespace);
        // The answer without the index: every object read.
        let scanned = Cache::new(vec![(store, None)], By::Nothing);
        let names = |cache: &Cache<Service>, ns: &str| {
            let mut names: Vec<String> = cache
                .in_namespace(ns)
                .iter()
                .map(|s| s.name_any())
                .collect();
            names.sort();
            names
        };
        let steps: Vec<(watcher::Event<Service>, [&[&str]; 3])> = vec![
            (Init, [&[], &[], &[]]),
            (InitApply(service("a", "one")), [&[], &[], &[]]),
            (InitApply(service("a", "two")), [&[], &[], &[]]),
            (InitApply(service("b", "one")), [&[], &[], &[]]),
            (InitDone, [&["one", "two"], &["one"], &[]]),
            (
                Apply(service("c", "x")),
                [&["one", "two"], &["one"], &["x"]],
            ),
            (
                Apply(service("a", "one")),
                [&["one", "two"], &["one"], &["x"]],
            ),
            (Delete(service("b", "one")), [&["one", "two"], &[], &["x"]]),
            // A relist after a broken watch: a/one and c/x went meanwhile. Until it is
            // complete, what was known stays.
            (Init, [&["one", "two"], &[], &["x"]]),
            (
                InitApply(service("a", "two")),
                [&["one", "two"], &[], &["x"]],
            ),
            (InitDone, [&["two"], &[], &[]]),
            (Delete(service("a", "two")), [&[], &[], &[]]),
            (Apply(service("b", "new")), [&[], &["new"], &[]]),
        ];
        for (i, (event, expected)) in steps.into_iter().enumerate() {
            writer.apply_watcher_event(&event);
            index.apply(&event);
            for (ns, want) in ["a", "b", "c"].into_iter().zip(expected) {
                assert_eq!(names(&indexed, ns), want, "step {i}, namespace {ns}");
                assert_eq!(
                    names(&scanned, ns),
                    want,
                    "step {i}, namespace {ns}, scanned"
                );
            }
            assert_eq!(
                indexed.namespaces(),
                scanned.namespaces(),
                "step {i}, namespaces"
            );
        }
        assert!(
            !index
                .groups
                .read()
                .expect("lock")
                .members
                .contains_key(&Some("a".to_owned())),
            "an emptied namespace is forgotten"
        );
    }

    /// The Ingresses of a class, read from the groups, are what reading every Ingress
    /// finds, and are the store's own objects (the judgement kept between reconciles tells
    /// an unchanged Ingress by its address), through class changes, the default class, a
    /// relist and deletions.
    #[test]
    fn ingresses_by_class_follow_the_store_through_class_changes_and_relists() {
        use watcher::Event::*;
        let ingress = |name: &str, class: Option<&str>, legacy: Option<&str>| -> Ingress {
            let mut meta = json!({"namespace": "a", "name": name});
            if let Some(legacy) = legacy {
                meta["annotations"] = json!({ "kubernetes.io/ingress.class": legacy });
            }
            serde_json::from_value(json!({
                "metadata": meta,
                "spec": {"ingressClassName": class},
            }))
            .expect("ingress")
        };
        let (store, mut writer) = reflector::store::<Ingress>();
        let index = Grouped::new(store.clone(), class_key);
        let indexed = Cache::new(vec![(store.clone(), Some(index.clone()))], By::Class);
        let scanned = Cache::new(vec![(store.clone(), None)], By::Nothing);
        let of = |cache: &Cache<Ingress>, class: &str, default: bool| {
            let mut found = cache.of_class(class, default);
            found.sort_by_key(|i| i.name_any());
            found
        };
        let steps: Vec<watcher::Event<Ingress>> = vec![
            Init,
            InitApply(ingress("one", Some("red"), None)),
            InitApply(ingress("two", None, Some("red"))),
            InitApply(ingress("three", None, None)),
            InitApply(ingress("four", Some("blue"), Some("red"))),
            InitDone,
            // Moves from red to blue, then back by the legacy annotation alone.
            Apply(ingress("one", Some("blue"), None)),
            Apply(ingress("one", None, Some("red"))),
            // Loses its class: it belongs to the default class now.
            Apply(ingress("two", None, None)),
            Delete(ingress("three", None, None)),
            Init,
            InitApply(ingress("one", None, Some("red"))),
            InitApply(ingress("five", Some("red"), None)),
            InitDone,
            Apply(ingress("six", None, None)),
        ];
        for (i, event) in steps.into_iter().enumerate() {
            writer.apply_watcher_event(&event);
            index.apply(&event);
            for (class, default) in [
                ("red", false),
                ("red", true),
                ("blue", false),
                ("green", true),
            ] {
                let from_groups = of(&indexed, class, default);
                let from_all = of(&scanned, class, default);
                let names = |v: &[Arc<Ingress>]| v.iter().map(|i| i.name_any()).collect::<Vec<_>>();
                assert_eq!(
                    names(&from_groups),
                    names(&from_all),
                    "step {i}, class {class}, default {default}"
                );
                for (g, a) in from_groups.iter().zip(&from_all) {
                    assert!(Arc::ptr_eq(g, a), "step {i}: not the store's own object");
                }
            }
        }
        let names = |v: Vec<Arc<Ingress>>| {
            let mut n: Vec<String> = v.iter().map(|i| i.name_any()).collect();
            n.sort();
            n
        };
        assert_eq!(names(indexed.of_class("red", false)), ["five", "one"]);
        // The relist found neither "two" nor "four".
        assert_eq!(names(indexed.of_class("red", true)), ["five", "one", "six"]);
        assert!(indexed.of_class("blue", false).is_empty());
    }
}
