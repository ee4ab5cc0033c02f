//! What the judgement reads of one Ingress that depends on nothing but that Ingress, the
//! Services of its namespace it names and the instance's [`Limits`]: its hosts, whom it
//! shares them with, whether it is a canary, and [`check()`]'s verdict. A [`Memo`] keeps
//! them between judgements, so that one changed Ingress among 10,000 costs one check, not
//! 10,000; the claims between Ingresses are still decided afresh every time.
//!
//! ```text
//!  Ingress (uid, resourceVersion) + Services it looked up (resourceVersion, or absent)
//!     ─▶ unchanged since the last judgement? ─▶ the same Arc<Prepared>
//!     ─▶ else check() again, recording the Services it looks up
//! ```
//!
//! An object without a uid or resourceVersion (a test fixture) is never remembered: nothing
//! could tell its next version from this one.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;

use crate::check::{Checked, Limits, Problem, check};
use crate::conflict::IngressKey;
use crate::host::HostPattern;

/// ingress-nginx annotations the judgement itself reads.
const SERVER_ALIAS_ANNOTATION: &str = "nginx.ingress.kubernetes.io/server-alias";
const CANARY_ANNOTATION: &str = "nginx.ingress.kubernetes.io/canary";

/// One Ingress as the judgement reads it, before any other Ingress is considered.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub key: Arc<IngressKey>,
    /// The hosts it names in rules, `spec.tls` and `server-alias`, that parse (never `Any`).
    pub hosts: Vec<HostPattern>,
    /// [`crate::share_host_with`].
    pub guests: Result<BTreeSet<String>, Problem>,
    pub canary: bool,
    /// Everything it declares, typed and resolved, or why it cannot be served.
    pub checked: Result<Arc<Checked>, Vec<Problem>>,
    /// [`crate::auth::secrets_read`].
    pub secrets: BTreeSet<String>,
}

impl Prepared {
    fn new<'s>(
        ingress: &Ingress,
        services: impl Fn(&str) -> Option<&'s Service>,
        limits: &Limits,
    ) -> Prepared {
        let annotations = ingress.metadata.annotations.as_ref();
        Prepared {
            key: Arc::new(IngressKey::of(ingress)),
            hosts: declared_hosts(ingress).collect(),
            guests: crate::judge::share_host_with(ingress),
            canary: annotations
                .and_then(|a| a.get(CANARY_ANNOTATION))
                .is_some_and(|v| v.trim() == "true"),
            checked: check(ingress, services, limits).map(Arc::new),
            secrets: crate::auth::secrets_read(ingress),
        }
    }
}

/// The hosts an Ingress names, in rules and in `spec.tls`, that parse.
pub(crate) fn declared_hosts(ingress: &Ingress) -> impl Iterator<Item = HostPattern> + '_ {
    let spec = ingress.spec.as_ref();
    let rules = spec
        .and_then(|s| s.rules.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|r| r.host.as_deref());
    let tls = spec
        .and_then(|s| s.tls.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|t| t.hosts.iter().flatten())
        .map(String::as_str);
    // server-alias names hosts too: the oldest Ingress naming one owns it.
    let aliases = ingress
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SERVER_ALIAS_ANNOTATION))
        .and_then(|v| crate::nginx::server_aliases(v).ok())
        .unwrap_or_default();
    rules
        .chain(tls)
        .filter_map(|h| HostPattern::parse(h).ok())
        .chain(aliases)
        .filter(|h| !matches!(h, HostPattern::Any))
}

/// [`Prepared`] Ingresses kept between judgements of one instance (hold one per instance:
/// the verdicts depend on its [`Limits`]).
#[derive(Debug, Default)]
pub struct Memo {
    limits: Option<Limits>,
    /// By the Ingress's uid (a recreated Ingress is a new one).
    entries: HashMap<String, Entry>,
    round: u64,
    /// The caller's count of Service changes for the judgement under way
    /// ([`Memo::services_at`]); `None`: every remembered lookup is checked.
    services: Option<u64>,
}

#[derive(Debug)]
struct Entry {
    version: String,
    /// Each Service `check()` looked up, with its resourceVersion (`None`: not found).
    services: Vec<(String, Option<String>)>,
    /// The count of Service changes at which `services` were last found current.
    services_at: Option<u64>,
    prepared: Arc<Prepared>,
    /// The last judgement that read it.
    round: u64,
}

