//! The proxy Service `portico-<name>` of the configured type, exposing http and https.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Inputs;
use crate::api::{ExternalTrafficPolicy, ServiceType};

pub fn build(inputs: &Inputs) -> Service {
    let spec = &inputs.instance.spec;
    let config = spec.service.clone().unwrap_or_default();
    let type_ = spec.service_type();
    let ports = spec.ports();
    let node_ports = config.node_ports.clone().unwrap_or_default();
    let exposes_nodes = type_ != ServiceType::ClusterIP;
    let port = |name: &str, number: i32, node_port: Option<i32>| ServicePort {
        name: Some(name.into()),
        port: number,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        node_port: node_port.filter(|_| exposes_nodes),
        ..ServicePort::default()
    };

    let mut metadata = inputs.owned_meta(inputs.proxy_name());
    metadata.annotations = config.annotations.clone();
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(type_.as_str().into()),
            selector: Some(inputs.selector_labels()),
            ports: Some(vec![
                port("http", ports.http, node_ports.http),
                port("https", ports.https, node_ports.https),
            ]),
            load_balancer_class: config
                .load_balancer_class
                .clone()
                .filter(|_| type_ == ServiceType::LoadBalancer),
            external_traffic_policy: config
                .external_traffic_policy
                .filter(|_| exposes_nodes)
                .map(|p| {
                    match p {
                        ExternalTrafficPolicy::Cluster => "Cluster",
                        ExternalTrafficPolicy::Local => "Local",
                    }
                    .to_owned()
                }),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
