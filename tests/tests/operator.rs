//! Tier 2: the operator against a real kube-apiserver (and the garbage collector).
//!
//! ```text
//!  control plane (shared per binary) ◀── portico-operator (real binary, one per binary,
//!        ▲                                --leader-election=false, --trusted-namespaces)
//!        └── each test: its own namespaces and IngressClass names, asserts through the API
//! ```
//!
//! Leader election and the missing-CRD startup error have their own control plane in
//! `operator_leader.rs`, since they need a cluster without a running operator.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::{Client, Resource, ResourceExt};
use portico_operator::api::IngressController;
use portico_tests::operator::Operator;
use portico_tests::process::Process;
use portico_tests::{ControlPlane, control_plane};
use serde_json::{Value, json};

/// Instances in this namespace may serve selected namespaces without their consent.
const TRUSTED_NS: &str = "portico-trusted";
const WAIT: Duration = Duration::from_secs(20);

static OPERATOR: OnceLock<Mutex<Process>> = OnceLock::new();
static STARTED: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();

/// The control plane with CRDs installed and one operator running against it.
async fn cluster() -> (&'static ControlPlane, Client) {
    let cp = control_plane().await;
    STARTED
        .get_or_init(|| async {
            let client = cp.client();
            portico_tests::install_crds(&client)
                .await
                .expect("install crds/");
            let ns = Namespace {
                metadata: kube::api::ObjectMeta {
                    name: Some(TRUSTED_NS.into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            match Api::<Namespace>::all(client)
                .create(&PostParams::default(), &ns)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => panic!("create {TRUSTED_NS}: {e}"),
            }
            let operator = Operator::start(
                cp,
                &[
                    format!("--trusted-namespaces={TRUSTED_NS}"),
                    "--proxy-image=portico-proxy:test".to_owned(),
                ],
            )
            .expect("start portico-operator");
            let process = operator.process;
            let log = process.log_path().to_path_buf();
            let _ = OPERATOR.set(Mutex::new(process));
            log
        })
        .await;
    (cp, cp.client())
}

fn operator_log_tail() -> String {
    let Some(path) = STARTED.get() else {
        return String::new();
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Polls `check` until it yields `Some`, for at most [`WAIT`]; a timeout panics with the
/// operator's log tail (or how it exited).
async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match portico_tests::poll_until(what, WAIT, check).await {
        Ok(value) => value,
        Err(e) => {
            if let Some(op) = OPERATOR.get()
                && let Ok(mut op) = op.lock()
                && let Err(exit) = op.check_running()
            {
                panic!("{e}; {exit}");
            }
            panic!("{e}; operator log tail:\n{}", operator_log_tail());
        }
    }
}

fn instances(client: &Client, ns: &str) -> Api<IngressController> {
    Api::namespaced(client.clone(), ns)
}

/// Waits until instance `ns/name`'s status counts `served` and `rejected` Ingresses.
async fn counted(client: &Client, ns: &str, name: &str, served: i32, rejected: i32) {
    let what = format!("{ns}/{name}: ingressesServed = {served}, ingressesRejected = {rejected}");
    eventually(&what, || async {
        let status = get_opt(&instances(client, ns), name).await?.status?;
        (status.ingresses_served == served && status.ingresses_rejected == rejected).then_some(())
    })
    .await;
}

/// Creates (or replaces the spec of) an instance from JSON.
async fn apply_instance(client: &Client, ns: &str, name: &str, spec: Value) -> IngressController {
    let body = json!({
        "apiVersion": "portico.dev/v1alpha1",
        "kind": "IngressController",
        "metadata": { "name": name, "namespace": ns },
        "spec": spec,
    });
    instances(client, ns)
        .patch(
            name,
            &PatchParams::apply("portico-tests").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap_or_else(|e| panic!("apply IngressController {ns}/{name}: {e}"))
}

async fn get_opt<K>(api: &Api<K>, name: &str) -> Option<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.expect("API get")
}

fn args_of(deployment: &Deployment) -> Vec<String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.args.clone())
        .unwrap_or_default()
}

fn condition(ic: &IngressController, type_: &str) -> Option<(String, String)> {
    ic.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn is_403<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(s)) if s.code == 403)
}

#[tokio::test]
async fn invalid_specs_are_refused_by_the_apiserver() {
    let (cp, client) = cluster().await;
    let ns = cp.new_namespace("invalid").await;
    let resource = ApiResource::erase::<IngressController>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
    let create = |name: &str, spec: Value| {
        let mut obj = DynamicObject::new(name, &resource);
        obj.data = json!({ "spec": spec });
        let api = api.clone();
        async move { api.create(&PostParams::default(), &obj).await }
    };

    let cases = [
        ("negative-replicas", json!({ "replicas": -1 }), "replicas"),
        (
            "unknown-service-type",
            json!({ "service": { "type": "Magic" } }),
            "Unsupported value",
        ),
        (
            "port-out-of-range",
            json!({ "ports": { "http": 70000 } }),
            "ports.http",
        ),
        (
            "same-ports",
            json!({ "ports": { "http": 8080, "https": 8080 } }),
            "must all differ",
        ),
        (
            "hash-without-key",
            json!({ "loadBalancing": { "algorithm": "ConsistentHash" } }),
            "needs loadBalancing.hashOn",
        ),
        (
            "header-without-name",
            json!({ "loadBalancing": { "algorithm": "ConsistentHash", "hashOn": "Header" } }),
            "needs loadBalancing.headerName",
        ),
        (
            "bad-algorithm",
            json!({ "loadBalancing": { "algorithm": "Random" } }),
            "Unsupported value",
        ),
        (
            "autoscaling-min-over-max",
            json!({ "autoscaling": { "minReplicas": 5, "maxReplicas": 2 } }),
            "must not exceed",
        ),
        (
            "replicas-and-autoscaling",
            json!({ "replicas": 2, "autoscaling": { "maxReplicas": 4 } }),
            "not both",
        ),
        (
            "bad-duration",
            json!({ "timeouts": { "connect": "5 seconds" } }),
            "timeouts.connect",
        ),
        (
            "bad-tls-version",
            json!({ "tls": { "minVersion": "1.1" } }),
            "Unsupported value",
        ),
        (
            "node-ports-on-cluster-ip",
            json!({ "service": { "type": "ClusterIP", "nodePorts": { "http": 30080 } } }),
            "nodePorts",
        ),
        (
            "both-disruption-fields",
            json!({ "disruption": { "minAvailable": 1, "maxUnavailable": 1 } }),
            "not both",
        ),
        (
            "bad-class-name",
            json!({ "ingressClassName": "Not_A_Name" }),
            "ingressClassName",
        ),
        (
            "bad-cidr",
            json!({ "trustedProxyCIDRs": ["10.0.0.0/33"] }),
            "must be CIDRs",
        ),
    ];
    for (name, spec, hint) in cases {
        match create(name, spec.clone()).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{name}: {spec} refused with {status:?}");
                assert!(
                    status.message.contains(hint),
                    "{name}: message {:?} should mention {hint:?}",
                    status.message
                );
            }
            other => panic!("{name}: {spec} should be refused by the apiserver, got {other:?}"),
        }
    }

    // The full example of the golden tests is valid.
    let full = json!({
        "ingressClassName": format!("{ns}-full"),
        "namespaceSelector": { "matchLabels": { "portico.dev/tenant": "true" } },
        "service": { "type": "NodePort", "externalTrafficPolicy": "Local", "nodePorts": { "http": 30080, "https": 30443 } },
        "ports": { "http": 8080, "https": 8443, "admin": 9901 },
        "loadBalancing": { "algorithm": "ConsistentHash", "hashOn": "Header", "headerName": "X-User" },
        "tls": { "defaultCertificateSecret": "wildcard-cert", "redirect": false, "hsts": true, "minVersion": "1.3" },
        "timeouts": { "connect": "250ms", "request": "1h30m", "idle": "90s" },
        "trustedProxyCIDRs": ["10.0.0.0/8", "fd00::/8"],
        "retries": 1,
        "autoscaling": { "minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 70 },
        "disruption": { "minAvailable": "50%" },
    });
    let created = create("full", full)
        .await
        .expect("a valid spec is accepted");
    // Defaults come from the schema.
    assert_eq!(created.data["spec"]["ports"]["admin"], 9901);
    instances(&client, &ns)
        .delete("full", &DeleteParams::default())
        .await
        .expect("delete");
    let defaulted = create("ports-default", json!({ "ports": { "http": 8080 } }))
        .await
        .expect("valid");
    assert_eq!(
        defaulted.data["spec"]["ports"],
        json!({ "http": 8080, "https": 443, "admin": 9090 })
    );
    instances(&client, &ns)
        .delete("ports-default", &DeleteParams::default())
        .await
        .expect("delete");
}

