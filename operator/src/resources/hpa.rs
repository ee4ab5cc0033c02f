//! The HorizontalPodAutoscaler `portico-<name>` on CPU, only when `spec.autoscaling` is set.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};

use super::Inputs;

pub const DEFAULT_TARGET_CPU: i32 = 80;

/// `None` when autoscaling is off (and any existing HPA should be deleted).
pub fn build(inputs: &Inputs) -> Option<HorizontalPodAutoscaler> {
    let autoscaling = inputs.instance.spec.autoscaling.as_ref()?;
    Some(HorizontalPodAutoscaler {
        metadata: inputs.owned_meta(inputs.proxy_name()),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: inputs.proxy_name(),
            },
            min_replicas: Some(autoscaling.min_replicas),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(
                            autoscaling
                                .target_cpu_utilization_percentage
                                .unwrap_or(DEFAULT_TARGET_CPU),
                        ),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            ..HorizontalPodAutoscalerSpec::default()
        }),
        status: None,
    })
}
