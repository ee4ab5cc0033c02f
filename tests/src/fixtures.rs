//! Kubernetes objects the tests, the demo and the bench create: IngressClasses, Services
//! without selectors, their EndpointSlices (there is no endpointslice controller without
//! pods), Ingresses, TLS Secrets. The builders are pure; `apply_*` writes them.

use std::net::SocketAddr;

use anyhow::Result;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressClass, IngressClassSpec,
    IngressRule, IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

const MANAGER: &str = "portico-tests";

/// An IngressClass of Portico's controller, without parameters.
pub fn ingress_class(name: &str) -> IngressClass {
    IngressClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(IngressClassSpec {
            controller: Some("portico.dev/ingress-controller".into()),
            parameters: None,
        }),
    }
}

/// A selector-less Service `name` with one TCP port `port_name`: `port` → `target_port`.
/// `headless` leaves out the cluster IP, which the proxy never uses (it routes to the
/// EndpointSlices' addresses) and which costs the apiserver an IPAddress object.
pub fn service(
    ns: &str,
    name: &str,
    port_name: &str,
    port: u16,
    target_port: u16,
    headless: bool,
) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some(port_name.into()),
                port: port.into(),
                target_port: Some(IntOrString::Int(target_port.into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            cluster_ip: headless.then(|| "None".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The EndpointSlice `name` publishing `endpoints` (all on one port, named `port_name`) as
/// ready endpoints of `service`.
pub fn endpoint_slice(
    ns: &str,
    name: &str,
    service: &str,
    port_name: &str,
    endpoints: &[SocketAddr],
) -> EndpointSlice {
    let port = endpoints.first().map(|a| a.port()).unwrap_or(8080);
    let mut metadata = meta(ns, name);
    metadata.labels = Some(
        [
            ("kubernetes.io/service-name".to_owned(), service.to_owned()),
            (
                "endpointslice.kubernetes.io/managed-by".to_owned(),
                MANAGER.to_owned(),
            ),
        ]
        .into(),
    );
    EndpointSlice {
        metadata,
        address_type: "IPv4".into(),
        endpoints: endpoints
            .iter()
            .map(|a| Endpoint {
                addresses: vec![a.ip().to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some(port_name.into()),
            port: Some(port.into()),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}

/// An Ingress of `class` with one rule: `host` + each `(path, pathType, service, port
/// name)`, and `host` in `spec.tls` with `tls_secret` when given.
pub fn ingress_object(
    ns: &str,
    name: &str,
    class: &str,
    host: &str,
    paths: &[(&str, &str, &str, &str)],
    tls_secret: Option<&str>,
) -> Ingress {
    let paths = paths
        .iter()
        .map(|(path, kind, svc, port)| HTTPIngressPath {
            path: Some((*path).to_owned()),
            path_type: (*kind).to_owned(),
            backend: IngressBackend {
                service: Some(IngressServiceBackend {
                    name: (*svc).to_owned(),
                    port: Some(ServiceBackendPort {
                        name: Some((*port).to_owned()),
                        number: None,
                    }),
                }),
                resource: None,
            },
        })
        .collect();
    Ingress {
        metadata: meta(ns, name),
        spec: Some(IngressSpec {
            ingress_class_name: Some(class.into()),
            rules: Some(vec![IngressRule {
                host: Some(host.into()),
                http: Some(HTTPIngressRuleValue { paths }),
            }]),
            tls: tls_secret.map(|s| {
                vec![IngressTLS {
                    hosts: Some(vec![host.into()]),
                    secret_name: Some(s.into()),
                }]
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A `kubernetes.io/tls` Secret.
pub fn tls_secret(ns: &str, name: &str, cert_pem: &str, key_pem: &str) -> Secret {
    Secret {
        metadata: meta(ns, name),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                (
                    "tls.crt".to_owned(),
                    ByteString(cert_pem.as_bytes().to_vec()),
                ),
                (
                    "tls.key".to_owned(),
                    ByteString(key_pem.as_bytes().to_vec()),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    }
}

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

/// Applies a selector-less ClusterIP Service `name` with one port `port_name` → `target_port`.
pub async fn apply_service(
    client: &kube::Client,
    ns: &str,
    name: &str,
    port_name: &str,
    port: u16,
    target_port: u16,
) -> Result<Service> {
    let svc = service(ns, name, port_name, port, target_port, false);
    Ok(Api::<Service>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&svc),
        )
        .await?)
}

/// Applies the EndpointSlice `<service>-<suffix>` publishing `endpoints` (all on one port,
/// named `port_name`) as ready endpoints of `service`.
pub async fn apply_endpoints(
    client: &kube::Client,
    ns: &str,
    service: &str,
    suffix: &str,
    port_name: &str,
    endpoints: &[SocketAddr],
) -> Result<EndpointSlice> {
    let name = format!("{service}-{suffix}");
    let slice = endpoint_slice(ns, &name, service, port_name, endpoints);
    Ok(Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&slice),
        )
        .await?)
}

/// Applies an Ingress given as JSON (`metadata.name` and `metadata.namespace` required).
pub async fn apply_ingress(client: &kube::Client, ingress: serde_json::Value) -> Result<Ingress> {
    let ingress: Ingress = serde_json::from_value(ingress)?;
    let name = ingress.metadata.name.clone().unwrap_or_default();
    let ns = ingress.metadata.namespace.clone().unwrap_or_default();
    Ok(Api::<Ingress>::namespaced(client.clone(), &ns)
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&ingress),
        )
        .await?)
}

/// A one-rule Ingress of `class`: `host` + each `(path, pathType, service, port name)`, as
/// JSON (to edit before applying).
pub fn ingress(
    ns: &str,
    name: &str,
    class: &str,
    host: &str,
    paths: &[(&str, &str, &str, &str)],
) -> serde_json::Value {
    serde_json::to_value(ingress_object(ns, name, class, host, paths, None))
        .unwrap_or_else(|_| json!({}))
}
