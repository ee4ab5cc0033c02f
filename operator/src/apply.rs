//! Server-side apply with the one field manager, and label-guarded deletes.

use std::fmt::Debug;

use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::resources::FIELD_MANAGER;

fn params() -> PatchParams {
    // We own these objects; force takes fields back from whoever hand-edited them.
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Applies a namespaced object (its metadata names the namespace).
pub async fn namespaced<K>(client: &Client, obj: &K) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let namespace = obj.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    Ok(api
        .patch(&obj.name_any(), &params(), &Patch::Apply(obj))
        .await?)
}

/// Applies a cluster-scoped object.
pub async fn cluster<K>(client: &Client, obj: &K) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = ClusterResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::all(client.clone());
    Ok(api
        .patch(&obj.name_any(), &params(), &Patch::Apply(obj))
        .await?)
}

/// Deletes `name` through `api` if it exists and carries our labels for the instance;
/// anything else under that name is not ours to delete.
pub async fn delete_if_labelled<K>(
    api: &Api<K>,
    name: &str,
    instance: &(String, String),
) -> Result<bool>
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug,
{
    match api.get_opt(name).await? {
        Some(obj) if crate::resources::instance_of(obj.meta()).as_ref() == Some(instance) => {
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

/// Deletes, in every namespace, each namespaced object matching `selector` for which
/// `keep` is false. Returns the `namespace/name`s deleted.
pub async fn delete_labelled<K>(
    client: &Client,
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
    let all: Api<K> = Api::all(client.clone());
    for obj in all.list(&ListParams::default().labels(selector)).await? {
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

/// A 404 on delete means the work is already done.
pub fn ignore_not_found(result: std::result::Result<(), kube::Error>) -> Result<()> {
    match result {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => other.map_err(Error::from),
    }
}
