//! The tenant policy against a real apiserver, enforced twice.
//!
//! ```text
//!  helm install charts/portico ─▶ ValidatingAdmissionPolicy + binding (CEL from the values)
//!  tenant ServiceAccount (Role: ingresscontrollers in its namespace; real token)
//!      ─▶ each privileged field ─▶ refused by the apiserver, the message naming field and policy
//!  the same rights in a privileged namespace ─▶ allowed, and deployed by the operator
//!  binding deleted ─▶ admin creates a violating spec ─▶ operator (chart args, chart token)
//!      ─▶ PolicyViolation + Event, nothing created ─▶ spec fixed ─▶ deployed
//! ```
//!
//! A binary of its own: the policy binds cluster-wide, so it would judge the other Helm
//! tests' objects by this test's values.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use portico_operator::api::IngressController;
use portico_tests::helm::helm;
use portico_tests::{ControlPlane, control_plane, workspace_root};
use serde_json::{Value, json};

const RELEASE: &str = "portico";
const POLICY: &str = "portico-tenant-policy";
const OWN_IMAGE: &str = "ghcr.io/portico-dev/portico-proxy:0.1.0";
const WAIT: Duration = Duration::from_secs(30);

async fn eventually<T, F, Fut>(what: &str, check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    portico_tests::poll_until(what, WAIT, check).await
}

fn instance(namespace: &str, name: &str, spec: Value) -> Result<IngressController> {
    portico_tests::ingress_controller(namespace, name, spec)
}

/// A ServiceAccount that may manage IngressControllers in its own namespace and nothing
/// else, and a client with its real token.
async fn tenant_client(cp: &ControlPlane, namespace: &str) -> Result<Client> {
    let admin = cp.client();
    cp.ensure_service_account(namespace, "ingress-admin")
        .await?;
    let role: Role = serde_json::from_value(json!({
        "metadata": { "name": "ingresscontroller-editor", "namespace": namespace },
        "rules": [{ "apiGroups": ["portico.dev"], "resources": ["ingresscontrollers"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"] }],
    }))?;
    Api::<Role>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &role)
        .await?;
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "ingresscontroller-editor", "namespace": namespace },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ingresscontroller-editor" },
        "subjects": [{ "kind": "ServiceAccount", "name": "ingress-admin", "namespace": namespace }],
    }))?;
    Api::<RoleBinding>::namespaced(admin, namespace)
        .create(&PostParams::default(), &binding)
        .await?;
    let token = cp.service_account_token(namespace, "ingress-admin").await?;
    Ok(cp.client_with_token(&token))
}

