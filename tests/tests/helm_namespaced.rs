//! The chart's namespaced mode (`watchNamespaces`) against a real apiserver.
//!
//! ```text
//!  helm install charts/portico --set watchNamespaces={home,shop}
//!      ─▶ a Role per listed namespace, a ClusterRole with nothing namespaced in it
//!      ─▶ the chart's operator (its args, its token) ─▶ instance home/web serves home+shop,
//!         not the consenting namespace outside the list; an instance outside is left alone
//! ```
//!
//! A binary of its own: an operator watching every namespace (the other Helm tests run
//! one) would reconcile this test's instances too.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use portico_operator::api::IngressController;
use portico_tests::helm::helm;
use portico_tests::pod::flag_value;
use portico_tests::{control_plane, workspace_root};
use serde_json::{Value, json};

const RELEASE: &str = "portico";
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

fn is_403<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(s)) if s.code == 403)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_watch_namespaces_the_operator_acts_only_there_through_namespaced_roles() -> Result<()>
{
    let cp = control_plane().await;
    let admin = cp.client();
    let release_ns = cp.new_namespace("portico-system").await;
    let home = cp.new_namespace("home").await;
    let shop = cp.new_namespace("shop").await;
    let outside = cp.new_namespace("outside").await;
    // All three are selected, and the other two consent to home/web.
    let namespaces = Api::<Namespace>::all(admin.clone());
    for ns in [&home, &shop, &outside] {
        let mut patch = json!({ "metadata": { "labels": { "portico-test/scoped": &home } } });
        if ns != &home {
            patch["metadata"]["annotations"] =
                json!({ "portico.dev/allowed-ingress-controllers": format!("{home}/web") });
        }
        namespaces
            .patch(ns, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }

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
            &format!("watchNamespaces={{{home},{shop}}}"),
            "--set",
            "logLevel=debug",
        ],
    )?;

    // The chart's RBAC: nothing namespaced cluster-wide, a Role in each listed namespace.
    let cluster_role = Api::<ClusterRole>::all(admin.clone()).get(RELEASE).await?;
    let cluster_resources: BTreeSet<String> = cluster_role
        .rules
        .iter()
        .flatten()
        .flat_map(|r| r.resources.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        cluster_resources,
        [
            "clusterrolebindings",
            "clusterroles",
            "ingressclasses",
            "ingresscontrollers",
            "namespaces"
        ]
        .map(String::from)
        .into(),
        "the ClusterRole of the namespaced mode"
    );
    let instances_role = format!("{RELEASE}-instances");
    for ns in [&home, &shop] {
        Api::<Role>::namespaced(admin.clone(), ns)
            .get(&instances_role)
            .await
            .with_context(|| format!("the operator's Role in {ns}"))?;
    }
    assert!(
        Api::<Role>::namespaced(admin.clone(), &outside)
            .get_opt(&instances_role)
            .await?
            .is_none()
    );

    // Seen from the operator's real token.
    let token = cp.service_account_token(&release_ns, RELEASE).await?;
    let as_operator = cp.client_with_token(&token);
    Api::<Secret>::namespaced(as_operator.clone(), &home)
        .list(&ListParams::default())
        .await
        .context("the operator may read Secrets in a listed namespace (to grant them)")?;
    assert!(
        is_403(
            Api::<Secret>::namespaced(as_operator.clone(), &outside)
                .list(&ListParams::default())
                .await
        ),
        "the operator reads Secrets outside watchNamespaces"
    );
    assert!(
        is_403(
            Api::<Deployment>::all(as_operator.clone())
                .list(&ListParams::default())
                .await
        ),
        "the operator lists Deployments cluster-wide"
    );

    let ip = IpAddr::V4(Ipv4Addr::new(10, 244, 201, 1));
    let mut operator =
        portico_tests::pod::run_operator_from_deployment(cp, &release_ns, RELEASE, ip).await?;
    if let Err(e) = scoped(&admin, &home, &shop, &outside).await {
        bail!("{e:#}\noperator log:\n{}", operator.log_tail(80));
    }
    let log = operator.log_tail(3000);
    assert!(
        !log.contains("forbidden"),
        "the operator hit a permission the namespaced mode does not grant:\n{log}"
    );
    operator.terminate();
    operator.wait_timeout(Duration::from_secs(15)).await?;
    Ok(())
}

