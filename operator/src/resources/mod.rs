//! Pure "desired state" builders: one file per Kubernetes kind, no IO.
//!
//! ```text
//!  IngressController + served namespaces + TLS Secret names + operator Settings
//!        └─▶ Inputs ─▶ service_account / rbac / deployment / service / ingress_class / pdb / hpa
//!                        └─▶ k8s-openapi objects (labels, owner references) ─▶ apply
//! ```
//!
//! Names and labels are the contract in `docs/contracts.md`. Namespaced children in the
//! instance's namespace carry a controller owner reference; objects elsewhere (Roles in
//! other namespaces, cluster-scoped objects) cannot, and are removed by the finalizer.
//! Every builder is golden-tested against `testdata/<case>/<kind>.yaml`
//! (`UPDATE_GOLDEN=1 cargo test -p portico-operator --lib` regenerates them).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::api::IngressController;

pub mod deployment;
pub mod hpa;
pub mod ingress_class;
pub mod pdb;
pub mod rbac;
pub mod service;
pub mod service_account;

/// Field manager for every server-side apply.
pub const FIELD_MANAGER: &str = "portico-operator";
/// IngressClass `spec.controller` of every Portico class.
pub const CONTROLLER_NAME: &str = "portico.dev/ingress-controller";
/// Namespace annotation by which a namespace consents to be served: `"<ns>/<name>[,...]"`.
pub const CONSENT_ANNOTATION: &str = "portico.dev/allowed-ingress-controllers";
pub const LABEL_INSTANCE_NAMESPACE: &str = "portico.dev/instance-namespace";
pub const LABEL_INSTANCE_NAME: &str = "portico.dev/instance-name";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label selector matching everything this operator manages.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=portico-operator";

/// Operator-wide settings (from its command line).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Image of `portico-proxy` when the instance names none.
    pub proxy_image: String,
    /// Instances in these namespaces may serve any selected namespace without consent.
    pub trusted_namespaces: BTreeSet<String>,
    /// The proxy's `--drain-period`.
    pub drain_period: Duration,
    /// Instances (`<namespace>/<name>`) whose served namespaces trust each other: one host's
    /// paths merge across them, as in ingress-nginx (no host ownership).
    pub host_ownership_exempt: BTreeSet<String>,
    /// Namespaces whose `defaultBackend` and host-less rules any instance serving them
    /// honours, besides the instance's own namespace.
    pub catch_all_namespaces: BTreeSet<String>,
    /// Ranges no proxy dials, whatever an EndpointSlice says (`--denied-endpoint-cidrs`).
    pub denied_endpoint_cidrs: Vec<IpNet>,
    /// What instances outside trusted namespaces may set (`crate::policy`).
    pub policy: crate::policy::TenantPolicy,
    /// `--watch-namespaces`: the only namespaces instances may live in and serve, where
    /// the operator may hold only namespaced Roles. `None`: every namespace.
    pub watch_namespaces: Option<BTreeSet<String>>,
}

impl Settings {
    /// The tenant policy's routing part for instance `<namespace>/<name>`: the judgement's
    /// host ownership and catch-all rules (its `IngressController` fields part is `policy`).
    pub fn routing_policy(&self, namespace: &str, name: &str) -> portico_ingress::TenantPolicy {
        portico_ingress::TenantPolicy {
            host_ownership: !self
                .host_ownership_exempt
                .contains(&format!("{namespace}/{name}")),
            catch_all_namespaces: self.catch_all_namespaces.clone(),
        }
    }

    /// May instances live in, and serve, `namespace`?
    pub fn watches(&self, namespace: &str) -> bool {
        self.watch_namespaces
            .as_ref()
            .is_none_or(|list| list.contains(namespace))
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            proxy_image: "ghcr.io/portico-dev/portico-proxy:latest".into(),
            trusted_namespaces: BTreeSet::new(),
            drain_period: Duration::from_secs(10),
            host_ownership_exempt: BTreeSet::new(),
            catch_all_namespaces: BTreeSet::new(),
            denied_endpoint_cidrs: Vec::new(),
            policy: crate::policy::TenantPolicy::default(),
            watch_namespaces: None,
        }
    }
}

/// The instance lacks metadata every stored object has (name, namespace, uid).
#[derive(Debug, thiserror::Error)]
#[error("IngressController is missing metadata.{0}")]
pub struct MissingMetadata(pub &'static str);

/// Everything the builders read, resolved once per reconcile.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    pub instance: &'a IngressController,
    pub name: String,
    pub namespace: String,
    /// Served namespaces, sorted.
    pub served_namespaces: Vec<String>,
    /// Per namespace: the Secrets this class's Ingresses there name in `spec.tls`.
    pub tls_secrets: BTreeMap<String, BTreeSet<String>>,
    /// Per namespace: the ConfigMaps holding CA bundles that backends there name.
    pub config_maps: BTreeMap<String, BTreeSet<String>>,
    pub settings: &'a Settings,
    owner: OwnerReference,
}