/// One spec per field the policy keeps for the platform (chart defaults, with
/// `allowedServiceTypes: [LoadBalancer, ClusterIP]`), and what the refusal must say.
fn privileged_cases() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "image",
            json!({ "image": "evil.example.com/miner:latest" }),
            "spec.image: image evil.example.com/miner:latest is not allowed",
        ),
        (
            "default-class",
            json!({ "defaultClass": true }),
            "spec.defaultClass:",
        ),
        (
            "adopt-class",
            json!({ "adoptIngressClass": true }),
            "spec.adoptIngressClass:",
        ),
        (
            "node-selector",
            json!({ "nodeSelector": { "node-role.kubernetes.io/control-plane": "" } }),
            "spec.nodeSelector:",
        ),
        (
            "tolerations",
            json!({ "tolerations": [{ "operator": "Exists" }] }),
            "spec.tolerations:",
        ),
        (
            "affinity",
            json!({ "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{ "matchExpressions": [{ "key": "kubernetes.io/hostname", "operator": "In", "values": ["cp-1"] }] }] } } } }),
            "spec.affinity:",
        ),
        (
            "pod-annotations",
            json!({ "podAnnotations": { "cni.projectcalico.org/ipAddrs": "[\"10.0.0.1\"]" } }),
            "spec.podAnnotations: keys not allowed by the Portico tenant policy: cni.projectcalico.org/ipAddrs",
        ),
        (
            "service-annotations",
            json!({ "service": { "annotations": { "external-dns.alpha.kubernetes.io/hostname": "www.example.com" } } }),
            "spec.service.annotations: keys not allowed by the Portico tenant policy: external-dns.alpha.kubernetes.io/hostname",
        ),
        (
            "load-balancer-class",
            json!({ "service": { "loadBalancerClass": "example.com/public" } }),
            "spec.service.loadBalancerClass:",
        ),
        (
            "node-ports",
            json!({ "service": { "type": "LoadBalancer", "nodePorts": { "http": 30080 } } }),
            "spec.service.nodePorts:",
        ),
        (
            "service-type",
            json!({ "service": { "type": "NodePort" } }),
            "spec.service.type: NodePort is not allowed",
        ),
        (
            "replicas",
            json!({ "replicas": 11 }),
            "spec.replicas: more proxy pods than the Portico tenant policy's ceiling of 10",
        ),
        (
            "autoscaling",
            json!({ "autoscaling": { "maxReplicas": 50 } }),
            "spec.autoscaling.maxReplicas:",
        ),
        (
            "cpu-limit",
            json!({ "resources": { "limits": { "cpu": "2500m" } } }),
            "spec.resources.limits.cpu: 2500m exceeds the ceiling of 2",
        ),
        (
            "memory-request",
            json!({ "resources": { "requests": { "memory": "3Gi" } } }),
            "spec.resources.requests.memory: 3Gi exceeds the ceiling of 2Gi",
        ),
        (
            "other-resource",
            json!({ "resources": { "limits": { "nvidia.com/gpu": 1 } } }),
            "spec.resources.limits: only cpu and memory may be asked for under the Portico tenant policy, not nvidia.com/gpu",
        ),
        (
            "resource-claims",
            json!({ "resources": { "claims": [{ "name": "gpu" }] } }),
            "spec.resources.claims:",
        ),
    ]
}

