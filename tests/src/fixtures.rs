//! Kubernetes objects the traffic tests and the demo create: Services without selectors,
//! their EndpointSlices (there is no endpointslice controller without pods), Ingresses.

use std::net::SocketAddr;

use anyhow::Result;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

const MANAGER: &str = "portico-tests";

/// Applies a selector-less ClusterIP Service `name` with one port `port_name` → `target_port`.
pub async fn apply_service(
    client: &kube::Client,
    ns: &str,
    name: &str,
    port_name: &str,
    port: u16,
    target_port: u16,
) -> Result<Service> {
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": name, "namespace": ns },
        "spec": { "ports": [{ "name": port_name, "port": port, "targetPort": target_port, "protocol": "TCP" }] }
    }))?;
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
    let port = endpoints.first().map(|a| a.port()).unwrap_or(8080);
    let name = format!("{service}-{suffix}");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": name, "namespace": ns,
            "labels": { "kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": MANAGER }
        },
        "addressType": "IPv4",
        "ports": [{ "name": port_name, "port": port, "protocol": "TCP" }],
        "endpoints": endpoints.iter().map(|a| json!({
            "addresses": [a.ip().to_string()],
            "conditions": { "ready": true, "serving": true, "terminating": false }
        })).collect::<Vec<_>>(),
    }))?;
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

/// A one-rule Ingress of `class`: `host` + each `(path, pathType, service, port name)`.
pub fn ingress(
    ns: &str,
    name: &str,
    class: &str,
    host: &str,
    paths: &[(&str, &str, &str, &str)],
) -> serde_json::Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": { "name": name, "namespace": ns },
        "spec": {
            "ingressClassName": class,
            "rules": [{ "host": host, "http": { "paths": paths.iter().map(|(path, kind, svc, port)| json!({
                "path": path, "pathType": kind,
                "backend": { "service": { "name": svc, "port": { "name": port } } }
            })).collect::<Vec<_>>() } }]
        }
    })
}
