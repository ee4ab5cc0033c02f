//! Server-side apply with the one field manager, and label-guarded applies and deletes.
//!
//! ```text
//!  desired child ─▶ GET by name ─▶ absent, or labelled for this instance ─▶ SSA (force)
//!                               └▶ anyone else's (another instance, unlabelled) ─▶ NotOurs
//! ```
//!
//! Force takes fields back from whoever hand-edited *our* objects; the label check keeps
//! it from taking over objects that are not ours at all. The reconciler applies through the
//! `*_cached` variants: the existing child comes from the reflected children, and a child
//! that is ours and unchanged since its last apply is not sent again ([`Applied`]).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::resources::{FIELD_MANAGER, instance_of};
use crate::stores::Cache;

/// `(namespace, name)` of the instance whose child is applied or deleted.
pub type Instance = (String, String);

fn params() -> PatchParams {
    // Only ever used on our own objects (see `guarded`): force takes fields back from
    // whoever hand-edited them.
    PatchParams::apply(FIELD_MANAGER).force()
}

/// A child the operator was about to apply exists and is not this instance's: its labels
/// name another instance, or it is not Portico's at all. Nothing was written.
#[derive(Debug, thiserror::Error)]
#[error(
    "{kind} {name} already exists and {owner}; Portico does not take it over: remove or rename that object"
)]
pub struct NotOurs {
    pub kind: String,
    /// `namespace/name`, or the name of a cluster-scoped object.
    pub name: String,
    /// Who owns it, as a phrase: `belongs to IngressController team/a-web`.
    pub owner: String,
}

/// Checks that `name` is absent from `api` or labelled for `instance`.
///
/// A GET before the apply leaves a window in which someone could create the object; it is
/// milliseconds long, and only someone who may create RBAC or workloads there could use
/// it, who can do more harm directly.
async fn guarded<K>(api: &Api<K>, name: &str, instance: &Instance) -> Result<()>
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug,
{
    match api.get_opt(name).await? {
        Some(existing) => ours(&existing, name, instance),
        None => Ok(()),
    }
}

/// `existing` (named `name`) is labelled for `instance`, or [`NotOurs`].
fn ours<K>(existing: &K, name: &str, instance: &Instance) -> Result<()>
where
    K: Resource<DynamicType = ()>,
{
    match instance_of(existing.meta()) {
        Some(owner) if &owner == instance => Ok(()),
        owner => Err(NotOurs {
            kind: K::kind(&()).into_owned(),
            name: match existing.namespace() {
                Some(ns) => format!("{ns}/{name}"),
                None => name.to_owned(),
            },
            owner: match owner {
                Some((ns, n)) => format!("belongs to IngressController {ns}/{n}"),
                None => "is not labelled as managed by portico-operator".to_owned(),
            },
        }
        .into()),
    }
}

/// Applies a namespaced child of `instance` (its metadata names the namespace), unless an
/// object of that name exists that is not `instance`'s ([`NotOurs`]).
pub async fn namespaced<K>(client: &Client, obj: &K, instance: &Instance) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let namespace = obj.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    let name = obj.name_any();
    guarded(&api, &name, instance).await?;
    Ok(api.patch(&name, &params(), &Patch::Apply(obj)).await?)
}

/// Applies a cluster-scoped child of `instance`, unless an object of that name exists that
/// is not `instance`'s ([`NotOurs`]).
pub async fn cluster<K>(client: &Client, obj: &K, instance: &Instance) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = ClusterResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let name = obj.name_any();
    guarded(&api, &name, instance).await?;
    Ok(api.patch(&name, &params(), &Patch::Apply(obj)).await?)
}

