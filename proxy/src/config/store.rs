//! The store: the watched objects in plain maps, driven by `apply`/`delete` (by watchers in
//! production, directly in unit tests). It does no IO and knows nothing about routes; it
//! tells the caller what kind of change happened.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::ResourceExt;

use portico_ingress::SliceEndpoints;

use super::ObjectKey;

/// Label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `kubectl apply`'s copy of the whole object, as it was last applied.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Any object the proxy watches. (Moved once from the watcher into the store: the size
/// difference between variants costs nothing worth a Box.)
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Object {
    IngressClass(IngressClass),
    Ingress(Ingress),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Secret(Secret),
    ConfigMap(ConfigMap),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    IngressClass,
    Ingress,
    Service,
    EndpointSlice,
    Secret,
    ConfigMap,
}

impl Kind {
    /// Kinds watched one object at a time, by name (the Role grants them by resourceNames).
    pub fn is_named(self) -> bool {
        matches!(self, Kind::Secret | Kind::ConfigMap)
    }
}

/// What a store change means for the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    None,
    /// Routes or certificates may differ: rebuild the snapshot (paced: `config::pace`).
    Routes,
    /// Only this Service's endpoints changed.
    Endpoints(ObjectKey),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::IngressClass(_) => Kind::IngressClass,
            Object::Ingress(_) => Kind::Ingress,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::Secret(_) => Kind::Secret,
            Object::ConfigMap(_) => Kind::ConfigMap,
        }
    }

    fn meta_mut(&mut self) -> &mut kube::api::ObjectMeta {
        match self {
            Object::IngressClass(o) => &mut o.metadata,
            Object::Ingress(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::EndpointSlice(o) => &mut o.metadata,
            Object::Secret(o) => &mut o.metadata,
            Object::ConfigMap(o) => &mut o.metadata,
        }
    }

    /// Drops what no build reads, which is most of an object in a large cluster: its
    /// managedFields, kubectl's last-applied copy of the whole object, owner references,
    /// status, and a Service's spec beyond its type and ports. (Of an EndpointSlice only
    /// its Service and what it gives each port are kept: [`Slice`].)
    fn forget_unread(&mut self) {
        let meta = self.meta_mut();
        meta.managed_fields = None;
        meta.owner_references = None;
        if let Some(annotations) = meta.annotations.as_mut() {
            annotations.remove(LAST_APPLIED_ANNOTATION);
        }
        match self {
            Object::Ingress(o) => o.status = None,
            Object::Service(o) => {
                o.status = None;
                // Of the spec, a build reads the type (ExternalName) and the ports.
                o.spec = o.spec.take().map(|spec| ServiceSpec {
                    type_: spec.type_,
                    ports: spec.ports,
                    ..ServiceSpec::default()
                });
            }
            _ => {}
        }
    }

    pub fn key(&self) -> ObjectKey {
        let (ns, name) = match self {
            Object::IngressClass(o) => (o.namespace(), o.name_any()),
            Object::Ingress(o) => (o.namespace(), o.name_any()),
            Object::Service(o) => (o.namespace(), o.name_any()),
            Object::EndpointSlice(o) => (o.namespace(), o.name_any()),
            Object::Secret(o) => (o.namespace(), o.name_any()),
            Object::ConfigMap(o) => (o.namespace(), o.name_any()),
        };
        ObjectKey {
            namespace: ns.unwrap_or_default(),
            name,
        }
    }
}

