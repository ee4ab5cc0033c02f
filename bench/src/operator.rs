//! The operator at scale: one instance whose class has 10,000 Ingresses, then new Ingresses
//! one at a time, each timed from its creation to its status address, with the operator's
//! CPU time and API requests for it.
//!
//! ```text
//!  10,000 Ingresses, one Service ─▶ portico-operator (release, CPU 1) + IngressController
//!     ─▶ status.ingressesServed = 10,000 ─▶ quiet
//!     ─▶ N × { create an Ingress ─▶ watch until it has an address ─▶ quiet }
//!            ─▶ ms to the address, operator CPU ms, API requests
//! ```
//!
//! CPU is the sum over the operator's threads of the time the scheduler ran them
//! (`/proc/<pid>/task/*/schedstat`, nanoseconds), from just before the create until the
//! operator has been idle for a while after the address appeared.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, PostParams};
use kube::runtime::wait::await_condition;
use portico_operator::api::IngressController;
use portico_tests::operator::{Launch, Operator, samples};
use serde::Serialize;

use crate::run::{self, Bench};
use crate::sys;
use crate::table::{self, PathKind, PathRule, Route};

const NS: &str = "operator";
const INSTANCE: &str = "portico-operator-bench";
const SERVICE: &str = "web";
const CONCURRENCY: usize = 48;
/// New Ingresses, one at a time.
pub const CHANGES: usize = 30;
const ADDRESS_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle this long (less than [`IDLE_CPU`] of CPU) counts as quiet.
const QUIET: Duration = Duration::from_millis(300);
const IDLE_CPU: Duration = Duration::from_micros(500);
/// How long the operator makes no API request before the new Ingresses start.
const SETTLED: Duration = Duration::from_secs(1);

/// The targets: a new Ingress's address at p99, and the operator's CPU for it.
pub const ADDRESS_P99_MS: f64 = 100.0;
pub const CPU_P99_MS: f64 = 5.0;

#[derive(Debug, Clone, Default, Serialize)]
pub struct OperatorResult {
    pub ingresses: usize,
    pub create_s: f64,
    /// Operator start → every Ingress served and its status written.
    pub settle_s: f64,
    pub rss_mib: f64,
    /// Per new Ingress: creation → status address.
    pub address_ms: Vec<f64>,
    /// Per new Ingress: operator CPU.
    pub cpu_ms: Vec<f64>,
    /// Per new Ingress: API requests other than watches.
    pub requests: Vec<f64>,
    /// New Ingresses whose address did not appear within the timeout.
    pub timed_out: usize,
}

/// The `q`-quantile (0..=1) of `v`, nearest rank; 0 when empty.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

impl OperatorResult {
    /// Whether the run met both targets (`None` when nothing was measured).
    pub fn met(&self) -> Option<bool> {
        if self.address_ms.is_empty() {
            return None;
        }
        Some(
            self.timed_out == 0
                && quantile(&self.address_ms, 0.99) < ADDRESS_P99_MS
                && quantile(&self.cpu_ms, 0.99) < CPU_P99_MS,
        )
    }
}

fn route(name: &str, host: &str) -> Route {
    Route {
        name: name.into(),
        host: host.into(),
        paths: vec![PathRule {
            path: "/".into(),
            kind: PathKind::Prefix,
            service: SERVICE.into(),
        }],
        tls_secret: None,
    }
}

fn has_address(ingress: Option<&Ingress>) -> bool {
    ingress
        .and_then(|i| i.status.as_ref())
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .is_some_and(|i| !i.is_empty())
}

/// API requests so far, watches left out.
async fn requests(operator: &Operator) -> f64 {
    let page = operator.metrics().await.unwrap_or_default();
    samples(&page, "portico_operator_api_requests_total")
        .into_iter()
        .filter(|(labels, _)| !labels.contains("verb=\"watch\""))
        .map(|(_, v)| v)
        .sum()
}

