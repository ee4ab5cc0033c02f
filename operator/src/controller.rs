//! The reconciler: one `IngressController` in, its proxy fleet and status out.
//!
//! ```text
//!  IngressController ──────────────────────────────┐
//!  Deployment, Service, SA, PDB, HPA (labels) ──────┤   one watch per kind (stores.rs):
//!  Role, RoleBinding, ClusterRole(Binding) (labels) ┤   its Store is what reconcile reads,
//!  IngressClass (name / parameters) ────────────────┤   its changes (status-only and
//!  Namespace (labels, consent annotation) ──────────┼─▶ managedFields-only ones dropped)
//!  Ingress (class ─▶ TLS Secret names, status) ─────┤   wake reconcile(instance)
//!  Service (in served namespaces: backends) ────────┤      │ finalizer: cleanup on delete
//!  EndpointSlice (hand-written; the fleet's) ───────┘      ▼
//!      tenant policy (refused: PolicyViolation, nothing applied)
//!      ─▶ served namespaces ─▶ class claim ─▶ builders ─▶ SSA: SA, RBAC, IngressClass,
//!      Deployment, Service, PDB, HPA (only what changed) ─▶ prune stale RBAC
//!      ─▶ status + Ingress loadBalancer (SSA) ─▶ Warning Events on Ingresses the
//!      proxies skip (verdict.rs), once per problem
//! ```
//!
//! A spec the tenant policy refuses (`PolicyViolation`, see `policy.rs`) and a class owned
//! by someone else (`ClassConflict`) stop everything but the status: the instance creates
//! and modifies nothing, and what it runs already keeps running as it was. The class is claimed with a plain create, so two
//! instances racing for a new class cannot both win.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressLoadBalancerStatus};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Error as FinalizerError, Event as Finalized, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::api::{IngressController, IngressControllerStatus};
use crate::apply;
use crate::endpoints;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::policy;
use crate::resources::ingress_class::{self, Claim};
use crate::resources::{
    self, Inputs, Settings, deployment, hpa, pdb, rbac, service, service_account,
};
use crate::status::{self, Observed};
use crate::stores::{self, Stores};
use crate::tenancy;
use crate::verdict;

/// Finalizer that removes what owner references cannot: cluster-scoped objects and RBAC in
/// other namespaces.
pub const FINALIZER: &str = "portico.dev/cleanup";

/// Periodic resync, a safety net under the watches.
const RESYNC: Duration = Duration::from_secs(300);

/// Shared state of the reconciler.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Metrics,
    recorder: Recorder,
    /// Consecutive failures per instance, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<IngressController>, u32>>,
    /// Per instance, the Ingress Warnings already published and still true, so that each
    /// problem gets one Event rather than one per reconcile. In memory: a restarted or
    /// newly elected operator publishes the current ones once more.
    published: Mutex<HashMap<ObjectRef<IngressController>, HashSet<PublishedWarning>>>,
    /// What `run` reflects for reconcile to read, while it runs.
    stores: Mutex<Option<Stores>>,
    /// What the last apply of each child wrote, to skip applies that change nothing.
    applied: apply::Applied,
}