fn condition<'a>(
    ic: &'a IngressController,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    ic.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_fields_are_refused_at_admission_and_again_by_the_operator() -> Result<()> {
    let cp = control_plane().await;
    let admin = cp.client();
    let release_ns = cp.new_namespace("portico-system").await;
    let tenant = cp.new_namespace("tenant").await;
    let edge = cp.new_namespace("edge").await;

    let chart = workspace_root().join("charts/portico");
    helm(
        cp.kubeconfig(),
        &[
            "install",
            RELEASE,
            chart.to_str().context("utf-8 path")?,
            "--namespace",
            &release_ns,
            "--set",
            &format!("tenantPolicy.privilegedNamespaces={{{edge}}}"),
            "--set",
            "tenantPolicy.allowedServiceTypes={LoadBalancer,ClusterIP}",
            "--set",
            "logLevel=debug",
        ],
    )?;

    // Every expression is exercised by a real request below: a refused field must come back
    // as 403 with the policy's own message (an expression that fails to evaluate refuses
    // with 422 and says so), and the admitted specs pass every expression without error.
    // (The policy's status type-checking cannot help here: kube-controller-manager resolves
    // the CRD's type through a discovery cache that predates the CRD, and skips it.)
    let as_tenant = tenant_client(cp, &tenant).await?;
    let tenant_api = Api::<IngressController>::namespaced(as_tenant.clone(), &tenant);
    // The binding takes effect once the apiserver has seen it: ask with dry runs.
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    eventually("the policy to be enforced", || async {
        let probe = instance(&tenant, "probe", json!({ "defaultClass": true })).ok()?;
        tenant_api
            .create(&dry_run, &probe)
            .await
            .is_err()
            .then_some(())
    })
    .await?;

    // Each privileged field alone is refused, the message naming the field and the policy.
    for (name, spec, expected) in privileged_cases() {
        match tenant_api
            .create(
                &PostParams::default(),
                &instance(&tenant, name, spec.clone())?,
            )
            .await
        {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 403, "{name}: {status:?}");
                assert!(
                    status
                        .message
                        .contains(&format!("ValidatingAdmissionPolicy '{POLICY}'"))
                        && status.message.contains(expected),
                    "{name}: {spec} was refused with {:?}, which should name the policy and say {expected:?}",
                    status.message
                );
            }
            other => {
                panic!("{name}: {spec} from tenant namespace {tenant} was not refused: {other:?}")
            }
        }
    }

    // What a tenant may set is admitted; a later privileged change to it is not, while
    // edits that leave the spec alone are (the operator's finalizer, labels).
    let allowed = json!({
        "image": OWN_IMAGE,
        "replicas": 10,
        "service": { "type": "ClusterIP" },
        "resources": { "requests": { "cpu": "100m", "memory": "64Mi" }, "limits": { "cpu": "2", "memory": "2Gi" } },
        "topologySpreadConstraints": [{ "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway" }],
    });
    tenant_api
        .create(&PostParams::default(), &instance(&tenant, "web", allowed)?)
        .await
        .context("a spec within the policy from the tenant namespace")?;
    let widen = json!({ "spec": { "tolerations": [{ "operator": "Exists" }] } });
    match tenant_api
        .patch("web", &PatchParams::default(), &Patch::Merge(&widen))
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("spec.tolerations:") => {}
        other => panic!("adding tolerations to an admitted instance: {other:?}"),
    }
    let label = json!({ "metadata": { "labels": { "team": "a" } } });
    tenant_api
        .patch("web", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .context("a label-only change")?;

    // A privileged namespace may set them all at once, with the same rights.
    let as_edge = tenant_client(cp, &edge).await?;
    let everything = json!({
        "ingressClassName": format!("{edge}-class"),
        "image": "registry.example.com/portico-proxy:edge",
        "defaultClass": true,
        "nodeSelector": { "node-role.kubernetes.io/ingress": "" },
        "tolerations": [{ "key": "dedicated", "operator": "Equal", "value": "ingress", "effect": "NoSchedule" }],
        "podAnnotations": { "prometheus.io/scrape": "true" },
        "replicas": 20,
        "resources": { "limits": { "cpu": "8", "memory": "8Gi" } },
        "service": { "type": "NodePort", "annotations": { "example.com/lb": "internal" }, "nodePorts": { "http": 30080 } },
    });
    Api::<IngressController>::namespaced(as_edge, &edge)
        .create(
            &PostParams::default(),
            &instance(&edge, "edge", everything)?,
        )
        .await
        .context("every privileged field from the privileged namespace")?;

    // The operator, as the chart runs it (its flags carry the same policy).
    let ip = IpAddr::V4(Ipv4Addr::new(10, 244, 200, 1));
    let mut operator =
        portico_tests::pod::run_operator_from_deployment(cp, &release_ns, RELEASE, ip).await?;
    let result = operator_half(&admin, &tenant, &edge).await;
    if let Err(e) = result {
        bail!("{e:#}\noperator log:\n{}", operator.log_tail(80));
    }
    let log = operator.log_tail(2000);
    assert!(
        !log.contains("forbidden"),
        "the operator hit a permission the chart does not grant:\n{log}"
    );
    operator.terminate();
    operator.wait_timeout(Duration::from_secs(15)).await?;
    Ok(())
}

