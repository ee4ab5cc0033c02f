//! Multi-tenancy rules, pure: which namespaces an instance serves and which Ingresses
//! belong to its class (docs/contracts.md, DESIGN.md "Routing semantics").
//!
//! ```text
//!  Namespaces ─▶ namespaceSelector (default: own ns) ─▶ consent? (own ns | trusted | annotation)
//!                                                        └─▶ served namespaces ─▶ RBAC, --namespaces
//!  Ingresses  ─▶ class (spec.ingressClassName, then legacy annotation, class-less if default)
//!                 └─▶ served (in a served ns) | rejected (same class, ns not served)
//! ```

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use crate::api::IngressController;
use crate::resources::{CONSENT_ANNOTATION, Settings};

/// Legacy class annotation, read after `spec.ingressClassName`.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// The namespace selector cannot be turned into a label query.
#[derive(Debug, thiserror::Error)]
#[error("invalid spec.namespaceSelector: {0}")]
pub struct InvalidSelector(String);

impl InvalidSelector {
    pub fn new(reason: impl Into<String>) -> Self {
        InvalidSelector(reason.into())
    }
}

/// Does `namespace` consent to being served by `<instance_ns>/<instance_name>`?
pub fn consents(namespace: &Namespace, instance_ns: &str, instance_name: &str) -> bool {
    let wanted = format!("{instance_ns}/{instance_name}");
    namespace
        .annotations()
        .get(CONSENT_ANNOTATION)
        .is_some_and(|list| list.split(',').map(str::trim).any(|entry| entry == wanted))
}

/// The namespaces `instance` serves, sorted, given every Namespace in the cluster.
pub fn served_namespaces(
    instance: &IngressController,
    namespaces: &[Namespace],
    settings: &Settings,
) -> Result<Vec<String>, InvalidSelector> {
    let own = instance.namespace().unwrap_or_default();
    let name = instance.name_any();
    let exists = |ns: &Namespace| ns.metadata.deletion_timestamp.is_none();
    let Some(selector) = &instance.spec.namespace_selector else {
        return Ok(namespaces
            .iter()
            .filter(|ns| ns.name_any() == own && exists(ns))
            .map(|_| own.clone())
            .collect());
    };
    let selector =
        Selector::try_from(selector.clone()).map_err(|e| InvalidSelector(e.to_string()))?;
    let trusted = settings.trusted_namespaces.contains(&own);
    let mut served: Vec<String> = namespaces
        .iter()
        .filter(|ns| exists(ns) && selector.matches(ns.labels()))
        .filter(|ns| ns.name_any() == own || trusted || consents(ns, &own, &name))
        .map(ResourceExt::name_any)
        .collect();
    served.sort();
    Ok(served)
}

/// The class an Ingress asks for: `spec.ingressClassName`, then the legacy annotation.
pub fn ingress_class_of(ingress: &Ingress) -> Option<&str> {
    ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .or_else(|| {
            ingress
                .metadata
                .annotations
                .as_ref()?
                .get(LEGACY_CLASS_ANNOTATION)
                .map(String::as_str)
        })
}

/// Does `ingress` belong to `class`? Class-less Ingresses belong to the default class.
pub fn ingress_matches_class(ingress: &Ingress, class: &str, is_default: bool) -> bool {
    match ingress_class_of(ingress) {
        Some(c) => c == class,
        None => is_default,
    }
}

/// The Ingresses of one class, split by whether the instance may serve their namespace.
#[derive(Debug, Default)]
pub struct ClassIngresses<'a> {
    pub served: Vec<&'a Ingress>,
    pub rejected: Vec<&'a Ingress>,
}

impl<'a> ClassIngresses<'a> {
    pub fn split(
        ingresses: &'a [Ingress],
        class: &str,
        is_default: bool,
        served_namespaces: &[String],
    ) -> Self {
        let mut out = ClassIngresses::default();
        for ingress in ingresses
            .iter()
            .filter(|i| ingress_matches_class(i, class, is_default))
        {
            let ns = ingress.namespace().unwrap_or_default();
            if served_namespaces.contains(&ns) {
                out.served.push(ingress);
            } else {
                out.rejected.push(ingress);
            }
        }
        out
    }

