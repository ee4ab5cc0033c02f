//! The operator's side of the one judgement: `portico_ingress::judge()` decides which
//! Ingresses of an instance's class its proxies serve (the proxy compiles the same
//! verdicts); this turns them into the Events, Ingress status and counts the proxy may not
//! write, and into what the proxy must be allowed to read.
//!
//! ```text
//!  Ingresses + Services + Scope ─▶ portico_ingress::judge() ─▶ Verdict per Ingress
//!     ─▶ served / rejected (Ingress status, instance counts)
//!     ─▶ one Warning Event per Rejection (its reason() is the Event reason)
//!     ─▶ TLS Secrets and backend CA bundles by namespace (the proxy's RBAC)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use portico_ingress::{CaSource, Checked, Rejection, Scope};

use crate::resources::CONSENT_ANNOTATION;

/// Event reasons the judgement does not give: a served Ingress whose backend is reached
/// over TLS without verifying its certificate.
pub const UNVERIFIED_BACKEND_TLS: &str = "UnverifiedBackendTLS";

/// A served Ingress carries ingress-nginx annotations Portico does not honour.
pub const ANNOTATIONS_NOT_HONOURED: &str = "AnnotationsNotHonoured";

/// Services by namespace, then name: those of the served namespaces.
pub type Services = BTreeMap<String, BTreeMap<String, Arc<Service>>>;

/// A Warning Event to publish on an Ingress.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning<'a> {
    pub ingress: &'a Ingress,
    pub reason: &'static str,
    pub note: String,
}

#[derive(Debug, Default)]
pub struct Verdicts<'a> {
    /// Served, at least in part: they get the instance's address.
    pub served: Vec<&'a Ingress>,
    /// Not served at all: counted as rejected, and they lose the address.
    pub rejected: Vec<&'a Ingress>,
    /// One per distinct rejection; a served Ingress may have some (a lost path).
    pub warnings: Vec<Warning<'a>>,
    /// Per served namespace, the Secrets its Ingresses of the class name in `spec.tls` and
    /// in auth annotations (`portico_ingress::auth::secrets_read`; read even for a broken
    /// Ingress, so that fixing the Secret heals it).
    pub tls_secrets: BTreeMap<String, BTreeSet<String>>,
    /// Per namespace, where the CA bundles live that served backends name.
    pub backend_cas: BTreeMap<String, BTreeSet<CaSource>>,
    /// ingress-nginx annotations not honoured on served Ingresses, counted once per
    /// Ingress and annotation (the instance's `status.annotationsNotHonoured`).
    pub annotations_not_honoured: usize,
    /// Each served Ingress with what it is served for: [`service_ports`] says whose
    /// endpoints the proxies will dial (worked out only where a hand-written EndpointSlice
    /// could name a refused endpoint).
    pub served_checked: Vec<(&'a Ingress, Arc<Checked>)>,
}

/// What [`portico_ingress::Memo::services_at`] asks for: a value that changes whenever
/// `services` do. Each Service's namespace, name, uid and resourceVersion, hashed with a
/// key of this process and combined in any order: the same value means the same Services
/// (but for a 2^-64 chance), so a remembered check is reused only against the very
/// Services it was made with, and not looked up again for each of 10,000 Ingresses.
pub fn services_version(services: &Services) -> u64 {
    use std::hash::{BuildHasher, RandomState};
    static KEY: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(RandomState::new);
    services
        .iter()
        .flat_map(|(ns, by_name)| by_name.iter().map(move |(name, s)| (ns, name, s)))
        .map(|(ns, name, s)| {
            key.hash_one((ns, name, &s.metadata.uid, &s.metadata.resource_version))
        })
        .fold(0, |all, one| all ^ one)
}

/// A Service port as EndpointSlices name it: `(service, port name)`.
pub type ServicePort = (String, String);

/// The Service ports of the rules and default backend a served Ingress is served for.
pub fn service_ports(checked: &Checked) -> BTreeSet<ServicePort> {
    checked
        .backends()
        .map(|b| (b.service.clone(), b.port_name.clone()))
        .collect()
}