impl<'a> Inputs<'a> {
    pub fn new(
        instance: &'a IngressController,
        served_namespaces: impl IntoIterator<Item = String>,
        tls_secrets: BTreeMap<String, BTreeSet<String>>,
        settings: &'a Settings,
    ) -> Result<Self, MissingMetadata> {
        let namespace = instance.namespace().ok_or(MissingMetadata("namespace"))?;
        let owner = instance
            .controller_owner_ref(&())
            .ok_or(MissingMetadata("uid"))?;
        let mut served: Vec<String> = served_namespaces.into_iter().collect();
        served.sort();
        served.dedup();
        Ok(Inputs {
            instance,
            name: instance.name_any(),
            namespace,
            served_namespaces: served,
            tls_secrets,
            config_maps: BTreeMap::new(),
            settings,
            owner,
        })
    }

    /// `portico-<name>`: ServiceAccount, Deployment, Service, PDB, HPA.
    pub fn proxy_name(&self) -> String {
        proxy_name(&self.name)
    }
    /// `portico:<ns>:<name>`: Roles, RoleBindings, ClusterRole, ClusterRoleBinding.
    pub fn rbac_name(&self) -> String {
        rbac_name(&self.namespace, &self.name)
    }
    pub fn class_name(&self) -> &str {
        self.instance.spec.class_name(&self.name)
    }

    /// Labels on every child (docs/contracts.md).
    pub fn labels(&self) -> BTreeMap<String, String> {
        instance_labels(&self.namespace, &self.name)
    }

    /// The immutable pod selector of the Deployment, PDB and Service.
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        [
            ("app.kubernetes.io/name", "portico"),
            ("app.kubernetes.io/instance", self.name.as_str()),
            (LABEL_INSTANCE_NAMESPACE, self.namespace.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Metadata of a namespaced child in the instance's namespace, owned by the instance.
    pub fn owned_meta(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// Metadata of an object outside the instance's namespace (no owner reference is
    /// possible there; the finalizer removes it). `namespace: None` for cluster scope.
    pub fn foreign_meta(&self, name: String, namespace: Option<String>) -> ObjectMeta {
        // Inside the instance's namespace an owner reference is valid and lets the
        // garbage collector help; anywhere else it would make the collector delete it.
        let owner_references = (namespace.as_deref() == Some(self.namespace.as_str()))
            .then(|| vec![self.owner.clone()]);
        ObjectMeta {
            name: Some(name),
            namespace,
            labels: Some(self.labels()),
            owner_references,
            ..ObjectMeta::default()
        }
    }
}

pub fn proxy_name(name: &str) -> String {
    format!("portico-{name}")
}

/// `portico:<ns>:<name>`, the name of an instance's Roles, RoleBindings, ClusterRole and
/// ClusterRoleBinding. RBAC names may hold colons; namespace and IngressController names
/// (DNS labels and subdomains) cannot, so no two instances ever share one. The earlier
/// `portico-<ns>-<name>` gave `team-a/web` and `team/a-web` the same ClusterRole.
pub fn rbac_name(namespace: &str, name: &str) -> String {
    format!("portico:{namespace}:{name}")
}

/// Labels on every child of `<namespace>/<name>` (docs/contracts.md).
pub fn instance_labels(namespace: &str, name: &str) -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", "portico"),
        ("app.kubernetes.io/component", "proxy"),
        ("app.kubernetes.io/instance", name),
        (LABEL_MANAGED_BY, "portico-operator"),
        (LABEL_INSTANCE_NAMESPACE, namespace),
        (LABEL_INSTANCE_NAME, name),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Label selector of the children of `<namespace>/<name>`.
pub fn instance_selector(namespace: &str, name: &str) -> String {
    format!(
        "{MANAGED_SELECTOR},{LABEL_INSTANCE_NAMESPACE}={namespace},{LABEL_INSTANCE_NAME}={name}"
    )
}

/// The instance `(namespace, name)` a labelled child belongs to.
pub fn instance_of(meta: &ObjectMeta) -> Option<(String, String)> {
    let labels = meta.labels.as_ref()?;
    if labels.get(LABEL_MANAGED_BY).map(String::as_str) != Some("portico-operator") {
        return None;
    }
    Some((
        labels.get(LABEL_INSTANCE_NAMESPACE)?.clone(),
        labels.get(LABEL_INSTANCE_NAME)?.clone(),
    ))
}

#[cfg(test)]
mod golden;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rbac_names_of_instances_whose_names_join_alike_differ() {
        // Both joined to `portico-team-a-web` before.
        assert_ne!(rbac_name("team-a", "web"), rbac_name("team", "a-web"));
        assert_eq!(rbac_name("team-a", "web"), "portico:team-a:web");
        assert_eq!(rbac_name("team", "a-web"), "portico:team:a-web");
    }

    #[test]
    fn only_objects_labelled_by_us_for_one_instance_belong_to_it() {
        let meta = |labels: BTreeMap<String, String>| ObjectMeta {
            labels: Some(labels),
            ..ObjectMeta::default()
        };
        assert_eq!(
            instance_of(&meta(instance_labels("team-a", "web"))),
            Some(("team-a".to_owned(), "web".to_owned()))
        );
        let mut hand_made = instance_labels("team-a", "web");
        hand_made.insert(LABEL_MANAGED_BY.into(), "kubectl".into());
        assert_eq!(instance_of(&meta(hand_made)), None);
        assert_eq!(instance_of(&ObjectMeta::default()), None);
    }
}