    /// Per namespace, the Secrets the served Ingresses name in `spec.tls`.
    pub fn tls_secrets(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for ingress in &self.served {
            let ns = ingress.namespace().unwrap_or_default();
            let names = ingress
                .spec
                .iter()
                .flat_map(|s| s.tls.iter().flatten())
                .filter_map(|tls| tls.secret_name.clone())
                .filter(|n| !n.is_empty());
            out.entry(ns).or_default().extend(names);
        }
        out.retain(|_, names| !names.is_empty());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::IngressControllerSpec;
    use k8s_openapi::api::networking::v1::{IngressSpec, IngressTLS};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn ns(name: &str, labels: &[(&str, &str)], consent: Option<&str>) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                ),
                annotations: consent
                    .map(|c| [(CONSENT_ANNOTATION.to_owned(), c.to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }
    }

    fn instance(selector: Option<LabelSelector>) -> IngressController {
        let mut ic = IngressController::new(
            "web",
            IngressControllerSpec {
                namespace_selector: selector,
                ..Default::default()
            },
        );
        ic.metadata.namespace = Some("team-a".into());
        ic
    }

    fn tenant_selector() -> Option<LabelSelector> {
        Some(LabelSelector {
            match_labels: Some([("tenant".into(), "yes".into())].into()),
            ..Default::default()
        })
    }

    #[test]
    fn default_serves_only_own_namespace() {
        let all = [
            ns("team-a", &[], None),
            ns("team-b", &[], Some("team-a/web")),
        ];
        let served = served_namespaces(&instance(None), &all, &Settings::default()).expect("valid");
        assert_eq!(served, ["team-a"]);
    }

    #[test]
    fn selected_namespace_needs_consent_or_trust() {
        let all = [
            ns("team-a", &[("tenant", "yes")], None),
            ns("team-b", &[("tenant", "yes")], None),
            ns("team-c", &[("tenant", "yes")], Some("other/x, team-a/web")),
            ns("team-d", &[], Some("team-a/web")),
        ];
        let served = served_namespaces(&instance(tenant_selector()), &all, &Settings::default())
            .expect("valid");
        assert_eq!(
            served,
            ["team-a", "team-c"],
            "team-b has no consent, team-d is not selected"
        );

        let trusted = Settings {
            trusted_namespaces: ["team-a".to_owned()].into(),
            ..Settings::default()
        };
        let served =
            served_namespaces(&instance(tenant_selector()), &all, &trusted).expect("valid");
        assert_eq!(served, ["team-a", "team-b", "team-c"]);
    }

    #[test]
    fn consent_for_another_instance_is_not_consent() {
        assert!(!consents(
            &ns("b", &[], Some("team-a/webx")),
            "team-a",
            "web"
        ));
        assert!(consents(&ns("b", &[], Some("team-a/web")), "team-a", "web"));
    }

    fn ingress(
        ns: &str,
        class: Option<&str>,
        legacy: Option<&str>,
        secret: Option<&str>,
    ) -> Ingress {
        Ingress {
            metadata: ObjectMeta {
                name: Some("i".into()),
                namespace: Some(ns.into()),
                annotations: legacy
                    .map(|c| [(LEGACY_CLASS_ANNOTATION.to_owned(), c.to_owned())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(IngressSpec {
                ingress_class_name: class.map(Into::into),
                tls: secret.map(|s| {
                    vec![IngressTLS {
                        secret_name: Some(s.into()),
                        hosts: None,
                    }]
                }),
                ..IngressSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn class_selection_follows_the_spec() {
        let all = [
            ingress("a", Some("web"), Some("other"), Some("a-tls")),
            ingress("a", None, Some("web"), None),
            ingress("a", None, None, Some("x-tls")),
            ingress("b", Some("web"), None, Some("b-tls")),
            ingress("a", Some("other"), None, Some("o-tls")),
        ];
        let split = ClassIngresses::split(&all, "web", false, &["a".into()]);
        assert_eq!((split.served.len(), split.rejected.len()), (2, 1));
        assert_eq!(
            split.tls_secrets(),
            [("a".to_owned(), ["a-tls".to_owned()].into())].into()
        );
        let split = ClassIngresses::split(&all, "web", true, &["a".into()]);
        assert_eq!(
            split.served.len(),
            3,
            "class-less Ingresses belong to the default class"
        );
    }
}
