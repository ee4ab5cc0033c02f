//! The Helm chart `charts/portico` installed into the real control plane with a real helm
//! (built from its Go module by `tests/helm/build.sh`). `helm_chart.rs` checks the chart
//! without a cluster.
//!
//! ```text
//!  charts/portico ─▶ helm install ─▶ chart Deployment's args + chart ServiceAccount's token
//!                                     ─▶ portico-operator (local process) ─▶ IngressController children
//!                 ─▶ helm uninstall ─▶ nothing of the chart left
//! ```
//!
//! The operator runs with exactly the arguments the chart renders and with a real token of
//! the chart's ServiceAccount, so the chart's RBAC, not the admin's, is what is exercised.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::IngressClass;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
};
use kube::core::NamespaceResourceScope;
use portico_tests::cluster::free_port;
use portico_tests::pod::PodTemplate;
use portico_tests::process::Process;
use portico_tests::{bin_path, control_plane, scratch_dir};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use portico_tests::helm::{CRD_NAME, RELEASE, TENANT_POLICY, chart_dir, run as helm, text};

/// Polls `get` until `name` exists.
async fn wait_for<K>(api: &Api<K>, name: &str, timeout: Duration) -> Result<K>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    portico_tests::poll_until(&format!("{name} to appear"), timeout, || async {
        api.get_opt(name).await.ok().flatten()
    })
    .await
}

/// Polls `get` until `name` is gone.
async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: Duration) -> Result<()>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    portico_tests::poll_until(&format!("{name} to be gone"), timeout, || async {
        matches!(api.get_opt(name).await, Ok(None)).then_some(())
    })
    .await
}

/// Names of the objects of kind `K` in `namespace` that carry the chart's labels.
async fn chart_objects<K>(client: &kube::Client, namespace: &str) -> Result<Vec<String>>
where
    K: kube::Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api = Api::<K>::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default().labels(&format!(
            "app.kubernetes.io/instance={RELEASE},helm.sh/chart"
        )))
        .await?;
    Ok(list
        .items
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                K::kind(&K::DynamicType::default()),
                o.meta().name.clone().unwrap_or_default()
            )
        })
        .collect())
}

