//! Least-privilege, read-only RBAC of the proxy.
//!
//! ```text
//!  served namespace N ──▶ Role portico:<ns>:<name> in N: get/list/watch ingresses, services,
//!                          endpointslices; get/list/watch secrets and configmaps only by
//!                          resourceNames (TLS certificates, backend CA bundles)
//!                     ──▶ RoleBinding portico:<ns>:<name> in N ──▶ SA <ns>/portico-<name>
//!  cluster            ──▶ ClusterRole portico:<ns>:<name>: get/list/watch its own IngressClass
//!                     ──▶ ClusterRoleBinding portico:<ns>:<name>
//! ```
//!
//! An empty `resourceNames` means *all* objects, so the Secrets rule is omitted when no
//! Ingress references a Secret in that namespace. Nothing here has a write verb: status and
//! Events are the operator's job, so a compromised proxy pod can change nothing.

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::Inputs;

const READ: [&str; 3] = ["get", "list", "watch"];

fn rule(group: &str, resource: &str, names: Option<Vec<String>>) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(vec![resource.to_owned()]),
        resource_names: names,
        verbs: READ.iter().map(|v| (*v).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

/// The namespaces that get a Role: every served namespace, plus the instance's own when
/// it holds the default certificate but is not served.
pub fn role_namespaces(inputs: &Inputs) -> Vec<String> {
    let mut namespaces = inputs.served_namespaces.clone();
    if inputs.instance.spec.default_certificate_secret().is_some()
        && !namespaces.contains(&inputs.namespace)
    {
        namespaces.push(inputs.namespace.clone());
        namespaces.sort();
    }
    namespaces
}

/// Secrets the proxy may read in `namespace`: TLS Secrets of served Ingresses there, and
/// the default certificate in the instance's namespace.
pub fn secret_names(inputs: &Inputs, namespace: &str) -> Vec<String> {
    let mut names = inputs
        .tls_secrets
        .get(namespace)
        .cloned()
        .unwrap_or_default();
    if namespace == inputs.namespace
        && let Some(default) = inputs.instance.spec.default_certificate_secret()
    {
        names.insert(default.to_owned());
    }
    names.into_iter().collect()
}

/// The Role in `namespace`.
pub fn role(inputs: &Inputs, namespace: &str) -> Role {
    let mut rules = Vec::new();
    if inputs.served_namespaces.iter().any(|n| n == namespace) {
        rules.push(rule("networking.k8s.io", "ingresses", None));
        rules.push(rule("", "services", None));
        rules.push(rule("discovery.k8s.io", "endpointslices", None));
    }
    let secrets = secret_names(inputs, namespace);
    if !secrets.is_empty() {
        rules.push(rule("", "secrets", Some(secrets)));
    }
    // CA bundles that backends name, by name too; none named, no rule.
    if let Some(names) = inputs.config_maps.get(namespace).filter(|n| !n.is_empty()) {
        rules.push(rule(
            "",
            "configmaps",
            Some(names.iter().cloned().collect()),
        ));
    }
    Role {
        metadata: inputs.foreign_meta(inputs.rbac_name(), Some(namespace.to_owned())),
        rules: Some(rules),
    }
}

fn subjects(inputs: &Inputs) -> Vec<Subject> {
    vec![Subject {
        kind: "ServiceAccount".into(),
        name: inputs.proxy_name(),
        namespace: Some(inputs.namespace.clone()),
        ..Subject::default()
    }]
}

/// The RoleBinding in `namespace`.
pub fn role_binding(inputs: &Inputs, namespace: &str) -> RoleBinding {
    RoleBinding {
        metadata: inputs.foreign_meta(inputs.rbac_name(), Some(namespace.to_owned())),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: inputs.rbac_name(),
        },
        subjects: Some(subjects(inputs)),
    }
}

/// Read access to the instance's own IngressClass, and nothing else cluster-wide.
pub fn cluster_role(inputs: &Inputs) -> ClusterRole {
    ClusterRole {
        metadata: inputs.foreign_meta(inputs.rbac_name(), None),
        rules: Some(vec![rule(
            "networking.k8s.io",
            "ingressclasses",
            Some(vec![inputs.class_name().to_owned()]),
        )]),
        ..ClusterRole::default()
    }
}

pub fn cluster_role_binding(inputs: &Inputs) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: inputs.foreign_meta(inputs.rbac_name(), None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: inputs.rbac_name(),
        },
        subjects: Some(subjects(inputs)),
    }
}