/// Deletes `name` through `api` if it exists and carries our labels for the instance;
/// anything else under that name is not ours to delete.
pub async fn delete_if_labelled<K>(api: &Api<K>, name: &str, instance: &Instance) -> Result<bool>
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug,
{
    match api.get_opt(name).await? {
        Some(obj) if instance_of(obj.meta()).as_ref() == Some(instance) => {
            ignore_not_found(
                api.delete(name, &DeleteParams::background())
                    .await
                    .map(|_| ()),
            )?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// The APIs through which to list or watch a namespaced kind: one across all namespaces,
/// or one per namespace of `--watch-namespaces` (where the operator may hold only
/// namespaced Roles, so a cluster-wide list would be forbidden).
pub fn scoped<K>(client: &Client, namespaces: Option<&BTreeSet<String>>) -> Vec<Api<K>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespaces {
        None => vec![Api::all(client.clone())],
        Some(list) => list
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect(),
    }
}

/// Lists a namespaced kind across the namespaces the operator watches ([`scoped`]).
pub async fn list_scoped<K>(
    client: &Client,
    namespaces: Option<&BTreeSet<String>>,
    params: &ListParams,
) -> Result<Vec<K>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + Debug,
{
    let mut out = Vec::new();
    for api in scoped::<K>(client, namespaces) {
        out.extend(api.list(params).await?.items);
    }
    Ok(out)
}

/// Deletes, in every watched namespace ([`scoped`]), each namespaced object matching
/// `selector` for which `keep` is false. Returns the `namespace/name`s deleted.
pub async fn delete_labelled<K>(
    client: &Client,
    namespaces: Option<&BTreeSet<String>>,
    selector: &str,
    keep: impl Fn(&K) -> bool,
) -> Result<Vec<String>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + Debug,
{
    let params = ListParams::default().labels(selector);
    let doomed = list_scoped::<K>(client, namespaces, &params)
        .await?
        .into_iter()
        .filter(|o| !keep(o) && o.meta().deletion_timestamp.is_none())
        .map(|o| (o.namespace().unwrap_or_default(), o.name_any()));
    delete_each::<K>(client, doomed).await
}

/// Deletes each `(namespace, name)` (in the background; one already gone is fine).
/// Returns the `namespace/name`s deleted.
async fn delete_each<K>(
    client: &Client,
    objects: impl Iterator<Item = (String, String)>,
) -> Result<Vec<String>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + Debug,
{
    let mut deleted = Vec::new();
    for (namespace, name) in objects {
        let api: Api<K> = Api::namespaced(client.clone(), &namespace);
        ignore_not_found(
            api.delete(&name, &DeleteParams::background())
                .await
                .map(|_| ()),
        )?;
        deleted.push(format!("{namespace}/{name}"));
    }
    Ok(deleted)
}

/// [`delete_each`] for a cluster-scoped kind. Returns the names deleted.
async fn delete_each_cluster<K>(
    client: &Client,
    names: impl Iterator<Item = String>,
) -> Result<Vec<String>>
where
    K: Resource<DynamicType = (), Scope = ClusterResourceScope> + DeserializeOwned + Clone + Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let mut deleted = Vec::new();
    for name in names {
        ignore_not_found(
            api.delete(&name, &DeleteParams::background())
                .await
                .map(|_| ()),
        )?;
        deleted.push(name);
    }
    Ok(deleted)
}

/// Deletes each cluster-scoped object matching `selector` for which `keep` is false.
/// Returns the names deleted.
pub async fn delete_labelled_cluster<K>(
    client: &Client,
    selector: &str,
    keep: impl Fn(&K) -> bool,
) -> Result<Vec<String>>
where
    K: Resource<DynamicType = (), Scope = ClusterResourceScope> + DeserializeOwned + Clone + Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let doomed = api
        .list(&ListParams::default().labels(selector))
        .await?
        .into_iter()
        .filter(|o| !keep(o) && o.meta().deletion_timestamp.is_none())
        .map(|o| o.name_any());
    delete_each_cluster::<K>(client, doomed).await
}

/// A 404 on delete means the work is already done.
pub fn ignore_not_found(result: std::result::Result<(), kube::Error>) -> Result<()> {
    match result {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => other.map_err(Error::from),
    }
}

/// Per child, what its last apply wrote: a hash of the desired object and the
/// resourceVersion the API server answered with. While both hold (the same desired object,
/// nobody wrote the child since), applying again would change nothing, and is skipped.
#[derive(Default)]
pub struct Applied(Mutex<HashMap<ChildKey, (u64, String)>>);

