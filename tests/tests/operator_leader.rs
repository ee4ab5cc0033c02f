//! Tier 2: the operator process itself — the startup error without the CRD, and leader
//! election between two real `portico-operator` processes.
//!
//! This binary has its own control plane, so that no other operator runs against it.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use portico_tests::control_plane;
use portico_tests::operator::{Launch, Operator};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(20);

async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    portico_tests::poll_until(what, WAIT, check)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn start_operator(name: &str, kubeconfig: &std::path::Path, lease_ns: &str) -> Operator {
    Operator::launch(Launch::new(name, kubeconfig).args([
        "--leader-election=true".to_owned(),
        format!("--leader-election-namespace={lease_ns}"),
        "--lease-name=portico-operator".to_owned(),
        "--log-format=text".to_owned(),
    ]))
    .expect("start portico-operator")
}

/// GET `path` on 127.0.0.1:`port`; `None` until the server answers.
async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let code = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

/// The value of an unlabelled metric on the operator's `/metrics`.
async fn metric(op: &Operator, name: &str) -> Option<f64> {
    let (code, body) = http_get(op.admin_port, "/metrics").await?;
    if code != 200 {
        return None;
    }
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
}

async fn lease_holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("portico-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

fn pid_of(identity: &str) -> Option<u32> {
    identity.rsplit('_').next()?.parse().ok()
}

#[tokio::test]
async fn missing_crd_is_a_clear_error_and_only_the_leader_reconciles() {
    let cp = control_plane().await;
    let client = cp.client();

    // Without the CRD the operator refuses to start, and says what to do.
    let mut early = start_operator("operator-no-crd", cp.kubeconfig(), "default");
    let status = early
        .process
        .wait_timeout(WAIT)
        .await
        .expect("operator exits without the CRD");
    assert!(!status.success(), "exit status {status}");
    let log = std::fs::read_to_string(early.process.log_path()).unwrap_or_default();
    assert!(
        log.contains(
            "CustomResourceDefinition ingresscontrollers.portico.dev is not installed: apply crds/ or install the Helm chart"
        ),
        "startup error should name the CRD and the fix; output:\n{log}"
    );

    portico_tests::install_crds(&client)
        .await
        .expect("install crds/");
    let lease_ns = "portico-system";
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(lease_ns.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let _ = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), lease_ns);

    let mut first = start_operator("operator-1", cp.kubeconfig(), lease_ns);
    let mut second = start_operator("operator-2", cp.kubeconfig(), lease_ns);
    for op in [&first, &second] {
        eventually("/readyz = 200", || async {
            (http_get(op.admin_port, "/readyz").await?.0 == 200).then_some(())
        })
        .await;
        eventually("/healthz = 200", || async {
            (http_get(op.admin_port, "/healthz").await?.0 == 200).then_some(())
        })
        .await;
    }
    let holder = eventually("a Lease holder", || lease_holder(&leases)).await;
    let leader_pid = pid_of(&holder).expect("holderIdentity ends in the pid");
    let (leader, follower) = if leader_pid == first.process.id() {
        (&mut first, &mut second)
    } else {
        assert_eq!(
            leader_pid,
            second.process.id(),
            "the holder is one of the two operators: {holder}"
        );
        (&mut second, &mut first)
    };

    // An instance is reconciled by the leader only.
    let ns = cp.new_namespace("leader").await;
    let instance = json!({
        "apiVersion": "portico.dev/v1alpha1", "kind": "IngressController",
        "metadata": { "name": "web", "namespace": ns },
        "spec": { "ingressClassName": format!("{ns}-class"), "service": { "type": "ClusterIP" } },
    });
    Api::<portico_operator::api::IngressController>::namespaced(client.clone(), &ns)
        .patch(
            "web",
            &PatchParams::apply("portico-tests"),
            &Patch::Apply(&instance),
        )
        .await
        .expect("create instance");
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    eventually("the leader to create the Service", || async {
        services.get_opt("portico-web").await.ok()?
    })
    .await;
    eventually("the leader to count reconciles", || async {
        (metric(leader, "portico_operator_reconciles_total").await? > 0.0).then_some(())
    })
    .await;
    assert_eq!(metric(leader, "portico_operator_leader").await, Some(1.0));
    assert_eq!(metric(follower, "portico_operator_leader").await, Some(0.0));
    assert_eq!(
        metric(follower, "portico_operator_reconciles_total").await,
        Some(0.0),
        "the follower never reconciles"
    );

    // Losing the Lease stops reconciling: another holder takes it, as a partition would.
    loop {
        let mut lease = leases.get("portico-operator").await.expect("Lease");
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.holder_identity = Some("intruder".into());
        spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        spec.lease_duration_seconds = Some(15);
        match leases
            .replace("portico-operator", &PostParams::default(), &lease)
            .await
        {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => panic!("take the Lease: {e}"),
        }
    }
    eventually("the leader to step down", || async {
        (metric(leader, "portico_operator_leader").await? == 0.0).then_some(())
    })
    .await;
    services
        .delete("portico-web", &DeleteParams::default())
        .await
        .expect("delete the Service");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        services
            .get_opt("portico-web")
            .await
            .expect("get")
            .is_none(),
        "nobody may reconcile while another identity holds the Lease"
    );
    // The intruder never renews: after its lease duration one of the two takes over again.
    let deadline = Instant::now() + Duration::from_secs(40);
    let holder = loop {
        if let Some(h) = lease_holder(&leases).await.filter(|h| h != "intruder") {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "nobody took the abandoned Lease over"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eventually("the Service to be repaired after the takeover", || async {
        services
            .get_opt("portico-web")
            .await
            .ok()?
            .filter(|s| s.metadata.deletion_timestamp.is_none())
    })
    .await;
    let (leader, follower) = if pid_of(&holder) == Some(leader.process.id()) {
        (leader, follower)
    } else {
        (follower, leader)
    };

    // SIGTERM: the leader stops, releases the Lease, and the follower takes over.
    leader.process.terminate();
    let status = leader
        .process
        .wait_timeout(WAIT)
        .await
        .expect("leader exits on SIGTERM");
    assert!(
        status.success(),
        "clean exit on SIGTERM: {status}; output:\n{}",
        leader.process.log_tail(20)
    );
    let follower_pid = follower.process.id();
    eventually("the follower to hold the Lease", || async {
        (pid_of(&lease_holder(&leases).await?)? == follower_pid).then_some(())
    })
    .await;
    services
        .delete("portico-web", &DeleteParams::default())
        .await
        .expect("delete the Service");
    eventually("the new leader to repair the Service", || async {
        services
            .get_opt("portico-web")
            .await
            .ok()?
            .filter(|s| s.metadata.deletion_timestamp.is_none())
    })
    .await;
    assert!(
        metric(follower, "portico_operator_reconciles_total")
            .await
            .unwrap_or(0.0)
            > 0.0
    );
    assert_eq!(metric(follower, "portico_operator_leader").await, Some(1.0));
    follower.process.terminate();
    follower
        .process
        .wait_timeout(WAIT)
        .await
        .expect("follower exits on SIGTERM");
}