#[derive(Debug, Default)]
pub struct Store {
    pub ingress_classes: BTreeMap<String, IngressClass>,
    /// Boxed, here and below: a map's spare room then costs a pointer, not an object.
    pub ingresses: BTreeMap<ObjectKey, Box<Ingress>>,
    pub services: HashMap<ObjectKey, Box<Service>>,
    pub endpoint_slices: HashMap<ObjectKey, Slice>,
    /// Service key → its slices' keys, sorted (a Service has one or a few).
    slices_by_service: HashMap<ObjectKey, Vec<ObjectKey>>,
    pub secrets: HashMap<ObjectKey, Secret>,
    pub config_maps: HashMap<ObjectKey, ConfigMap>,
    /// Counts the changes to routes that did not come from an Ingress (a Service, Secret,
    /// ConfigMap or IngressClass): an Ingress compiled at the same count read the same.
    others: u64,
    /// Counts the Ingresses deleted so far.
    ingress_removals: u64,
    /// (Re)lists in progress, by watcher: the keys listed so far.
    relisting: HashMap<Scope, HashSet<ObjectKey>>,
}

/// Which watcher an event came from: a kind within a namespace, optionally one name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub kind: Kind,
    pub namespace: String,
    pub name: Option<String>,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{:?} {}/{}", self.kind, self.namespace, n),
            None => write!(f, "{:?} in {:?}", self.kind, self.namespace),
        }
    }
}

/// What the store keeps of an EndpointSlice: at 10,000 Services, a tenth of the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    /// The Service it belongs to (its `kubernetes.io/service-name` label).
    pub service: Option<ObjectKey>,
    pub endpoints: SliceEndpoints,
}

impl Slice {
    fn of(slice: &EndpointSlice) -> Slice {
        let service = slice
            .labels()
            .get(SERVICE_NAME_LABEL)
            .map(|svc| ObjectKey::new(&slice.namespace().unwrap_or_default(), svc));
        Slice {
            service,
            endpoints: SliceEndpoints::of(slice),
        }
    }
}

impl Store {
    pub fn apply(&mut self, obj: Object) -> Change {
        let kind = obj.kind();
        let change = self.put(obj);
        self.count(kind, &change);
        change
    }

    pub fn delete(&mut self, kind: Kind, key: &ObjectKey) -> Change {
        let change = self.remove(kind, key);
        self.count(kind, &change);
        change
    }

    /// A watcher's (re)list begins: what it lists is applied as it arrives
    /// ([`Store::relisted`]), and [`Store::relist_done`] then drops what it did not list.
    /// Nothing is held back: at 10,000 objects of each kind, holding the listed objects
    /// until the list ended made them (whole, before what no build reads is dropped) most
    /// of the proxy's peak memory.
    pub fn relist(&mut self, scope: &Scope) {
        self.relisting.insert(scope.clone(), HashSet::new());
    }

    /// One object of `scope`'s (re)list, applied at once.
    pub fn relisted(&mut self, scope: &Scope, obj: Object) -> Change {
        if let Some(seen) = self.relisting.get_mut(scope) {
            seen.insert(obj.key());
        }
        self.apply(obj)
    }

    /// `scope`'s (re)list is complete: what the store holds there beyond what was listed
    /// is gone. Returns the Services whose endpoints those deletions changed (their shared
    /// sets must be refreshed); routes are to be rebuilt after any relist.
    pub fn relist_done(&mut self, scope: &Scope) -> BTreeSet<ObjectKey> {
        let seen = self.relisting.remove(scope).unwrap_or_default();
        let mut endpoints = BTreeSet::new();
        for key in self.keys_in_scope(scope.kind, &scope.namespace, scope.name.as_deref()) {
            if !seen.contains(&key)
                && let Change::Endpoints(service) = self.delete(scope.kind, &key)
            {
                endpoints.insert(service);
            }
        }
        endpoints
    }

    /// How many route changes came from objects other than Ingresses so far.
    pub fn others_version(&self) -> u64 {
        self.others
    }

    /// How many Ingresses were deleted so far.
    pub fn ingress_removals(&self) -> u64 {
        self.ingress_removals
    }

    fn count(&mut self, kind: Kind, change: &Change) {
        if kind != Kind::Ingress && *change == Change::Routes {
            self.others += 1;
        }
    }