/// With the operator running: the trusted instance is deployed as asked; once the binding
/// is gone, a violating spec gets past the apiserver and the operator refuses it.
async fn operator_half(admin: &Client, tenant: &str, edge: &str) -> Result<()> {
    let edge_deployments = Api::<Deployment>::namespaced(admin.clone(), edge);
    let deployment = eventually("the privileged namespace's fleet", || async {
        edge_deployments.get_opt("portico-edge").await.ok()?
    })
    .await?;
    let pod = deployment
        .spec
        .and_then(|s| s.template.spec)
        .context("pod spec")?;
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("registry.example.com/portico-proxy:edge")
    );
    assert!(
        pod.node_selector
            .is_some_and(|s| s.contains_key("node-role.kubernetes.io/ingress")),
        "the trusted nodeSelector is applied"
    );
    let edge_service = eventually("the privileged namespace's NodePort Service", || async {
        Api::<Service>::namespaced(admin.clone(), edge)
            .get_opt("portico-edge")
            .await
            .ok()?
    })
    .await?;
    assert!(
        edge_service
            .spec
            .and_then(|s| s.ports)
            .is_some_and(|p| p.iter().any(|p| p.node_port == Some(30080)))
    );

    // The admitted tenant instance within the policy is deployed too.
    eventually("the tenant's fleet within the policy", || async {
        Api::<Deployment>::namespaced(admin.clone(), tenant)
            .get_opt("portico-web")
            .await
            .ok()?
    })
    .await?;

    // Without the binding, the apiserver admits anything the CRD allows.
    let bindings = Api::<ValidatingAdmissionPolicyBinding>::all(admin.clone());
    bindings.delete(POLICY, &DeleteParams::default()).await?;
    let tenants = Api::<IngressController>::namespaced(admin.clone(), tenant);
    let violating = json!({
        "image": "evil.example.com/miner:latest",
        "nodeSelector": { "node-role.kubernetes.io/control-plane": "" },
        "service": { "type": "ClusterIP", "annotations": { "metallb.universe.tf/loadBalancerIPs": "192.0.2.10" } },
        "replicas": 11,
    });
    let sneaky = instance(tenant, "sneaky", violating)?;
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    eventually("the apiserver to stop enforcing the policy", || async {
        tenants
            .create(&dry_run, &sneaky)
            .await
            .is_ok()
            .then_some(())
    })
    .await?;
    tenants.create(&PostParams::default(), &sneaky).await?;

    let refused = eventually("PolicyViolation=True on the violating instance", || async {
        let ic = tenants.get_opt("sneaky").await.ok()??;
        let c = condition(&ic, "PolicyViolation")?;
        (c.status == "True" && c.observed_generation == ic.metadata.generation).then(|| c.clone())
    })
    .await?;
    assert_eq!(refused.reason, "FieldsNotAllowed");
    for field in [
        "spec.image: image evil.example.com/miner:latest is not allowed",
        "spec.nodeSelector:",
        "spec.service.annotations: keys not allowed by the tenant policy: metallb.universe.tf/loadBalancerIPs",
        "spec.replicas: 11 proxy pods exceed the tenant policy's ceiling of 10",
    ] {
        assert!(
            refused.message.contains(field),
            "the condition should name {field:?}: {}",
            refused.message
        );
    }
    let events = Api::<Event>::namespaced(admin.clone(), tenant);
    eventually("a PolicyViolation Event on the instance", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("PolicyViolation")
                    && e.type_.as_deref() == Some("Warning")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("sneaky")
                    && e.note.as_deref().is_some_and(|n| n.contains("spec.image"))
            })
            .then_some(())
    })
    .await?;
    // Nothing of it exists: no fleet, no identity, no RBAC.
    let deployments = Api::<Deployment>::namespaced(admin.clone(), tenant);
    assert!(deployments.get_opt("portico-sneaky").await?.is_none());
    assert!(
        Api::<ServiceAccount>::namespaced(admin.clone(), tenant)
            .get_opt("portico-sneaky")
            .await?
            .is_none()
    );
    assert!(
        Api::<ClusterRole>::all(admin.clone())
            .get_opt(&format!("portico:{tenant}:sneaky"))
            .await?
            .is_none()
    );

    // Fixed: the condition clears and the fleet is deployed, with the operator's own image.
    let fixed = json!({ "spec": {
        "image": null, "nodeSelector": null, "replicas": 2,
        "service": { "type": "ClusterIP", "annotations": null },
    } });
    tenants
        .patch("sneaky", &PatchParams::default(), &Patch::Merge(&fixed))
        .await?;
    eventually("PolicyViolation=False once fixed", || async {
        let ic = tenants.get_opt("sneaky").await.ok()??;
        let c = condition(&ic, "PolicyViolation")?;
        (c.status == "False" && c.reason == "WithinPolicy").then_some(())
    })
    .await?;
    let deployment = eventually("the fixed instance's fleet", || async {
        deployments.get_opt("portico-sneaky").await.ok()?
    })
    .await?;
    let image = deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.containers.first().and_then(|c| c.image.clone()));
    assert_eq!(image.as_deref(), Some(OWN_IMAGE));
    Ok(())
}
