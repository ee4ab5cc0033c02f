//! One instance reconciled: tenant policy, served namespaces and Ingresses (read from the
//! stores), class claim, children applied (RBAC first, only what changed), stale RBAC
//! pruned, status of the instance and of its Ingresses written by server-side apply.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressLoadBalancerStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Error as FinalizerError, Event as Finalized, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::api::{IngressController, IngressControllerStatus};
use crate::apply;
use crate::endpoints;
use crate::error::{Error, Result};
use crate::policy;
use crate::resources::ingress_class::{self, Claim};
use crate::resources::{self, Inputs, deployment, hpa, pdb, rbac, service, service_account};
use crate::status::{self, Observed};
use crate::tenancy;

use super::{Context, FINALIZER, RESYNC};

pub(super) async fn reconcile(
    instance: Arc<IngressController>,
    ctx: Arc<Context>,
) -> Result<Action> {
    let _timer = ctx.metrics.duration.start_timer();
    ctx.metrics.reconciles.inc();
    let namespace = instance
        .namespace()
        .ok_or(resources::MissingMetadata("namespace"))?;
    let object = ObjectRef::from_obj(instance.as_ref());
    if !ctx.settings.watches(&namespace) {
        // Outside --watch-namespaces the operator may not write (not even a finalizer).
        debug!(instance = %object, "not in --watch-namespaces; left alone");
        return Ok(Action::await_change());
    }
    let api: Api<IngressController> = Api::namespaced(ctx.client.clone(), &namespace);
    let action = finalizer(&api, FINALIZER, instance, |event| async {
        match event {
            Finalized::Apply(instance) => apply(&instance, &ctx).await,
            Finalized::Cleanup(instance) => super::cleanup::cleanup(&instance, &ctx).await,
        }
    })
    .await;
    let action = match action {
        Ok(action) => action,
        // Deleted while we worked: nothing left to add a finalizer to or remove it from.
        Err(
            FinalizerError::AddFinalizer(kube::Error::Api(s))
            | FinalizerError::RemoveFinalizer(kube::Error::Api(s)),
        ) if s.code == 404 => Action::await_change(),
        Err(e) => return Err(Error::Finalizer(Box::new(e))),
    };
    ctx.reset_backoff(&object);
    Ok(action)
}

/// Apply, turning permanent errors into a `Degraded` condition and an Event.
async fn apply(instance: &IngressController, ctx: &Context) -> Result<Action> {
    match apply_inner(instance, ctx).await {
        Err(error) if error.is_permanent() => {
            ctx.metrics.record_error(&error);
            ctx.event(
                instance,
                EventType::Warning,
                error.reason(),
                error.to_string(),
            )
            .await;
            let observed = Observed {
                generation: instance.metadata.generation,
                error: Some((error.reason(), error.to_string())),
                ..Default::default()
            };
            let mut status = instance.status.clone().unwrap_or_default();
            status.conditions = status::conditions(&status.conditions, &observed, Timestamp::now());
            status.observed_generation = instance.metadata.generation;
            write_status(instance, ctx, status).await?;
            Ok(Action::requeue(RESYNC))
        }
        other => other,
    }
}

