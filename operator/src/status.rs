//! Pure status computation: the instance's conditions and addresses, and the
//! `status.loadBalancer` the operator writes on every Ingress the instance serves.
//!
//! ```text
//!  Deployment (replicas, available) ─┐
//!  Service (LB ingress | clusterIP)  ─┼─▶ IngressControllerStatus ─▶ status subresource
//!  class claim, tenant policy,       ─┘          └─ addresses ─▶ Ingress status.loadBalancer
//!  reconcile errors
//! ```

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{IngressLoadBalancerIngress, IngressLoadBalancerStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::{Address, IngressControllerStatus, conditions};

/// Where the proxy Service is reachable: load balancer ingress first, else the cluster IP
/// (with node ports for NodePort and LoadBalancer Services).
pub fn addresses(service: &Service) -> Vec<Address> {
    let lb: Vec<Address> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ingress| match (&ingress.ip, &ingress.hostname) {
            (Some(ip), _) if !ip.is_empty() => Some(address("LoadBalancerIP", ip, BTreeMap::new())),
            (_, Some(host)) if !host.is_empty() => {
                Some(address("LoadBalancerHostname", host, BTreeMap::new()))
            }
            _ => None,
        })
        .collect();
    if !lb.is_empty() {
        return lb;
    }
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    let node_ports: BTreeMap<String, i32> = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| Some((p.name.clone()?, p.node_port?)))
        .collect();
    match spec.cluster_ip.as_deref() {
        Some(ip) if !ip.is_empty() && ip != "None" => vec![address("ClusterIP", ip, node_ports)],
        _ => Vec::new(),
    }
}

fn address(type_: &str, value: &str, node_ports: BTreeMap<String, i32>) -> Address {
    Address {
        type_: type_.into(),
        value: value.into(),
        node_ports,
    }
}

/// The `status.loadBalancer` of a served Ingress.
pub fn ingress_load_balancer(addresses: &[Address]) -> IngressLoadBalancerStatus {
    let ingress: Vec<IngressLoadBalancerIngress> = addresses
        .iter()
        .map(|a| match a.type_.as_str() {
            "LoadBalancerHostname" => IngressLoadBalancerIngress {
                hostname: Some(a.value.clone()),
                ..Default::default()
            },
            _ => IngressLoadBalancerIngress {
                ip: Some(a.value.clone()),
                ..Default::default()
            },
        })
        .collect();
    IngressLoadBalancerStatus {
        ingress: (!ingress.is_empty()).then_some(ingress),
    }
}

/// What one reconcile observed, reduced to what the conditions need.
#[derive(Debug, Default)]
pub struct Observed<'a> {
    pub generation: Option<i64>,
    pub deployment: Option<&'a Deployment>,
    /// A message when another owner holds the class.
    pub class_conflict: Option<String>,
    /// A permanent reconcile error the user must fix: its reason and message.
    pub error: Option<(&'static str, String)>,
    /// What the tenant policy refuses in the spec (nothing was applied).
    pub policy_violation: Option<String>,
}

struct Cond {
    type_: &'static str,
    status: bool,
    reason: &'static str,
    message: String,
}

fn cond(
    type_: &'static str,
    status: bool,
    reason: &'static str,
    message: impl Into<String>,
) -> Cond {
    Cond {
        type_,
        status,
        reason,
        message: message.into(),
    }
}

/// Condition types in the order the status lists them.
const ORDER: [&str; 5] = [
    conditions::READY,
    conditions::PROGRESSING,
    conditions::DEGRADED,
    conditions::CLASS_CONFLICT,
    conditions::POLICY_VIOLATION,
];

