//! The PodDisruptionBudget `portico-<name>` (default `maxUnavailable: 1`).

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Inputs;

pub fn build(inputs: &Inputs) -> PodDisruptionBudget {
    let disruption = inputs.instance.spec.disruption.clone().unwrap_or_default();
    let (min_available, max_unavailable) =
        match (disruption.min_available, disruption.max_unavailable) {
            (None, None) => (None, Some(IntOrString::Int(1))),
            (min, max) => (min, max),
        };
    PodDisruptionBudget {
        metadata: inputs.owned_meta(inputs.proxy_name()),
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(LabelSelector {
                match_labels: Some(inputs.selector_labels()),
                ..LabelSelector::default()
            }),
            min_available,
            max_unavailable,
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}
