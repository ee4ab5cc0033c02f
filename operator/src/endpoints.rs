//! Refused endpoints, told to the user. The proxy drops every EndpointSlice address that
//! `portico_ingress::refused` refuses, but it may not write Events; the operator reads the
//! same slices, applies the same rule and warns on the served Ingresses whose backends
//! name such an address.
//!
//! ```text
//!  EndpointSlices not written by the endpointslice controller ─▶ store "hand-written"
//!  EndpointSlices of the proxy Services (labels copied from them) ─▶ store "fleet"
//!                                                                    └─▶ the proxy pods' IPs
//!  served Ingress ─▶ its served Service ports (verdict) ─▶ slice_endpoints() ─▶ refused()
//!                                           └─▶ Warning EndpointRefused on the Ingress
//! ```
//!
//! Memory stays bounded by what tenants write by hand: slices the endpointslice controller
//! made from Pods hold pod IPs, which a tenant does not choose, and are not reflected
//! (except the proxy fleet's own). Without Pod read access (the operator has none) the
//! fleet's addresses come from the EndpointSlices of the proxy Service, which lists every
//! proxy pod that has an IP, ready or not. What the proxy itself refuses does not depend on
//! any of this: a slice that hides from the label selector below is still refused by the
//! proxy, it only goes unreported.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use portico_ingress::{Checked, EndpointPolicy, Refusal};

use crate::api::IngressController;
use crate::resources::{
    self, LABEL_INSTANCE_NAME, LABEL_INSTANCE_NAMESPACE, MANAGED_SELECTOR, Settings,
};
use crate::stores::{self, Cache, Changes, Index};
use crate::verdict::{ServicePort, Warning};

/// Event reason: a served Ingress's backend names an endpoint the proxy never dials.
pub const ENDPOINT_REFUSED: &str = "EndpointRefused";
/// Label of an EndpointSlice naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label of an EndpointSlice naming what wrote it.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The value of `MANAGED_BY_LABEL` on slices the endpointslice controller made from Pods.
pub const ENDPOINTSLICE_CONTROLLER: &str = "endpointslice-controller.k8s.io";
/// Slices anyone but the endpointslice controller wrote: by hand, by a tool, or mirrored
/// from a hand-written Endpoints object.
pub const HAND_WRITTEN_SELECTOR: &str =
    "endpointslice.kubernetes.io/managed-by!=endpointslice-controller.k8s.io";
/// At most this many refused endpoints are named in one Event.
const MAX_NAMED: usize = 8;

/// The reflected EndpointSlices the reconciler reads: one store per watched namespace
/// (one for the cluster without `--watch-namespaces`).
#[derive(Clone)]
pub struct Slices {
    /// Grouped by namespace: a reconcile asks which namespaces hold one, and reads only
    /// those namespaces' slices.
    hand_written: Cache<EndpointSlice>,
    fleet: Cache<EndpointSlice>,
}

/// The change streams that fill [`Slices`], for the controller to poll.
pub struct SliceStreams {
    pub hand_written: Vec<Changes<EndpointSlice>>,
    pub fleet: Vec<Changes<EndpointSlice>>,
}

impl Slices {
    /// The namespaces that hold a hand-written EndpointSlice: only there can an Ingress
    /// name an endpoint the proxies refuse. Every reconcile asks, so the answer comes from
    /// the slices grouped by namespace: reading every such slice in the cluster, with 10,000
    /// of them in another namespace, was most of the operator's CPU per new Ingress (5-6
    /// of ~6 ms in `just bench --phases scale,operator`).
    pub fn hand_written_namespaces(&self) -> BTreeSet<String> {
        self.hand_written.namespaces()
    }

    /// The stores and the streams that fill them (and wake the controller).
    pub fn reflect(
        client: &Client,
        namespaces: Option<&BTreeSet<String>>,
    ) -> (Slices, SliceStreams) {
        let (hand_written, hand_written_changes) = stores::reflect_scoped(
            client,
            namespaces,
            &hand_written_config(),
            slice_fingerprint,
            Index::ByNamespace,
        );
        let (fleet, fleet_changes) = stores::reflect_scoped(
            client,
            namespaces,
            &fleet_config(),
            slice_fingerprint,
            Index::None,
        );
        (
            Slices {
                hand_written,
                fleet,
            },
            SliceStreams {
                hand_written: hand_written_changes,
                fleet: fleet_changes,
            },
        )
    }

    /// Resolves once every store has been listed in full; false when a reflector is gone.
    /// One waiter only (see [`crate::stores::Cache::listed`]).
    pub async fn listed(&self) -> bool {
        self.hand_written.listed().await && self.fleet.listed().await
    }

