//! Which namespaces an instance serves, pure (docs/contracts.md). Which of their
//! Ingresses are served is `portico_ingress::judge()`'s, through verdict.rs.
//!
//! ```text
//!  Namespaces ─▶ namespaceSelector (default: own ns) ─▶ consent? (own ns | trusted | annotation)
//!                                                        └─▶ served namespaces ─▶ RBAC, --namespaces
//! ```

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use crate::api::IngressController;
use crate::resources::{CONSENT_ANNOTATION, Settings};

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
pub fn served_namespaces<'a>(
    instance: &IngressController,
    namespaces: impl IntoIterator<Item = &'a Namespace>,
    settings: &Settings,
) -> Result<Vec<String>, InvalidSelector> {
    let own = instance.namespace().unwrap_or_default();
    let name = instance.name_any();
    let exists = |ns: &Namespace| ns.metadata.deletion_timestamp.is_none();
    let Some(selector) = &instance.spec.namespace_selector else {
        return Ok(namespaces
            .into_iter()
            .filter(|ns| ns.name_any() == own && exists(ns))
            .map(|_| own.clone())
            .collect());
    };
    let selector =
        Selector::try_from(selector.clone()).map_err(|e| InvalidSelector(e.to_string()))?;
    let trusted = settings.trusted_namespaces.contains(&own);
    let mut served: Vec<String> = namespaces
        .into_iter()
        .filter(|ns| exists(ns) && selector.matches(ns.labels()))
        .filter(|ns| ns.name_any() == own || trusted || consents(ns, &own, &name))
        .map(|ns| ns.name_any())
        .collect();
    served.sort();
    Ok(served)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::IngressControllerSpec;
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
}
