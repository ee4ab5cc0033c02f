//! The controller: one `IngressController` in, its proxy fleet and status out. This
//! module is the wiring (context, watches, which instance a change wakes, retries);
//! `reconcile` applies one instance, `cleanup` removes what it leaves behind, `events`
//! publishes Kubernetes Events once per problem.
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

mod cleanup;
mod events;
mod reconcile;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, warn};

use crate::api::IngressController;
use crate::apply;
use crate::endpoints;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::resources::{self, Settings};
use crate::stores::{self, Stores};

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
    /// Per instance, its judgement, kept between reconciles (`verdict::Kept`): a change
    /// to Ingresses that stand alone is judged alone.
    judged: Mutex<HashMap<ObjectRef<IngressController>, crate::verdict::Kept>>,
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
            judged: Mutex::new(HashMap::new()),
        }
    }

    fn stores(&self) -> Option<Stores> {
        self.stores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn backoff(&self, obj: &ObjectRef<IngressController>) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry(obj.clone()).or_insert(0);
        *count = count.saturating_add(1);
        // 1s, 2s, 4s ... capped at the resync period.
        Duration::from_secs(1u64 << (*count).clamp(1, 9).saturating_sub(1)).min(RESYNC)
    }

    /// The instances whose last judgement held `ingress`: an Ingress that leaves a class
    /// (its class changed, or the default class moved) no longer names the instance that
    /// served it, whose verdicts (a host it held, the counts) change all the same.
    fn instances_that_judged(&self, ingress: &Ingress) -> Vec<ObjectRef<IngressController>> {
        let (Some(namespace), Some(name)) = (
            ingress.metadata.namespace.clone(),
            ingress.metadata.name.clone(),
        ) else {
            return Vec::new();
        };
        let named = (namespace, name);
        self.judged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, kept)| kept.held(&named))
            .map(|(instance, _)| instance.clone())
            .collect()
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
    let (mut stores, streams) = Stores::reflect(&client, scope.as_ref());
    let readiness = tokio::spawn(stores.signal_ready());
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
        let ctx = ctx.clone();
        controller = controller.watches_stream(changes, move |ingress| {
            let mut refs = instances_for_ingress(&store, &ingress);
            for judged in ctx.instances_that_judged(&ingress) {
                if !refs.contains(&judged) {
                    refs.push(judged);
                }
            }
            refs
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
        .run(reconcile::reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => debug!(instance = %obj, "reconciled"),
                Err(e) => debug!(error = %e, "reconcile failed"),
            }
        })
        .await;
    readiness.abort();
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
