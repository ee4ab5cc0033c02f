//! Scale: 10,000 Ingresses, each with its own Service and an EndpointSlice of 5 endpoints
//! (50,000 endpoints), created in the real apiserver with a bounded number of requests in
//! flight. Then one proxy serving them and, for the ratio, the same binary serving 10 such
//! Ingresses:
//!
//! ```text
//!  spawn ─▶ /readyz 200 (start→ready) ─▶ last Ingress routed ─▶ VmRSS
//!  5 × edit one Ingress's backend ─▶ probe until the new Service answers
//!  fixed-rate latency, 10 vs 10,000 Ingresses, interleaved ×3 ─▶ p50/p99 ratios, CPU/request
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::Api;
use serde::Serialize;

use crate::client::{Conn, format_get};
use crate::contenders::{self, Contender, PorticoOptions};
use crate::load::{self, RateSpec};
use crate::rate::RateResult;
use crate::run::{self, Bench, SCALE_POOL};
use crate::sys;
use crate::table::{self, BACKEND_PORT, Listen, PathKind, PathRule, Route, Table};

const BIG_NS: &str = "scale";
const BIG_CLASS: &str = "portico-scale";
const SMALL_NS: &str = "scale-small";
const SMALL_CLASS: &str = "portico-scale-small";
const SMALL_INGRESSES: usize = 10;
const CONCURRENCY: usize = 48;
const RATE: f64 = 10_000.0;
const REPS: usize = 5;
const RUN: Duration = Duration::from_secs(6);
const CHANGES: usize = 5;

#[derive(Debug, Clone, Default, Serialize)]
pub struct ScaleResult {
    pub method: String,
    pub ingresses: usize,
    pub services: usize,
    pub endpoints: usize,
    pub concurrency: usize,
    pub create_s: f64,
    pub ready_ms: f64,
    pub first_route_ms: f64,
    pub rss_ready_mib: f64,
    /// The kernel's high-water mark of the proxy's resident memory (VmHWM).
    pub rss_peak_mib: f64,
    pub small_rss_mib: f64,
    pub change_ms: Vec<f64>,
    pub rate: f64,
    pub small: Vec<RateResult>,
    pub big: Vec<RateResult>,
    pub p50_ratio: Option<f64>,
    pub p99_ratio: Option<f64>,
    pub small_cpu_us: f64,
    pub big_cpu_us: f64,
    pub failed: u64,
}