#[tokio::test]
async fn instance_children_follow_spec_are_repaired_and_removed_with_it() {
    let (cp, client) = cluster().await;
    let ns = cp.new_namespace("life").await;
    let other = cp.new_namespace("life-other").await;
    // `other` is selected and consents, so a Role and RoleBinding live outside `ns`.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for n in [&ns, &other] {
        let patch = json!({ "metadata": { "labels": { "portico-test": &ns } } });
        namespaces
            .patch(n, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("label namespace");
    }
    let consent = json!({ "metadata": { "annotations": { "portico.dev/allowed-ingress-controllers": format!("{ns}/web") } } });
    namespaces
        .patch(&other, &PatchParams::default(), &Patch::Merge(&consent))
        .await
        .expect("consent");

    let class = format!("{ns}-class");
    let spec = json!({ "ingressClassName": class, "namespaceSelector": { "matchLabels": { "portico-test": &ns } } });
    let instance = apply_instance(&client, &ns, "web", spec).await;
    let uid = instance.uid().expect("uid");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
    let classes: Api<IngressClass> = Api::all(client.clone());
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    let cluster_bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let roles_other: Api<Role> = Api::namespaced(client.clone(), &other);
    let bindings_other: Api<RoleBinding> = Api::namespaced(client.clone(), &other);
    let rbac_name = format!("portico:{ns}:web");

    let deployment = eventually("the Deployment", || async {
        get_opt(&deployments, "portico-web").await
    })
    .await;
    let args = args_of(&deployment);
    assert!(
        args.contains(&format!("--ingress-class={class}")),
        "{args:?}"
    );
    let mut served = [ns.clone(), other.clone()];
    served.sort();
    assert!(
        args.contains(&format!("--namespaces={}", served.join(","))),
        "{args:?}"
    );
    assert_eq!(deployment.spec.as_ref().and_then(|s| s.replicas), Some(2));
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some("portico-web"));
    let owner = deployment
        .owner_references()
        .first()
        .cloned()
        .expect("owner reference");
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("IngressController", uid.as_str(), Some(true))
    );

    let service = eventually("the Service", || async {
        get_opt(&services, "portico-web").await
    })
    .await;
    assert_eq!(
        service.spec.as_ref().and_then(|s| s.type_.as_deref()),
        Some("LoadBalancer")
    );
    eventually("the ServiceAccount", || async {
        get_opt(&accounts, "portico-web").await
    })
    .await;
    eventually("the PodDisruptionBudget", || async {
        get_opt(&pdbs, "portico-web").await
    })
    .await;
    let ingress_class = eventually("the IngressClass", || async {
        get_opt(&classes, &class).await
    })
    .await;
    let params = ingress_class
        .spec
        .as_ref()
        .and_then(|s| s.parameters.clone())
        .expect("parameters");
    assert_eq!(
        (params.namespace.as_deref(), params.name.as_str()),
        (Some(ns.as_str()), "web")
    );
    assert_eq!(
        ingress_class
            .spec
            .as_ref()
            .and_then(|s| s.controller.as_deref()),
        Some("portico.dev/ingress-controller")
    );
    eventually("the ClusterRole", || async {
        get_opt(&cluster_roles, &rbac_name).await
    })
    .await;
    eventually("the ClusterRoleBinding", || async {
        get_opt(&cluster_bindings, &rbac_name).await
    })
    .await;
    eventually("the Role in the consenting namespace", || async {
        get_opt(&roles_other, &rbac_name).await
    })
    .await;
    eventually("the RoleBinding in the consenting namespace", || async {
        get_opt(&bindings_other, &rbac_name).await
    })
    .await;
    assert!(
        get_opt(&hpas, "portico-web").await.is_none(),
        "no HPA without autoscaling"
    );

    // Changing the spec updates the children.
    let spec = json!({
        "ingressClassName": class,
        "namespaceSelector": { "matchLabels": { "portico-test": &ns } },
        "replicas": 3,
        "ports": { "http": 8080 },
        "service": { "type": "ClusterIP" },
    });
    apply_instance(&client, &ns, "web", spec).await;
    eventually("replicas 3 and --http-port=8080", || async {
        let d = get_opt(&deployments, "portico-web").await?;
        (d.spec.as_ref()?.replicas == Some(3)
            && args_of(&d).contains(&"--http-port=8080".to_owned()))
        .then_some(())
    })
    .await;
    eventually("a ClusterIP Service on port 8080", || async {
        let s = get_opt(&services, "portico-web").await?;
        let spec = s.spec?;
        (spec.type_.as_deref() == Some("ClusterIP") && spec.ports?.iter().any(|p| p.port == 8080))
            .then_some(())
    })
    .await;
    let spec = json!({
        "ingressClassName": class,
        "namespaceSelector": { "matchLabels": { "portico-test": &ns } },
        "autoscaling": { "minReplicas": 2, "maxReplicas": 5 },
    });
    apply_instance(&client, &ns, "web", spec.clone()).await;
    let hpa = eventually("the HPA", || async { get_opt(&hpas, "portico-web").await }).await;
    assert_eq!(hpa.spec.as_ref().map(|s| s.max_replicas), Some(5));

    // Deleting a child or editing it by hand is repaired.
    services
        .delete("portico-web", &DeleteParams::default())
        .await
        .expect("delete Service");
    eventually("the Service to come back", || async {
        get_opt(&services, "portico-web")
            .await
            .filter(|s| s.metadata.deletion_timestamp.is_none())
    })
    .await;
    let tamper = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": { "name": rbac_name, "namespace": other },
        "rules": [{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "create"] }],
    });
    roles_other
        .patch(
            &rbac_name,
            &PatchParams::apply("intruder").force(),
            &Patch::Apply(&tamper),
        )
        .await
        .expect("tamper with the Role");
    eventually("the Role to be repaired", || async {
        let role = get_opt(&roles_other, &rbac_name).await?;
        let rules = role.rules.unwrap_or_default();
        let clean = rules.iter().all(|r| !r.verbs.iter().any(|v| v == "create"))
            && !rules
                .iter()
                .any(|r| r.resources.iter().flatten().any(|res| res == "secrets"));
        clean.then_some(())
    })
    .await;
    let tamper = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "proxy", "image": "evil:latest" }] } } } });
    deployments
        .patch(
            "portico-web",
            &PatchParams::default(),
            &Patch::Strategic(&tamper),
        )
        .await
        .expect("tamper with the Deployment");
    eventually("the Deployment image to be repaired", || async {
        let d = get_opt(&deployments, "portico-web").await?;
        let image = d.spec?.template.spec?.containers.first()?.image.clone()?;
        (image == "portico-proxy:test").then_some(())
    })
    .await;

    // Deleting the instance removes everything, in every namespace and cluster-wide.
    instances(&client, &ns)
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete instance");
    eventually("everything to be gone", || async {
        let gone = get_opt(&instances(&client, &ns), "web").await.is_none()
            && get_opt(&classes, &class).await.is_none()
            && get_opt(&cluster_roles, &rbac_name).await.is_none()
            && get_opt(&cluster_bindings, &rbac_name).await.is_none()
            && get_opt(&roles_other, &rbac_name).await.is_none()
            && get_opt(&bindings_other, &rbac_name).await.is_none()
            && get_opt(&deployments, "portico-web").await.is_none()
            && get_opt(&services, "portico-web").await.is_none()
            && get_opt(&accounts, "portico-web").await.is_none()
            && get_opt(&pdbs, "portico-web").await.is_none()
            && get_opt(&hpas, "portico-web").await.is_none();
        gone.then_some(())
    })
    .await;
}

