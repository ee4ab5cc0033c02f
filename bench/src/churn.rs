//! Reconfiguration under load: 1,000 changes — Ingress edits, endpoint additions, endpoint
//! removals, Secret rotations, in turn — applied one after another through the apiserver
//! while fixed-rate HTTP (keep-alive) and HTTPS (a new TLS connection per request) load runs
//! against the routes being changed. Every failed request is counted. After each write a
//! probe polls until the proxy routes by the new configuration:
//!
//! ```text
//!  Ingress edit      c<i>/moving → another Service      until x-backend ∈ that Service
//!  endpoint added    a new address in c-svc-<i>'s slice  until x-backend = the new address
//!  endpoint removed  an address out of the slice         until 40 answers in a row lack it
//!                                                        (time of the first of them)
//!  Secret rotated    a new certificate in churn-tls      until a TLS handshake shows it
//! ```
//!
//! The same changes then go to Traefik through the same apiserver (its Kubernetes Ingress
//! provider watching a class of its own), and to nginx the way an nginx-based controller
//! applies them: rewrite nginx.conf (and the certificate files) and reload, under the same
//! load.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::Api;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Serialize;

use crate::client::{Conn, Tls, format_get};
use crate::contenders::{self, Contender, PorticoOptions};
use crate::load::{self, RateSpec};
use crate::rate::RateResult;
use crate::run::{self, Bench};
use crate::table::{self, BACKEND_PORT, Listen, PathKind, PathRule, Route, Table, pod_ip};

pub const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(5);
const NAMESPACE: &str = "churn";
const CLASS: &str = "portico-churn";
/// Traefik's class: its provider serves only classes whose controller is Traefik's.
const TRAEFIK_CLASS: &str = "traefik-churn";
const TRAEFIK_CONTROLLER: &str = "traefik.io/ingress-controller";
const SECRET: &str = "churn-tls";
const SERVICES: usize = 10;
/// Each Service owns this many addresses of the churn pool; 2..=6 of them are active.
const POOL_PER_SERVICE: usize = 6;
const REMOVAL_STREAK: usize = 40;
const HTTP_RATE: f64 = 10_000.0;
const HTTPS_RATE: f64 = 300.0;
/// Portico's churn stops applying changes after this long (it needs about a minute).
const PORTICO_DEADLINE: Duration = Duration::from_secs(240);
/// nginx reloads take a few hundred ms each under load: its churn is cut at this
/// time to keep `just bench` under 20 minutes, and the report says how many it applied.
const NGINX_DEADLINE: Duration = Duration::from_secs(150);
/// Traefik's churn is cut at the same time as nginx's, for the same reason.
const TRAEFIK_DEADLINE: Duration = NGINX_DEADLINE;

#[derive(Debug, Clone, Serialize)]
pub struct ChurnResult {
    pub method: String,
    pub portico: Option<ChurnRun>,
    pub traefik: Option<ChurnRun>,
    pub traefik_error: Option<String>,
    pub nginx: Option<ChurnRun>,
    pub nginx_error: Option<String>,
}