/// (Ingress uid, reason, note): a recreated Ingress is a new one.
type PublishedWarning = (String, &'static str, String);

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Metrics,
        reporter_instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: "portico-operator".into(),
            instance: reporter_instance,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            failures: Mutex::new(HashMap::new()),
            published: Mutex::new(HashMap::new()),
            stores: Mutex::new(None),
            applied: apply::Applied::default(),
        }
    }

    fn stores(&self) -> Option<Stores> {
        self.stores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Publishes an Event; false when the API refused it (logged).
    async fn event(
        &self,
        on: &impl Resource<DynamicType = ()>,
        type_: EventType,
        reason: &str,
        note: String,
    ) -> bool {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(truncate_note(note)),
            action: "Reconcile".into(),
            secondary: None,
        };
        match self.recorder.publish(&event, &on.object_ref(&())).await {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, reason, "could not publish event");
                false
            }
        }
    }

    /// Publishes the warnings not yet published for `instance`, and forgets those that no
    /// longer hold (so that a problem that comes back is published again).
    async fn warn_ingresses(
        &self,
        instance: &ObjectRef<IngressController>,
        warnings: &[verdict::Warning<'_>],
    ) {
        let before = self
            .published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(instance)
            .unwrap_or_default();
        let mut now = HashSet::new();
        for w in warnings {
            let key = (
                w.ingress.uid().unwrap_or_default(),
                w.reason,
                w.note.clone(),
            );
            if now.contains(&key) {
                continue;
            }
            if before.contains(&key)
                || self
                    .event(w.ingress, EventType::Warning, w.reason, w.note.clone())
                    .await
            {
                now.insert(key);
            }
        }
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(instance.clone(), now);
    }

    fn forget_warnings(&self, instance: &ObjectRef<IngressController>) {
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(instance);
    }

    fn backoff(&self, obj: &ObjectRef<IngressController>) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry(obj.clone()).or_insert(0);
        *count = count.saturating_add(1);
        // 1s, 2s, 4s ... capped at the resync period.
        Duration::from_secs(1u64 << (*count).clamp(1, 9).saturating_sub(1)).min(RESYNC)
    }

    fn reset_backoff(&self, obj: &ObjectRef<IngressController>) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(obj);
    }
}

/// Runs the controller until `shutdown` resolves.
///
/// With `--watch-namespaces` every namespaced kind is watched in each listed namespace
/// (one watch per namespace, where the operator's Roles allow it) rather than across the
/// cluster. IngressControllers themselves are watched cluster-wide, which the chart's
/// small ClusterRole allows in that mode too (read only): instances elsewhere are seen
/// and left alone.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    let scope = ctx.settings.watch_namespaces.clone();
    // One watch per kind: it fills the store reconcile reads and wakes the controller.
    let (instances, instance_changes) = stores::reflect(
        Api::<IngressController>::all(client.clone()),
        watcher::Config::default().any_semantic(),
        stores::instance_fingerprint,
    );
    let (stores, streams) = Stores::reflect(&client, scope.as_ref());
    *ctx.stores.lock().unwrap_or_else(|e| e.into_inner()) = Some(stores);
    let store = instances.clone();
    let mut controller = Controller::for_stream(instance_changes, instances);

    // Children, by the instance labels on each.
    for changes in streams.service_accounts {
        controller = controller.watches_stream(changes, |o| labelled_instance(o.meta()));
    }
    for changes in streams.deployments {
        controller = controller.watches_stream(changes, |o| labelled_instance(o.meta()));
    }
    for changes in streams.pdbs {
        controller = controller.watches_stream(changes, |o| labelled_instance(o.meta()));
    }
    for changes in streams.hpas {
        controller = controller.watches_stream(changes, |o| labelled_instance(o.meta()));
    }
    for changes in streams.roles {
        controller = controller.watches_stream(changes, |o| labelled_instance(o.meta()));
    }
    for changes in streams.role_bindings {
        controller = controller.watches_stream(changes, |o| labelled_instance(o.meta()));
    }
    controller = controller
        .watches_stream(streams.cluster_roles, |o| labelled_instance(o.meta()))
        .watches_stream(streams.cluster_role_bindings, |o| {
            labelled_instance(o.meta())
        });
    // What the instances serve.
    for changes in streams.ingresses {
        let store = store.clone();
        controller = controller.watches_stream(changes, move |ingress| {
            instances_for_ingress(&store, &ingress)
        });
    }
    // The proxy Service is the instance's (by its labels); any Service appearing or
    // changing ports can heal (or break) an Ingress naming it.
    for changes in streams.services {
        let store = store.clone();
        controller = controller.watches_stream(changes, move |service| {
            let mut refs = instances_for_service(&store, &service);
            refs.extend(labelled_instance(service.meta()));
            refs
        });
    }
    // A hand-written EndpointSlice may name an endpoint the proxies refuse (an Event);
    // the proxy Service's slices say which addresses are the proxies' own.
    for changes in streams.slices.hand_written {
        let store = store.clone();
        controller = controller.watches_stream(changes, move |slice| {
            endpoints::instances_for_slice(&store, &slice)
        });
    }
    for changes in streams.slices.fleet {
        controller = controller.watches_stream(changes, |o| labelled_instance(o.meta()));
    }
    controller
        .watches_stream(streams.ingress_classes, {
            let store = store.clone();
            move |class| instances_for_class(&store, &class)
        })
        .watches_stream(streams.namespaces, {
            let store = store.clone();
            move |ns| instances_for_namespace(&store, &ns)
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => debug!(instance = %obj, "reconciled"),
                Err(e) => debug!(error = %e, "reconcile failed"),
            }
        })
        .await;
    *ctx.stores.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

