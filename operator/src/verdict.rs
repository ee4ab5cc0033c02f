//! Which Ingresses of an instance's class its proxies serve, and why the others are not.
//! The proxy may not write to the API, so it only logs what it skips; the operator applies
//! the same rules (`portico-ingress`) and turns the verdicts into Events and status.
//!
//! ```text
//!  ClassIngresses ─┬─ namespace not served ──────────────────────────▶ rejected: NamespaceNotServed
//!                  └─ served namespace ─▶ check() with its Services ─┬▶ rejected: IngressRejected
//!                                                                     └▶ conflicts() ─┬▶ served
//!                       (a newer Ingress's lost host+path: IngressConflict) ──────────┴▶ rejected
//!                                                                   when it lost every claim
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use portico_ingress::{CaSource, IngressKey, Limits};

use crate::resources::CONSENT_ANNOTATION;
use crate::tenancy::ClassIngresses;

/// Event reasons, one per way an Ingress is (partly) not served.
pub const NAMESPACE_NOT_SERVED: &str = "NamespaceNotServed";
pub const INGRESS_REJECTED: &str = "IngressRejected";
pub const INGRESS_CONFLICT: &str = "IngressConflict";
/// Served, but a backend is reached over TLS without verifying its certificate.
pub const UNVERIFIED_BACKEND_TLS: &str = "UnverifiedBackendTLS";

/// Services by namespace, then name: those of the served namespaces.
pub type Services = BTreeMap<String, BTreeMap<String, Service>>;

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
    /// One per distinct problem; an Ingress may have several, a served one conflicts.
    pub warnings: Vec<Warning<'a>>,
    /// Per namespace, where the CA bundles live that checked Ingresses' backends name.
    pub backend_cas: BTreeMap<String, BTreeSet<CaSource>>,
}

/// Judges the Ingresses of the class of instance `<namespace>/<name>`.
pub fn judge<'a>(
    split: &ClassIngresses<'a>,
    services: &Services,
    limits: &Limits,
    instance: (&str, &str),
    class: &str,
) -> Verdicts<'a> {
    let (instance_ns, instance_name) = instance;
    let mut out = Verdicts::default();
    for ingress in &split.rejected {
        out.rejected.push(ingress);
        out.warnings.push(Warning {
            ingress,
            reason: NAMESPACE_NOT_SERVED,
            note: format!(
                "IngressClass {class} does not serve namespace {}: it needs the annotation {CONSENT_ANNOTATION}: \
                 \"{instance_ns}/{instance_name}\" (or the instance's namespace trusted by the operator) \
                 and a match of spec.namespaceSelector",
                ingress.namespace().unwrap_or_default(),
            ),
        });
    }

    let mut valid = Vec::new();
    for ingress in &split.served {
        let ns = ingress.namespace().unwrap_or_default();
        let in_ns = services.get(&ns);
        match portico_ingress::check(ingress, |name| in_ns.and_then(|s| s.get(name)), limits) {
            Ok(checked) => {
                let backends = checked
                    .rules
                    .iter()
                    .map(|r| &r.backend)
                    .chain(checked.default_backend.iter());
                let mut unverified = BTreeSet::new();
                for b in backends {
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
                valid.push((*ingress, checked))
            }
            Err(problems) => {
                out.rejected.push(ingress);
                out.warnings
                    .extend(problems.into_iter().map(|problem| Warning {
                        ingress,
                        reason: INGRESS_REJECTED,
                        note: format!("not served by IngressClass {class}: {problem}"),
                    }));
            }
        }
    }

    let resolution = portico_ingress::conflicts(valid.iter().map(|(i, c)| (*i, c)));
    let by_key: HashMap<IngressKey, &'a Ingress> =
        valid.iter().map(|(i, _)| (IngressKey::of(i), *i)).collect();
    for conflict in &resolution.conflicts {
        if let Some(ingress) = by_key.get(&conflict.loser) {
            out.warnings.push(Warning {
                ingress,
                reason: INGRESS_CONFLICT,
                note: format!("IngressClass {class}: {conflict}"),
            });
        }
    }
    for (ingress, _) in &valid {
        if resolution.unserved.contains(&IngressKey::of(ingress)) {
            out.rejected.push(ingress);
        } else {
            out.served.push(ingress);
        }
    }
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
                ((*ns).to_owned(), [("site".to_owned(), svc)].into())
            })
            .collect()
    }

    const T0: &str = "2026-01-01T00:00:00Z";
    const T1: &str = "2026-01-02T00:00:00Z";

    #[test]
    fn invalid_conflicting_and_unserved_ingresses_are_told_apart() {
        let all = [
            ingress("a", "good", T0, site("good.com", "/", "site")),
            ingress("a", "regex", T0, site("r.com", "/api/(.*)", "site")),
            ingress("a", "missing", T0, site("m.com", "/", "nope")),
            ingress("b", "newer", T1, site("good.com", "/", "site")),
            ingress("c", "elsewhere", T0, site("e.com", "/", "site")),
        ];
        let split = ClassIngresses::split(&all, "web", false, &["a".into(), "b".into()]);
        let v = judge(
            &split,
            &services(&["a", "b"]),
            &Limits::default(),
            ("a", "web"),
            "web",
        );
        let names = |list: &[&Ingress]| list.iter().map(|i| i.name_any()).collect::<Vec<_>>();
        assert_eq!(names(&v.served), ["good"]);
        assert_eq!(
            names(&v.rejected),
            ["elsewhere", "regex", "missing", "newer"]
        );
        let warnings: Vec<_> = v
            .warnings
            .iter()
            .map(|w| (w.ingress.name_any(), w.reason, w.note.as_str()))
            .collect();
        assert_eq!(warnings.len(), 4, "{warnings:#?}");
        assert_eq!(
            (warnings[0].0.as_str(), warnings[0].1),
            ("elsewhere", NAMESPACE_NOT_SERVED)
        );
        assert_eq!(
            warnings[1],
            (
                "regex".into(),
                INGRESS_REJECTED,
                "not served by IngressClass web: path \"/api/(.*)\" contains '(': regular expressions are not supported"
            )
        );
        assert_eq!(
            warnings[2],
            (
                "missing".into(),
                INGRESS_REJECTED,
                "not served by IngressClass web: Service a/nope not found"
            )
        );
        assert_eq!(
            warnings[3],
            (
                "newer".into(),
                INGRESS_CONFLICT,
                "IngressClass web: host good.com path \"/\" (Prefix) conflicts with older Ingress a/good; not served"
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
        let split = ClassIngresses::split(&all, "web", false, &["a".into()]);
        let v = judge(
            &split,
            &services(&["a"]),
            &Limits::default(),
            ("a", "web"),
            "web",
        );
        assert_eq!(v.served.len(), 2);
        assert!(v.rejected.is_empty());
        assert_eq!(v.warnings.len(), 1);
        assert_eq!(v.warnings[0].reason, INGRESS_CONFLICT);
    }
}