async fn scoped(admin: &Client, home: &str, shop: &str, outside: &str) -> Result<()> {
    let selector = json!({ "matchLabels": { "portico-test/scoped": home } });
    let homes = Api::<IngressController>::namespaced(admin.clone(), home);
    homes
        .create(
            &PostParams::default(),
            &instance(
                home,
                "web",
                json!({
                    "ingressClassName": format!("{home}-class"),
                    "service": { "type": "ClusterIP" },
                    "namespaceSelector": selector,
                    "tls": { "defaultCertificateSecret": "default-cert" },
                }),
            )?,
        )
        .await?;
    let outsiders = Api::<IngressController>::namespaced(admin.clone(), outside);
    outsiders
        .create(
            &PostParams::default(),
            &instance(
                outside,
                "web",
                json!({ "ingressClassName": format!("{outside}-class"), "service": { "type": "ClusterIP" } }),
            )?,
        )
        .await?;

    // home/web serves home and shop; outside consents but is not a listed namespace.
    let mut want = vec![home.to_owned(), shop.to_owned()];
    want.sort();
    eventually(
        "home/web to serve exactly the listed namespaces",
        || async {
            let ic = homes.get_opt("web").await.ok()??;
            (ic.status?.served_namespaces == want).then_some(())
        },
    )
    .await?;
    let deployment = eventually("home/web's fleet", || async {
        Api::<Deployment>::namespaced(admin.clone(), home)
            .get_opt("portico-web")
            .await
            .ok()?
    })
    .await?;
    let args = deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.containers.first().and_then(|c| c.args.clone()))
        .unwrap_or_default();
    assert_eq!(flag_value(&args, "namespaces"), Some(want.join(",")));
    let rbac = format!("portico:{home}:web");
    for ns in [home, shop] {
        eventually(&format!("the proxy's Role in {ns}"), || async {
            Api::<Role>::namespaced(admin.clone(), ns)
                .get_opt(&rbac)
                .await
                .ok()?
        })
        .await?;
    }
    assert!(
        Api::<Role>::namespaced(admin.clone(), outside)
            .get_opt(&rbac)
            .await?
            .is_none(),
        "a proxy Role outside watchNamespaces"
    );
    eventually("the proxy's ClusterRole", || async {
        Api::<ClusterRole>::all(admin.clone())
            .get_opt(&rbac)
            .await
            .ok()?
    })
    .await?;

    // The instance outside the list is left alone: no finalizer, no status, no fleet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let left = outsiders.get("web").await?;
    assert!(left.finalizers().is_empty(), "{:?}", left.finalizers());
    assert!(left.status.is_none(), "{:?}", left.status);
    assert!(
        Api::<Deployment>::namespaced(admin.clone(), outside)
            .get_opt("portico-web")
            .await?
            .is_none()
    );

    // Deleting home/web removes what it had, in every listed namespace and cluster-wide.
    homes.delete("web", &DeleteParams::default()).await?;
    eventually("home/web and its RBAC to be gone", || async {
        let gone = homes.get_opt("web").await.ok()?.is_none()
            && Api::<Role>::namespaced(admin.clone(), shop)
                .get_opt(&rbac)
                .await
                .ok()?
                .is_none()
            && Api::<ClusterRole>::all(admin.clone())
                .get_opt(&rbac)
                .await
                .ok()?
                .is_none();
        gone.then_some(())
    })
    .await?;
    outsiders.delete("web", &DeleteParams::default()).await?;
    Ok(())
}
