//! Watchers and the config loop. One task owns the store; watchers only forward events.
//!
//! ```text
//! IngressClass (cluster, fieldSelector metadata.name=<class>)
//! Ingress, Service, EndpointSlice   × every served namespace     ─┐
//! Secret (fieldSelector metadata.name=<name>) × referenced Secret ─┼─▶ mpsc ─▶ config loop
//!                                                                  │    store.apply/delete
//!          routes changed ─▶ pace ───▶ build ─▶ ArcSwap<Snapshot> ◀┘    endpoints changed
//!                                                                       ─▶ Backends::refresh
//! ```
//!
//! The proxy's RBAC is namespaced Roles plus a ClusterRole for its own IngressClass, with
//! Secrets listed by resourceNames: hence one watcher per namespace and kind, and Secrets
//! (and the IngressClass) watched one by one by name — never a cluster-wide list.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::build::{Caches, Params, build};
use super::pace::Pacer;
use super::store::{Change, Kind, Object, Scope, Store};
use super::{ObjectKey, SharedSnapshot};
use crate::health::Health;
use crate::metrics::METRICS;

/// How long readiness waits for Secret watchers after the first sync (a Secret the
/// operator's Role does not list yet must not keep the proxy unready forever).
pub const SECRET_SYNC_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub enum WatchEvent {
    Init,
    InitApply(Object),
    InitDone,
    Apply(Object),
    Delete(Object),
}

#[derive(Debug)]
pub struct Msg {
    pub scope: Scope,
    pub event: WatchEvent,
}

fn spawn_watch<K>(
    api: Api<K>,
    cfg: watcher::Config,
    scope: Scope,
    tx: mpsc::UnboundedSender<Msg>,
    wrap: fn(K) -> Object,
) -> JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    tokio::spawn(async move {
        let mut stream = watcher(api, cfg).default_backoff().boxed();
        while let Some(ev) = stream.next().await {
            let event = match ev {
                Ok(watcher::Event::Init) => WatchEvent::Init,
                Ok(watcher::Event::InitApply(o)) => WatchEvent::InitApply(wrap(o)),
                Ok(watcher::Event::InitDone) => WatchEvent::InitDone,
                Ok(watcher::Event::Apply(o)) => WatchEvent::Apply(wrap(o)),
                Ok(watcher::Event::Delete(o)) => WatchEvent::Delete(wrap(o)),
                Err(e) => {
                    warn!(watch = %scope, error = %e, "watch failed; retrying with backoff");
                    continue;
                }
            };
            if tx
                .send(Msg {
                    scope: scope.clone(),
                    event,
                })
                .is_err()
            {
                return;
            }
        }
    })
}

/// The config loop: owns the store, the caches and the watcher set.
pub struct ConfigLoop {
    client: Client,
    params: Params,
    shared: SharedSnapshot,
    health: Arc<Health>,
    store: Store,
    caches: Caches,
    generation: u64,
    tx: mpsc::UnboundedSender<Msg>,
    /// Watchers that have not finished their first list.
    pending: HashSet<Scope>,
    /// Secrets and ConfigMaps the snapshot references, each watched by name.
    named_watchers: HashMap<(Kind, ObjectKey), JoinHandle<()>>,
    core_synced_at: Option<Instant>,
    built_once: bool,
    last_warnings: HashSet<String>,
    pending_warnings: HashSet<String>,
}

impl ConfigLoop {
    pub fn new(
        client: Client,
        params: Params,
        shared: SharedSnapshot,
        health: Arc<Health>,
    ) -> (Self, mpsc::UnboundedReceiver<Msg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let this = ConfigLoop {
            client,
            params,
            shared,
            health,
            store: Store::default(),
            caches: Caches::default(),
            generation: 0,
            tx,
            pending: HashSet::new(),
            named_watchers: HashMap::new(),
            core_synced_at: None,
            built_once: false,
            last_warnings: HashSet::new(),
            pending_warnings: HashSet::new(),
        };
        (this, rx)
    }

    /// Endpoints `policy` refuses are dropped from every backend (portico-ingress's rule).
    pub fn with_endpoint_policy(mut self, policy: portico_ingress::EndpointPolicy) -> Self {
        self.caches.backends = super::build::Backends::with_policy(policy);
        self
    }