/// (instance, kind, namespace, name) of a child.
type ChildKey = (Instance, String, Option<String>, String);

impl Applied {
    fn unchanged(&self, key: &ChildKey, desired: u64, current: Option<&str>) -> bool {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .is_some_and(|(hash, rv)| *hash == desired && Some(rv.as_str()) == current)
    }

    fn remember(&self, key: ChildKey, desired: u64, rv: Option<String>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match rv {
            Some(rv) => map.insert(key, (desired, rv)),
            None => map.remove(&key),
        };
    }

    /// Forgets the children of `instance` (deleted).
    pub fn forget(&self, instance: &Instance) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(owner, ..), _| owner != instance);
    }
}

/// Applies a child of `instance` through `api`, reading what exists from `cache` (the
/// reflected children) instead of the API server: nothing is sent when the child is ours
/// and unchanged since its last apply ([`Applied`]). A child the cache lacks is looked up
/// with a GET first, since the cache holds only objects labelled as ours.
async fn apply_cached<K>(
    api: &Api<K>,
    applied: &Applied,
    cache: &Cache<K>,
    obj: &K,
    instance: &Instance,
) -> Result<K>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = obj.name_any();
    let namespace = obj.namespace();
    let key: ChildKey = (
        instance.clone(),
        K::kind(&()).into_owned(),
        namespace.clone(),
        name.clone(),
    );
    let desired = crate::stores::hash_json(obj);
    match cache.get(namespace.as_deref(), &name) {
        Some(existing) => {
            ours(existing.as_ref(), &name, instance)?;
            if applied.unchanged(&key, desired, existing.meta().resource_version.as_deref()) {
                return Ok(existing.as_ref().clone());
            }
        }
        None => guarded(api, &name, instance).await?,
    }
    let result = api.patch(&name, &params(), &Patch::Apply(obj)).await?;
    applied.remember(key, desired, result.meta().resource_version.clone());
    Ok(result)
}

/// [`namespaced`], reading the cache of reflected children ([`apply_cached`]).
pub async fn namespaced_cached<K>(
    client: &Client,
    applied: &Applied,
    cache: &Cache<K>,
    obj: &K,
    instance: &Instance,
) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    apply_cached(&api, applied, cache, obj, instance).await
}

/// [`cluster`], reading the cache of reflected children ([`apply_cached`]).
pub async fn cluster_cached<K>(
    client: &Client,
    applied: &Applied,
    cache: &Cache<K>,
    obj: &K,
    instance: &Instance,
) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = ClusterResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::all(client.clone());
    apply_cached(&api, applied, cache, obj, instance).await
}

/// Deletes each reflected child of `instance` in `cache` for which `keep` is false, in
/// every watched namespace. Returns the `namespace/name`s deleted.
pub async fn delete_cached<K>(
    client: &Client,
    cache: &Cache<K>,
    instance: &Instance,
    keep: impl Fn(&K) -> bool,
) -> Result<Vec<String>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + Debug,
{
    let doomed = doomed(cache, instance, keep)
        .into_iter()
        .map(|o| (o.namespace().unwrap_or_default(), o.name_any()));
    delete_each::<K>(client, doomed).await
}

/// [`delete_cached`] for a cluster-scoped kind. Returns the names deleted.
pub async fn delete_cached_cluster<K>(
    client: &Client,
    cache: &Cache<K>,
    instance: &Instance,
    keep: impl Fn(&K) -> bool,
) -> Result<Vec<String>>
where
    K: Resource<DynamicType = (), Scope = ClusterResourceScope> + DeserializeOwned + Clone + Debug,
{
    let doomed = doomed(cache, instance, keep)
        .into_iter()
        .map(|o| o.name_any());
    delete_each_cluster::<K>(client, doomed).await
}

/// The children of `instance` in `cache` not kept and not already being deleted.
fn doomed<K>(cache: &Cache<K>, instance: &Instance, keep: impl Fn(&K) -> bool) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    cache
        .state()
        .into_iter()
        .filter(|o| instance_of(o.meta()).as_ref() == Some(instance))
        .filter(|o| !keep(o) && o.meta().deletion_timestamp.is_none())
        .collect()
}