fn scale_table(namespace: &str, class: &str, ingresses: usize, per_service: usize) -> Table {
    let mut t = Table {
        namespace: namespace.into(),
        class: class.into(),
        services: Default::default(),
        ingresses: Vec::new(),
    };
    for i in 0..ingresses {
        let svc = format!("s-svc-{i}");
        t.services.insert(
            svc.clone(),
            (0..per_service)
                .map(|k| table::pod_ip(3, (i * per_service + k) % SCALE_POOL))
                .collect(),
        );
        t.ingresses.push(Route {
            name: format!("s-{i}"),
            host: format!("s{i}.scale.test"),
            paths: vec![PathRule {
                path: "/".into(),
                kind: PathKind::Prefix,
                service: svc,
            }],
            tls_secret: None,
        });
    }
    t
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn publish(bench: &Bench, t: &Table) -> Result<f64> {
    let client = bench.client()?;
    run::create_namespace(&client, &t.namespace).await?;
    run::apply(
        &Api::<IngressClass>::all(client.clone()),
        &table::ingress_class(&t.class),
    )
    .await?;
    let started = Instant::now();
    let ns = &t.namespace;
    let services: Vec<Service> = t
        .services
        .keys()
        .map(|s| table::service_object(ns, s, true))
        .collect();
    let slices: Vec<EndpointSlice> = t
        .services
        .iter()
        .map(|(s, eps)| table::slice_object(ns, s, eps))
        .collect();
    let ingresses: Vec<Ingress> = t
        .ingresses
        .iter()
        .map(|r| table::ingress_object(ns, &t.class, r))
        .collect();
    let chunk = 2000;
    for part in services.chunks(chunk) {
        run::create_all(
            &Api::<Service>::namespaced(client.clone(), ns),
            part.to_vec(),
            CONCURRENCY,
        )
        .await?;
        progress(bench, "Services", part.len(), started);
    }
    for part in slices.chunks(chunk) {
        run::create_all(
            &Api::<EndpointSlice>::namespaced(client.clone(), ns),
            part.to_vec(),
            CONCURRENCY,
        )
        .await?;
        progress(bench, "EndpointSlices", part.len(), started);
    }
    for part in ingresses.chunks(chunk) {
        run::create_all(
            &Api::<Ingress>::namespaced(client.clone(), ns),
            part.to_vec(),
            CONCURRENCY,
        )
        .await?;
        progress(bench, "Ingresses", part.len(), started);
    }
    Ok(started.elapsed().as_secs_f64())
}

fn progress(bench: &Bench, what: &str, n: usize, started: Instant) {
    if n >= 1000 {
        println!(
            "    [{}] +{n} {what} ({:.0} s)",
            bench.elapsed(),
            started.elapsed().as_secs_f64()
        );
    }
}

async fn start(
    bench: &Bench,
    name: &str,
    class: &str,
    ns: &str,
    ip: Ipv4Addr,
) -> Result<(Contender, Duration)> {
    let dir = bench.dir.join(name);
    std::fs::create_dir_all(&dir)?;
    let opts = PorticoOptions {
        binary: &bench.portico_binary(),
        kubeconfig: &bench.kubeconfig,
        class,
        namespaces: ns,
        listen: Listen {
            ip,
            http_port: 8080,
            https_port: 8443,
        },
        admin_port: run::ADMIN_PORT,
        default_certificate: None,
        name,
        callgrind: None,
    };
    let t0 = Instant::now();
    let mut c = contenders::spawn_portico(&opts, &dir)?;
    let ready =
        contenders::wait_ready(&mut c, run::ADMIN_PORT, t0, Duration::from_secs(120)).await?;
    Ok((c, ready))
}

/// The pause between two probe requests that found the change not yet routed (the
/// figures are that much coarser).
const PROBE_PAUSE: Duration = Duration::from_millis(1);

/// Polls `host/` until an endpoint of `service` answers; the time since `t0`.
async fn until_routed(
    addr: SocketAddr,
    t: &Table,
    host: &str,
    service: &str,
    t0: Instant,
    limit: Duration,
) -> Result<Duration> {
    let want: Vec<String> = t
        .endpoints(service)
        .iter()
        .map(|ip| format!("{ip}:{BACKEND_PORT}"))
        .collect();
    let request = format_get(host, "/", false);
    let mut conn: Option<Conn> = None;
    while t0.elapsed() < limit {
        if conn.is_none() {
            conn = Conn::connect(addr, None, Duration::from_secs(2)).await.ok();
            if conn.is_none() {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        }
        if let Some(c) = conn.as_mut() {
            match c.request(&request, Duration::from_secs(2)).await {
                Ok(r)
                    if r.status == 200 && r.backend.as_ref().is_some_and(|b| want.contains(b)) =>
                {
                    return Ok(t0.elapsed());
                }
                Ok(r) if r.close => conn = None,
                Ok(_) => {}
                Err(_) => conn = None,
            }
        }
        // Not yet: ask again in a millisecond. A probe asking back to back takes a share
        // of the proxy's core from the build it waits for (and of the apiserver's core
        // from the write it waits on), so it measured itself too.
        tokio::time::sleep(PROBE_PAUSE).await;
    }
    bail!("{host}/ was not routed to {service} within {limit:?}")
}

pub async fn run(bench: &Bench) -> Result<ScaleResult> {
    let n = bench.args.scale_ingresses;
    let per = bench.args.scale_endpoints_per_service;
    let big = scale_table(BIG_NS, BIG_CLASS, n, per);
    let small = scale_table(SMALL_NS, SMALL_CLASS, SMALL_INGRESSES, per);
    let mut result = ScaleResult {
        ingresses: n,
        services: n,
        endpoints: n * per,
        concurrency: CONCURRENCY,
        rate: RATE,
        ..Default::default()
    };

    // Creating 30,000 objects is the apiserver's work, not the proxy's: give it both CPUs.
    let me = std::process::id();
    sys::set_affinity(me, "0,1")?;
    println!(
        "[{}] creating {n} Ingresses, {n} Services, {n} EndpointSlices ({} endpoints), {CONCURRENCY} requests in flight",
        bench.elapsed(),
        n * per
    );
    let created = publish(bench, &big).await;
    sys::set_affinity(me, sys::LOAD_CPU)?;
    result.create_s = created?;
    publish(bench, &small).await?;
    println!("[{}] created in {:.1} s", bench.elapsed(), result.create_s);
    if !bench.args.contenders.iter().any(|c| c == "portico") {
        bail!("the proxy parts of the scale phase need Portico among --contenders");
    }

    let (small_proxy, _) = start(
        bench,
        "portico-scale-small",
        SMALL_CLASS,
        SMALL_NS,
        Ipv4Addr::new(10, 244, 0, 21),
    )
    .await?;
    let t0 = Instant::now();
    let (mut big_proxy, ready) = start(
        bench,
        "portico-scale",
        BIG_CLASS,
        BIG_NS,
        Ipv4Addr::new(10, 244, 0, 20),
    )
    .await?;
    result.ready_ms = ready.as_secs_f64() * 1e3;
    let last = &big.ingresses[n - 1];
    result.first_route_ms = until_routed(
        big_proxy.http_addr(),
        &big,
        &last.host,
        &last.paths[0].service,
        t0,
        Duration::from_secs(120),
    )
    .await?
    .as_secs_f64()
        * 1e3;
    result.rss_ready_mib = sys::rss_mib(big_proxy.pid());
    println!(
        "[{}] {n} Ingresses: ready in {:.0} ms, last Ingress routed at {:.0} ms, RSS {:.1} MiB",
        bench.elapsed(),
        result.ready_ms,
        result.first_route_ms,
        result.rss_ready_mib
    );

    // One Ingress change at a time.
    let client = bench.client()?;
    let api = Api::<Ingress>::namespaced(client, BIG_NS);
    for k in 0..CHANGES {
        let i = (k * 1999 + 17) % n;
        let to = format!("s-svc-{}", (i + 1) % n);
        let mut route = big.ingresses[i].clone();
        route.paths[0].service = to.clone();
        let t0 = Instant::now();
        run::apply(&api, &table::ingress_object(BIG_NS, BIG_CLASS, &route)).await?;
        let d = until_routed(
            big_proxy.http_addr(),
            &big,
            &route.host,
            &to,
            t0,
            Duration::from_secs(30),
        )
        .await?;
        result.change_ms.push(d.as_secs_f64() * 1e3);
    }
    println!(
        "[{}] one Ingress change → routed: {:?} ms",
        bench.elapsed(),
        result
            .change_ms
            .iter()
            .map(|v| (v * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    );

    // Latency at a fixed rate: 10 Ingresses against 10,000, interleaved. Both rotate over
    // as many hosts (and so as many Services and upstream connections): what differs is
    // only the size of the table a request is routed in.
    let hosts = SMALL_INGRESSES;
    let big_targets: Vec<String> = (0..hosts)
        .map(|k| format!("s{}.scale.test,/", (k * n / hosts + k) % n))
        .collect();
    let small_targets: Vec<String> = (0..SMALL_INGRESSES)
        .map(|k| format!("s{k}.scale.test,/"))
        .collect();
    let mut small_cpu = Vec::new();
    let mut big_cpu = Vec::new();
    for rep in 0..REPS {
        let order: [(&Contender, bool); 2] = if rep % 2 == 0 {
            [(&small_proxy, false), (&big_proxy, true)]
        } else {
            [(&big_proxy, true), (&small_proxy, false)]
        };
        for (c, is_big) in order {
            let spec = RateSpec {
                addr: c.http_addr(),
                targets: if is_big {
                    big_targets.clone()
                } else {
                    small_targets.clone()
                },
                conns: 50,
                rate: RATE,
                duration: RUN,
                tls_sni: None,
                close: false,
            };
            let before = sys::cpu_time(c.pid());
            let r = load::rate(&spec).await?;
            let cpu = sys::cpu_time(c.pid()).since(&before).total();
            let per_req = if r.ok > 0 {
                cpu * 1e6 / r.ok as f64
            } else {
                0.0
            };
            println!(
                "    rep {} {:>6} Ingresses: {:.0} req/s p50 {} µs p99 {} µs cpu {:.2} µs/req failed {}",
                rep + 1,
                if is_big { n } else { SMALL_INGRESSES },
                r.achieved_rate(),
                r.p50_us,
                r.p99_us,
                per_req,
                r.failed()
            );
            result.failed += r.failed();
            if is_big {
                big_cpu.push(per_req);
                result.big.push(r);
            } else {
                small_cpu.push(per_req);
                result.small.push(r);
            }
        }
    }
    let ratio = |f: fn(&RateResult) -> u32| -> Option<f64> {
        let v: Vec<f64> = result
            .big
            .iter()
            .zip(&result.small)
            .filter(|(_, s)| f(s) > 0)
            .map(|(b, s)| f(b) as f64 / f(s) as f64)
            .collect();
        if v.is_empty() {
            None
        } else {
            Some(crate::compare::median(v))
        }
    };
    result.p50_ratio = ratio(|r| r.p50_us);
    result.p99_ratio = ratio(|r| r.p99_us);
    result.small_cpu_us = crate::compare::median(small_cpu);
    result.big_cpu_us = crate::compare::median(big_cpu);
    result.rss_peak_mib = peak_rss_mib(big_proxy.pid()).max(sys::rss_mib(big_proxy.pid()));
    result.small_rss_mib = sys::rss_mib(small_proxy.pid());
    big_proxy
        .process
        .check_running()
        .context("the 10,000-Ingress proxy died")?;
    result.method = format!(
        "Each Ingress has one host (s<i>.scale.test) and one Prefix `/` rule to its own (headless) Service; each Service has one \
         EndpointSlice of {per} ready endpoints drawn from {SCALE_POOL} addresses the backend serves. Objects are \
         created Services first, then EndpointSlices, then Ingresses, {CONCURRENCY} requests in flight, with etcd and \
         the apiserver on both CPUs during creation only. Both proxies run on CPU 1 with an admin kubeconfig; ready \
         = /readyz answers 200; the peak resident memory is the kernel's VmHWM. A change is one Ingress moved to \
         another Service with server-side apply, timed until a probe on one keep-alive connection (asking again \
         1 ms after each answer from the old Service) gets the new one. Latency: {RATE:.0} req/s over 50 \
         keep-alive connections for {}s, rotating over {SMALL_INGRESSES} hosts, spread across the 10,000 for the \
         large proxy (as many Services and upstream connections as the small one's), {REPS} interleaved pairs.",
        RUN.as_secs()
    );
    Ok(result)
}