    fn put(&mut self, mut obj: Object) -> Change {
        let key = obj.key();
        obj.forget_unread();
        match obj {
            Object::IngressClass(o) => {
                self.ingress_classes.insert(key.name, o);
                Change::Routes
            }
            Object::Ingress(o) => {
                // Status-only updates (the operator writes status.loadBalancer) change nothing.
                if let Some(old) = self.ingresses.get(&key)
                    && old.spec == o.spec
                    && old.metadata.annotations == o.metadata.annotations
                {
                    self.ingresses.insert(key, Box::new(o));
                    return Change::None;
                }
                self.ingresses.insert(key, Box::new(o));
                Change::Routes
            }
            Object::Service(o) => {
                // Annotations count: they carry the backend TLS settings.
                if let Some(old) = self.services.get(&key)
                    && old.spec == o.spec
                    && old.metadata.annotations == o.metadata.annotations
                {
                    self.services.insert(key, Box::new(o));
                    return Change::None;
                }
                self.services.insert(key, Box::new(o));
                Change::Routes
            }
            Object::EndpointSlice(o) => {
                let slice = Slice::of(&o);
                let new_svc = slice.service.clone();
                let old = self.endpoint_slices.insert(key.clone(), slice);
                if let Some(old) = &old
                    && old == &self.endpoint_slices[&key]
                {
                    // Only what no build reads changed (a target, a zone, labels).
                    return Change::None;
                }
                if let Some(old_svc) = old.and_then(|old| old.service)
                    && Some(&old_svc) != new_svc.as_ref()
                {
                    self.unlink_slice(&old_svc, &key);
                }
                match new_svc {
                    Some(svc) => {
                        let keys = self.slices_by_service.entry(svc.clone()).or_default();
                        if let Err(at) = keys.binary_search(&key) {
                            keys.insert(at, key);
                        }
                        Change::Endpoints(svc)
                    }
                    None => Change::None,
                }
            }
            Object::Secret(o) => {
                if let Some(old) = self.secrets.get(&key)
                    && old.data == o.data
                    && old.type_ == o.type_
                {
                    return Change::None;
                }
                self.secrets.insert(key, o);
                Change::Routes
            }
            Object::ConfigMap(o) => {
                if let Some(old) = self.config_maps.get(&key)
                    && old.data == o.data
                {
                    return Change::None;
                }
                self.config_maps.insert(key, o);
                Change::Routes
            }
        }
    }

    fn remove(&mut self, kind: Kind, key: &ObjectKey) -> Change {
        let removed = match kind {
            Kind::IngressClass => self.ingress_classes.remove(&key.name).is_some(),
            Kind::Ingress => {
                let removed = self.ingresses.remove(key).is_some();
                self.ingress_removals += u64::from(removed);
                removed
            }
            Kind::Service => self.services.remove(key).is_some(),
            Kind::Secret => self.secrets.remove(key).is_some(),
            Kind::ConfigMap => self.config_maps.remove(key).is_some(),
            Kind::EndpointSlice => {
                let svc = self.endpoint_slices.remove(key).and_then(|old| old.service);
                return match svc {
                    Some(svc) => {
                        self.unlink_slice(&svc, key);
                        Change::Endpoints(svc)
                    }
                    None => Change::None,
                };
            }
        };
        if removed {
            Change::Routes
        } else {
            Change::None
        }
    }

    /// Keys of one kind within a watcher's scope: a namespace, optionally one name.
    pub fn keys_in_scope(&self, kind: Kind, namespace: &str, name: Option<&str>) -> Vec<ObjectKey> {
        let in_scope = |k: &ObjectKey| k.namespace == namespace && name.is_none_or(|n| n == k.name);
        match kind {
            Kind::IngressClass => self
                .ingress_classes
                .keys()
                .filter(|n| name.is_none_or(|x| x == n.as_str()))
                .map(|n| ObjectKey::new("", n))
                .collect(),
            Kind::Ingress => self
                .ingresses
                .keys()
                .filter(|k| in_scope(k))
                .cloned()
                .collect(),
            Kind::Service => self
                .services
                .keys()
                .filter(|k| in_scope(k))
                .cloned()
                .collect(),
            Kind::EndpointSlice => self
                .endpoint_slices
                .keys()
                .filter(|k| in_scope(k))
                .cloned()
                .collect(),
            Kind::Secret => self
                .secrets
                .keys()
                .filter(|k| in_scope(k))
                .cloned()
                .collect(),
            Kind::ConfigMap => self
                .config_maps
                .keys()
                .filter(|k| in_scope(k))
                .cloned()
                .collect(),
        }
    }