fn labelled_instance(meta: &kube::api::ObjectMeta) -> Option<ObjectRef<IngressController>> {
    let (namespace, name) = resources::instance_of(meta)?;
    Some(ObjectRef::new(&name).within(&namespace))
}

/// Instances whose class is `class`, or that the class's parameters name.
fn instances_for_class(
    store: &Store<IngressController>,
    class: &IngressClass,
) -> Vec<ObjectRef<IngressController>> {
    let name = class.name_any();
    let mut refs: Vec<_> = store
        .state()
        .iter()
        .filter(|ic| ic.spec.class_name(&ic.name_any()) == name)
        .map(|ic| ObjectRef::from_obj(ic.as_ref()))
        .collect();
    if let Some(p) = class.spec.as_ref().and_then(|s| s.parameters.as_ref())
        && p.kind == "IngressController"
        && let Some(ns) = &p.namespace
    {
        refs.push(ObjectRef::new(&p.name).within(ns));
    }
    refs
}

/// Instances that may serve `namespace` or live in it.
fn instances_for_namespace(
    store: &Store<IngressController>,
    namespace: &Namespace,
) -> Vec<ObjectRef<IngressController>> {
    let name = namespace.name_any();
    store
        .state()
        .iter()
        .filter(|ic| {
            ic.spec.namespace_selector.is_some() || ic.namespace().as_deref() == Some(name.as_str())
        })
        .map(|ic| ObjectRef::from_obj(ic.as_ref()))
        .collect()
}

/// Instances whose class the Ingress asks for.
fn instances_for_ingress(
    store: &Store<IngressController>,
    ingress: &Ingress,
) -> Vec<ObjectRef<IngressController>> {
    store
        .state()
        .iter()
        .filter(|ic| {
            portico_ingress::belongs_to_class(
                ingress,
                ic.spec.class_name(&ic.name_any()),
                ic.spec.is_default_class(),
            )
        })
        .map(|ic| ObjectRef::from_obj(ic.as_ref()))
        .collect()
}

/// Instances that serve the Service's namespace (by their last status, or living there).
fn instances_for_service(
    store: &Store<IngressController>,
    service: &Service,
) -> Vec<ObjectRef<IngressController>> {
    service
        .namespace()
        .map(|ns| instances_serving(store, &ns))
        .unwrap_or_default()
}

/// Instances that live in `namespace` or serve it (by their last status): those an
/// object there (a Service, an EndpointSlice) can change the verdicts of.
pub fn instances_serving(
    store: &Store<IngressController>,
    namespace: &str,
) -> Vec<ObjectRef<IngressController>> {
    store
        .state()
        .iter()
        .filter(|ic| {
            ic.namespace().as_deref() == Some(namespace)
                || ic
                    .status
                    .as_ref()
                    .is_some_and(|s| s.served_namespaces.iter().any(|n| n == namespace))
        })
        .map(|ic| ObjectRef::from_obj(ic.as_ref()))
        .collect()
}