/// The conditions `observed` decides; those it did not evaluate (the class is not looked at
/// while the policy refuses the spec) are left out and keep their last value.
fn compute(observed: &Observed) -> Vec<Cond> {
    if let Some(violation) = &observed.policy_violation {
        return vec![
            cond(
                conditions::READY,
                false,
                "PolicyViolation",
                violation.clone(),
            ),
            cond(
                conditions::PROGRESSING,
                false,
                "PolicyViolation",
                "nothing is applied while the spec violates the tenant policy",
            ),
            cond(
                conditions::DEGRADED,
                true,
                "PolicyViolation",
                violation.clone(),
            ),
            cond(
                conditions::POLICY_VIOLATION,
                true,
                "FieldsNotAllowed",
                violation.clone(),
            ),
        ];
    }
    // Every other path got past the policy.
    let policy = cond(
        conditions::POLICY_VIOLATION,
        false,
        "WithinPolicy",
        "the spec keeps to the tenant policy",
    );
    if let Some(conflict) = &observed.class_conflict {
        return vec![
            cond(conditions::READY, false, "ClassConflict", conflict.clone()),
            cond(
                conditions::PROGRESSING,
                false,
                "ClassConflict",
                "nothing is deployed while the class is owned elsewhere",
            ),
            cond(
                conditions::DEGRADED,
                true,
                "ClassConflict",
                conflict.clone(),
            ),
            cond(
                conditions::CLASS_CONFLICT,
                true,
                "ClassOwnedElsewhere",
                conflict.clone(),
            ),
            policy,
        ];
    }
    let class = cond(
        conditions::CLASS_CONFLICT,
        false,
        "ClassOwned",
        "the IngressClass belongs to this instance",
    );
    if let Some((reason, error)) = &observed.error {
        return vec![
            cond(conditions::READY, false, reason, error.clone()),
            cond(conditions::PROGRESSING, false, reason, error.clone()),
            cond(conditions::DEGRADED, true, reason, error.clone()),
            class,
            policy,
        ];
    }
    let (desired, available, updated, stale) = match observed.deployment {
        Some(d) => {
            let status = d.status.clone().unwrap_or_default();
            let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let stale =
                status.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0);
            (
                desired,
                status.available_replicas.unwrap_or(0),
                status.updated_replicas.unwrap_or(0),
                stale,
            )
        }
        None => (1, 0, 0, true),
    };
    let ready = if desired == 0 {
        cond(
            conditions::READY,
            false,
            "ScaledToZero",
            "the Deployment has 0 replicas",
        )
    } else if available >= desired {
        cond(
            conditions::READY,
            true,
            "Available",
            format!("{available}/{desired} proxy pods available"),
        )
    } else {
        cond(
            conditions::READY,
            false,
            "Unavailable",
            format!("{available}/{desired} proxy pods available"),
        )
    };
    let progressing = if stale || updated < desired || available < desired {
        cond(
            conditions::PROGRESSING,
            true,
            "RollingOut",
            format!("{updated}/{desired} proxy pods updated"),
        )
    } else {
        cond(
            conditions::PROGRESSING,
            false,
            "Complete",
            "the Deployment is up to date",
        )
    };
    let degraded = if desired > 0 && available > 0 && available < desired {
        cond(
            conditions::DEGRADED,
            true,
            "PartiallyAvailable",
            format!("{available}/{desired} proxy pods available"),
        )
    } else {
        cond(conditions::DEGRADED, false, "AsExpected", "")
    };
    vec![ready, progressing, degraded, class, policy]
}

/// Conditions for `observed`, keeping `lastTransitionTime` of those whose status did not
/// change, so that an unchanged world yields an identical status (and no write).
pub fn conditions(previous: &[Condition], observed: &Observed, now: Timestamp) -> Vec<Condition> {
    let mut computed = compute(observed);
    ORDER
        .iter()
        .filter_map(|type_| {
            let Some(at) = computed.iter().position(|c| c.type_ == *type_) else {
                return previous.iter().find(|p| p.type_ == *type_).cloned();
            };
            let c = computed.swap_remove(at);
            let status = if c.status { "True" } else { "False" }.to_owned();
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or(Time(now));
            Some(Condition {
                type_: c.type_.into(),
                status,
                reason: c.reason.into(),
                message: c.message,
                observed_generation: observed.generation,
                last_transition_time,
            })
        })
        .collect()
}