/// Waits until the operator has used less than [`IDLE_CPU`] over [`QUIET`] (at most
/// `within`), and returns its CPU time then.
async fn quiet(pid: u32, within: Duration) -> Duration {
    let deadline = Instant::now() + within;
    let mut last = sys::cpu_ns(pid);
    loop {
        tokio::time::sleep(QUIET).await;
        let now = sys::cpu_ns(pid);
        if now.saturating_sub(last) < IDLE_CPU || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Waits (at most `within`) until the operator is [`quiet`], makes no API request for
/// [`SETTLED`] and is quiet again: a start's status writes, and whatever reconcile waited
/// for them or for their echoes, are over. Low CPU alone is not enough: writing 10,000
/// statuses mostly waits on the apiserver.
async fn settled(operator: &Operator, pid: u32, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let before = requests(operator).await;
        quiet(pid, within).await;
        tokio::time::sleep(SETTLED).await;
        if requests(operator).await == before || Instant::now() > deadline {
            quiet(pid, within).await;
            return;
        }
    }
}

pub async fn run(bench: &Bench) -> Result<OperatorResult> {
    let client = bench.client()?;
    let n = bench.args.operator_ingresses;
    portico_tests::install_crds(&client).await?;
    run::create_namespace(&client, NS).await?;
    run::apply(
        &Api::<Service>::namespaced(client.clone(), NS),
        &table::service_object(NS, SERVICE, false),
    )
    .await?;
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), NS);
    let started = Instant::now();
    let objects = (0..n)
        .map(|i| {
            table::ingress_object(
                NS,
                INSTANCE,
                &route(&format!("o-{i}"), &format!("o{i}.operator.test")),
            )
        })
        .collect();
    run::create_all(&ingresses, objects, CONCURRENCY).await?;
    let mut result = OperatorResult {
        ingresses: n,
        create_s: started.elapsed().as_secs_f64(),
        ..OperatorResult::default()
    };
    println!(
        "[{}] created {n} Ingresses in {:.1} s; starting portico-operator on CPU {}",
        bench.elapsed(),
        result.create_s,
        sys::PROXY_CPU
    );

    let operator = Operator::launch(
        Launch {
            binary: bench.release_dir.join("portico-operator"),
            cpus: Some(sys::PROXY_CPU),
            ..Launch::new("portico-operator-bench", &bench.kubeconfig)
        }
        .args(["--leader-election=false"]),
    )?;
    let pid = operator.process.id();
    let started = Instant::now();
    let instance = portico_tests::ingress_controller(NS, INSTANCE, serde_json::json!({}))?;
    let instances: Api<IngressController> = Api::namespaced(client.clone(), NS);
    instances.create(&PostParams::default(), &instance).await?;
    let want = i32::try_from(n).unwrap_or(i32::MAX);
    portico_tests::poll_until(
        "the instance to serve every Ingress",
        Duration::from_secs(900),
        || async {
            let ic = instances.get(INSTANCE).await.ok()?;
            (ic.status?.ingresses_served >= want).then_some(())
        },
    )
    .await
    .with_context(|| format!("operator log:\n{}", operator.process.log_tail(20)))?;
    result.settle_s = started.elapsed().as_secs_f64();
    settled(&operator, pid, Duration::from_secs(60)).await;
    result.rss_mib = sys::rss_mib(pid);
    println!(
        "[{}] all {n} served after {:.1} s ({:.0} MiB); {CHANGES} new Ingresses, one at a time",
        bench.elapsed(),
        result.settle_s,
        result.rss_mib
    );

    for k in 0..CHANGES {
        let name = format!("new-{k}");
        let object = table::ingress_object(
            NS,
            INSTANCE,
            &route(&name, &format!("new{k}.operator.test")),
        );
        let requests_before = requests(&operator).await;
        let cpu_before = sys::cpu_ns(pid);
        let created = Instant::now();
        ingresses.create(&PostParams::default(), &object).await?;
        let seen = tokio::time::timeout(
            ADDRESS_TIMEOUT,
            await_condition(ingresses.clone(), &name, has_address),
        )
        .await;
        let address = created.elapsed();
        if !matches!(seen, Ok(Ok(_))) {
            result.timed_out += 1;
            continue;
        }
        let cpu_after = quiet(pid, Duration::from_secs(10)).await;
        result.address_ms.push(address.as_secs_f64() * 1e3);
        result
            .cpu_ms
            .push(cpu_after.saturating_sub(cpu_before).as_secs_f64() * 1e3);
        result
            .requests
            .push(requests(&operator).await - requests_before);
    }
    println!(
        "[{}] address p50 {:.1} ms p99 {:.1} ms; operator CPU p50 {:.2} ms p99 {:.2} ms; {:.0} requests each (median)",
        bench.elapsed(),
        quantile(&result.address_ms, 0.5),
        quantile(&result.address_ms, 0.99),
        quantile(&result.cpu_ms, 0.5),
        quantile(&result.cpu_ms, 0.99),
        quantile(&result.requests, 0.5),
    );
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.99), 3.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn the_targets_need_every_address_fast_and_cheap() {
        let fast = OperatorResult {
            address_ms: vec![20.0; 30],
            cpu_ms: vec![2.0; 30],
            ..OperatorResult::default()
        };
        assert_eq!(fast.met(), Some(true));
        let slow = OperatorResult {
            address_ms: [vec![20.0; 29], vec![150.0]].concat(),
            ..fast.clone()
        };
        assert_eq!(slow.met(), Some(false), "the slowest of 30 is the p99");
        let costly = OperatorResult {
            cpu_ms: vec![6.0; 30],
            ..fast.clone()
        };
        assert_eq!(costly.met(), Some(false));
        let lost = OperatorResult {
            timed_out: 1,
            ..fast.clone()
        };
        assert_eq!(lost.met(), Some(false));
        assert_eq!(OperatorResult::default().met(), None);
    }
}
