//! Server-side apply with the one field manager, and label-guarded applies and deletes.
//!
//! ```text
//!  desired child ─▶ GET by name ─▶ absent, or labelled for this instance ─▶ SSA (force)
//!                               └▶ anyone else's (another instance, unlabelled) ─▶ NotOurs
//! ```
//!
//! Force takes fields back from whoever hand-edited *our* objects; the label check keeps
//! it from taking over objects that are not ours at all.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::resources::{FIELD_MANAGER, instance_of};

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
    let Some(existing) = api.get_opt(name).await? else {
        return Ok(());
    };
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
    let mut deleted = Vec::new();
    let params = ListParams::default().labels(selector);
    for obj in list_scoped::<K>(client, namespaces, &params).await? {
        if keep(&obj) || obj.meta().deletion_timestamp.is_some() {
            continue;
        }
        let namespace = obj.namespace().unwrap_or_default();
        let api: Api<K> = Api::namespaced(client.clone(), &namespace);
        ignore_not_found(
            api.delete(&obj.name_any(), &DeleteParams::background())
                .await
                .map(|_| ()),
        )?;
        deleted.push(format!("{namespace}/{}", obj.name_any()));
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
    let mut deleted = Vec::new();
    let api: Api<K> = Api::all(client.clone());
    for obj in api.list(&ListParams::default().labels(selector)).await? {
        if keep(&obj) || obj.meta().deletion_timestamp.is_some() {
            continue;
        }
        ignore_not_found(
            api.delete(&obj.name_any(), &DeleteParams::background())
                .await
                .map(|_| ()),
        )?;
        deleted.push(obj.name_any());
    }
    Ok(deleted)
}

/// A 404 on delete means the work is already done.
pub fn ignore_not_found(result: std::result::Result<(), kube::Error>) -> Result<()> {
    match result {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => other.map_err(Error::from),
    }
}