/// Ready replicas as the Deployment reports them.
pub fn ready_replicas(deployment: Option<&Deployment>) -> i32 {
    deployment
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

/// Is `status` worth writing over `current`?
pub fn differs(
    current: Option<&IngressControllerStatus>,
    status: &IngressControllerStatus,
) -> bool {
    current != Some(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};
    use k8s_openapi::api::core::v1::{
        LoadBalancerIngress, LoadBalancerStatus, ServicePort, ServiceSpec, ServiceStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn deployment(replicas: i32, available: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(3),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(3),
                available_replicas: Some(available),
                ready_replicas: Some(available),
                updated_replicas: Some(replicas),
                ..Default::default()
            }),
        }
    }

    fn get<'a>(conds: &'a [Condition], t: &str) -> &'a Condition {
        conds
            .iter()
            .find(|c| c.type_ == t)
            .expect("condition present")
    }

    #[test]
    fn ready_follows_available_replicas() {
        let now = Timestamp::UNIX_EPOCH;
        let d = deployment(2, 1);
        let obs = Observed {
            generation: Some(7),
            deployment: Some(&d),
            ..Default::default()
        };
        let c = conditions(&[], &obs, now);
        assert_eq!(get(&c, "Ready").status, "False");
        assert_eq!(get(&c, "Degraded").status, "True");
        assert_eq!(get(&c, "Ready").observed_generation, Some(7));

        let d = deployment(2, 2);
        let later = Timestamp::from_second(60).expect("valid");
        let obs = Observed {
            generation: Some(7),
            deployment: Some(&d),
            ..Default::default()
        };
        let c2 = conditions(&c, &obs, later);
        assert_eq!(get(&c2, "Ready").status, "True");
        assert_eq!(get(&c2, "Ready").last_transition_time, Time(later));
        assert_eq!(
            get(&c2, "ClassConflict").last_transition_time,
            Time(now),
            "unchanged status keeps its time"
        );
    }

    #[test]
    fn conflict_wins() {
        let obs = Observed {
            class_conflict: Some("owned by x/y".into()),
            ..Default::default()
        };
        let c = conditions(&[], &obs, Timestamp::UNIX_EPOCH);
        assert_eq!(get(&c, "ClassConflict").status, "True");
        assert_eq!(get(&c, "Ready").status, "False");
    }

    #[test]
    fn a_policy_violation_is_a_condition_and_clears_when_fixed() {
        let now = Timestamp::UNIX_EPOCH;
        let conflict = Observed {
            generation: Some(1),
            class_conflict: Some("owned by x/y".into()),
            ..Default::default()
        };
        let before = conditions(&[], &conflict, now);
        let refused = Observed {
            generation: Some(2),
            policy_violation: Some("spec.nodeSelector: not allowed".into()),
            ..Default::default()
        };
        let c = conditions(&before, &refused, now);
        let types: Vec<&str> = c.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ORDER, "one of each, in order");
        assert_eq!(
            (
                get(&c, "PolicyViolation").status.as_str(),
                get(&c, "PolicyViolation").reason.as_str()
            ),
            ("True", "FieldsNotAllowed")
        );
        assert!(
            get(&c, "PolicyViolation")
                .message
                .contains("spec.nodeSelector")
        );
        assert_eq!(get(&c, "Ready").reason, "PolicyViolation");
        assert_eq!(get(&c, "Degraded").status, "True");
        assert_eq!(
            get(&c, "ClassConflict"),
            get(&before, "ClassConflict"),
            "the class is not looked at while the policy refuses: its condition is kept"
        );

        let d = deployment(2, 2);
        let fixed = Observed {
            generation: Some(3),
            deployment: Some(&d),
            ..Default::default()
        };
        let c = conditions(&c, &fixed, Timestamp::from_second(60).expect("valid"));
        assert_eq!(
            (
                get(&c, "PolicyViolation").status.as_str(),
                get(&c, "PolicyViolation").reason.as_str()
            ),
            ("False", "WithinPolicy")
        );
        assert_eq!(get(&c, "Ready").status, "True");
    }

    #[test]
    fn addresses_prefer_load_balancer() {
        let mut svc = Service {
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.96.0.10".into()),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    node_port: Some(30080),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let a = addresses(&svc);
        assert_eq!(
            a,
            vec![address(
                "ClusterIP",
                "10.96.0.10",
                [("http".to_owned(), 30080)].into()
            )]
        );
        assert_eq!(
            ingress_load_balancer(&a).ingress.expect("one")[0]
                .ip
                .as_deref(),
            Some("10.96.0.10")
        );

        svc.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    hostname: Some("lb.example.com".into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        });
        let a = addresses(&svc);
        assert_eq!(
            a,
            vec![address(
                "LoadBalancerHostname",
                "lb.example.com",
                BTreeMap::new()
            )]
        );
        assert_eq!(
            ingress_load_balancer(&a).ingress.expect("one")[0]
                .hostname
                .as_deref(),
            Some("lb.example.com")
        );
    }
}
