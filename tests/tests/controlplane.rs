//! Tier 2: the real control plane itself works as the other tests assume.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::wait::{await_condition, conditions};
use portico_tests::cluster::KUBERNETES_VERSION;
use portico_tests::control_plane;

#[tokio::test]
async fn apiserver_reports_the_pinned_version() {
    let cp = control_plane().await;
    let info = cp.client().apiserver_version().await.expect("GET /version");
    assert_eq!(info.git_version, KUBERNETES_VERSION);
}

#[tokio::test]
async fn custom_resource_round_trips_through_the_apiserver() {
    let cp = control_plane().await;
    let client = cp.client();
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.harness.portico.dev" },
        "spec": {
            "group": "harness.portico.dev",
            "names": { "kind": "Widget", "plural": "widgets", "singular": "widget" },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": { "type": "object", "properties": {
                        "size": { "type": "integer", "minimum": 1 }
                    }}}
                }}
            }]
        }
    }))
    .expect("CRD literal");
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    crds.patch(
        "widgets.harness.portico.dev",
        &PatchParams::apply("portico-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply CRD");
    tokio::time::timeout(
        Duration::from_secs(20),
        await_condition(
            crds,
            "widgets.harness.portico.dev",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("CRD established within 20s")
    .expect("watch CRD");

    let ns = cp.new_namespace("crd").await;
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("harness.portico.dev", "v1", "Widget"),
        "widgets",
    );
    let widgets = Api::<DynamicObject>::namespaced_with(client, &ns, &resource);
    let mut widget = DynamicObject::new("w1", &resource);
    widget.data = serde_json::json!({ "spec": { "size": 3 } });
    // The discovery cache may lag the CRD by a moment.
    let mut created = None;
    for _ in 0..50 {
        match widgets.create(&PostParams::default(), &widget).await {
            Ok(w) => {
                created = Some(w);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    created.expect("create a Widget");
    let read = widgets.get("w1").await.expect("read the Widget back");
    assert_eq!(read.data["spec"]["size"], 3);

    // The schema is enforced by the apiserver.
    let mut bad = DynamicObject::new("w2", &resource);
    bad.data = serde_json::json!({ "spec": { "size": 0 } });
    let err = widgets
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("size 0 violates minimum 1");
    assert!(
        err.to_string().contains("spec.size"),
        "error names the field: {err}"
    );
}

#[tokio::test]
async fn service_account_token_is_authorized_by_rbac() {
    let cp = control_plane().await;
    let ns = cp.new_namespace("rbac").await;
    cp.ensure_service_account(&ns, "reader")
        .await
        .expect("create ServiceAccount");
    let token = cp
        .service_account_token(&ns, "reader")
        .await
        .expect("TokenRequest");
    let as_reader = cp.client_with_token(&token);
    let secrets = Api::<Secret>::namespaced(as_reader, &ns);

    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "without a RoleBinding: {e:?}"),
        other => panic!("listing Secrets without a RoleBinding must be forbidden, got {other:?}"),
    }

    let admin = cp.client();
    let role = Role {
        metadata: ObjectMeta {
            name: Some("read-secrets".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["secrets".into()]),
            verbs: vec!["list".into()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("create Role");
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("read-secrets".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "read-secrets".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "reader".into(),
            namespace: Some(ns.clone()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(admin, &ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("create RoleBinding");

    // RBAC changes reach the authorizer's cache within a moment.
    let mut last = String::new();
    for _ in 0..50 {
        match secrets.list(&ListParams::default()).await {
            Ok(_) => return,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("listing Secrets with a RoleBinding still fails: {last}");
}