/// Runs the chart's operator pod as a local process, as the kubelet would: the container's
/// args and downward-API env (`PodTemplate`) and a real token of the pod's ServiceAccount.
/// Only `--admin-port` moves to a free port of this machine.
async fn run_operator_from_chart(namespace: &str) -> Result<(Process, String)> {
    let cp = control_plane().await;
    let pod = PodTemplate::from_deployment(cp, namespace, RELEASE, IpAddr::V4(Ipv4Addr::LOCALHOST))
        .await?;
    assert_eq!(
        pod.service_account, RELEASE,
        "the chart's Deployment runs as the chart's ServiceAccount"
    );
    let admin_port = free_port()?;
    let args: Vec<String> = pod
        .args
        .iter()
        .map(|a| {
            if a.starts_with("--admin-port=") {
                format!("--admin-port={admin_port}")
            } else {
                a.clone()
            }
        })
        .collect();
    assert!(
        !args.iter().any(|a| a.contains("$(")),
        "unexpanded variable in the chart's args: {args:?}"
    );

    let token = cp
        .service_account_token(namespace, &pod.service_account)
        .await?;
    let dir = scratch_dir("helm-operator");
    let kubeconfig = cp.write_kubeconfig(&token, &dir.join("kubeconfig"))?;
    let mut cmd = Command::new(bin_path("portico-operator"));
    cmd.args(&args).env("KUBECONFIG", &kubeconfig);
    for (k, v) in &pod.env {
        cmd.env(k, v);
    }
    let mut process = Process::spawn("helm-operator", cmd)?;

    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("http://127.0.0.1:{admin_port}/healthz");
    while portico_tests::pod::http_status(&url).await != Some(200) {
        process
            .check_running()
            .with_context(|| format!("portico-operator {} exited", args.join(" ")))?;
        if Instant::now() > deadline {
            bail!(
                "portico-operator not healthy within 30s:\n{}",
                process.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((process, token))
}

fn ingress_controller_api(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("portico.dev", "v1alpha1", "IngressController"),
        "ingresscontrollers",
    );
    Api::namespaced_with(client, namespace, &resource)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_reconciles_with_the_charts_rbac_and_uninstall_leaves_nothing() -> Result<()> {
    let cp = control_plane().await;
    let client = cp.client();
    let release_ns = cp.new_namespace("portico-system").await;
    let kubeconfig = cp.kubeconfig().to_str().expect("utf-8 path").to_string();
    let chart = chart_dir().to_str().expect("utf-8 path").to_string();
    let install = |extra: &[&str]| {
        let mut args = vec![
            "install",
            RELEASE,
            chart.as_str(),
            "--namespace",
            release_ns.as_str(),
            "--kubeconfig",
            kubeconfig.as_str(),
        ];
        args.extend_from_slice(extra);
        helm(&args)
    };

    // The schema guards the real install too: a typo installs nothing.
    let refused = install(&["--set", "replicas=two"]);
    assert!(
        !refused.status.success(),
        "helm install --set replicas=two was accepted"
    );
    assert!(
        text(&refused.stderr).contains("/replicas"),
        "{}",
        text(&refused.stderr)
    );
    assert!(
        Api::<Deployment>::namespaced(client.clone(), &release_ns)
            .get_opt(RELEASE)
            .await?
            .is_none()
    );

    // Debug logs, so that a `forbidden` anywhere in the operator shows in its log.
    let installed = install(&["--set", "logLevel=debug"]);
    assert!(
        installed.status.success(),
        "helm install failed:\n{}{}",
        text(&installed.stdout),
        text(&installed.stderr)
    );
    assert!(
        text(&installed.stdout).contains("kind: IngressController"),
        "NOTES.txt should show the next step:\n{}",
        text(&installed.stdout)
    );

    // What the chart installed.
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    wait_for(&crds, CRD_NAME, Duration::from_secs(10)).await?;
    let mut installed_objects = Vec::new();
    installed_objects.extend(chart_objects::<Deployment>(&client, &release_ns).await?);
    installed_objects.extend(chart_objects::<ServiceAccount>(&client, &release_ns).await?);
    installed_objects.extend(chart_objects::<Service>(&client, &release_ns).await?);
    installed_objects.extend(chart_objects::<PodDisruptionBudget>(&client, &release_ns).await?);
    installed_objects.extend(chart_objects::<Role>(&client, &release_ns).await?);
    installed_objects.extend(chart_objects::<RoleBinding>(&client, &release_ns).await?);
    installed_objects.extend(chart_objects::<Lease>(&client, &release_ns).await?);
    installed_objects.sort();
    assert_eq!(
        installed_objects,
        [
            "Deployment/portico",
            "Lease/portico",
            "PodDisruptionBudget/portico",
            "Role/portico",
            "RoleBinding/portico",
            "Service/portico",
            "ServiceAccount/portico"
        ]
    );
    Api::<ClusterRole>::all(client.clone())
        .get(RELEASE)
        .await
        .context("chart ClusterRole")?;
    Api::<ClusterRoleBinding>::all(client.clone())
        .get(RELEASE)
        .await
        .context("chart ClusterRoleBinding")?;
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .get(TENANT_POLICY)
        .await
        .context("chart ValidatingAdmissionPolicy")?;
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .get(TENANT_POLICY)
        .await
        .context("chart ValidatingAdmissionPolicyBinding")?;
    // The CRD may take a moment to be served after helm created it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while ingress_controller_api(client.clone(), &release_ns)
        .list(&ListParams::default())
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the chart's CRD is not served within 20s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The operator, as the chart runs it.
    let (mut operator, token) = run_operator_from_chart(&release_ns).await?;

    // Least privilege, seen from the operator's own token: no Pods, and ConfigMaps (held
    // only to grant a backend CA bundle to a proxy) read, never written.
    let as_operator = cp.client_with_token(&token);
    let tenant = cp.new_namespace("team").await;
    let config_map: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "x" }
    }))?;
    for (what, result) in [
        (
            "create configmaps",
            Api::<ConfigMap>::namespaced(as_operator.clone(), &tenant)
                .create(&Default::default(), &config_map)
                .await
                .map(|_| ()),
        ),
        (
            "list pods",
            Api::<Pod>::namespaced(as_operator.clone(), &tenant)
                .list(&ListParams::default())
                .await
                .map(|_| ()),
        ),
    ] {
        match result {
            Err(kube::Error::Api(e)) if e.code == 403 => {}
            other => bail!("the operator's token could {what} in {tenant}: {other:?}"),
        }
    }

    // An instance, reconciled with the chart's RBAC.
    // A second namespace that consents, so the operator must write RBAC outside the
    // instance's namespace; a default certificate, so the proxy Role names a Secret and the
    // apiserver's escalation check needs the chart's Secrets rule.
    let shop = cp.new_namespace("shop").await;
    let team_label = format!("portico-test/team-{tenant}");
    let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone());
    for ns in [&tenant, &shop] {
        let mut patch = json!({ "metadata": { "labels": { team_label.as_str(): "yes" } } });
        if ns == &shop {
            patch["metadata"]["annotations"] =
                json!({ "portico.dev/allowed-ingress-controllers": format!("{tenant}/web") });
        }
        namespaces
            .patch(
                ns,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await?;
    }
    let instances = ingress_controller_api(client.clone(), &tenant);
    let instance: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "portico.dev/v1alpha1",
        "kind": "IngressController",
        "metadata": { "name": "web", "namespace": tenant },
        "spec": {
            "service": { "type": "ClusterIP" },
            "namespaceSelector": { "matchLabels": { team_label.as_str(): "yes" } },
            "tls": { "defaultCertificateSecret": "web-default-cert" }
        }
    }))?;
    instances
        .create(&PostParams::default(), &instance)
        .await
        .context("create IngressController")?;
    // An Ingress of the class in the consenting namespace, naming a Service that exists (the
    // operator validates backends as the proxy does): the operator writes its status.
    portico_tests::fixtures::apply_service(&client, &shop, "shop", "http", 80, 8080).await?;
    let ingress: k8s_openapi::api::networking::v1::Ingress = serde_json::from_value(json!({
        "metadata": { "name": "shop", "namespace": shop },
        "spec": { "ingressClassName": "web", "rules": [{ "host": "shop.example.com", "http": { "paths": [
            { "path": "/", "pathType": "Prefix", "backend": { "service": { "name": "shop", "port": { "number": 80 } } } }] } }] }
    }))?;
    let ingresses =
        Api::<k8s_openapi::api::networking::v1::Ingress>::namespaced(client.clone(), &shop);
    ingresses
        .create(&PostParams::default(), &ingress)
        .await
        .context("create Ingress")?;

    let children = Duration::from_secs(60);
    let rbac_name = format!("portico:{tenant}:web");
    let check = async {
        wait_for(
            &Api::<ServiceAccount>::namespaced(client.clone(), &tenant),
            "portico-web",
            children,
        )
        .await?;
        wait_for(
            &Api::<Role>::namespaced(client.clone(), &tenant),
            &rbac_name,
            children,
        )
        .await?;
        wait_for(
            &Api::<RoleBinding>::namespaced(client.clone(), &tenant),
            &rbac_name,
            children,
        )
        .await?;
        wait_for(
            &Api::<Role>::namespaced(client.clone(), &shop),
            &rbac_name,
            children,
        )
        .await?;
        wait_for(
            &Api::<RoleBinding>::namespaced(client.clone(), &shop),
            &rbac_name,
            children,
        )
        .await?;
        wait_for(
            &Api::<ClusterRole>::all(client.clone()),
            &rbac_name,
            children,
        )
        .await?;
        wait_for(
            &Api::<ClusterRoleBinding>::all(client.clone()),
            &rbac_name,
            children,
        )
        .await?;
        wait_for(
            &Api::<Deployment>::namespaced(client.clone(), &tenant),
            "portico-web",
            children,
        )
        .await?;
        wait_for(
            &Api::<Service>::namespaced(client.clone(), &tenant),
            "portico-web",
            children,
        )
        .await?;
        wait_for(
            &Api::<PodDisruptionBudget>::namespaced(client.clone(), &tenant),
            "portico-web",
            children,
        )
        .await?;
        wait_for(&Api::<IngressClass>::all(client.clone()), "web", children).await?;
        // Status writes need ingresscontrollers/status and ingresses/status.
        let deadline = Instant::now() + children;
        loop {
            let ic = instances.get("web").await?;
            let observed = ic
                .data
                .pointer("/status/conditions/0/observedGeneration")
                .and_then(Value::as_i64);
            let lb = ingresses
                .get("shop")
                .await?
                .status
                .and_then(|s| s.load_balancer)
                .and_then(|l| l.ingress)
                .unwrap_or_default();
            if observed == ic.metadata.generation && !lb.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "status not written within {children:?}: instance {:?}, Ingress loadBalancer {lb:?}",
                    ic.data.get("status")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::Ok(())
    };
    if let Err(e) = check.await {
        bail!("{e:#}\noperator log:\n{}", operator.log_tail(60));
    }
    let role = Api::<Role>::namespaced(client.clone(), &tenant)
        .get(&rbac_name)
        .await?;
    let secrets_rule = role
        .rules
        .iter()
        .flatten()
        .find(|r| r.resources.iter().flatten().any(|res| res == "secrets"));
    assert_eq!(
        secrets_rule.and_then(|r| r.resource_names.clone()),
        Some(vec!["web-default-cert".to_string()]),
        "the proxy Role should name exactly the default certificate: {role:?}"
    );
    let log = operator.log_tail(400);
    assert!(
        !log.contains("forbidden"),
        "the operator hit a permission the chart does not grant:\n{log}"
    );

    // Deleting the instance removes its cluster-scoped children too (the operator's job).
    instances.delete("web", &DeleteParams::default()).await?;
    let cleanup = async {
        wait_gone(&Api::<IngressClass>::all(client.clone()), "web", children).await?;
        wait_gone(
            &Api::<ClusterRoleBinding>::all(client.clone()),
            &rbac_name,
            children,
        )
        .await?;
        wait_gone(
            &Api::<ClusterRole>::all(client.clone()),
            &rbac_name,
            children,
        )
        .await?;
        wait_gone(
            &Api::<RoleBinding>::namespaced(client.clone(), &shop),
            &rbac_name,
            children,
        )
        .await?;
        wait_gone(
            &Api::<Role>::namespaced(client.clone(), &shop),
            &rbac_name,
            children,
        )
        .await?;
        wait_gone(&instances, "web", children).await?;
        anyhow::Ok(())
    };
    if let Err(e) = cleanup.await {
        bail!("{e:#}\noperator log:\n{}", operator.log_tail(60));
    }

    // The operator leads through the chart's Lease; a `helm upgrade` leaves the holder alone
    // (three-way merge: the chart's manifest never had those fields).
    let leases = Api::<Lease>::namespaced(client.clone(), &release_ns);
    let holder = |l: &Lease| l.spec.as_ref().and_then(|s| s.holder_identity.clone());
    let before = holder(&leases.get(RELEASE).await?);
    assert!(
        before.is_some(),
        "the operator never took the chart's Lease"
    );
    let upgraded = helm(&[
        "upgrade",
        RELEASE,
        &chart,
        "--namespace",
        &release_ns,
        "--kubeconfig",
        &kubeconfig,
        "--reuse-values",
        "--set",
        "logFormat=text",
    ]);
    assert!(
        upgraded.status.success(),
        "helm upgrade failed:\n{}",
        text(&upgraded.stderr)
    );
    assert_eq!(
        holder(&leases.get(RELEASE).await?),
        before,
        "helm upgrade reset the operator's Lease"
    );
    let args = Api::<Deployment>::namespaced(client.clone(), &release_ns)
        .get(RELEASE)
        .await?
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.containers.first().and_then(|c| c.args.clone()))
        .unwrap_or_default();
    assert!(
        args.contains(&"--log-format=text".to_string()),
        "upgrade did not reach the Deployment: {args:?}"
    );
    operator.terminate();
    let status = operator.wait_timeout(Duration::from_secs(15)).await?;
    assert!(
        status.success(),
        "the operator did not exit cleanly on SIGTERM ({status}):\n{}",
        operator.log_tail(40)
    );

    // Uninstall: nothing of the chart is left. The CRD stays, as Helm keeps crds/ on
    // purpose (deleting it would delete every team's IngressController).
    let uninstalled = helm(&[
        "uninstall",
        RELEASE,
        "--namespace",
        &release_ns,
        "--kubeconfig",
        &kubeconfig,
        "--wait",
        "--timeout",
        "60s",
    ]);
    assert!(
        uninstalled.status.success(),
        "helm uninstall failed:\n{}",
        text(&uninstalled.stderr)
    );
    let mut left = Vec::new();
    left.extend(chart_objects::<Deployment>(&client, &release_ns).await?);
    left.extend(chart_objects::<ServiceAccount>(&client, &release_ns).await?);
    left.extend(chart_objects::<Service>(&client, &release_ns).await?);
    left.extend(chart_objects::<PodDisruptionBudget>(&client, &release_ns).await?);
    left.extend(chart_objects::<Role>(&client, &release_ns).await?);
    left.extend(chart_objects::<RoleBinding>(&client, &release_ns).await?);
    left.extend(chart_objects::<Lease>(&client, &release_ns).await?);
    assert!(left.is_empty(), "helm uninstall left {left:?}");
    assert!(
        Api::<ClusterRole>::all(client.clone())
            .get_opt(RELEASE)
            .await?
            .is_none(),
        "ClusterRole left behind"
    );
    assert!(
        Api::<ClusterRoleBinding>::all(client.clone())
            .get_opt(RELEASE)
            .await?
            .is_none(),
        "ClusterRoleBinding left behind"
    );
    assert!(
        Api::<ValidatingAdmissionPolicy>::all(client.clone())
            .get_opt(TENANT_POLICY)
            .await?
            .is_none(),
        "ValidatingAdmissionPolicy left behind"
    );
    assert!(
        Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
            .get_opt(TENANT_POLICY)
            .await?
            .is_none(),
        "ValidatingAdmissionPolicyBinding left behind"
    );
    let releases = helm(&[
        "list",
        "--all",
        "--namespace",
        &release_ns,
        "--kubeconfig",
        &kubeconfig,
        "--short",
    ]);
    assert_eq!(
        text(&releases.stdout).trim(),
        "",
        "helm still lists a release"
    );
    assert!(
        crds.get_opt(CRD_NAME).await?.is_some(),
        "the CRD is kept by design (Helm's crds/ policy)"
    );
    Ok(())
}