/// Judges the Ingresses of the class of instance `<namespace>/<name>`, as its proxies do,
/// with what `memo` remembers of the instance's earlier judgements.
pub fn judge<'a>(
    memo: &mut portico_ingress::Memo,
    scope: &Scope<'_>,
    ingresses: impl IntoIterator<Item = &'a Ingress>,
    services: &Services,
    instance_name: &str,
) -> Verdicts<'a> {
    memo.services_at(services_version(services));
    let judgement = portico_ingress::judge_with(memo, scope, ingresses, |ns, name| {
        services
            .get(ns)
            .and_then(|s| s.get(name))
            .map(AsRef::as_ref)
    });
    let class = scope.class;
    let mut out = Verdicts::default();
    for verdict in &judgement.verdicts {
        let ingress = verdict.ingress;
        let ns = &verdict.key.namespace;
        if verdict.served {
            out.served.push(ingress);
        } else {
            out.rejected.push(ingress);
        }
        if scope.served_namespaces.contains(ns) {
            // Looked up before inserting: one namespace holds many Ingresses.
            if !out.tls_secrets.contains_key(ns) {
                out.tls_secrets.insert(ns.clone(), BTreeSet::new());
            }
            if let Some(set) = out.tls_secrets.get_mut(ns) {
                set.extend(verdict.secrets_read().cloned());
            }
        }
        let count = verdict.rejections.len();
        for (i, rejection) in verdict.rejections.iter().enumerate() {
            let mut note = match rejection {
                Rejection::NamespaceNotServed(ns) => format!(
                    "IngressClass {class} does not serve namespace {ns}: it needs the annotation \
                     {CONSENT_ANNOTATION}: \"{}/{instance_name}\" (or the instance's namespace \
                     trusted by the operator) and a match of spec.namespaceSelector",
                    scope.instance_namespace,
                ),
                Rejection::Invalid(problem) => {
                    format!("not served by IngressClass {class}: {problem}")
                }
                other => format!("IngressClass {class}: {other}"),
            };
            if i + 1 == count && verdict.omitted > 0 {
                note.push_str(&format!(" (and {} more)", verdict.omitted));
            }
            out.warnings.push(Warning {
                ingress,
                reason: rejection.reason(),
                note,
            });
        }
        let Some(checked) = verdict.checked.as_ref().filter(|_| verdict.served) else {
            continue;
        };
        if !checked.not_honoured.is_empty() {
            out.annotations_not_honoured += checked.not_honoured.len();
            out.warnings.push(Warning {
                ingress,
                reason: ANNOTATIONS_NOT_HONOURED,
                note: format!(
                    "IngressClass {class}: {}",
                    portico_ingress::nginx::not_honoured_note(&checked.not_honoured)
                ),
            });
        }
        let mut unverified = BTreeSet::new();
        for b in checked.backends() {
            match b.tls.as_ref().map(|t| &t.ca) {
                Some(Some(ca)) => {
                    out.backend_cas
                        .entry(ns.clone())
                        .or_default()
                        .insert(ca.clone());
                }
                Some(None) => {
                    unverified.insert(b.service.clone());
                }
                None => {}
            }
        }
        out.served_checked.push((ingress, Arc::clone(checked)));
        if !unverified.is_empty() {
            out.warnings.push(Warning {
                ingress,
                reason: UNVERIFIED_BACKEND_TLS,
                note: format!(
                    "IngressClass {class} reaches Service(s) {} over TLS without verifying \
                     their certificate: name a CA with {} or {} on the Service, or set \
                     spec.backendTLS.allowUnverified: false on the instance to refuse this",
                    unverified.into_iter().collect::<Vec<_>>().join(", "),
                    portico_ingress::BACKEND_TLS_CA_ANNOTATION,
                    portico_ingress::BACKEND_TLS_CA_CONFIGMAP_ANNOTATION,
                ),
            });
        }
    }
    out.tls_secrets.retain(|_, names| !names.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn ingress(ns: &str, name: &str, created: &str, spec: Value) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name, "uid": format!("{ns}-{name}"), "creationTimestamp": created},
            "spec": spec,
        }))
        .expect("ingress")
    }

    fn site(host: &str, path: &str, service: &str) -> Value {
        json!({"ingressClassName": "web", "rules": [{"host": host, "http": {"paths": [
            {"path": path, "pathType": "Prefix", "backend": {"service": {"name": service, "port": {"number": 80}}}}]}}]})
    }

    fn services(namespaces: &[&str]) -> Services {
        namespaces
            .iter()
            .map(|ns| {
                let svc: Service = serde_json::from_value(json!({
                    "metadata": {"namespace": ns, "name": "site"},
                    "spec": {"ports": [{"name": "http", "port": 80}]},
                }))
                .expect("service");
                (
                    (*ns).to_owned(),
                    [("site".to_owned(), Arc::new(svc))].into(),
                )
            })
            .collect()
    }

    const T0: &str = "2026-01-01T00:00:00Z";
    const T1: &str = "2026-01-02T00:00:00Z";

    fn run<'a>(all: &'a [Ingress], served: &[&str]) -> Verdicts<'a> {
        let served_namespaces: BTreeSet<String> = served.iter().map(|s| (*s).to_owned()).collect();
        let scope = Scope {
            class: "web",
            is_default_class: false,
            instance_namespace: "a",
            served_namespaces: &served_namespaces,
            policy: &portico_ingress::TenantPolicy::default(),
            limits: &portico_ingress::Limits::default(),
        };
        judge(
            &mut portico_ingress::Memo::default(),
            &scope,
            all,
            &services(served),
            "web",
        )
    }

    fn name(i: &Ingress) -> String {
        i.metadata.name.clone().unwrap_or_default()
    }

    #[test]
    fn invalid_conflicting_and_unserved_ingresses_are_told_apart() {
        let all = [
            ingress("a", "good", T0, site("good.com", "/", "site")),
            ingress("a", "regex", T0, site("r.com", "/api/(.*)", "site")),
            ingress("a", "missing", T0, site("m.com", "/", "nope")),
            ingress("b", "newer", T1, site("good.com", "/", "site")),
            ingress("c", "elsewhere", T0, site("e.com", "/", "site")),
        ];
        let v = run(&all, &["a", "b"]);
        let names = |list: &[&Ingress]| list.iter().map(|i| name(i)).collect::<Vec<_>>();
        assert_eq!(names(&v.served), ["good"]);
        assert_eq!(
            names(&v.rejected),
            ["missing", "regex", "elsewhere", "newer"],
            "oldest first"
        );
        let warnings: Vec<_> = v
            .warnings
            .iter()
            .map(|w| (name(w.ingress), w.reason, w.note.as_str()))
            .collect();
        assert_eq!(warnings.len(), 4, "{warnings:#?}");
        assert_eq!(
            warnings[0],
            (
                "missing".into(),
                "IngressRejected",
                "not served by IngressClass web: Service a/nope not found"
            )
        );
        assert_eq!(
            warnings[1],
            (
                "regex".into(),
                "IngressRejected",
                "not served by IngressClass web: path \"/api/(.*)\" contains '(': regular expressions are not supported"
            )
        );
        assert_eq!(
            (warnings[2].0.as_str(), warnings[2].1),
            ("elsewhere", "NamespaceNotServed")
        );
        assert_eq!(
            warnings[3],
            (
                "newer".into(),
                "HostNotOwned",
                "IngressClass web: host good.com belongs to namespace a (its oldest Ingress is \
                 a/good); rules for it are not served unless an Ingress there names this \
                 namespace in portico.dev/share-host-with"
            )
        );
    }

    #[test]
    fn a_partly_conflicting_ingress_is_still_served() {
        let mut newer = site("good.com", "/", "site");
        newer["rules"][0]["http"]["paths"]
            .as_array_mut()
            .expect("paths")
            .push(json!({"path": "/own", "pathType": "Prefix", "backend": {"service": {"name": "site", "port": {"number": 80}}}}));
        let all = [
            ingress("a", "good", T0, site("good.com", "/", "site")),
            ingress("a", "newer", T1, newer),
        ];
        let v = run(&all, &["a"]);
        assert_eq!(v.served.len(), 2);
        assert!(v.rejected.is_empty());
        assert_eq!(v.warnings.len(), 1);
        assert_eq!(v.warnings[0].reason, "IngressConflict");
    }

    /// The operator's memo trusts `services_version`: a Service that loses the port an
    /// unchanged Ingress names must still take the Ingress out of service, and the same
    /// Services give the same version.
    #[test]
    fn a_changed_service_is_seen_through_the_memo() {
        let mut ing = ingress("a", "web", T0, site("a.test", "/", "site"));
        ing.metadata.resource_version = Some("1".into());
        let service = |version: &str, port: u16| -> Services {
            let svc: Service = serde_json::from_value(json!({
                "metadata": {"namespace": "a", "name": "site", "uid": "svc", "resourceVersion": version},
                "spec": {"ports": [{"name": "http", "port": port}]},
            }))
            .expect("service");
            [("a".to_owned(), [("site".to_owned(), Arc::new(svc))].into())].into()
        };
        let served: BTreeSet<String> = ["a".to_owned()].into();
        let scope = Scope {
            class: "web",
            is_default_class: false,
            instance_namespace: "a",
            served_namespaces: &served,
            policy: &portico_ingress::TenantPolicy::default(),
            limits: &portico_ingress::Limits::default(),
        };
        let all = [ing];
        let mut memo = portico_ingress::Memo::default();
        let before = service("7", 80);
        assert_eq!(
            services_version(&before),
            services_version(&service("7", 80))
        );
        let v = judge(&mut memo, &scope, &all, &before, "web");
        assert_eq!(v.served.len(), 1);
        let v = judge(&mut memo, &scope, &all, &before, "web");
        assert_eq!(v.served.len(), 1, "remembered");
        let after = service("8", 81);
        assert_ne!(services_version(&before), services_version(&after));
        let v = judge(&mut memo, &scope, &all, &after, "web");
        assert!(v.served.is_empty(), "port 80 is gone");
        assert_ne!(
            services_version(&before),
            services_version(&Services::new())
        );
    }
}