impl ChurnResult {
    /// The runs made, each with the name the report gives it.
    pub fn runs(&self) -> Vec<(&'static str, &ChurnRun)> {
        [
            ("Portico", self.portico.as_ref()),
            ("Traefik (Ingress provider)", self.traefik.as_ref()),
            ("nginx + reload", self.nginx.as_ref()),
        ]
        .into_iter()
        .filter_map(|(name, run)| Some((name, run?)))
        .collect()
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ChurnRun {
    /// Changes asked for, and applied before the deadline.
    pub requested: usize,
    pub applied: usize,
    pub deadline_s: u64,
    pub not_propagated: usize,
    /// Propagation times in ms by kind of change.
    pub propagation_ms: BTreeMap<String, Vec<f64>>,
    pub write_ms: Vec<f64>,
    pub http: RateResult,
    pub https: RateResult,
    pub duration_s: f64,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Stats {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

fn stats(v: &[f64]) -> Stats {
    if v.is_empty() {
        return Stats::default();
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| v[(((v.len() - 1) as f64) * p).round() as usize];
    Stats {
        count: v.len(),
        p50: at(0.5),
        p99: at(0.99),
        max: v[v.len() - 1],
    }
}

impl ChurnRun {
    pub fn failed_requests(&self) -> u64 {
        self.http.failed() + self.https.failed()
    }
    pub fn total_requests(&self) -> u64 {
        self.http.sent + self.https.sent
    }
    pub fn overall(&self) -> Stats {
        let all: Vec<f64> = self.propagation_ms.values().flatten().copied().collect();
        stats(&all)
    }
    pub fn summaries(&self) -> Vec<(String, Stats)> {
        let mut out: Vec<(String, Stats)> = self
            .propagation_ms
            .iter()
            .map(|(k, v)| (k.clone(), stats(v)))
            .collect();
        out.push(("all".into(), self.overall()));
        out
    }
}

#[derive(Debug, Clone)]
enum Change {
    /// Ingress c-<i>: `/moving` now goes to c-svc-<to>.
    IngressEdit {
        ingress: usize,
        to: usize,
    },
    EndpointAdd {
        service: usize,
        addr: Ipv4Addr,
    },
    EndpointRemove {
        service: usize,
        addr: Ipv4Addr,
    },
    SecretRotate {
        cert_pem: String,
        key_pem: String,
    },
}

impl Change {
    fn kind(&self) -> &'static str {
        match self {
            Change::IngressEdit { .. } => "Ingress edit",
            Change::EndpointAdd { .. } => "endpoint added",
            Change::EndpointRemove { .. } => "endpoint removed",
            Change::SecretRotate { .. } => "Secret rotated",
        }
    }
}

fn svc(i: usize) -> String {
    format!("c-svc-{i}")
}

fn host(i: usize) -> String {
    format!("c{i}.churn.test")
}

/// The churn table: 10 hosts, each `/` → its own Service and `/moving` → another one.
fn initial_table() -> (Table, Vec<usize>) {
    let mut services = BTreeMap::new();
    for i in 0..SERVICES {
        services.insert(
            svc(i),
            (0..3)
                .map(|k| pod_ip(2, i * POOL_PER_SERVICE + k))
                .collect(),
        );
    }
    let moving: Vec<usize> = (0..SERVICES).map(|i| (i + 1) % SERVICES).collect();
    let mut table = Table {
        namespace: NAMESPACE.into(),
        class: CLASS.into(),
        services,
        ingresses: Vec::new(),
    };
    table.ingresses = moving
        .iter()
        .enumerate()
        .map(|(i, &to)| route(i, to))
        .collect();
    (table, moving)
}

fn route(i: usize, moving_to: usize) -> Route {
    Route {
        name: format!("c-{i}"),
        host: host(i),
        paths: vec![
            PathRule {
                path: "/".into(),
                kind: PathKind::Prefix,
                service: svc(i),
            },
            PathRule {
                path: "/moving".into(),
                kind: PathKind::Prefix,
                service: svc(moving_to),
            },
        ],
        tls_secret: Some(SECRET.into()),
    }
}

/// The next `n` changes, computed against (and applied to) a model of the table.
struct Plan {
    table: Table,
    moving: Vec<usize>,
    n: usize,
}

impl Plan {
    fn next(&mut self, ca: &portico_tests::certs::Ca) -> Result<Change> {
        let n = self.n;
        self.n += 1;
        let i = (n / 4) % SERVICES;
        let change = match n % 4 {
            0 => {
                let mut to = (self.moving[i] + 1) % SERVICES;
                if to == i {
                    to = (to + 1) % SERVICES;
                }
                Change::IngressEdit { ingress: i, to }
            }
            1 | 2 => {
                let active = self
                    .table
                    .services
                    .get(&svc(i))
                    .cloned()
                    .unwrap_or_default();
                // Grow while there is room, shrink down to two: additions and removals alternate.
                let add = (n % 4 == 1 && active.len() < POOL_PER_SERVICE) || active.len() <= 2;
                if add {
                    let addr = (0..POOL_PER_SERVICE)
                        .map(|k| pod_ip(2, i * POOL_PER_SERVICE + k))
                        .find(|a| !active.contains(a))
                        .context("no free address")?;
                    Change::EndpointAdd { service: i, addr }
                } else {
                    Change::EndpointRemove {
                        service: i,
                        addr: active[(n / 4) % active.len()],
                    }
                }
            }
            _ => {
                let leaf = ca.server(&["*.churn.test", "churn.test"])?;
                Change::SecretRotate {
                    cert_pem: leaf.cert_pem,
                    key_pem: leaf.key_pem,
                }
            }
        };
        match &change {
            Change::IngressEdit { ingress, to } => {
                self.moving[*ingress] = *to;
                self.table.ingresses[*ingress] = route(*ingress, *to);
            }
            Change::EndpointAdd { service, addr } => {
                self.table
                    .services
                    .entry(svc(*service))
                    .or_default()
                    .push(*addr);
            }
            Change::EndpointRemove { service, addr } => {
                self.table
                    .services
                    .entry(svc(*service))
                    .or_default()
                    .retain(|a| a != addr);
            }
            Change::SecretRotate { .. } => {}
        }
        Ok(change)
    }
}

/// How a change reaches a contender.
enum Applier<'a> {
    /// Through the apiserver, to Ingresses of `class`.
    Api {
        client: kube::Client,
        class: &'static str,
    },
    Nginx {
        contender: &'a Contender,
        dir: PathBuf,
    },
}

impl Applier<'_> {
    async fn apply(&self, change: &Change, table: &Table, n: usize) -> Result<()> {
        match self {
            Applier::Api { client, class } => match change {
                Change::IngressEdit { ingress, .. } => {
                    let obj = table::ingress_object(NAMESPACE, class, &table.ingresses[*ingress]);
                    run::apply(&Api::<Ingress>::namespaced(client.clone(), NAMESPACE), &obj)
                        .await?;
                }
                Change::EndpointAdd { service, .. } | Change::EndpointRemove { service, .. } => {
                    let name = svc(*service);
                    let obj = table::slice_object(NAMESPACE, &name, table.endpoints(&name));
                    run::apply(
                        &Api::<EndpointSlice>::namespaced(client.clone(), NAMESPACE),
                        &obj,
                    )
                    .await?;
                }
                Change::SecretRotate { cert_pem, key_pem } => {
                    let obj = table::tls_secret(NAMESPACE, SECRET, cert_pem, key_pem);
                    run::apply(&Api::<Secret>::namespaced(client.clone(), NAMESPACE), &obj).await?;
                }
            },
            Applier::Nginx { contender, dir } => {
                let (cert, key) = match change {
                    Change::SecretRotate { cert_pem, key_pem } => {
                        let cert = dir.join(format!("cert-{n}.pem"));
                        let key = dir.join(format!("key-{n}.pem"));
                        std::fs::write(&cert, cert_pem)?;
                        std::fs::write(&key, key_pem)?;
                        std::fs::write(dir.join("current"), n.to_string())?;
                        (cert, key)
                    }
                    _ => {
                        let current = std::fs::read_to_string(dir.join("current"))?;
                        (
                            dir.join(format!("cert-{current}.pem")),
                            dir.join(format!("key-{current}.pem")),
                        )
                    }
                };
                contenders::reload_nginx(contender, table, &cert, &key)?;
            }
        }
        Ok(())
    }
}

/// Whether a response's `x-backend` shows the new configuration.
type Matcher = Box<dyn Fn(&str) -> bool>;

/// Polls `addr` until `change` is visible; returns the time from `t0`.
async fn await_propagation(
    addr: SocketAddr,
    tls_addr: SocketAddr,
    change: &Change,
    table: &Table,
    t0: Instant,
) -> Result<Option<Duration>> {
    let deadline = t0 + PROPAGATION_TIMEOUT;
    let timeout = Duration::from_secs(2);
    match change {
        Change::SecretRotate { cert_pem, .. } => {
            let want = CertificateDer::from_pem_slice(cert_pem.as_bytes())
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .to_vec();
            let tls = Tls::new("c0.churn.test", true)?;
            while Instant::now() < deadline {
                if let Ok(conn) = Conn::connect(tls_addr, Some(&tls), timeout).await
                    && conn.peer_cert.as_deref() == Some(want.as_slice())
                {
                    return Ok(Some(t0.elapsed()));
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            Ok(None)
        }
        _ => {
            let (request, expect): (Vec<u8>, Matcher) = match change {
                Change::IngressEdit { ingress, to } => {
                    let eps: Vec<String> = table
                        .endpoints(&svc(*to))
                        .iter()
                        .map(|ip| format!("{ip}:{BACKEND_PORT}"))
                        .collect();
                    (
                        format_get(&host(*ingress), "/moving", false),
                        Box::new(move |b: &str| eps.iter().any(|e| e == b)),
                    )
                }
                Change::EndpointAdd { service, addr } => {
                    let want = format!("{addr}:{BACKEND_PORT}");
                    (
                        format_get(&host(*service), "/", false),
                        Box::new(move |b: &str| b == want),
                    )
                }
                Change::EndpointRemove { service, .. } => (
                    format_get(&host(*service), "/", false),
                    Box::new(|_: &str| true),
                ),
                Change::SecretRotate { .. } => unreachable!("handled above"),
            };
            let removed = match change {
                Change::EndpointRemove { addr, .. } => Some(format!("{addr}:{BACKEND_PORT}")),
                _ => None,
            };
            let mut conn: Option<Conn> = None;
            // For a removal: when the current run of answers without the removed address began.
            let mut streak_start: Option<Duration> = None;
            let mut streak = 0usize;
            while Instant::now() < deadline {
                if conn.is_none() {
                    conn = Conn::connect(addr, None, timeout).await.ok();
                }
                let Some(c) = conn.as_mut() else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                };
                match c.request(&request, timeout).await {
                    Ok(r) => {
                        if r.close {
                            conn = None;
                        }
                        let backend = r.backend.unwrap_or_default();
                        if let Some(removed) = &removed {
                            if r.status == 200 && &backend != removed {
                                if streak == 0 {
                                    streak_start = Some(t0.elapsed());
                                }
                                streak += 1;
                                if streak >= REMOVAL_STREAK {
                                    return Ok(streak_start);
                                }
                            } else {
                                streak = 0;
                            }
                        } else if r.status == 200 && expect(&backend) {
                            return Ok(Some(t0.elapsed()));
                        }
                    }
                    Err(_) => conn = None,
                }
            }
            Ok(None)
        }
    }
}

/// Applies `changes` changes to one contender under load.
async fn churn_one(
    bench: &Bench,
    applier: &Applier<'_>,
    listen: Listen,
    label: &str,
    deadline: Duration,
) -> Result<ChurnRun> {
    let http_addr = SocketAddr::from((listen.ip, listen.http_port));
    let https_addr = SocketAddr::from((listen.ip, listen.https_port));
    let (table, moving) = initial_table();
    let mut plan = Plan {
        table,
        moving,
        n: 0,
    };
    let targets: Vec<String> = (0..SERVICES)
        .flat_map(|i| [format!("{},/", host(i)), format!("{},/moving", host(i))])
        .collect();
    let max = deadline + Duration::from_secs(60);
    let http = load::spawn_rate(&RateSpec {
        addr: http_addr,
        targets,
        conns: 50,
        rate: HTTP_RATE,
        duration: max,
        tls_sni: None,
        close: false,
    })?;
    let https = load::spawn_rate(&RateSpec {
        addr: https_addr,
        targets: vec![format!("{},/", host(0))],
        conns: 10,
        rate: HTTPS_RATE,
        duration: max,
        tls_sni: Some(host(0)),
        close: true,
    })?;
    // Let the load settle before the first change.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let mut run = ChurnRun {
        requested: bench.args.changes,
        deadline_s: deadline.as_secs(),
        ..Default::default()
    };
    let mut last_print = Instant::now();
    for n in 0..bench.args.changes {
        if started.elapsed() > deadline {
            println!(
                "    {label}: stopping after {n} changes: the churn deadline of {deadline:?} passed"
            );
            break;
        }
        let change = plan.next(&bench.ca)?;
        let t0 = Instant::now();
        applier
            .apply(&change, &plan.table, n)
            .await
            .with_context(|| format!("change {n}: {}", change.kind()))?;
        run.write_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        run.applied += 1;
        match await_propagation(http_addr, https_addr, &change, &plan.table, t0).await? {
            Some(d) => run
                .propagation_ms
                .entry(change.kind().to_string())
                .or_default()
                .push(d.as_secs_f64() * 1e3),
            None => run.not_propagated += 1,
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            println!(
                "    {label}: {} changes applied, {} not propagated within {PROPAGATION_TIMEOUT:?}",
                run.applied, run.not_propagated
            );
            last_print = Instant::now();
        }
    }
    run.duration_s = started.elapsed().as_secs_f64();
    // Let the last change's in-flight requests finish under the new configuration.
    tokio::time::sleep(Duration::from_secs(1)).await;
    run.http = load::finish_rate(http, true, Duration::from_secs(30)).await?;
    run.https = load::finish_rate(https, true, Duration::from_secs(30)).await?;
    let o = run.overall();
    println!(
        "    {label}: {} changes in {:.0} s; propagation p50 {:.1} ms p99 {:.1} ms max {:.1} ms; {} not propagated; \
         failed requests: HTTP {} of {}, HTTPS {} of {}",
        run.applied,
        run.duration_s,
        o.p50,
        o.p99,
        o.max,
        run.not_propagated,
        run.http.failed(),
        run.http.sent,
        run.https.failed(),
        run.https.sent
    );
    Ok(run)
}

pub async fn run(bench: &Bench) -> Result<ChurnResult> {
    let client = bench.client()?;
    run::create_namespace(&client, NAMESPACE).await?;
    run::apply(
        &Api::<IngressClass>::all(client.clone()),
        &table::ingress_class(CLASS),
    )
    .await?;
    let leaf = bench.ca.server(&["*.churn.test", "churn.test"])?;
    run::apply(
        &Api::<Secret>::namespaced(client.clone(), NAMESPACE),
        &table::tls_secret(NAMESPACE, SECRET, &leaf.cert_pem, &leaf.key_pem),
    )
    .await?;
    let (table, _) = initial_table();
    run::publish_table(&client, &table, 16).await?;

    let targets: Vec<_> = (0..SERVICES)
        .map(|i| table.target(&host(i), "/moving"))
        .collect();
    let mut portico_run = None;
    if bench.args.contenders.iter().any(|c| c == "portico") {
        // Portico, a fresh process serving the churn namespace.
        let listen = Listen {
            ip: Ipv4Addr::new(10, 244, 0, 13),
            http_port: 8080,
            https_port: 8443,
        };
        let dir = bench.dir.join("portico-churn");
        std::fs::create_dir_all(&dir)?;
        let default_cert = format!("{NAMESPACE}/{SECRET}");
        let opts = PorticoOptions {
            binary: &bench.portico_binary(),
            kubeconfig: &bench.kubeconfig,
            class: CLASS,
            namespaces: NAMESPACE,
            listen,
            admin_port: run::ADMIN_PORT,
            default_certificate: Some(&default_cert),
            name: "portico-churn",
            callgrind: None,
        };
        let mut portico = contenders::spawn_portico(&opts, &dir)?;
        contenders::wait_ready(
            &mut portico,
            run::ADMIN_PORT,
            Instant::now(),
            Duration::from_secs(60),
        )
        .await?;
        contenders::verify_routes(&portico, &table, &targets, Duration::from_secs(30)).await?;
        println!(
            "[{}] Portico: {} changes through the apiserver under load",
            bench.elapsed(),
            bench.args.changes
        );
        let measured = churn_one(
            bench,
            &Applier::Api {
                client: client.clone(),
                class: CLASS,
            },
            listen,
            "Portico",
            PORTICO_DEADLINE,
        )
        .await?;
        portico
            .process
            .check_running()
            .context("Portico died during the churn")?;
        drop(portico);
        portico_run = Some(measured);
    }

    let method = format!(
        "Load during the changes: {HTTP_RATE:.0} req/s HTTP/1.1 keep-alive over 50 connections to the 20 routes being \
         changed, plus {HTTPS_RATE:.0} req/s HTTPS with a new TLS connection per request (SNI c0.churn.test, whose \
         certificate rotates); both count every non-2xx answer and socket error as failed. Changes are applied one at a \
         time, each followed by a probe (a separate keep-alive connection, or new TLS handshakes) that polls until the \
         change is visible, so the next change starts after the previous one propagated (or after {}s). A removal counts \
         as propagated at the first of {REMOVAL_STREAK} answers in a row without the removed endpoint. Endpoints only \
         move among addresses the backend serves, so every request has a live endpoint. nginx: the driver rewrites \
         nginx.conf from the same model (and the certificate files) and reloads nginx (SIGHUP) for every change, as an \
         nginx-based controller without Lua must; ingress-nginx avoids reloads for endpoint and certificate changes \
         with Lua, which nginx-light lacks, so read nginx's Ingress-edit rows as the like-for-like comparison. Its clock \
         starts at the config write, without an apiserver watch in between. Traefik: its Kubernetes Ingress \
         provider watches the same apiserver (the same Ingresses, Services, EndpointSlices and Secret, in a class of its \
         own), `GOMAXPROCS=1` on the proxy core, `providersThrottleDuration: 0s` (the default, 2 s, would hold every \
         change back at least that long) and its access log off; the HTTPS entry point terminates TLS for every \
         router, with the certificate from the Ingresses' `spec.tls`.",
        PROPAGATION_TIMEOUT.as_secs()
    );
    let mut result = ChurnResult {
        method,
        portico: portico_run,
        traefik: None,
        traefik_error: None,
        nginx: None,
        nginx_error: None,
    };

    if let (true, Some(binary)) = (
        bench.args.contenders.iter().any(|c| c == "traefik"),
        &bench.args.traefik_binary,
    ) {
        match churn_traefik(bench, &client, binary, &leaf, &targets).await {
            Ok(r) => result.traefik = Some(r),
            Err(e) => {
                println!("!! Traefik churn: {e:#}");
                result.traefik_error = Some(format!("{e:#}"));
            }
        }
    }

    if bench.args.nginx_churn {
        let listen = Listen {
            ip: Ipv4Addr::new(10, 244, 0, 14),
            http_port: 8080,
            https_port: 8443,
        };
        let dir = bench.dir.join("nginx-churn");
        std::fs::create_dir_all(&dir)?;
        let cert = dir.join("cert-initial.pem");
        let key = dir.join("key-initial.pem");
        std::fs::write(&cert, &leaf.cert_pem)?;
        std::fs::write(&key, &leaf.key_pem)?;
        std::fs::write(dir.join("current"), "initial")?;
        let outcome = async {
            let nginx = contenders::start_nginx(&table, &dir, listen, &cert, &key, None).await?;
            contenders::verify_routes(&nginx, &table, &targets, Duration::from_secs(10)).await?;
            println!(
                "[{}] nginx: the same {} changes as config rewrites + reloads under load",
                bench.elapsed(),
                bench.args.changes
            );
            let r = churn_one(
                bench,
                &Applier::Nginx {
                    contender: &nginx,
                    dir: dir.clone(),
                },
                listen,
                "nginx",
                NGINX_DEADLINE,
            )
            .await?;
            still_running(nginx, "nginx")?;
            anyhow::Ok(r)
        }
        .await;
        match outcome {
            Ok(r) => result.nginx = Some(r),
            Err(e) => {
                println!("!! nginx churn: {e:#}");
                result.nginx_error = Some(format!("{e:#}"));
            }
        }
    }
    Ok(result)
}

/// Traefik's static configuration for the churn: the comparison's, with its Kubernetes
/// Ingress provider on the test apiserver instead of the file provider, and TLS on every
/// router of the HTTPS entry point.
fn traefik_churn_static(listen: Listen, server: &str, token: &str, ca: &std::path::Path) -> String {
    table::traefik_static_with(
        listen,
        "    http:\n      tls: {}\n",
        &format!(
            "  providersThrottleDuration: 0s
  kubernetesIngress:
    endpoint: \"{server}\"
    token: \"{token}\"
    certAuthFilePath: \"{ca}\"
    namespaces: [\"{NAMESPACE}\"]
    ingressClass: \"{TRAEFIK_CLASS}\"
    strictPrefixMatching: true
",
            ca = ca.display(),
        ),
    )
}

/// The same churn against Traefik: the table published again from its start, in Traefik's
/// class (Portico has stopped), and Traefik watching it.
async fn churn_traefik(
    bench: &Bench,
    client: &kube::Client,
    binary: &std::path::Path,
    leaf: &portico_tests::certs::Leaf,
    targets: &[table::Target],
) -> Result<ChurnRun> {
    let cp = bench.cp.as_ref().context("no control plane in this run")?;
    let mut class = table::ingress_class(TRAEFIK_CLASS);
    if let Some(spec) = class.spec.as_mut() {
        spec.controller = Some(TRAEFIK_CONTROLLER.into());
    }
    run::apply(&Api::<IngressClass>::all(client.clone()), &class).await?;
    run::apply(
        &Api::<Secret>::namespaced(client.clone(), NAMESPACE),
        &table::tls_secret(NAMESPACE, SECRET, &leaf.cert_pem, &leaf.key_pem),
    )
    .await?;
    // Portico's run moved endpoints and Ingresses; everything back to the start, in
    // Traefik's class.
    let (mut table, _) = initial_table();
    table.class = TRAEFIK_CLASS.into();
    for (service, endpoints) in &table.services {
        run::apply(
            &Api::<EndpointSlice>::namespaced(client.clone(), NAMESPACE),
            &table::slice_object(NAMESPACE, service, endpoints),
        )
        .await?;
    }
    for route in &table.ingresses {
        run::apply(
            &Api::<Ingress>::namespaced(client.clone(), NAMESPACE),
            &table::ingress_object(NAMESPACE, TRAEFIK_CLASS, route),
        )
        .await?;
    }

    let listen = Listen {
        ip: Ipv4Addr::new(10, 244, 0, 13),
        http_port: 8080,
        https_port: 8443,
    };
    let dir = bench.dir.join("traefik-churn");
    std::fs::create_dir_all(&dir)?;
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, cp.ca_pem())?;
    let config = dir.join("traefik.yml");
    std::fs::write(
        &config,
        traefik_churn_static(listen, cp.server(), cp.admin_token(), &ca),
    )?;
    let traefik = contenders::spawn_traefik(binary, &config, &dir, listen).await?;
    contenders::verify_routes(&traefik, &table, targets, Duration::from_secs(30))
        .await
        .with_context(|| format!("Traefik's log:\n{}", traefik.process.log_tail(30)))?;
    println!(
        "[{}] Traefik: the same {} changes through the apiserver under load",
        bench.elapsed(),
        bench.args.changes
    );
    let r = churn_one(
        bench,
        &Applier::Api {
            client: client.clone(),
            class: TRAEFIK_CLASS,
        },
        listen,
        "Traefik",
        TRAEFIK_DEADLINE,
    )
    .await?;
    still_running(traefik, "Traefik")?;
    Ok(r)
}

/// Fails with its log when `contender` exited during the churn: a run it did not finish
/// must not be reported as one.
fn still_running(mut contender: Contender, name: &str) -> Result<()> {
    if contender.process.try_wait().is_some() {
        bail!(
            "{name} exited during the churn:\n{}",
            contender.process.log_tail(20)
        );
    }
    Ok(())
}