async fn apply_inner(instance: &IngressController, ctx: &Context) -> Result<Action> {
    let client = &ctx.client;
    let name = instance.name_any();
    let namespace = instance.namespace().unwrap_or_default();
    let class = instance.spec.class_name(&name).to_owned();
    let previous = instance.status.clone().unwrap_or_default();

    // 0. The tenant policy, before anything is read or written for the instance.
    let violations = policy::violations(&instance.spec, &namespace, &ctx.settings);
    if !violations.is_empty() {
        return refuse_by_policy(instance, ctx, &violations).await;
    }

    // 1. Which namespaces, which Ingresses: read from the stores, once they are complete.
    let Some(stores) = ctx.stores() else {
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    // A watch that cannot list (the operator's RBAC, say) must not hold this reconcile
    // forever: it retries, and says why.
    match tokio::time::timeout(Duration::from_secs(30), stores.ready()).await {
        Ok(true) => {}
        Ok(false) => return Ok(Action::requeue(Duration::from_secs(1))),
        Err(_) => {
            warn!(instance = %format!("{namespace}/{name}"), "the watches have not listed everything within 30 s; retrying");
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
    }
    let namespaces = stores.candidate_namespaces(instance, &namespace)?;
    let mut served = tenancy::served_namespaces(
        instance,
        namespaces.iter().map(AsRef::as_ref),
        &ctx.settings,
    )?;
    // With --watch-namespaces, those are the only namespaces instances may serve.
    served.retain(|ns| ctx.settings.watches(ns));
    let mut inputs = Inputs::new(instance, served.clone(), BTreeMap::new(), &ctx.settings)?;

    // 2. Which Ingresses the proxies will serve: the proxy's own judgement, with the
    //    Services of the served namespaces that hold Ingresses of the class, and the
    //    default-class mark read from the IngressClass as the proxy reads it.
    let served_set: BTreeSet<String> = served.iter().cloned().collect();
    let is_default_class = portico_ingress::is_default_class(&ingress_class::build(&inputs));
    let ingresses = stores.ingresses.of_class(&class, is_default_class);
    // The Limits the proxy derives from the flags rendered for it.
    let limits = resources::deployment::proxy_args(&inputs).limits();
    let routing = ctx.settings.routing_policy(&namespace, &name);
    let judged = portico_ingress::Scope {
        class: &class,
        is_default_class,
        instance_namespace: &namespace,
        served_namespaces: &served_set,
        policy: &routing,
        limits: &limits,
    };
    let verdicts = {
        let mut kept = ctx.judged.lock().unwrap_or_else(|e| e.into_inner());
        kept.entry(ObjectRef::from_obj(instance))
            .or_default()
            .judge(
                &judged,
                &ingresses,
                |namespaces| stores.services_in(namespaces),
                &name,
                &stores.slices.hand_written_namespaces(),
            )
    };
    debug!(instance = %format!("{namespace}/{name}"), in_full = verdicts.in_full, "judged");
    // The proxy may read, by name, what its served Ingresses name: TLS Secrets, and the CA
    // bundles (Secrets or ConfigMaps) their backends' Services name.
    let mut secrets = verdicts.tls_secrets.clone();
    let mut config_maps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (ns, sources) in &verdicts.backend_cas {
        for source in sources {
            let (map, name) = match source {
                portico_ingress::CaSource::Secret(n) => (&mut secrets, n),
                portico_ingress::CaSource::ConfigMap(n) => (&mut config_maps, n),
            };
            map.entry(ns.clone()).or_default().insert(name.clone());
        }
    }
    inputs.tls_secrets = secrets;
    inputs.config_maps = config_maps;

    // 3. The class: ours, free (claim it atomically), or someone else's.
    let classes: Api<IngressClass> = Api::all(client.clone());
    let current_class = stores.ingress_classes.get(None, &class);
    let conflict = match ingress_class::claim(current_class.as_deref(), &namespace, &name) {
        Claim::Ours => None,
        Claim::Free => {
            match classes
                .create(
                    &PostParams {
                        field_manager: Some(resources::FIELD_MANAGER.into()),
                        ..Default::default()
                    },
                    &ingress_class::build(&inputs),
                )
                .await
            {
                Ok(_) => {
                    info!(%class, instance = %format!("{namespace}/{name}"), "claimed IngressClass")
                }
                // Lost a race: the next reconcile sees the winner.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    return Ok(Action::requeue(Duration::from_secs(1)));
                }
                Err(e) => return Err(e.into()),
            }
            None
        }
        // ingress-nginx's `nginx`, taken over on the platform's say-so: deleted (only the
        // object that was read, by uid), then created for this instance on the requeue.
        Claim::Foreign { message, uid } if instance.spec.adopt_ingress_class == Some(true) => {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid,
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match classes.delete(&class, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            ctx.event(
                instance,
                EventType::Normal,
                "IngressClassAdopted",
                format!(
                    "{message}; deleted to be recreated for this instance (spec.adoptIngressClass)"
                ),
            )
            .await;
            info!(%class, instance = %format!("{namespace}/{name}"), "adopting IngressClass");
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        Claim::Foreign { message, .. } => Some(format!(
            "{message}; spec.adoptIngressClass (the platform's) takes it over"
        )),
        Claim::Conflict(message) => Some(message),
    };
    if let Some(message) = conflict {
        if !previous
            .conditions
            .iter()
            .any(|c| c.type_ == "ClassConflict" && c.status == "True")
        {
            ctx.event(
                instance,
                EventType::Warning,
                "ClassConflict",
                message.clone(),
            )
            .await;
        }
        let observed = Observed {
            generation: instance.metadata.generation,
            class_conflict: Some(message),
            ..Default::default()
        };
        let status = IngressControllerStatus {
            conditions: status::conditions(&previous.conditions, &observed, Timestamp::now()),
            ingress_class_name: Some(class),
            observed_generation: instance.metadata.generation,
            ..IngressControllerStatus::default()
        };
        write_status(instance, ctx, status).await?;
        return Ok(Action::requeue(RESYNC));
    }

    // 4. RBAC first, so the pods can read what they serve from their first second. Every
    //    child is applied only when absent or already ours (apply::NotOurs otherwise).
    //    What exists is read from the stores, and a child unchanged since its last apply
    //    is not sent again.
    let owner = (namespace.clone(), name.clone());
    let applied = &ctx.applied;
    apply::namespaced_cached(
        client,
        applied,
        &stores.service_accounts,
        &service_account::build(&inputs),
        &owner,
    )
    .await?;
    apply::cluster_cached(
        client,
        applied,
        &stores.cluster_roles,
        &rbac::cluster_role(&inputs),
        &owner,
    )
    .await?;
    apply::cluster_cached(
        client,
        applied,
        &stores.cluster_role_bindings,
        &rbac::cluster_role_binding(&inputs),
        &owner,
    )
    .await?;
    let role_namespaces = rbac::role_namespaces(&inputs);
    for ns in &role_namespaces {
        let role = rbac::role(&inputs, ns);
        apply::namespaced_cached(client, applied, &stores.roles, &role, &owner).await?;
        let binding = rbac::role_binding(&inputs, ns);
        apply::namespaced_cached(client, applied, &stores.role_bindings, &binding, &owner).await?;
    }
    // Access to namespaces no longer served goes away (bindings first), and so does RBAC
    // of ours under any other name: the `portico-<ns>-<name>` objects of older operators.
    let rbac_name = inputs.rbac_name();
    let keep = |ns: Option<String>, object: String| {
        object == rbac_name && ns.is_some_and(|ns| role_namespaces.contains(&ns))
    };
    let mut revoked = apply::delete_cached(client, &stores.role_bindings, &owner, |o| {
        keep(o.namespace(), o.name_any())
    })
    .await?;
    revoked.extend(
        apply::delete_cached(client, &stores.roles, &owner, |o| {
            keep(o.namespace(), o.name_any())
        })
        .await?,
    );
    revoked.extend(
        apply::delete_cached_cluster(client, &stores.cluster_role_bindings, &owner, |o| {
            o.name_any() == rbac_name
        })
        .await?,
    );
    revoked.extend(
        apply::delete_cached_cluster(client, &stores.cluster_roles, &owner, |o| {
            o.name_any() == rbac_name
        })
        .await?,
    );
    if !revoked.is_empty() {
        info!(instance = %format!("{namespace}/{name}"), ?revoked, "revoked RBAC no longer needed");
    }

    // 5. The rest; a class renamed away from is released. The class itself was claimed
    //    above by its parameters, the one mark of ownership an IngressClass has for sure.
    apply::cluster_cached(
        client,
        applied,
        &stores.ingress_classes,
        &ingress_class::build(&inputs),
        &owner,
    )
    .await?;
    apply::delete_cached_cluster(client, &stores.ingress_classes, &owner, |old| {
        old.name_any() == class
    })
    .await?;
    let deployment = apply::namespaced_cached(
        client,
        applied,
        &stores.deployments,
        &deployment::build(&inputs),
        &owner,
    )
    .await?;
    let service = apply::namespaced_cached(
        client,
        applied,
        &stores.services,
        &service::build(&inputs),
        &owner,
    )
    .await?;
    apply::namespaced_cached(client, applied, &stores.pdbs, &pdb::build(&inputs), &owner).await?;
    match hpa::build(&inputs) {
        Some(hpa) => {
            apply::namespaced_cached(client, applied, &stores.hpas, &hpa, &owner).await?;
        }
        None => {
            let proxy = inputs.proxy_name();
            apply::delete_cached(client, &stores.hpas, &owner, |o| o.name_any() != proxy).await?;
        }
    }

    // 6. Status: the served Ingresses first, then the instance.
    let addresses = status::addresses(&service);
    let load_balancer = status::ingress_load_balancer(&addresses);
    let unwritten = ctx
        .judged
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&ObjectRef::from_obj(instance))
        .map(|kept| kept.unwritten(&load_balancer))
        .unwrap_or_default();
    let mut statuses_written = 0;
    for (ingress, served) in &unwritten {
        if *served {
            if !has_load_balancer(ingress, &load_balancer) {
                write_ingress_status(client, ingress, &load_balancer).await?;
                statuses_written += 1;
            }
        } else if load_balancer.ingress.is_some() && has_load_balancer(ingress, &load_balancer) {
            // A rejected Ingress must not keep advertising an address it is not served on.
            let none = IngressLoadBalancerStatus {
                ingress: Some(Vec::new()),
            };
            write_ingress_status(client, ingress, &none).await?;
            statuses_written += 1;
        }
    }
    if let Some(kept) = ctx
        .judged
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(&ObjectRef::from_obj(instance))
    {
        kept.written(&load_balancer);
    }
    let mut warnings = verdicts.warnings;
    warnings.extend(endpoints::for_instance(
        &stores.slices,
        &ctx.settings,
        (&namespace, &name),
        &verdicts.served_checked,
        &class,
    ));
    ctx.warn_ingresses(&ObjectRef::from_obj(instance), &warnings)
        .await;
    let observed = Observed {
        generation: instance.metadata.generation,
        deployment: Some(&deployment),
        ..Default::default()
    };
    let status = IngressControllerStatus {
        conditions: status::conditions(&previous.conditions, &observed, Timestamp::now()),
        ingress_class_name: Some(class),
        ready_replicas: status::ready_replicas(Some(&deployment)),
        addresses,
        served_namespaces: served,
        ingresses_served: i32::try_from(verdicts.served).unwrap_or(i32::MAX),
        ingresses_rejected: i32::try_from(verdicts.rejected).unwrap_or(i32::MAX),
        annotations_not_honoured: i32::try_from(verdicts.annotations_not_honoured)
            .unwrap_or(i32::MAX),
        observed_generation: instance.metadata.generation,
    };
    write_status(instance, ctx, status).await?;
    // Each status written comes back as a new object that the next judgement takes in
    // (`verdict::Kept`, a refresh). After many, that is done a moment later while nothing
    // waits on it, not by the next Ingress created, which would wait 30 ms for 10,000.
    if statuses_written > ECHOES_TAKEN_IN_AFTER {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(Action::requeue(RESYNC))
}

/// How many Ingress statuses one reconcile writes before it comes back to take in their
/// echoes (about 3 µs each) by itself.
const ECHOES_TAKEN_IN_AFTER: usize = 100;

/// Reports a spec the tenant policy refuses: the `PolicyViolation` condition, and a Warning
/// Event when the refusal is new. Nothing is applied; children from an earlier, allowed
/// spec stay as they were.
async fn refuse_by_policy(
    instance: &IngressController,
    ctx: &Context,
    violations: &[policy::Violation],
) -> Result<Action> {
    let message = format!(
        "the tenant policy refuses {}; nothing is applied until the spec is fixed (or the platform trusts this namespace)",
        violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
    let previous = instance.status.clone().unwrap_or_default();
    let already = previous.conditions.iter().any(|c| {
        c.type_ == crate::api::conditions::POLICY_VIOLATION
            && c.status == "True"
            && c.message == message
    });
    if !already {
        warn!(instance = %format!("{}/{}", instance.namespace().unwrap_or_default(), instance.name_any()), %message, "refused by the tenant policy");
        ctx.event(
            instance,
            EventType::Warning,
            "PolicyViolation",
            message.clone(),
        )
        .await;
    }
    let observed = Observed {
        generation: instance.metadata.generation,
        policy_violation: Some(message),
        ..Default::default()
    };
    let status = IngressControllerStatus {
        conditions: status::conditions(&previous.conditions, &observed, Timestamp::now()),
        observed_generation: instance.metadata.generation,
        ..previous
    };
    write_status(instance, ctx, status).await?;
    Ok(Action::requeue(RESYNC))
}

/// Writes the status subresource when it changed (an unchanged write would only wake the
/// controller again).
async fn write_status(
    instance: &IngressController,
    ctx: &Context,
    status: IngressControllerStatus,
) -> Result<()> {
    if !status::differs(instance.status.as_ref(), &status) {
        return Ok(());
    }
    let api: Api<IngressController> = Api::namespaced(
        ctx.client.clone(),
        &instance.namespace().unwrap_or_default(),
    );
    let patch = json!({
        "apiVersion": IngressController::api_version(&()),
        "kind": IngressController::kind(&()),
        "status": status,
    });
    api.patch_status(
        &instance.name_any(),
        &status_params(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Server-side apply of status, with the one field manager; forced, as the status is ours.
fn status_params() -> PatchParams {
    PatchParams::apply(resources::FIELD_MANAGER).force()
}

/// Whether an Ingress's `status.loadBalancer` (empty when unset) is `load_balancer`;
/// compared in place, as it is for every Ingress of the class in every reconcile.
fn has_load_balancer(ingress: &Ingress, load_balancer: &IngressLoadBalancerStatus) -> bool {
    match ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
    {
        Some(current) => current == load_balancer,
        None => *load_balancer == IngressLoadBalancerStatus::default(),
    }
}

/// Applies an Ingress's `status.loadBalancer` (an empty list withdraws the address).
async fn write_ingress_status(
    client: &Client,
    ingress: &Ingress,
    load_balancer: &IngressLoadBalancerStatus,
) -> Result<()> {
    let api: Api<Ingress> =
        Api::namespaced(client.clone(), &ingress.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": Ingress::api_version(&()),
        "kind": Ingress::kind(&()),
        "status": { "loadBalancer": load_balancer },
    });
    api.patch_status(&ingress.name_any(), &status_params(), &Patch::Apply(&patch))
        .await?;
    Ok(())
}