impl Memo {
    /// How many Ingresses are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Promises that `count` changes whenever a Service the judgement may look up
    /// changes: then a judgement at the count an entry was last checked at does not look
    /// its Services up again (a build over 10,000 Ingresses would otherwise do so 10,000
    /// times). Holds for the next judgement only.
    pub fn services_at(&mut self, count: u64) {
        self.services = Some(count);
    }

    /// Starts a judgement: other limits make every remembered check stale.
    pub(crate) fn begin(&mut self, limits: &Limits) {
        if self.limits.as_ref() != Some(limits) {
            self.entries.clear();
            self.limits = Some(limits.clone());
        }
        self.round += 1;
    }

    /// Ends a judgement: Ingresses it did not read are forgotten.
    pub(crate) fn end(&mut self) {
        self.services = None;
        let round = self.round;
        self.entries.retain(|_, e| e.round == round);
    }

    /// `ingress` prepared: the remembered one when neither it nor a Service it looked up
    /// has changed. `services(name)` finds a Service of the Ingress's namespace.
    pub(crate) fn prepare<'s>(
        &mut self,
        ingress: &Ingress,
        services: impl Fn(&str) -> Option<&'s Service>,
        limits: &Limits,
    ) -> Arc<Prepared> {
        let uid = ingress.metadata.uid.as_deref();
        let version = ingress.metadata.resource_version.as_deref();
        let count = self.services;
        if let Some(entry) = uid.and_then(|uid| self.entries.get_mut(uid))
            && version == Some(entry.version.as_str())
            && ((count.is_some() && entry.services_at == count)
                || entry
                    .services
                    .iter()
                    .all(|(name, rv)| match (services(name), rv) {
                        (None, None) => true,
                        (Some(s), Some(rv)) => s.metadata.resource_version.as_ref() == Some(rv),
                        _ => false,
                    }))
        {
            entry.round = self.round;
            entry.services_at = count;
            return entry.prepared.clone();
        }
        // Record what check() looks up; a Service without a resourceVersion makes the
        // result one that cannot be remembered.
        let looked_up: RefCell<Vec<(String, Option<String>)>> = RefCell::default();
        let rememberable = std::cell::Cell::new(version.is_some() && uid.is_some());
        let prepared = Arc::new(Prepared::new(
            ingress,
            |name| {
                let found = services(name);
                let rv = match found {
                    Some(s) => match &s.metadata.resource_version {
                        Some(rv) => Some(rv.clone()),
                        None => {
                            rememberable.set(false);
                            None
                        }
                    },
                    None => None,
                };
                let mut seen = looked_up.borrow_mut();
                if !seen.iter().any(|(n, _)| n == name) {
                    seen.push((name.to_owned(), rv));
                }
                found
            },
            limits,
        ));
        match uid.zip(version).filter(|_| rememberable.get()) {
            Some((uid, version)) => {
                self.entries.insert(
                    uid.to_owned(),
                    Entry {
                        version: version.to_owned(),
                        services: looked_up.into_inner(),
                        services_at: count,
                        prepared: prepared.clone(),
                        round: self.round,
                    },
                );
            }
            None => {
                if let Some(uid) = uid {
                    self.entries.remove(uid);
                }
            }
        }
        prepared
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeSet;

    fn ingress(version: Option<&str>, port: u16) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"namespace": "a", "name": "web", "uid": "u1", "resourceVersion": version},
            "spec": {"rules": [{"host": "a.test", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": port}}}}]}}]},
        }))
        .expect("ingress")
    }

    fn service(version: Option<&str>, port: u16) -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": "web", "resourceVersion": version},
                                      "spec": {"ports": [{"port": port}]}}),
        )
        .expect("service")
    }

    #[test]
    fn an_unchanged_ingress_is_checked_once() {
        let (mut memo, limits) = (Memo::default(), Limits::default());
        let svc = service(Some("7"), 80);
        let ing = ingress(Some("1"), 80);
        memo.begin(&limits);
        let first = memo.prepare(&ing, |_| Some(&svc), &limits);
        memo.end();
        memo.begin(&limits);
        let second = memo.prepare(&ing, |_| Some(&svc), &limits);
        memo.end();
        assert!(Arc::ptr_eq(&first, &second));
        assert!(first.checked.is_ok());
    }

    #[test]
    fn a_new_version_of_the_ingress_or_its_service_is_checked_again() {
        let (mut memo, limits) = (Memo::default(), Limits::default());
        memo.begin(&limits);
        let svc = service(Some("7"), 80);
        let first = memo.prepare(&ingress(Some("1"), 80), |_| Some(&svc), &limits);
        assert!(first.checked.is_ok());
        // The Service loses port 80: the same Ingress version is now unservable.
        let moved = service(Some("8"), 81);
        let again = memo.prepare(&ingress(Some("1"), 80), |_| Some(&moved), &limits);
        assert!(again.checked.is_err(), "{again:?}");
        // The Service is deleted: ServiceNotFound, even though nothing else changed.
        let gone = memo.prepare(&ingress(Some("1"), 80), |_| None, &limits);
        assert!(matches!(&gone.checked, Err(p) if matches!(p[0], Problem::ServiceNotFound(_))));
        // It comes back: servable again.
        let back = memo.prepare(&ingress(Some("1"), 80), |_| Some(&svc), &limits);
        assert!(back.checked.is_ok());
        // A new Ingress version naming another port.
        let next = memo.prepare(&ingress(Some("2"), 81), |_| Some(&svc), &limits);
        assert!(next.checked.is_err());
    }

    #[test]
    fn objects_without_a_version_and_other_limits_are_never_reused() {
        let (mut memo, limits) = (Memo::default(), Limits::default());
        let svc = service(Some("7"), 80);
        memo.begin(&limits);
        let a = memo.prepare(&ingress(None, 80), |_| Some(&svc), &limits);
        let b = memo.prepare(&ingress(None, 80), |_| Some(&svc), &limits);
        assert!(!Arc::ptr_eq(&a, &b));
        let unversioned = service(None, 80);
        let c = memo.prepare(&ingress(Some("1"), 80), |_| Some(&unversioned), &limits);
        let d = memo.prepare(&ingress(Some("1"), 80), |_| Some(&unversioned), &limits);
        assert!(!Arc::ptr_eq(&c, &d));
        memo.end();

        let e = memo.prepare(&ingress(Some("1"), 80), |_| Some(&svc), &limits);
        let tight = Limits {
            max_paths: 0,
            ..Limits::default()
        };
        memo.begin(&tight);
        let f = memo.prepare(&ingress(Some("1"), 80), |_| Some(&svc), &tight);
        assert!(!Arc::ptr_eq(&e, &f));
        assert!(f.checked.is_err(), "one path is over a limit of none");
    }

    /// A small deterministic generator (no dependency, same sequence every run).
    struct Lcg(u64);

    impl Lcg {
        fn pick(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n
        }
    }

    /// What a judgement decided, comparable.
    fn decided(j: &crate::Judgement<'_>) -> Vec<String> {
        j.verdicts
            .iter()
            .map(|v| {
                format!(
                    "{} served={} checked={:?} certs={:?} rejections={:?} omitted={}",
                    v.key, v.served, v.checked, v.certificates, v.rejections, v.omitted
                )
            })
            .collect()
    }

    /// Whatever changes, in whatever order, the judgement with a memo is the judgement
    /// without one: a stale check would serve what a fresh one refuses.
    #[test]
    fn remembered_checks_never_change_a_verdict() {
        const NAMESPACES: [&str; 3] = ["a", "b", "c"];
        const HOSTS: [&str; 4] = ["a.test", "b.test", "*.c.test", "x.c.test"];
        const PATHS: [&str; 2] = ["/", "/x"];
        const SERVICES: [&str; 2] = ["web", "api"];
        let served: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
        let policy = crate::TenantPolicy::default();
        let limits = Limits::default();
        let scope = crate::Scope {
            class: "web",
            is_default_class: false,
            instance_namespace: "a",
            served_namespaces: &served,
            policy: &policy,
            limits: &limits,
        };
        let mut rng = Lcg(7);
        let mut version = 0u64;
        let mut next = || {
            version += 1;
            version.to_string()
        };
        let mut ingresses: Vec<Ingress> = Vec::new();
        // (namespace, name) → Service; present or not.
        let mut services: HashMap<(String, String), Service> = HashMap::new();
        let mut memo = Memo::default();
        // Counts Service changes, as the proxy's store does ([`Memo::services_at`]).
        let mut service_changes = 0u64;
        for step in 0..400 {
            match rng.pick(6) {
                // A new Ingress, or a new version of one (possibly recreated: a new uid).
                0..=2 => {
                    let ns = NAMESPACES[rng.pick(3)];
                    let name = format!("i{}", rng.pick(5));
                    let host = HOSTS[rng.pick(HOSTS.len())];
                    let mut annotations = serde_json::Map::new();
                    if rng.pick(4) == 0 {
                        annotations.insert(
                            crate::SHARE_HOST_ANNOTATION.into(),
                            NAMESPACES[rng.pick(3)].into(),
                        );
                    }
                    if rng.pick(5) == 0 {
                        annotations.insert(CANARY_ANNOTATION.into(), "true".into());
                        annotations.insert(
                            "nginx.ingress.kubernetes.io/canary-weight".into(),
                            "10".into(),
                        );
                    }
                    let uid = format!("{ns}-{name}-{}", rng.pick(2));
                    let ingress: Ingress = serde_json::from_value(json!({
                        "metadata": {"namespace": ns, "name": name, "uid": uid,
                            "resourceVersion": next(),
                            "creationTimestamp": format!("2026-01-0{}T00:00:00Z", 1 + rng.pick(3)),
                            "annotations": annotations},
                        "spec": {"ingressClassName": "web",
                            "tls": [{"hosts": [host], "secretName": "cert"}],
                            "rules": [{"host": host, "http": {"paths": [{
                                "path": PATHS[rng.pick(2)], "pathType": "Prefix",
                                "backend": {"service": {"name": SERVICES[rng.pick(2)],
                                    "port": {"number": 80 + rng.pick(2) as u16}}}}]}}]},
                    }))
                    .expect("ingress");
                    ingresses.retain(|i| {
                        (i.metadata.namespace.as_deref(), i.metadata.name.as_deref())
                            != (Some(ns), Some(name.as_str()))
                    });
                    ingresses.push(ingress);
                }
                // A Service appears or changes its port.
                3 | 4 => {
                    let (ns, name) = (NAMESPACES[rng.pick(3)], SERVICES[rng.pick(2)]);
                    let mut svc = service(Some(&next()), 80 + rng.pick(2) as u16);
                    svc.metadata.name = Some(name.into());
                    services.insert((ns.into(), name.into()), svc);
                    service_changes += 1;
                }
                // A Service or an Ingress goes away.
                _ => {
                    if rng.pick(2) == 0 {
                        let (ns, name) = (NAMESPACES[rng.pick(3)], SERVICES[rng.pick(2)]);
                        if services
                            .remove(&(ns.to_string(), name.to_string()))
                            .is_some()
                        {
                            service_changes += 1;
                        }
                    } else if !ingresses.is_empty() {
                        let i = rng.pick(ingresses.len());
                        ingresses.remove(i);
                    }
                }
            }
            let lookup = |ns: &str, name: &str| services.get(&(ns.to_string(), name.to_string()));
            let fresh = crate::judge(&scope, ingresses.iter(), lookup);
            // Half the judgements trust the count, half look every Service up.
            if step % 2 == 0 {
                memo.services_at(service_changes);
            }
            let remembered = crate::judge_with(&mut memo, &scope, ingresses.iter(), lookup);
            assert_eq!(decided(&remembered), decided(&fresh), "step {step}");
        }
        assert!(!memo.is_empty(), "the memo was used");
    }

    #[test]
    fn ingresses_not_read_by_a_judgement_are_forgotten() {
        let (mut memo, limits) = (Memo::default(), Limits::default());
        let svc = service(Some("7"), 80);
        memo.begin(&limits);
        memo.prepare(&ingress(Some("1"), 80), |_| Some(&svc), &limits);
        memo.end();
        assert_eq!(memo.len(), 1);
        memo.begin(&limits);
        memo.end();
        assert!(memo.is_empty());
    }
}