    fn unlink_slice(&mut self, service: &ObjectKey, slice: &ObjectKey) {
        if let Some(keys) = self.slices_by_service.get_mut(service) {
            keys.retain(|k| k != slice);
            if keys.is_empty() {
                self.slices_by_service.remove(service);
            }
        }
    }

    pub fn slices_of(&self, service: &ObjectKey) -> impl Iterator<Item = &SliceEndpoints> {
        self.slices_by_service
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(|k| self.endpoint_slices.get(k))
            .map(|s| &s.endpoints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_ingress::Usable;
    use serde_json::json;

    fn slice(name: &str, service: &str, ip: &str) -> Object {
        Object::EndpointSlice(
            serde_json::from_value(json!({
                "metadata": {"namespace": "a", "name": name, "labels": {SERVICE_NAME_LABEL: service}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
                "ports": [{"port": 8080}],
            }))
            .expect("slice"),
        )
    }

    fn slices_in(namespace: &str) -> Scope {
        Scope {
            kind: Kind::EndpointSlice,
            namespace: namespace.into(),
            name: None,
        }
    }

    /// A whole (re)list, as a watcher delivers it; the Services whose endpoints changed.
    fn relist_whole(store: &mut Store, scope: &Scope, objects: Vec<Object>) -> BTreeSet<ObjectKey> {
        store.relist(scope);
        let mut endpoints = BTreeSet::new();
        for obj in objects {
            if let Change::Endpoints(service) = store.relisted(scope, obj) {
                endpoints.insert(service);
            }
        }
        endpoints.extend(store.relist_done(scope));
        endpoints
    }

    /// A relist replaces the watcher's scope: what it lists stays or is updated, what it
    /// no longer lists is gone, and other scopes are untouched.
    #[test]
    fn a_relist_replaces_its_scope_and_nothing_else() {
        let mut store = Store::default();
        store.apply(slice("web-1", "web", "10.0.0.1"));
        store.apply(slice("api-1", "api", "10.0.0.2"));
        let mut elsewhere = slice("web-1", "web", "10.0.0.9");
        if let Object::EndpointSlice(s) = &mut elsewhere {
            s.metadata.namespace = Some("b".into());
        }
        store.apply(elsewhere);

        // The list has web-1 with a new address and no api-1 (deleted while the watch
        // was down).
        let changed = relist_whole(
            &mut store,
            &slices_in("a"),
            vec![slice("web-1", "web", "10.0.0.3")],
        );
        assert_eq!(
            changed,
            [ObjectKey::new("a", "api"), ObjectKey::new("a", "web")].into()
        );
        assert_eq!(
            store.keys_in_scope(Kind::EndpointSlice, "a", None),
            [ObjectKey::new("a", "web-1")]
        );
        let kept = &store.endpoint_slices[&ObjectKey::new("a", "web-1")];
        assert_eq!(
            kept.endpoints.port(""),
            [("10.0.0.3:8080".parse().expect("addr"), Usable::Ready)]
        );
        assert_eq!(store.slices_of(&ObjectKey::new("a", "api")).count(), 0);
        assert_eq!(store.keys_in_scope(Kind::EndpointSlice, "b", None).len(), 1);

        // An empty list empties the scope.
        relist_whole(&mut store, &slices_in("a"), Vec::new());
        assert!(
            store
                .keys_in_scope(Kind::EndpointSlice, "a", None)
                .is_empty()
        );
    }

    /// A relist's objects are applied as they arrive, not held until it ends; what it did
    /// not list goes when it is done.
    #[test]
    fn a_relist_applies_as_it_lists_and_drops_the_rest_when_done() {
        let mut store = Store::default();
        store.apply(slice("web-1", "web", "10.0.0.1"));
        store.apply(slice("api-1", "api", "10.0.0.2"));
        let within = slices_in("a");
        store.relist(&within);
        assert_eq!(
            store.relisted(&within, slice("web-1", "web", "10.0.0.3")),
            Change::Endpoints(ObjectKey::new("a", "web"))
        );
        let web = &store.endpoint_slices[&ObjectKey::new("a", "web-1")];
        assert_eq!(
            web.endpoints.port(""),
            [("10.0.0.3:8080".parse().expect("addr"), Usable::Ready)]
        );
        assert!(
            store
                .endpoint_slices
                .contains_key(&ObjectKey::new("a", "api-1")),
            "not listed yet, but the list is not done"
        );
        assert_eq!(
            store.relist_done(&within),
            [ObjectKey::new("a", "api")].into()
        );
        assert_eq!(
            store.keys_in_scope(Kind::EndpointSlice, "a", None),
            [ObjectKey::new("a", "web-1")]
        );
    }

    #[test]
    fn what_no_build_reads_is_not_kept() {
        let mut store = Store::default();
        let service: Service = serde_json::from_value(json!({
            "metadata": {"namespace": "a", "name": "web",
                "annotations": {LAST_APPLIED_ANNOTATION: "{\"a whole copy\": 1}",
                                portico_ingress::BACKEND_TLS_SERVER_NAME_ANNOTATION: "web.a"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "u"}],
                "managedFields": [{"manager": "kubectl"}]},
            "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}, "clusterIP": "10.96.0.1",
                     "type": "ClusterIP"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
        }))
        .expect("service");
        store.apply(Object::Service(service));
        let kept = &store.services[&ObjectKey::new("a", "web")];
        let annotations = kept.metadata.annotations.as_ref().expect("annotations");
        assert!(!annotations.contains_key(LAST_APPLIED_ANNOTATION));
        assert_eq!(annotations.len(), 1, "the annotations builds read stay");
        assert!(kept.metadata.owner_references.is_none());
        assert!(kept.metadata.managed_fields.is_none());
        assert!(kept.status.is_none());
        let spec = kept.spec.as_ref().expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.ports.as_ref().map(Vec::len), Some(1));
        assert!(spec.selector.is_none() && spec.cluster_ip.is_none());

        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"namespace": "a", "name": "web-1", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true},
                "nodeName": "n1", "zone": "z", "hints": {"forZones": [{"name": "z"}]},
                "targetRef": {"kind": "Pod", "name": "web-1"}}],
            "ports": [{"port": 8080}],
        }))
        .expect("slice");
        let store_slice = slice.clone();
        assert_eq!(
            store.apply(Object::EndpointSlice(slice)),
            Change::Endpoints(ObjectKey::new("a", "web"))
        );
        let kept = &store.endpoint_slices[&ObjectKey::new("a", "web-1")];
        assert_eq!(kept.service, Some(ObjectKey::new("a", "web")));
        assert_eq!(
            kept.endpoints.port(""),
            [("10.0.0.1:8080".parse().expect("addr"), Usable::Ready)]
        );

        // A new version that changes only what is not kept changes nothing.
        let mut moved = store_slice;
        moved.endpoints[0].node_name = Some("n2".into());
        moved.metadata.resource_version = Some("2".into());
        assert_eq!(
            store.apply(Object::EndpointSlice(moved.clone())),
            Change::None
        );
        moved.endpoints[0].addresses = vec!["10.0.0.2".into()];
        assert_eq!(
            store.apply(Object::EndpointSlice(moved)),
            Change::Endpoints(ObjectKey::new("a", "web"))
        );
    }
}