#[tokio::test]
async fn tenants_are_isolated_and_a_taken_class_is_a_conflict() {
    let (cp, client) = cluster().await;
    let ns_a = cp.new_namespace("tenant-a").await;
    let ns_b = cp.new_namespace("tenant-b").await;
    let class_a = format!("{ns_a}-class");
    let class_b = format!("{ns_b}-class");
    apply_instance(
        &client,
        &ns_a,
        "web",
        json!({ "ingressClassName": class_a }),
    )
    .await;
    apply_instance(
        &client,
        &ns_b,
        "web",
        json!({ "ingressClassName": class_b }),
    )
    .await;

    let deployments_a: Api<Deployment> = Api::namespaced(client.clone(), &ns_a);
    let deployments_b: Api<Deployment> = Api::namespaced(client.clone(), &ns_b);
    let da = eventually("fleet A", || async {
        get_opt(&deployments_a, "portico-web").await
    })
    .await;
    let db = eventually("fleet B", || async {
        get_opt(&deployments_b, "portico-web").await
    })
    .await;
    assert!(args_of(&da).contains(&format!("--ingress-class={class_a}")));
    assert!(args_of(&db).contains(&format!("--ingress-class={class_b}")));
    assert!(
        args_of(&da).contains(&format!("--namespaces={ns_a}")),
        "A serves only its namespace: {:?}",
        args_of(&da)
    );

    // A Secret referenced by an Ingress of class A, and one that is not.
    let secrets_a: Api<Secret> = Api::namespaced(client.clone(), &ns_a);
    for name in ["a-tls", "a-private"] {
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            string_data: Some(BTreeMap::from([("k".to_owned(), "v".to_owned())])),
            ..Default::default()
        };
        secrets_a
            .create(&PostParams::default(), &secret)
            .await
            .expect("create secret");
    }
    let secrets_b: Api<Secret> = Api::namespaced(client.clone(), &ns_b);
    let secret_b = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("b-tls".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    secrets_b
        .create(&PostParams::default(), &secret_b)
        .await
        .expect("create secret");
    let ingress = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": { "name": "site", "namespace": ns_a },
        "spec": {
            "ingressClassName": class_a,
            "tls": [{ "hosts": ["a.example.com"], "secretName": "a-tls" }],
            "defaultBackend": { "service": { "name": "site", "port": { "number": 80 } } },
        },
    });
    Api::<Ingress>::namespaced(client.clone(), &ns_a)
        .patch(
            "site",
            &PatchParams::apply("portico-tests"),
            &Patch::Apply(&ingress),
        )
        .await
        .expect("create Ingress");
    let roles_a: Api<Role> = Api::namespaced(client.clone(), &ns_a);
    let role_name = format!("portico:{ns_a}:web");
    eventually(
        "the Role to allow exactly the referenced Secret",
        || async {
            let role = get_opt(&roles_a, &role_name).await?;
            role.rules?
                .iter()
                .any(|r| {
                    r.resources.iter().flatten().any(|res| res == "secrets")
                        && r.resource_names.as_deref() == Some(&["a-tls".to_owned()][..])
                })
                .then_some(())
        },
    )
    .await;

    // Tenant A's proxy, with its real ServiceAccount token.
    let token = cp
        .service_account_token(&ns_a, "portico-web")
        .await
        .expect("token of A's proxy");
    let proxy = cp.client_with_token(&token);
    eventually(
        "A's proxy may list Ingresses, Services and EndpointSlices in A",
        || async {
            let ok = Api::<Ingress>::namespaced(proxy.clone(), &ns_a)
                .list(&ListParams::default())
                .await
                .is_ok()
                && Api::<Service>::namespaced(proxy.clone(), &ns_a)
                    .list(&ListParams::default())
                    .await
                    .is_ok()
                && Api::<EndpointSlice>::namespaced(proxy.clone(), &ns_a)
                    .list(&ListParams::default())
                    .await
                    .is_ok()
                && Api::<IngressClass>::all(proxy.clone())
                    .get(&class_a)
                    .await
                    .is_ok()
                && Api::<Secret>::namespaced(proxy.clone(), &ns_a)
                    .get("a-tls")
                    .await
                    .is_ok();
            ok.then_some(())
        },
    )
    .await;
    assert!(
        is_403(
            Api::<Secret>::namespaced(proxy.clone(), &ns_a)
                .get("a-private")
                .await
        ),
        "unreferenced Secret in A"
    );
    assert!(
        is_403(
            Api::<Secret>::namespaced(proxy.clone(), &ns_a)
                .list(&ListParams::default())
                .await
        ),
        "listing all Secrets in A"
    );
    assert!(
        is_403(
            Api::<Secret>::namespaced(proxy.clone(), &ns_b)
                .get("b-tls")
                .await
        ),
        "Secret in B"
    );
    assert!(
        is_403(
            Api::<Ingress>::namespaced(proxy.clone(), &ns_b)
                .list(&ListParams::default())
                .await
        ),
        "Ingresses in B"
    );
    assert!(
        is_403(
            Api::<EndpointSlice>::namespaced(proxy.clone(), &ns_b)
                .list(&ListParams::default())
                .await
        ),
        "EndpointSlices in B"
    );
    assert!(
        is_403(Api::<IngressClass>::all(proxy.clone()).get(&class_b).await),
        "B's IngressClass"
    );
    assert!(
        is_403(
            Api::<IngressClass>::all(proxy.clone())
                .list(&ListParams::default())
                .await
        ),
        "all IngressClasses"
    );
    let write = json!({ "metadata": { "labels": { "x": "y" } } });
    assert!(
        is_403(
            Api::<Ingress>::namespaced(proxy.clone(), &ns_a)
                .patch("site", &PatchParams::default(), &Patch::Merge(&write))
                .await
        ),
        "the proxy cannot write"
    );

    // A second instance (in B) claiming A's class gets ClassConflict and deploys nothing.
    apply_instance(
        &client,
        &ns_b,
        "thief",
        json!({ "ingressClassName": class_a }),
    )
    .await;
    let conflict = eventually("ClassConflict on the thief", || async {
        let ic = get_opt(&instances(&client, &ns_b), "thief").await?;
        condition(&ic, "ClassConflict")
            .filter(|(s, _)| s == "True")
            .map(|_| ic)
    })
    .await;
    assert_eq!(
        condition(&conflict, "Ready").map(|c| c.0).as_deref(),
        Some("False")
    );
    let class = Api::<IngressClass>::all(client.clone())
        .get(&class_a)
        .await
        .expect("class A");
    let params = class.spec.and_then(|s| s.parameters).expect("parameters");
    assert_eq!(
        (params.namespace.as_deref(), params.name.as_str()),
        (Some(ns_a.as_str()), "web"),
        "A keeps its class"
    );
    assert!(
        get_opt(&deployments_b, "portico-thief").await.is_none(),
        "the thief deploys nothing"
    );
    assert!(
        get_opt(
            &Api::<ClusterRole>::all(client.clone()),
            &format!("portico:{ns_b}:thief")
        )
        .await
        .is_none(),
        "the thief gets no RBAC"
    );

    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns_b);
    eventually("a ClassConflict Event on the thief", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("ClassConflict")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("thief")
            })
            .then_some(())
    })
    .await;

    // Deleting the thief leaves A's class alone.
    instances(&client, &ns_b)
        .delete("thief", &DeleteParams::default())
        .await
        .expect("delete thief");
    eventually("the thief to be gone", || async {
        get_opt(&instances(&client, &ns_b), "thief")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        get_opt(&Api::<IngressClass>::all(client.clone()), &class_a)
            .await
            .is_some(),
        "A's class survives"
    );
}

