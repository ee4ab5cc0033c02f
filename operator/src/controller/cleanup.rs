//! What an instance leaves behind when deleted, removed before its finalizer is released.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::IngressClass;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::info;

use crate::api::IngressController;
use crate::apply;
use crate::error::Result;
use crate::resources;
use crate::resources::ingress_class::{self, Claim};

use super::Context;

/// Removes what owner references cannot reach: the IngressClass (only if still ours),
/// the ClusterRole(Binding), and Roles/RoleBindings in every namespace. The namespaced
/// children in the instance's namespace go too, without waiting for the garbage collector.
pub(super) async fn cleanup(instance: &IngressController, ctx: &Context) -> Result<Action> {
    let client = &ctx.client;
    let name = instance.name_any();
    let namespace = instance.namespace().unwrap_or_default();
    let owner = (namespace.clone(), name.clone());
    let class = instance.spec.class_name(&name).to_owned();
    let selector = resources::instance_selector(&namespace, &name);

    let classes: Api<IngressClass> = Api::all(client.clone());
    if ingress_class::claim(classes.get_opt(&class).await?.as_ref(), &namespace, &name)
        == Claim::Ours
    {
        apply::delete_if_labelled(&classes, &class, &owner).await?;
    }
    // By label, not by name: older operators' `portico-<ns>-<name>` objects go too.
    apply::delete_labelled_cluster::<ClusterRoleBinding>(client, &selector, |_| false).await?;
    apply::delete_labelled_cluster::<ClusterRole>(client, &selector, |_| false).await?;
    let scope = ctx.settings.watch_namespaces.as_ref();
    apply::delete_labelled::<RoleBinding>(client, scope, &selector, |_| false).await?;
    apply::delete_labelled::<Role>(client, scope, &selector, |_| false).await?;

    let proxy = resources::proxy_name(&name);
    apply::delete_if_labelled(
        &Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), &namespace),
        &proxy,
        &owner,
    )
    .await?;
    apply::delete_if_labelled(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace),
        &proxy,
        &owner,
    )
    .await?;
    apply::delete_if_labelled(
        &Api::<Service>::namespaced(client.clone(), &namespace),
        &proxy,
        &owner,
    )
    .await?;
    apply::delete_if_labelled(
        &Api::<Deployment>::namespaced(client.clone(), &namespace),
        &proxy,
        &owner,
    )
    .await?;
    apply::delete_if_labelled(
        &Api::<ServiceAccount>::namespaced(client.clone(), &namespace),
        &proxy,
        &owner,
    )
    .await?;
    ctx.forget_warnings(&ObjectRef::from_obj(instance));
    ctx.applied.forget(&owner);
    info!(instance = %format!("{namespace}/{name}"), "cleaned up");
    Ok(Action::await_change())
}
