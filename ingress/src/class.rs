//! Which IngressClass an Ingress asks for, and whether a class is the cluster default.

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

/// Legacy class annotation, read after `spec.ingressClassName`.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// On an IngressClass: the apiserver stamps this class on new class-less Ingresses.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// The class an Ingress asks for: `spec.ingressClassName`, then the legacy annotation.
pub fn class_of(ingress: &Ingress) -> Option<&str> {
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
pub fn belongs_to_class(ingress: &Ingress, class: &str, is_default: bool) -> bool {
    match class_of(ingress) {
        Some(c) => c == class,
        None => is_default,
    }
}

/// Whether the IngressClass object is marked the cluster default. Both binaries read it
/// from the object (the proxy from its watch, the operator from the class it applies), as
/// the apiserver does when it defaults new Ingresses.
pub fn is_default_class(class: &IngressClass) -> bool {
    class
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
        .is_some_and(|v| v == "true")
}
