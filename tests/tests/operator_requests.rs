//! What the operator asks of the API server: nothing but its watches while nothing changes,
//! and a bounded number of requests for one new Ingress. The counts come from the
//! operator's own `portico_operator_api_requests_total`, which its client increments for
//! every request it sends; docs/architecture.md quotes what this test prints.
//!
//! ```text
//!  control plane (this binary's own) ◀── portico-operator ──▶ /metrics
//!  20 Ingresses + one instance ─▶ every address set ─▶ settled
//!     ─▶ 10 s without changes: count ─▶ one new Ingress ─▶ its address ─▶ settled: count
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, PostParams};
use portico_operator::api::IngressController;
use portico_tests::fixtures::{apply_ingress, apply_service, ingress};
use portico_tests::operator::{Operator, samples};
use portico_tests::{control_plane, install_crds, poll_until};
use serde_json::json;

const INGRESSES: usize = 20;
const CLASS: &str = "requests";
const METRIC: &str = "portico_operator_api_requests_total";
/// Requests per verb and resource that are not watches, from a steady state to another.
const STEADY_MAX: f64 = 0.0;
/// Requests for one new Ingress, from its creation until the operator is quiet again.
const CHANGE_MAX: f64 = 4.0;

/// Requests so far by `verb resource`, watches left out.
async fn requests(operator: &Operator) -> BTreeMap<String, f64> {
    let page = operator.metrics().await.expect("operator /metrics");
    samples(&page, METRIC)
        .into_iter()
        .filter(|(labels, _)| !labels.contains("verb=\"watch\""))
        .collect()
}

/// Waits until the request counts stay the same for two seconds, and returns them.
async fn settled(operator: &Operator) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = requests(operator).await;
    let mut quiet_since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = requests(operator).await;
        if now != last {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_secs(2) {
            return now;
        }
        assert!(Instant::now() < deadline, "the operator never went quiet");
    }
}

/// What `after` counted beyond `before`, by series.
fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

fn has_address(ingress: &Ingress) -> bool {
    ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .is_some_and(|i| !i.is_empty())
}

#[tokio::test]
async fn the_operator_reads_its_caches_in_a_steady_state_and_for_one_ingress_change() {
    let cp = control_plane().await;
    let client = cp.client();
    install_crds(&client).await.expect("install crds/");
    let ns = cp.new_namespace("requests").await;
    let operator = Operator::start(cp, &[]).expect("start portico-operator");

    apply_service(&client, &ns, "web", "http", 80, 8080)
        .await
        .expect("Service");
    for i in 0..INGRESSES {
        let host = format!("h{i}.example.com");
        apply_ingress(
            &client,
            ingress(
                &ns,
                &format!("web-{i}"),
                CLASS,
                &host,
                &[("/", "Prefix", "web", "http")],
            ),
        )
        .await
        .expect("Ingress");
    }
    let instance = portico_tests::ingress_controller(&ns, CLASS, json!({})).expect("instance");
    Api::<IngressController>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &instance)
        .await
        .expect("create the instance");
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    poll_until(
        "every Ingress's address",
        Duration::from_secs(60),
        || async {
            let list = ingresses.list(&Default::default()).await.ok()?;
            (list.items.len() == INGRESSES && list.items.iter().all(has_address)).then_some(())
        },
    )
    .await
    .expect("addresses");

    let start = settled(&operator).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let steady = delta(&start, &requests(&operator).await);
    eprintln!("steady state, 10 s: {steady:?}");

    let before = settled(&operator).await;
    let created = Instant::now();
    apply_ingress(
        &client,
        ingress(
            &ns,
            "web-new",
            CLASS,
            "new.example.com",
            &[("/", "Prefix", "web", "http")],
        ),
    )
    .await
    .expect("the new Ingress");
    poll_until(
        "the new Ingress's address",
        Duration::from_secs(30),
        || async { has_address(&ingresses.get("web-new").await.ok()?).then_some(()) },
    )
    .await
    .expect("address");
    let latency = created.elapsed();
    let change = delta(&before, &settled(&operator).await);
    let total: f64 = change.values().sum();
    eprintln!("one new Ingress: {total} requests {change:?}; address after {latency:?}");

    for (series, n) in &steady {
        assert!(*n <= STEADY_MAX, "steady state: {n} requests {series}");
    }
    assert!(
        total <= CHANGE_MAX,
        "one new Ingress cost {total} requests: {change:?}"
    );
}