    fn start_core_watchers(&mut self) {
        let class = self.params.class_name.clone();
        let scope = Scope {
            kind: Kind::IngressClass,
            namespace: String::new(),
            name: Some(class.clone()),
        };
        self.pending.insert(scope.clone());
        spawn_watch(
            Api::<IngressClass>::all(self.client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={class}")),
            scope,
            self.tx.clone(),
            Object::IngressClass,
        );
        for ns in self.params.namespaces.clone() {
            let scope = |kind| Scope {
                kind,
                namespace: ns.clone(),
                name: None,
            };
            self.pending.extend([
                scope(Kind::Ingress),
                scope(Kind::Service),
                scope(Kind::EndpointSlice),
            ]);
            let cfg = watcher::Config::default().any_semantic();
            spawn_watch(
                Api::<Ingress>::namespaced(self.client.clone(), &ns),
                cfg.clone(),
                scope(Kind::Ingress),
                self.tx.clone(),
                Object::Ingress,
            );
            spawn_watch(
                Api::<Service>::namespaced(self.client.clone(), &ns),
                cfg.clone(),
                scope(Kind::Service),
                self.tx.clone(),
                Object::Service,
            );
            spawn_watch(
                Api::<EndpointSlice>::namespaced(self.client.clone(), &ns),
                cfg,
                scope(Kind::EndpointSlice),
                self.tx.clone(),
                Object::EndpointSlice,
            );
        }
    }

    /// Follows the set of referenced Secrets: one watcher per Secret, by name.
    /// Watches exactly the Secrets and ConfigMaps the last build read or wanted (TLS
    /// certificates, auth Secrets, backend CA bundles), each by name, as the Role grants
    /// them: what the store's objects name, not what the request path holds.
    fn sync_named_watchers(
        &mut self,
        secrets: BTreeSet<ObjectKey>,
        config_maps: BTreeSet<ObjectKey>,
    ) {
        let wanted: HashSet<(Kind, ObjectKey)> = secrets
            .into_iter()
            .map(|k| (Kind::Secret, k))
            .chain(config_maps.into_iter().map(|k| (Kind::ConfigMap, k)))
            .collect();
        let mut dropped = Vec::new();
        self.named_watchers.retain(|key, handle| {
            let keep = wanted.contains(key);
            if !keep {
                handle.abort();
                dropped.push(key.clone());
            }
            keep
        });
        for (kind, key) in &dropped {
            self.store.delete(*kind, key);
        }
        if !dropped.is_empty() {
            self.pending.retain(|s| {
                !s.kind.is_named()
                    || s.name.as_ref().is_some_and(|n| {
                        wanted.contains(&(s.kind, ObjectKey::new(&s.namespace, n)))
                    })
            });
        }
        for (kind, key) in wanted {
            if self.named_watchers.contains_key(&(kind, key.clone())) {
                continue;
            }
            debug!(?kind, object = %key, "watching by name");
            let scope = Scope {
                kind,
                namespace: key.namespace.clone(),
                name: Some(key.name.clone()),
            };
            if !self.health.is_ready() {
                self.pending.insert(scope.clone());
            }
            let by_name = watcher::Config::default().fields(&format!("metadata.name={}", key.name));
            let handle = match kind {
                Kind::ConfigMap => spawn_watch(
                    Api::<ConfigMap>::namespaced(self.client.clone(), &key.namespace),
                    by_name,
                    scope,
                    self.tx.clone(),
                    Object::ConfigMap,
                ),
                _ => spawn_watch(
                    Api::<Secret>::namespaced(self.client.clone(), &key.namespace),
                    by_name,
                    scope,
                    self.tx.clone(),
                    Object::Secret,
                ),
            };
            self.named_watchers.insert((kind, key), handle);
        }
    }

    fn core_pending(&self) -> bool {
        self.pending.iter().any(|s| !s.kind.is_named())
    }

    /// Applies one event; returns whether routes must be rebuilt.
    fn handle(&mut self, msg: Msg) -> bool {
        let Msg { scope, event } = msg;
        let change = match event {
            WatchEvent::Init => {
                self.store.relist(&scope);
                Change::None
            }
            // Applied as listed; routes are rebuilt once the list is done.
            WatchEvent::InitApply(obj) => match self.store.relisted(&scope, obj) {
                Change::Routes => Change::None,
                other => other,
            },
            WatchEvent::InitDone => {
                for service in self.store.relist_done(&scope) {
                    self.caches.backends.refresh(&self.store, &service);
                }
                if self.pending.remove(&scope) {
                    debug!(watch = %scope, "initial list done");
                    if !self.core_pending() && self.core_synced_at.is_none() {
                        self.core_synced_at = Some(Instant::now());
                    }
                }
                // Rebuild after every (re)list: cheap, and exact whatever changed meanwhile.
                Change::Routes
            }
            WatchEvent::Apply(obj) => self.store.apply(obj),
            WatchEvent::Delete(obj) => {
                let key = obj.key();
                self.store.delete(obj.kind(), &key)
            }
        };
        match change {
            Change::None => false,
            Change::Routes => true,
            Change::Endpoints(svc) => {
                if self.caches.backends.refresh(&self.store, &svc) {
                    debug!(service = %svc, "endpoints updated in place");
                }
                false
            }
        }
    }

    fn rebuild(&mut self) {
        let started = Instant::now();
        self.generation += 1;
        let generation = self.generation;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            build(&self.store, &self.params, &mut self.caches, generation)
        }));
        let out = match result {
            Ok(out) => out,
            Err(_) => {
                self.generation -= 1;
                METRICS.config_rebuilds.with_label_values(&["error"]).inc();
                warn!("snapshot build failed; keeping the last good snapshot");
                return;
            }
        };
        let elapsed = started.elapsed();
        METRICS
            .config_rebuild_duration
            .observe(elapsed.as_secs_f64());
        METRICS.config_rebuilds.with_label_values(&["ok"]).inc();
        METRICS.config_generation.set(generation as i64);
        METRICS
            .ingresses
            .with_label_values(&["served"])
            .set(out.snapshot.ingresses_served as i64);
        METRICS
            .ingresses
            .with_label_values(&["skipped"])
            .set(out.snapshot.ingresses_skipped as i64);
        self.pending_warnings = out.warnings.into_iter().collect();
        // Before the first full sync (Secrets still loading) warnings would be noise.
        if self.health.is_ready() {
            self.log_warnings();
        }
        info!(
            generation,
            ingresses = out.snapshot.ingresses_served,
            skipped = out.snapshot.ingresses_skipped,
            rules = out.snapshot.routes.rule_count(),
            millis = elapsed.as_secs_f64() * 1000.0,
            "snapshot built"
        );
        self.shared.store(Arc::new(out.snapshot));
        self.built_once = true;
        self.sync_named_watchers(out.referenced_secrets, out.referenced_config_maps);
    }

    /// Logs the warnings of the last build that were not logged before.
    fn log_warnings(&mut self) {
        for w in self.pending_warnings.difference(&self.last_warnings) {
            warn!("{w}");
        }
        self.last_warnings = std::mem::take(&mut self.pending_warnings);
    }

    fn maybe_ready(&mut self) {
        if self.health.is_ready() || !self.built_once || self.core_pending() {
            return;
        }
        let secrets_pending = self.pending.iter().filter(|s| s.kind.is_named()).count();
        let grace_over = self
            .core_synced_at
            .is_some_and(|t| t.elapsed() >= SECRET_SYNC_GRACE);
        if secrets_pending == 0 || grace_over {
            if secrets_pending > 0 {
                warn!(
                    secrets_pending,
                    "ready although some Secret or ConfigMap watchers have not synced (check the Role's resourceNames)"
                );
            }
            self.health.set_ready();
            info!(generation = self.generation, "first full sync done; ready");
            self.log_warnings();
        }
    }

    /// Runs until the process ends.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        self.start_core_watchers();
        let mut dirty_since: Option<tokio::time::Instant> = None;
        // Changes are built at once unless builds have lately been the busier half.
        let mut pacer = Pacer::new(tokio::time::Instant::now());
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            let deadline = dirty_since.map(|t| pacer.earliest(t));
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { return };
                    if self.handle(msg) && dirty_since.is_none() {
                        dirty_since = Some(tokio::time::Instant::now());
                    }
                    // Drain what is queued without waiting, so bursts coalesce.
                    while let Ok(msg) = rx.try_recv() {
                        if self.handle(msg) && dirty_since.is_none() {
                            dirty_since = Some(tokio::time::Instant::now());
                        }
                    }
                }
                _ = sleep_until_opt(deadline), if deadline.is_some() && !self.core_pending() => {
                    dirty_since = None;
                    let started = tokio::time::Instant::now();
                    self.rebuild();
                    pacer.built(started, started.elapsed());
                    self.maybe_ready();
                }
                _ = tick.tick() => self.maybe_ready(),
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::Policy;
    use arc_swap::ArcSwap;
    use serde_json::json;

    fn ingress(name: &str) -> Object {
        Object::Ingress(
            serde_json::from_value(json!({
                "metadata": {"namespace": "a", "name": name},
                "spec": {"ingressClassName": "c", "rules": [{"host": format!("{name}.com"), "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "svc", "port": {"number": 80}}}}]}}]},
            }))
            .expect("ingress"),
        )
    }

    fn service() -> Object {
        Object::Service(
            serde_json::from_value(json!({"metadata": {"namespace": "a", "name": "svc"}, "spec": {"ports": [{"port": 80}]}}))
                .expect("service"),
        )
    }

    /// A loop whose client points nowhere: these tests drive `handle` directly.
    fn config_loop() -> ConfigLoop {
        let client = Client::try_from(kube::Config::new(
            "http://127.0.0.1:9".parse().expect("url"),
        ))
        .expect("client");
        let params = Params {
            class_name: "c".into(),
            instance_namespace: "a".into(),
            tenant_policy: portico_ingress::TenantPolicy::default(),
            namespaces: ["a".to_string()].into(),
            default_policy: Policy::RoundRobin,
            ssl_redirect: true,
            default_certificate: None,
            limits: portico_ingress::Limits::default(),
        };
        let shared = Arc::new(ArcSwap::from_pointee(super::super::Snapshot::default()));
        ConfigLoop::new(client, params, shared, Arc::new(Health::default())).0
    }

    fn scope(kind: Kind) -> Scope {
        Scope {
            kind,
            namespace: "a".into(),
            name: None,
        }
    }

    fn send(l: &mut ConfigLoop, kind: Kind, event: WatchEvent) -> bool {
        l.handle(Msg {
            scope: scope(kind),
            event,
        })
    }

    #[tokio::test]
    async fn relist_drops_objects_missing_from_the_new_list() {
        let mut l = config_loop();
        send(&mut l, Kind::Ingress, WatchEvent::Init);
        send(&mut l, Kind::Ingress, WatchEvent::InitApply(ingress("one")));
        send(&mut l, Kind::Ingress, WatchEvent::InitApply(ingress("two")));
        assert!(send(&mut l, Kind::Ingress, WatchEvent::InitDone));
        assert_eq!(l.store.ingresses.len(), 2);
        // The watch restarts (e.g. after a 410 Gone); "two" was deleted meanwhile.
        send(&mut l, Kind::Ingress, WatchEvent::Init);
        send(&mut l, Kind::Ingress, WatchEvent::InitApply(ingress("one")));
        assert!(send(&mut l, Kind::Ingress, WatchEvent::InitDone));
        assert_eq!(
            l.store
                .ingresses
                .keys()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>(),
            vec!["one"]
        );
    }

    #[tokio::test]
    async fn ready_only_after_every_watcher_synced_and_a_build() {
        let mut l = config_loop();
        l.pending
            .extend([scope(Kind::Ingress), scope(Kind::Service)]);
        send(&mut l, Kind::Ingress, WatchEvent::Init);
        send(&mut l, Kind::Ingress, WatchEvent::InitApply(ingress("one")));
        send(&mut l, Kind::Ingress, WatchEvent::InitDone);
        l.maybe_ready();
        assert!(!l.health.is_ready(), "Services not listed yet");
        send(&mut l, Kind::Service, WatchEvent::Init);
        send(&mut l, Kind::Service, WatchEvent::InitApply(service()));
        send(&mut l, Kind::Service, WatchEvent::InitDone);
        l.maybe_ready();
        assert!(!l.health.is_ready(), "no snapshot built yet");
        l.rebuild();
        l.maybe_ready();
        assert!(l.health.is_ready());
        assert_eq!(l.shared.load().ingresses_served, 1);
        assert_eq!(l.shared.load().generation, 1);
        l.health.start_draining();
        assert!(!l.health.is_ready(), "draining fails readiness");
    }

    #[tokio::test]
    async fn status_only_and_endpoint_events_do_not_ask_for_a_rebuild() {
        let mut l = config_loop();
        assert!(send(
            &mut l,
            Kind::Ingress,
            WatchEvent::Apply(ingress("one"))
        ));
        assert!(
            !send(&mut l, Kind::Ingress, WatchEvent::Apply(ingress("one"))),
            "unchanged spec"
        );
        let slice = Object::EndpointSlice(
            serde_json::from_value(json!({"metadata": {"namespace": "a", "name": "svc-1",
                "labels": {"kubernetes.io/service-name": "svc"}}, "addressType": "IPv4", "endpoints": []}))
            .expect("slice"),
        );
        assert!(!send(&mut l, Kind::EndpointSlice, WatchEvent::Apply(slice)));
    }

    #[tokio::test]
    async fn a_service_annotation_change_asks_for_a_rebuild() {
        let mut l = config_loop();
        assert!(send(&mut l, Kind::Service, WatchEvent::Apply(service())));
        assert!(
            !send(&mut l, Kind::Service, WatchEvent::Apply(service())),
            "unchanged"
        );
        let annotated = Object::Service(
            serde_json::from_value(json!({"metadata": {"namespace": "a", "name": "svc",
                "annotations": {"portico.dev/backend-tls-ca-secret": "ca"}},
                "spec": {"ports": [{"port": 80}]}}))
            .expect("service"),
        );
        assert!(
            send(&mut l, Kind::Service, WatchEvent::Apply(annotated)),
            "backend TLS annotations are read by the build"
        );
    }
}