#[tokio::test]
async fn consent_and_trust_decide_served_namespaces() {
    let (cp, client) = cluster().await;
    let home = cp.new_namespace("home").await;
    let guest = cp.new_namespace("guest").await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let label = json!({ "metadata": { "labels": { "portico-test": &home } } });
    for n in [&home, &guest] {
        namespaces
            .patch(n, &PatchParams::default(), &Patch::Merge(&label))
            .await
            .expect("label");
    }
    let selector = json!({ "matchLabels": { "portico-test": &home } });
    apply_instance(
        &client,
        &home,
        "web",
        json!({ "ingressClassName": format!("{home}-class"), "namespaceSelector": selector }),
    )
    .await;
    let rbac_name = format!("portico:{home}:web");
    let roles_guest: Api<Role> = Api::namespaced(client.clone(), &guest);
    let bindings_guest: Api<RoleBinding> = Api::namespaced(client.clone(), &guest);

    // Selected but not consenting: not served.
    eventually("served namespaces = [home]", || async {
        let ic = get_opt(&instances(&client, &home), "web").await?;
        (ic.status?.served_namespaces == vec![home.clone()]).then_some(())
    })
    .await;
    assert!(
        get_opt(&roles_guest, &rbac_name).await.is_none(),
        "no Role without consent"
    );

    // Consent: served, with RBAC and the proxy's --namespaces.
    let consent = json!({ "metadata": { "annotations": { "portico.dev/allowed-ingress-controllers": format!("other/x,{home}/web") } } });
    namespaces
        .patch(&guest, &PatchParams::default(), &Patch::Merge(&consent))
        .await
        .expect("consent");
    eventually(
        "a Role and RoleBinding in the consenting namespace",
        || async {
            get_opt(&roles_guest, &rbac_name).await?;
            get_opt(&bindings_guest, &rbac_name).await
        },
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &home);
    let mut both = [home.clone(), guest.clone()];
    both.sort();
    eventually("--namespaces to include the guest", || async {
        let d = get_opt(&deployments, "portico-web").await?;
        args_of(&d)
            .contains(&format!("--namespaces={}", both.join(",")))
            .then_some(())
    })
    .await;

    // An Ingress of the class in the guest is served and gets the address.
    portico_tests::fixtures::apply_service(&client, &guest, "site", "http", 80, 8080)
        .await
        .expect("Service");
    let guest_ingresses: Api<Ingress> = Api::namespaced(client.clone(), &guest);
    let ingress = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": { "name": "guest-site", "namespace": guest },
        // A host rule: a guest namespace's defaultBackend would be a catch-all, which only
        // the instance's own namespace may hold.
        "spec": { "ingressClassName": format!("{home}-class"),
                  "rules": [{ "host": "guest.example.com", "http": { "paths": [
                      { "path": "/", "pathType": "Prefix", "backend": { "service": { "name": "site", "port": { "number": 80 } } } }] } }] },
    });
    guest_ingresses
        .patch(
            "guest-site",
            &PatchParams::apply("portico-tests"),
            &Patch::Apply(&ingress),
        )
        .await
        .expect("Ingress");
    let has_address = |i: &Ingress| {
        i.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .is_some_and(|l| !l.is_empty())
    };
    eventually("the guest's Ingress to get the address", || async {
        get_opt(&guest_ingresses, "guest-site")
            .await
            .filter(has_address)
    })
    .await;

    // Withdrawn: the RBAC disappears, and the Ingress no longer advertises the address.
    let withdraw = json!({ "metadata": { "annotations": { "portico.dev/allowed-ingress-controllers": null } } });
    namespaces
        .patch(&guest, &PatchParams::default(), &Patch::Merge(&withdraw))
        .await
        .expect("withdraw");
    eventually("the guest's Role and RoleBinding to go", || async {
        (get_opt(&roles_guest, &rbac_name).await.is_none()
            && get_opt(&bindings_guest, &rbac_name).await.is_none())
        .then_some(())
    })
    .await;
    eventually("the rejected Ingress to lose the address", || async {
        get_opt(&guest_ingresses, "guest-site")
            .await
            .filter(|i| !has_address(i))
    })
    .await;
    eventually("ingressesRejected = 1", || async {
        (get_opt(&instances(&client, &home), "web")
            .await?
            .status?
            .ingresses_rejected
            == 1)
            .then_some(())
    })
    .await;
    eventually("--namespaces back to home only", || async {
        let d = get_opt(&deployments, "portico-web").await?;
        args_of(&d)
            .contains(&format!("--namespaces={home}"))
            .then_some(())
    })
    .await;

    // A label change follows too: a trusted instance serves what its selector matches,
    // without consent, and stops when the label goes.
    let trusted_class = format!("{home}-trusted");
    let trusted_selector = json!({ "matchLabels": { "portico-trusted-test": &home } });
    apply_instance(
        &client,
        TRUSTED_NS,
        &home,
        json!({ "ingressClassName": trusted_class, "namespaceSelector": trusted_selector }),
    )
    .await;
    let trusted_rbac = format!("portico:{TRUSTED_NS}:{home}");
    let label = json!({ "metadata": { "labels": { "portico-trusted-test": &home } } });
    namespaces
        .patch(&guest, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .expect("label guest");
    eventually("the trusted instance's Role in the guest", || async {
        get_opt(&roles_guest, &trusted_rbac).await
    })
    .await;
    let unlabel = json!({ "metadata": { "labels": { "portico-trusted-test": null } } });
    namespaces
        .patch(&guest, &PatchParams::default(), &Patch::Merge(&unlabel))
        .await
        .expect("unlabel guest");
    eventually(
        "the trusted instance's Role to go with the label",
        || async {
            get_opt(&roles_guest, &trusted_rbac)
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    instances(&client, TRUSTED_NS)
        .delete(&home, &DeleteParams::default())
        .await
        .expect("delete trusted instance");
}

#[tokio::test]
async fn status_follows_the_deployment_and_is_published_on_ingresses() {
    let (cp, client) = cluster().await;
    let ns = cp.new_namespace("status").await;
    let class = format!("{ns}-class");
    let instance = apply_instance(
        &client,
        &ns,
        "web",
        json!({ "ingressClassName": class, "service": { "type": "ClusterIP" } }),
    )
    .await;
    let generation = instance.metadata.generation;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let deployment = eventually("the Deployment", || async {
        get_opt(&deployments, "portico-web").await
    })
    .await;
    let service = eventually("the Service with a cluster IP", || async {
        Api::<Service>::namespaced(client.clone(), &ns)
            .get_opt("portico-web")
            .await
            .ok()?
            .filter(|s| {
                s.spec
                    .as_ref()
                    .and_then(|s| s.cluster_ip.as_deref())
                    .is_some_and(|ip| !ip.is_empty())
            })
    })
    .await;
    let cluster_ip = service.spec.and_then(|s| s.cluster_ip).expect("cluster IP");

    let ic = eventually("Ready=False with no pods, and the address", || async {
        let ic = get_opt(&instances(&client, &ns), "web").await?;
        let status = ic.status.clone()?;
        (condition(&ic, "Ready")?.0 == "False" && status.addresses.first()?.value == cluster_ip)
            .then_some(ic)
    })
    .await;
    let status = ic.status.clone().expect("status");
    assert_eq!(status.ingress_class_name.as_deref(), Some(class.as_str()));
    assert_eq!(status.ready_replicas, 0);
    assert!(
        status
            .conditions
            .iter()
            .all(|c| c.observed_generation == generation),
        "{:?}",
        status.conditions
    );
    assert_eq!(
        condition(&ic, "ClassConflict").map(|c| c.0).as_deref(),
        Some("False")
    );

    // The cluster reports the pods available, as the deployment controller would.
    let deployment_generation = deployment.metadata.generation;
    let reported = json!({ "status": {
        "observedGeneration": deployment_generation, "replicas": 2, "updatedReplicas": 2,
        "readyReplicas": 2, "availableReplicas": 2,
    }});
    deployments
        .patch_status(
            "portico-web",
            &PatchParams::default(),
            &Patch::Merge(&reported),
        )
        .await
        .expect("set Deployment status");
    eventually("Ready=True with 2 ready replicas", || async {
        let ic = get_opt(&instances(&client, &ns), "web").await?;
        (condition(&ic, "Ready")?.0 == "True" && ic.status?.ready_replicas == 2).then_some(())
    })
    .await;
    let lost = json!({ "status": { "readyReplicas": 1, "availableReplicas": 1 } });
    deployments
        .patch_status("portico-web", &PatchParams::default(), &Patch::Merge(&lost))
        .await
        .expect("lose a pod");
    eventually(
        "Ready=False and Degraded=True with one pod gone",
        || async {
            let ic = get_opt(&instances(&client, &ns), "web").await?;
            (condition(&ic, "Ready")?.0 == "False" && condition(&ic, "Degraded")?.0 == "True")
                .then_some(())
        },
    )
    .await;

    // Ingresses of the class (by field or legacy annotation) get the address; others do not.
    portico_tests::fixtures::apply_service(&client, &ns, "site", "http", 80, 8080)
        .await
        .expect("Service");
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    let make = |name: &str, class_field: Option<&str>, annotation: Option<&str>| {
        let mut metadata = json!({ "name": name, "namespace": ns });
        if let Some(a) = annotation {
            metadata["annotations"] = json!({ "kubernetes.io/ingress.class": a });
        }
        // One host each: a class has one defaultBackend, so only the oldest of several
        // Ingresses with nothing else would be served.
        let mut spec = json!({ "rules": [{ "host": format!("{name}.example.com"), "http": { "paths": [
            { "path": "/", "pathType": "Prefix", "backend": { "service": { "name": "site", "port": { "number": 80 } } } }
        ] } }] });
        if let Some(c) = class_field {
            spec["ingressClassName"] = json!(c);
        }
        json!({ "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": metadata, "spec": spec })
    };
    for (name, body) in [
        ("ours", make("ours", Some(&class), None)),
        ("legacy", make("legacy", None, Some(&class))),
        ("theirs", make("theirs", Some("someone-else"), None)),
        ("classless", make("classless", None, None)),
    ] {
        ingresses
            .patch(
                name,
                &PatchParams::apply("portico-tests"),
                &Patch::Apply(&body),
            )
            .await
            .expect("create Ingress");
    }
    for name in ["ours", "legacy"] {
        eventually(&format!("Ingress {name} to carry the address"), || async {
            let ingress = get_opt(&ingresses, name).await?;
            let ip = ingress
                .status?
                .load_balancer?
                .ingress?
                .first()?
                .ip
                .clone()?;
            (ip == cluster_ip).then_some(())
        })
        .await;
    }
    eventually("ingressesServed = 2", || async {
        (get_opt(&instances(&client, &ns), "web")
            .await?
            .status?
            .ingresses_served
            == 2)
            .then_some(())
    })
    .await;
    for name in ["theirs", "classless"] {
        let ingress = ingresses.get(name).await.expect("get Ingress");
        let lb = ingress
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .unwrap_or_default();
        assert!(
            lb.is_empty(),
            "Ingress {name} of another class was touched: {lb:?}"
        );
    }
}

#[tokio::test]
async fn a_spec_the_operator_cannot_use_is_a_condition_and_an_event() {
    let (cp, client) = cluster().await;
    let ns = cp.new_namespace("permanent").await;
    // Valid for the schema, but not a label selector the operator can evaluate.
    let selector = json!({ "matchExpressions": [{ "key": "team", "operator": "Resembles", "values": ["a"] }] });
    apply_instance(
        &client,
        &ns,
        "web",
        json!({ "ingressClassName": format!("{ns}-class"), "namespaceSelector": selector }),
    )
    .await;
    let ic = eventually("Degraded=True, reason ReconcileFailed", || async {
        let ic = get_opt(&instances(&client, &ns), "web").await?;
        (condition(&ic, "Degraded")? == ("True".to_owned(), "ReconcileFailed".to_owned()))
            .then_some(ic)
    })
    .await;
    let message = ic
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Degraded"))
        .map(|c| c.message.clone());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("namespaceSelector")),
        "{message:?}"
    );
    assert_eq!(
        condition(&ic, "Ready").map(|c| c.0).as_deref(),
        Some("False")
    );
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    eventually("a ReconcileFailed Event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("ReconcileFailed"))
            .then_some(())
    })
    .await;

    // Fixing the spec recovers.
    let fixed =
        json!({ "matchExpressions": [{ "key": "team", "operator": "In", "values": ["a"] }] });
    apply_instance(
        &client,
        &ns,
        "web",
        json!({ "ingressClassName": format!("{ns}-class"), "namespaceSelector": fixed }),
    )
    .await;
    eventually("Degraded=False after the fix", || async {
        let ic = get_opt(&instances(&client, &ns), "web").await?;
        (condition(&ic, "Degraded")?.0 == "False").then_some(())
    })
    .await;
}