fn error_policy(obj: Arc<IngressController>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.record_error(error);
    let object = ObjectRef::from_obj(obj.as_ref());
    if error.is_permanent() {
        warn!(instance = %object, error = %error, "reconcile failed; waiting for a change");
        return Action::requeue(RESYNC);
    }
    let delay = ctx.backoff(&object);
    warn!(instance = %object, error = %error, retry_in = ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

async fn reconcile(instance: Arc<IngressController>, ctx: Arc<Context>) -> Result<Action> {
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
            Finalized::Cleanup(instance) => cleanup(&instance, &ctx).await,
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
    if !stores.ready().await {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let namespaces = stores.candidate_namespaces(instance, &namespace)?;
    let mut served = tenancy::served_namespaces(
        instance,
        namespaces.iter().map(AsRef::as_ref),
        &ctx.settings,
    )?;
    // With --watch-namespaces, those are the only namespaces instances may serve.
    served.retain(|ns| ctx.settings.watches(ns));
    let ingresses = stores.ingresses.state();
    let mut inputs = Inputs::new(instance, served.clone(), BTreeMap::new(), &ctx.settings)?;

    // 2. Which Ingresses the proxies will serve: the proxy's own judgement, with the
    //    Services of the served namespaces that hold Ingresses of the class, and the
    //    default-class mark read from the IngressClass as the proxy reads it.
    let served_set: BTreeSet<String> = served.iter().cloned().collect();
    let is_default_class = portico_ingress::is_default_class(&ingress_class::build(&inputs));
    let served_in: BTreeSet<String> = ingresses
        .iter()
        .filter(|i| portico_ingress::belongs_to_class(i, &class, is_default_class))
        .filter_map(|i| i.namespace())
        .filter(|ns| served_set.contains(ns))
        .collect();
    let services = stores.services_in(&served_in);
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
    let verdicts = verdict::judge(
        &judged,
        ingresses.iter().map(AsRef::as_ref),
        &services,
        &name,
    );
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
    for ingress in &verdicts.served {
        if lb_of(ingress) != load_balancer {
            write_ingress_status(client, ingress, &load_balancer).await?;
        }
    }
    // A rejected Ingress must not keep advertising an address it is not served on.
    for ingress in &verdicts.rejected {
        let current = lb_of(ingress);
        if current == load_balancer && current.ingress.is_some() {
            let none = IngressLoadBalancerStatus {
                ingress: Some(Vec::new()),
            };
            write_ingress_status(client, ingress, &none).await?;
        }
    }
    let mut warnings = verdicts.warnings.clone();
    warnings.extend(endpoints::for_instance(
        &stores.slices,
        &ctx.settings,
        (&namespace, &name),
        &verdicts.served_ports,
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
        ingresses_served: i32::try_from(verdicts.served.len()).unwrap_or(i32::MAX),
        ingresses_rejected: i32::try_from(verdicts.rejected.len()).unwrap_or(i32::MAX),
        annotations_not_honoured: i32::try_from(verdicts.annotations_not_honoured)
            .unwrap_or(i32::MAX),
        observed_generation: instance.metadata.generation,
    };
    write_status(instance, ctx, status).await?;
    Ok(Action::requeue(RESYNC))
}

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

/// An Ingress's `status.loadBalancer`, empty when unset.
fn lb_of(ingress: &Ingress) -> IngressLoadBalancerStatus {
    ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.clone())
        .unwrap_or_default()
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

/// Removes what owner references cannot reach: the IngressClass (only if still ours),
/// the ClusterRole(Binding), and Roles/RoleBindings in every namespace. The namespaced
/// children in the instance's namespace go too, without waiting for the garbage collector.
async fn cleanup(instance: &IngressController, ctx: &Context) -> Result<Action> {
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

/// The apiserver refuses Event notes over 1 kB; a long error (an RBAC denial quoting the
/// rules, say) would otherwise lose the whole Event.
fn truncate_note(mut note: String) -> String {
    const MAX: usize = 1024;
    if note.len() > MAX {
        let mut end = MAX - '…'.len_utf8();
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    note
}

#[cfg(test)]
mod note_tests {
    #[test]
    fn long_notes_are_cut_to_the_apiserver_limit_on_a_char_boundary() {
        let long = "é".repeat(800);
        let cut = super::truncate_note(long);
        assert!(cut.len() <= 1024, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(super::truncate_note("short".into()), "short");
    }
}
