//! The proxy's ServiceAccount `portico-<name>`, the subject of its RBAC.

use k8s_openapi::api::core::v1::ServiceAccount;

use super::Inputs;

pub fn build(inputs: &Inputs) -> ServiceAccount {
    ServiceAccount {
        metadata: inputs.owned_meta(inputs.proxy_name()),
        // The proxy talks to the API with this token; nothing else in the pod needs one.
        automount_service_account_token: Some(true),
        ..ServiceAccount::default()
    }
}