    /// The addresses of instance `<namespace>/<name>`'s proxy pods, as the endpointslice
    /// controller lists them for its Service (every pod with an IP, ready or not).
    pub fn fleet_addresses(&self, namespace: &str, name: &str) -> Vec<IpAddr> {
        let service = resources::proxy_name(name);
        let mut out: Vec<IpAddr> = self
            .fleet
            .state()
            .into_iter()
            .filter(|s| {
                s.namespace().as_deref() == Some(namespace)
                    && label(s, SERVICE_NAME_LABEL) == Some(service.as_str())
                    && label(s, MANAGED_BY_LABEL) == Some(ENDPOINTSLICE_CONTROLLER)
                    && label(s, LABEL_INSTANCE_NAMESPACE) == Some(namespace)
                    && label(s, LABEL_INSTANCE_NAME) == Some(name)
            })
            .flat_map(|s| {
                s.endpoints
                    .iter()
                    .flat_map(|e| e.addresses.iter())
                    .filter_map(|a| a.parse().ok())
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Hand-written slices by (namespace, Service), for the given namespaces.
    pub fn hand_written_in(&self, namespaces: &BTreeSet<&str>) -> SlicesByService {
        let mut out: SlicesByService = HashMap::new();
        for ns in namespaces {
            for slice in self.hand_written.in_namespace(ns) {
                if let Some(svc) = label(&slice, SERVICE_NAME_LABEL) {
                    let key = ((*ns).to_owned(), svc.to_owned());
                    out.entry(key).or_default().push(slice);
                }
            }
        }
        out
    }
}

/// What the endpoint rule reads of a slice: labels, address type, ports and endpoints.
fn slice_fingerprint(slice: &EndpointSlice) -> u64 {
    stores::hash_json(&(
        &slice.metadata.labels,
        &slice.address_type,
        &slice.ports,
        &slice.endpoints,
    ))
}

/// EndpointSlices by (namespace, Service name).
pub type SlicesByService = HashMap<(String, String), Vec<Arc<EndpointSlice>>>;

/// The watch of hand-written slices (its changes also wake the controller).
pub fn hand_written_config() -> watcher::Config {
    watcher::Config::default()
        .labels(HAND_WRITTEN_SELECTOR)
        .any_semantic()
}

/// The watch of the proxy Services' slices: the endpointslice controller copies a
/// Service's labels onto its slices, so ours carry the operator's.
pub fn fleet_config() -> watcher::Config {
    watcher::Config::default()
        .labels(&format!(
            "{MANAGED_SELECTOR},{MANAGED_BY_LABEL}={ENDPOINTSLICE_CONTROLLER}"
        ))
        .any_semantic()
}

/// Instances that live in or serve the slice's namespace (by their last status).
pub fn instances_for_slice(
    store: &Store<IngressController>,
    slice: &EndpointSlice,
) -> Vec<ObjectRef<IngressController>> {
    slice
        .namespace()
        .map(|ns| crate::controller::instances_serving(store, &ns))
        .unwrap_or_default()
}

/// The Warnings for instance `<namespace>/<name>`: its proxies refuse the platform's
/// denied ranges and their own pod addresses (here: every pod of the fleet). `served` is
/// each served Ingress with what it is served for. Only hand-written slices are judged
/// (the endpointslice controller lists pod addresses): without any, there is nothing to
/// say, and nothing is worked out for each of thousands of Ingresses.
pub fn for_instance(
    slices: &Slices,
    settings: &Settings,
    instance: (&str, &str),
    served: &[(Arc<Ingress>, Arc<Checked>)],
    class: &str,
) -> Vec<Warning> {
    if served.is_empty() || slices.hand_written.is_empty() {
        return Vec::new();
    }
    let (namespace, name) = instance;
    let policy = EndpointPolicy {
        denied: settings.denied_endpoint_cidrs.clone(),
        own: slices.fleet_addresses(namespace, name),
    };
    let namespaces: BTreeSet<&str> = served
        .iter()
        .filter_map(|(i, _)| i.metadata.namespace.as_deref())
        .collect();
    let slices = slices.hand_written_in(&namespaces);
    if slices.is_empty() {
        return Vec::new();
    }
    let served: Vec<(Arc<Ingress>, BTreeSet<ServicePort>)> = served
        .iter()
        .map(|(i, checked)| (i.clone(), crate::verdict::service_ports(checked)))
        .collect();
    warnings(&served, &slices, &policy, class)
}

fn label<'a>(slice: &'a EndpointSlice, key: &str) -> Option<&'a str> {
    slice.labels().get(key).map(String::as_str)
}

/// One Warning per served Ingress and backend Service that names endpoints the proxy
/// refuses, judged only for the Service ports its served rules use (a rule the judgement
/// refused is not reported on).
pub fn warnings(
    served: &[(Arc<Ingress>, BTreeSet<ServicePort>)],
    slices: &SlicesByService,
    policy: &EndpointPolicy,
    class: &str,
) -> Vec<Warning> {
    let mut out = Vec::new();
    // Many Ingresses name one Service port: each port's endpoints are judged once.
    let mut judged: HashMap<(String, ServicePort), Vec<(SocketAddr, Refusal)>> = HashMap::new();
    for (ingress, ports) in served {
        let ns = ingress.namespace().unwrap_or_default();
        // Per Service, the refused endpoints of the ports this Ingress uses.
        let mut refused: BTreeMap<String, BTreeMap<SocketAddr, Refusal>> = BTreeMap::new();
        for port in ports {
            let key = (ns.clone(), port.clone());
            let found = match judged.get(&key) {
                Some(found) => found,
                None => {
                    let (service, port_name) = port;
                    let found = slices
                        .get(&(ns.clone(), service.clone()))
                        .into_iter()
                        .flatten()
                        .flat_map(|slice| portico_ingress::slice_endpoints(slice, port_name))
                        .filter_map(|(addr, _)| {
                            portico_ingress::refused(addr, policy).map(|why| (addr, why))
                        })
                        .collect();
                    judged.entry(key).or_insert(found)
                }
            };
            if !found.is_empty() {
                refused
                    .entry(port.0.clone())
                    .or_default()
                    .extend(found.iter().cloned());
            }
        }
        for (service, endpoints) in refused {
            out.push(Warning {
                ingress: ingress.clone(),
                reason: ENDPOINT_REFUSED,
                note: note(class, &ns, &service, &endpoints),
            });
        }
    }
    out
}

fn note(
    class: &str,
    namespace: &str,
    service: &str,
    endpoints: &BTreeMap<SocketAddr, Refusal>,
) -> String {
    let mut named: Vec<String> = endpoints
        .iter()
        .take(MAX_NAMED)
        .map(|(addr, why)| format!("{addr} ({why})"))
        .collect();
    if endpoints.len() > MAX_NAMED {
        named.push(format!("and {} more", endpoints.len() - MAX_NAMED));
    }
    format!(
        "IngressClass {class} never sends requests to these endpoints of Service \
         {namespace}/{service}: {}; requests go to its other endpoints, or get 503 when \
         none is left",
        named.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(name: &str) -> Ingress {
        serde_json::from_value(json!({"metadata": {"namespace": "a", "name": name, "uid": name}}))
            .expect("ingress")
    }

    fn slice(service: &str, port_name: &str, port: u16, addrs: &[&str]) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": "a", "name": format!("{service}-{port_name}"),
                    "labels": {SERVICE_NAME_LABEL: service}},
                "addressType": "IPv4",
                "ports": [{"name": port_name, "port": port}],
                "endpoints": addrs.iter().map(|a| json!({"addresses": [a]})).collect::<Vec<_>>(),
            }))
            .expect("slice"),
        )
    }

    #[test]
    fn only_the_ports_a_served_ingress_uses_are_judged_and_each_service_gets_one_warning() {
        let slices: SlicesByService = [
            (
                ("a".to_owned(), "site".to_owned()),
                vec![
                    slice(
                        "site",
                        "http",
                        8080,
                        &["10.244.0.5", "100.100.100.200", "10.244.7.7", "10.0.0.9"],
                    ),
                    // A port no Ingress here uses: not reported.
                    slice("site", "admin", 9000, &["168.63.129.16"]),
                ],
            ),
            (
                ("a".to_owned(), "clean".to_owned()),
                vec![slice("clean", "http", 8080, &["10.244.0.6"])],
            ),
        ]
        .into();
        let policy = EndpointPolicy {
            denied: vec!["10.0.0.0/24".parse().expect("cidr")],
            own: vec!["10.244.7.7".parse().expect("ip")],
        };
        let by_name = Arc::new(ingress("byname"));
        let by_number = Arc::new(ingress("bynumber"));
        let clean = Arc::new(ingress("clean"));
        let port = |s: &str, p: &str| (s.to_owned(), p.to_owned());
        let served = [
            (by_name, [port("site", "http")].into()),
            (by_number, [port("site", "http")].into()),
            (clean, [port("clean", "http")].into()),
        ];
        let w = warnings(&served, &slices, &policy, "web");
        let got: Vec<(String, &str)> = w.iter().map(|w| (w.ingress.name_any(), w.reason)).collect();
        assert_eq!(
            got,
            [
                ("byname".to_owned(), ENDPOINT_REFUSED),
                ("bynumber".to_owned(), ENDPOINT_REFUSED)
            ]
        );
        assert_eq!(
            w[0].note,
            "IngressClass web never sends requests to these endpoints of Service a/site: \
             10.0.0.9:8080 (in 10.0.0.0/24, a range the platform denies to endpoints), \
             10.244.7.7:8080 (an address of the proxy pod itself), \
             100.100.100.200:8080 (a cloud metadata service address); requests go to its \
             other endpoints, or get 503 when none is left"
        );
        assert_eq!(w[0].note, w[1].note, "same Service port, same note");
    }

    #[test]
    fn long_lists_are_cut() {
        let endpoints: BTreeMap<SocketAddr, Refusal> = (1..=12u8)
            .map(|i| (SocketAddr::from(([127, 0, 0, i], 80)), Refusal::Loopback))
            .collect();
        let n = note("web", "a", "s", &endpoints);
        assert!(n.contains("127.0.0.8:80 (a loopback"), "{n}");
        assert!(!n.contains("127.0.0.9:80"), "{n}");
        assert!(n.contains("and 4 more"), "{n}");
    }
}
