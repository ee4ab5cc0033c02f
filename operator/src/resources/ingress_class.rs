//! The IngressClass the instance owns, pointing back at the instance through `parameters`.

use k8s_openapi::api::networking::v1::{
    IngressClass, IngressClassParametersReference, IngressClassSpec,
};

use super::{CONTROLLER_NAME, Inputs};

/// Annotation that makes a class the cluster default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

pub fn build(inputs: &Inputs) -> IngressClass {
    let mut metadata = inputs.foreign_meta(inputs.class_name().to_owned(), None);
    // Always set, so that turning defaultClass off is applied rather than left behind.
    metadata.annotations = Some(
        [(
            DEFAULT_CLASS_ANNOTATION.to_owned(),
            inputs.instance.spec.is_default_class().to_string(),
        )]
        .into(),
    );
    IngressClass {
        metadata,
        spec: Some(IngressClassSpec {
            controller: Some(CONTROLLER_NAME.into()),
            parameters: Some(IngressClassParametersReference {
                api_group: Some("portico.dev".into()),
                kind: "IngressController".into(),
                name: inputs.name.clone(),
                namespace: Some(inputs.namespace.clone()),
                scope: Some("Namespace".into()),
            }),
        }),
    }
}

/// Who owns an existing class, as far as this operator is concerned.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// No such class: free to create.
    Free,
    /// Ours: controller string and parameters point at this instance.
    Ours,
    /// Another Portico instance's; the reason is user-facing.
    Conflict(String),
    /// Another controller's (ingress-nginx's `nginx`, say): taken over only when the
    /// instance asks (`spec.adoptIngressClass`, the platform's); `uid` pins the deletion.
    Foreign {
        message: String,
        uid: Option<String>,
    },
}

/// Decides whether `existing` may be managed by the instance `<namespace>/<name>`.
pub fn claim(existing: Option<&IngressClass>, namespace: &str, name: &str) -> Claim {
    let Some(class) = existing else {
        return Claim::Free;
    };
    let spec = class.spec.clone().unwrap_or_default();
    let class_name = class.metadata.name.clone().unwrap_or_default();
    match spec.controller.as_deref() {
        Some(CONTROLLER_NAME) => {}
        other => {
            return Claim::Foreign {
                message: format!(
                    "IngressClass {class_name} belongs to controller {}",
                    other.unwrap_or("<none>")
                ),
                uid: class.metadata.uid.clone(),
            };
        }
    }
    match spec.parameters {
        Some(p)
            if p.api_group.as_deref() == Some("portico.dev")
                && p.kind == "IngressController"
                && p.namespace.as_deref() == Some(namespace)
                && p.name == name =>
        {
            Claim::Ours
        }
        Some(p) => Claim::Conflict(format!(
            "IngressClass {class_name} is owned by IngressController {}/{}",
            p.namespace.unwrap_or_default(),
            p.name
        )),
        None => Claim::Conflict(format!(
            "IngressClass {class_name} has no parameters naming an IngressController"
        )),
    }
}