/// Warning Events (events.k8s.io/v1) about `name` in `ns` with `reason`.
async fn events_on(
    client: &Client,
    ns: &str,
    name: &str,
    reason: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let list = events
        .list(&ListParams::default())
        .await
        .expect("list Events");
    list.items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some("Ingress") && r.name.as_deref() == Some(name)
                })
        })
        .collect()
}

#[tokio::test]
async fn ingresses_the_proxy_would_skip_get_an_event_and_are_counted_as_rejected() {
    let (cp, client) = cluster().await;
    let home = cp.new_namespace("verdict").await;
    let guest = cp.new_namespace("verdict-guest").await;
    let class = format!("{home}-class");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let label = json!({ "metadata": { "labels": { "portico-verdict-test": &home } } });
    for n in [&home, &guest] {
        namespaces
            .patch(n, &PatchParams::default(), &Patch::Merge(&label))
            .await
            .expect("label");
    }
    let consent = json!({ "metadata": { "annotations": { "portico.dev/allowed-ingress-controllers": format!("{home}/web") } } });
    namespaces
        .patch(&guest, &PatchParams::default(), &Patch::Merge(&consent))
        .await
        .expect("consent");
    apply_instance(
        &client,
        &home,
        "web",
        json!({
            "ingressClassName": class,
            "service": { "type": "ClusterIP" },
            "namespaceSelector": { "matchLabels": { "portico-verdict-test": &home } },
        }),
    )
    .await;
    for ns in [&home, &guest] {
        portico_tests::fixtures::apply_service(&client, ns, "site", "http", 80, 8080)
            .await
            .expect("Service");
    }
    let site = |ns: &str, name: &str, host: &str, path: &str, kind: &str, service: &str| {
        portico_tests::fixtures::ingress(ns, name, &class, host, &[(path, kind, service, "http")])
    };
    let apply = |body: Value| {
        let client = client.clone();
        async move {
            portico_tests::fixtures::apply_ingress(&client, body)
                .await
                .expect("apply Ingress")
        }
    };
    apply(site(
        &home,
        "good",
        "shop.example.com",
        "/",
        "Prefix",
        "site",
    ))
    .await;
    apply(site(
        &home,
        "regex",
        "api.example.com",
        "/api/(.*)",
        "ImplementationSpecific",
        "site",
    ))
    .await;
    apply(site(
        &home,
        "missing",
        "m.example.com",
        "/",
        "Prefix",
        "nope",
    ))
    .await;
    // creationTimestamp has one-second resolution: make "good" the older one for sure.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    apply(site(
        &guest,
        "newer",
        "shop.example.com",
        "/",
        "Prefix",
        "site",
    ))
    .await;

    let home_ingresses: Api<Ingress> = Api::namespaced(client.clone(), &home);
    let guest_ingresses: Api<Ingress> = Api::namespaced(client.clone(), &guest);
    let has_address = |i: &Ingress| {
        i.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .is_some_and(|l| !l.is_empty())
    };

    // The status counts what the proxies will do: one served, three not.
    counted(&client, &home, "web", 1, 3).await;
    eventually("the valid Ingress to get the address", || async {
        get_opt(&home_ingresses, "good").await.filter(has_address)
    })
    .await;

    // One Warning Event per problem, on the Ingress itself, saying what to fix.
    let regex = eventually("an IngressRejected Event on the regex Ingress", || async {
        let events = events_on(&client, &home, "regex", "IngressRejected").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    let note = regex[0].note.clone().unwrap_or_default();
    assert!(
        note.contains("/api/(.*)") && note.contains("regular expressions are not supported"),
        "{note}"
    );
    let missing = eventually(
        "an IngressRejected Event on the missing-Service Ingress",
        || async {
            let events = events_on(&client, &home, "missing", "IngressRejected").await;
            (!events.is_empty()).then_some(events)
        },
    )
    .await;
    let note = missing[0].note.clone().unwrap_or_default();
    assert!(
        note.contains(&format!("Service {home}/nope not found")),
        "{note}"
    );
    // Another namespace's Ingress for the same host: the host belongs to the older one's
    // namespace.
    let conflict = eventually("a HostNotOwned Event on the newer Ingress", || async {
        let events = events_on(&client, &guest, "newer", "HostNotOwned").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    let note = conflict[0].note.clone().unwrap_or_default();
    assert!(
        note.contains("shop.example.com")
            && note.contains(&format!("its oldest Ingress is {home}/good")),
        "{note}"
    );
    assert!(
        events_on(&client, &home, "good", "IngressConflict")
            .await
            .is_empty(),
        "the older Ingress is not the one in conflict"
    );
    for (api, name) in [
        (&home_ingresses, "regex"),
        (&home_ingresses, "missing"),
        (&guest_ingresses, "newer"),
    ] {
        let ingress = api.get(name).await.expect("get Ingress");
        assert!(!has_address(&ingress), "{name} advertises an address");
    }

    // Further reconciles (an Ingress changed) publish nothing again.
    let touch = json!({ "metadata": { "annotations": { "portico-test/touched": "1" } } });
    home_ingresses
        .patch("good", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .expect("touch");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = events_on(&client, &home, "regex", "IngressRejected").await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(
        again[0].series.is_none(),
        "the Event was published again: {:?}",
        again[0].series
    );

    // Creating the missing Service heals that Ingress (the operator watches Services).
    portico_tests::fixtures::apply_service(&client, &home, "nope", "http", 80, 8080)
        .await
        .expect("Service");
    eventually("the healed Ingress to get the address", || async {
        get_opt(&home_ingresses, "missing")
            .await
            .filter(has_address)
    })
    .await;
    counted(&client, &home, "web", 2, 2).await;
    assert!(
        get_opt(&home_ingresses, "good")
            .await
            .is_some_and(|i| has_address(&i)),
        "the older Ingress keeps serving"
    );

    // The older Ingress moves to another class: the host is free in this one, and the
    // newer Ingress is served. Only the Ingress's old class names this instance, so the
    // operator must find it by what it judged last, not by the class it asks for now.
    let elsewhere = json!({ "spec": { "ingressClassName": format!("{home}-elsewhere") } });
    home_ingresses
        .patch("good", &PatchParams::default(), &Patch::Merge(&elsewhere))
        .await
        .expect("move to another class");
    counted(&client, &home, "web", 2, 1).await;
    eventually("the newer Ingress to get the address", || async {
        get_opt(&guest_ingresses, "newer").await.filter(has_address)
    })
    .await;
}

/// Creates `namespace` unless it exists (fixed names, for the tests that need them).
async fn ensure_namespace(client: &Client, namespace: &str) {
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(namespace.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("create namespace {namespace}: {e}"),
    }
}

/// Creates an RBAC object (or anything else) from JSON with the admin client.
async fn create_json<K>(api: &Api<K>, body: Value)
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(body.clone()).expect("valid object");
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {body}: {e}"));
}

fn labels_of(namespace: &str, name: &str) -> Value {
    json!(portico_operator::resources::instance_labels(
        namespace, name
    ))
}

fn proxy_subject(namespace: &str, name: &str) -> Value {
    json!([{ "kind": "ServiceAccount", "name": format!("portico-{name}"), "namespace": namespace }])
}

#[tokio::test]
async fn instances_whose_names_join_alike_each_keep_their_own_rbac() {
    let (cp, client) = cluster().await;
    // `team-a/web` and `team/a-web` both had the RBAC name `portico-team-a-web` once.
    let tenants = [
        ("team-a", "web", "collide-web"),
        ("team", "a-web", "collide-a-web"),
    ];
    for (ns, ..) in tenants {
        ensure_namespace(&client, ns).await;
    }

    // What an older operator left behind: one ClusterRole and ClusterRoleBinding both
    // instances fought over (the last writer, team/a-web, holds the labels), and a Role and
    // RoleBinding of that name in each namespace.
    let legacy = "portico-team-a-web";
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    let cluster_bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    create_json(
        &cluster_roles,
        json!({
            "metadata": { "name": legacy, "labels": labels_of("team", "a-web") },
            "rules": [{ "apiGroups": ["networking.k8s.io"], "resources": ["ingressclasses"],
                        "resourceNames": ["collide-a-web"], "verbs": ["get", "list", "watch"] }],
        }),
    )
    .await;
    create_json(
        &cluster_bindings,
        json!({
            "metadata": { "name": legacy, "labels": labels_of("team", "a-web") },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": legacy },
            "subjects": proxy_subject("team", "a-web"),
        }),
    )
    .await;
    for (ns, name, _) in tenants {
        create_json(
            &Api::<Role>::namespaced(client.clone(), ns),
            json!({
                "metadata": { "name": legacy, "namespace": ns, "labels": labels_of(ns, name) },
                "rules": [{ "apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get", "list", "watch"] }],
            }),
        )
        .await;
        create_json(
            &Api::<RoleBinding>::namespaced(client.clone(), ns),
            json!({
                "metadata": { "name": legacy, "namespace": ns, "labels": labels_of(ns, name) },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": legacy },
                "subjects": proxy_subject(ns, name),
            }),
        )
        .await;
    }

    for (ns, name, class) in tenants {
        apply_instance(
            &client,
            ns,
            name,
            json!({ "ingressClassName": class, "service": { "type": "ClusterIP" } }),
        )
        .await;
    }

    // Each keeps its own four objects, bound to its own proxy ServiceAccount.
    for (ns, name, class) in tenants {
        let rbac = format!("portico:{ns}:{name}");
        let subjects: Vec<k8s_openapi::api::rbac::v1::Subject> =
            serde_json::from_value(proxy_subject(ns, name)).expect("subjects");
        let roles: Api<Role> = Api::namespaced(client.clone(), ns);
        let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
        let cluster_role = eventually(&format!("ClusterRole {rbac}"), || async {
            get_opt(&cluster_roles, &rbac).await
        })
        .await;
        let rules = cluster_role.rules.unwrap_or_default();
        assert_eq!(rules.len(), 1, "{rules:?}");
        assert_eq!(
            rules[0].resource_names.as_deref(),
            Some(&[class.to_owned()][..]),
            "{rbac} names its own class only"
        );
        assert_eq!(
            portico_operator::resources::instance_of(&cluster_role.metadata),
            Some((ns.to_owned(), name.to_owned()))
        );
        let binding = eventually(&format!("ClusterRoleBinding {rbac}"), || async {
            get_opt(&cluster_bindings, &rbac).await
        })
        .await;
        assert_eq!(binding.role_ref.name, rbac);
        assert_eq!(binding.subjects.as_ref(), Some(&subjects));
        let role = eventually(&format!("Role {ns}/{rbac}"), || async {
            get_opt(&roles, &rbac).await
        })
        .await;
        assert!(
            role.rules.iter().flatten().any(|r| r
                .resources
                .iter()
                .flatten()
                .any(|res| res == "ingresses")),
            "{role:?}"
        );
        let binding = eventually(&format!("RoleBinding {ns}/{rbac}"), || async {
            get_opt(&bindings, &rbac).await
        })
        .await;
        assert_eq!(
            (
                binding.role_ref.kind.as_str(),
                binding.role_ref.name.as_str()
            ),
            ("Role", rbac.as_str())
        );
        assert_eq!(binding.subjects.as_ref(), Some(&subjects));
        // The older operator's objects are gone once the new ones are in place.
        eventually(
            &format!("the legacy Role(Binding) in {ns} to go"),
            || async {
                (get_opt(&roles, legacy).await.is_none()
                    && get_opt(&bindings, legacy).await.is_none())
                .then_some(())
            },
        )
        .await;
    }
    eventually("the legacy ClusterRole(Binding) to go", || async {
        (get_opt(&cluster_roles, legacy).await.is_none()
            && get_opt(&cluster_bindings, legacy).await.is_none())
        .then_some(())
    })
    .await;

    // Seen from each proxy's real token: its own class and namespace, nothing of the other's.
    for (i, (ns, name, class)) in tenants.iter().enumerate() {
        let (other_ns, _, other_class) = tenants[1 - i];
        let token = cp
            .service_account_token(ns, &format!("portico-{name}"))
            .await
            .expect("token of the proxy");
        let proxy = cp.client_with_token(&token);
        eventually(
            &format!("{ns}/{name}'s proxy reads its class and Ingresses"),
            || async {
                let ok = Api::<IngressClass>::all(proxy.clone())
                    .get(class)
                    .await
                    .is_ok()
                    && Api::<Ingress>::namespaced(proxy.clone(), ns)
                        .list(&ListParams::default())
                        .await
                        .is_ok()
                    && Api::<EndpointSlice>::namespaced(proxy.clone(), ns)
                        .list(&ListParams::default())
                        .await
                        .is_ok();
                ok.then_some(())
            },
        )
        .await;
        assert!(
            is_403(
                Api::<IngressClass>::all(proxy.clone())
                    .get(other_class)
                    .await
            ),
            "{ns}/{name} reads {other_class}"
        );
        assert!(
            is_403(
                Api::<Ingress>::namespaced(proxy.clone(), other_ns)
                    .list(&ListParams::default())
                    .await
            ),
            "{ns}/{name} lists Ingresses in {other_ns}"
        );
        assert!(
            is_403(
                Api::<Service>::namespaced(proxy.clone(), other_ns)
                    .list(&ListParams::default())
                    .await
            ),
            "{ns}/{name} lists Services in {other_ns}"
        );
        assert!(
            is_403(
                Api::<IngressClass>::all(proxy.clone())
                    .list(&ListParams::default())
                    .await
            ),
            "{ns}/{name} lists all IngressClasses"
        );
    }

    for (ns, name, _) in tenants {
        instances(&client, ns)
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete instance");
    }
    eventually("both instances' cluster RBAC to go", || async {
        let mut gone = true;
        for (ns, name, _) in tenants {
            let rbac = format!("portico:{ns}:{name}");
            gone &= get_opt(&cluster_roles, &rbac).await.is_none()
                && get_opt(&cluster_bindings, &rbac).await.is_none();
        }
        gone.then_some(())
    })
    .await;
}

/// Warning Events about the IngressController `ns/name` with `reason`.
async fn instance_events(
    client: &Client,
    ns: &str,
    name: &str,
    reason: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let list = events
        .list(&ListParams::default())
        .await
        .expect("list Events");
    list.items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some("IngressController")
                        && r.name.as_deref() == Some(name)
                })
        })
        .collect()
}

fn condition_message(ic: &IngressController, type_: &str) -> String {
    ic.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_child_name_held_by_another_owner_is_never_taken_over() {
    let (cp, client) = cluster().await;
    let ns = cp.new_namespace("taken").await;
    // A ClusterRole under this instance's RBAC name whose labels say another instance owns it.
    let rbac = format!("portico:{ns}:web");
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    create_json(
        &cluster_roles,
        json!({
            "metadata": { "name": rbac, "labels": labels_of("elsewhere", "web") },
            "rules": [{ "apiGroups": ["networking.k8s.io"], "resources": ["ingressclasses"],
                        "resourceNames": ["elsewhere-class"], "verbs": ["get"] }],
        }),
    )
    .await;
    // And a ServiceAccount under another instance's proxy name that is no one's.
    cp.ensure_service_account(&ns, "portico-api")
        .await
        .expect("ServiceAccount");

    apply_instance(
        &client,
        &ns,
        "web",
        json!({ "ingressClassName": format!("{ns}-web"), "service": { "type": "ClusterIP" } }),
    )
    .await;
    apply_instance(
        &client,
        &ns,
        "api",
        json!({ "ingressClassName": format!("{ns}-api"), "service": { "type": "ClusterIP" } }),
    )
    .await;
    for (name, expected) in [
        (
            "web",
            format!(
                "ClusterRole {rbac} already exists and belongs to IngressController elsewhere/web"
            ),
        ),
        (
            "api",
            format!(
                "ServiceAccount {ns}/portico-api already exists and is not labelled as managed by portico-operator"
            ),
        ),
    ] {
        let ic = eventually(
            &format!("{name}: Degraded=True, reason ObjectOwnedElsewhere"),
            || async {
                let ic = get_opt(&instances(&client, &ns), name).await?;
                (condition(&ic, "Degraded")?
                    == ("True".to_owned(), "ObjectOwnedElsewhere".to_owned()))
                    .then_some(ic)
            },
        )
        .await;
        let message = condition_message(&ic, "Degraded");
        assert!(message.contains(&expected), "{name}: {message}");
        eventually(
            &format!("{name}: an ObjectOwnedElsewhere Event"),
            || async {
                let events = instance_events(&client, &ns, name, "ObjectOwnedElsewhere").await;
                events
                    .iter()
                    .any(|e| e.note.as_deref().is_some_and(|n| n.contains(&expected)))
                    .then_some(())
            },
        )
        .await;
    }
    // Nothing was taken over, and nothing after the refusal was created.
    let untouched = cluster_roles.get(&rbac).await.expect("the ClusterRole");
    assert_eq!(
        portico_operator::resources::instance_of(&untouched.metadata),
        Some(("elsewhere".to_owned(), "web".to_owned()))
    );
    assert_eq!(
        untouched.rules.unwrap_or_default()[0]
            .resource_names
            .as_deref(),
        Some(&["elsewhere-class".to_owned()][..])
    );
    let account = Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .get("portico-api")
        .await
        .expect("the ServiceAccount");
    assert_eq!(
        account.metadata.labels, None,
        "the ServiceAccount was labelled"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    for name in ["portico-web", "portico-api"] {
        assert!(
            get_opt(&deployments, name).await.is_none(),
            "{name} deployed"
        );
    }

    // Once the object is gone, the next reconcile (here: a spec change) proceeds.
    cluster_roles
        .delete(&rbac, &DeleteParams::default())
        .await
        .expect("delete the foreign ClusterRole");
    apply_instance(
        &client,
        &ns,
        "web",
        json!({ "ingressClassName": format!("{ns}-web"), "service": { "type": "ClusterIP" }, "replicas": 1 }),
    )
    .await;
    eventually("web to deploy and Degraded=False", || async {
        get_opt(&deployments, "portico-web").await?;
        let ic = get_opt(&instances(&client, &ns), "web").await?;
        (condition(&ic, "Degraded")?.0 == "False").then_some(())
    })
    .await;
    let taken_back = eventually("the ClusterRole, now the instance's", || async {
        get_opt(&cluster_roles, &rbac).await
    })
    .await;
    assert_eq!(
        portico_operator::resources::instance_of(&taken_back.metadata),
        Some((ns.clone(), "web".to_owned()))
    );
}

#[tokio::test]
async fn the_platform_may_adopt_ingress_nginx_class_and_a_tenant_may_not() {
    let (cp, client) = cluster().await;
    // A class ingress-nginx owns, as `nginx` would be; unique per run.
    let scratch = cp.new_namespace("adopt").await;
    let class = format!("nginx-{scratch}");
    let classes: Api<IngressClass> = Api::all(client.clone());
    create_json(
        &classes,
        json!({ "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                "metadata": { "name": class },
                "spec": { "controller": "k8s.io/ingress-nginx" } }),
    )
    .await;

    // A tenant may not take it over: refused by the operator's tenant policy.
    apply_instance(
        &client,
        &scratch,
        "thief",
        json!({ "ingressClassName": class, "adoptIngressClass": true }),
    )
    .await;
    let refused = eventually("PolicyViolation naming spec.adoptIngressClass", || async {
        let ic = get_opt(&instances(&client, &scratch), "thief").await?;
        let message = condition_message(&ic, "PolicyViolation");
        message
            .contains("spec.adoptIngressClass")
            .then_some(message)
    })
    .await;
    assert!(refused.contains("platform"), "{refused}");
    let still = classes.get(&class).await.expect("class");
    assert_eq!(
        still.spec.and_then(|s| s.controller).as_deref(),
        Some("k8s.io/ingress-nginx"),
        "a tenant's instance leaves the class alone"
    );

    // The platform's instance adopts it; an Ingress with only the legacy annotation moves
    // with it, unedited.
    portico_tests::fixtures::apply_service(&client, TRUSTED_NS, "legacy-site", "http", 80, 8080)
        .await
        .expect("Service");
    let ingress = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": { "name": format!("legacy-{scratch}"), "namespace": TRUSTED_NS,
                      "annotations": { "kubernetes.io/ingress.class": class } },
        "spec": { "rules": [{ "host": format!("{scratch}.example.com"), "http": { "paths": [
            { "path": "/", "pathType": "Prefix",
              "backend": { "service": { "name": "legacy-site", "port": { "number": 80 } } } }] } }] },
    });
    portico_tests::fixtures::apply_ingress(&client, ingress)
        .await
        .expect("Ingress");
    let adopter = format!("adopter-{scratch}");
    apply_instance(
        &client,
        TRUSTED_NS,
        &adopter,
        json!({ "ingressClassName": class, "adoptIngressClass": true }),
    )
    .await;
    eventually("the class to point at the adopting instance", || async {
        let c = get_opt(&classes, &class).await?;
        let spec = c.spec?;
        (spec.controller.as_deref() == Some("portico.dev/ingress-controller")
            && spec.parameters?.name == adopter)
            .then_some(())
    })
    .await;
    eventually("an IngressClassAdopted Event", || async {
        let events = instance_events(&client, TRUSTED_NS, &adopter, "IngressClassAdopted").await;
        (!events.is_empty()).then_some(())
    })
    .await;
    // The legacy-annotated Ingress is served.
    counted(&client, TRUSTED_NS, &adopter, 1, 0).await;
}
