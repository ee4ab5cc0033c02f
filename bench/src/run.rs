//! `portico-bench run`: sets the stage (pinning, backend, control plane, routing table,
//! contenders), runs the phases and writes the report.

use std::fmt::Debug;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use portico_tests::cluster::{ControlPlane, Options};
use portico_tests::process::Process;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::compare::{self, Case, CaseResult};
use crate::contenders::{self, Contender, Kind, PorticoOptions};
use crate::report::Report;
use crate::table::{self, BACKEND_PORT, Table, pod_ip};
use crate::{churn, load, operator, scale, sys};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Seconds per measured run.
    #[arg(long, default_value_t = 8)]
    pub duration: u64,
    /// Seconds of unmeasured warm-up per contender before each case.
    #[arg(long, default_value_t = 1)]
    pub warmup: u64,
    /// Repetitions of every case (interleaved, order rotated).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Which phases to run: compare, churn, scale, operator; and `instructions` (not in a
    /// full run): user-space instructions per request under callgrind, for A/B runs.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "compare,churn,scale,operator"
    )]
    pub phases: Vec<String>,
    /// Which contenders (portico, nginx, haproxy, traefik).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "portico,nginx,haproxy,traefik"
    )]
    pub contenders: Vec<String>,
    /// Which comparison cases: h1-50, h1-200, rate, https, h2, newconn, and `features`
    /// (Portico alone, with and without features on: a ratio to the plain case).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "h1-50,h1-200,rate,https,h2,newconn,features"
    )]
    pub cases: Vec<String>,
    /// Requests per second of the fixed-rate case (CPU per request).
    #[arg(long, default_value_t = 30000)]
    pub rate: u32,
    /// Configuration changes applied under load in the churn phase.
    #[arg(long, default_value_t = 1000)]
    pub changes: usize,
    /// Run the same churn against nginx, reloading it for every change.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub nginx_churn: bool,
    /// Ingresses in the scale phase.
    #[arg(long, default_value_t = 10000)]
    pub scale_ingresses: usize,
    /// Endpoints per Service in the scale phase (10,000 × 5 = 50,000).
    #[arg(long, default_value_t = 5)]
    pub scale_endpoints_per_service: usize,
    /// Record Portico with perf during a fixed-rate run: a flame graph (SVG) and the top
    /// user-space symbols beside results.md.
    #[arg(long)]
    pub profile: bool,
    /// The Portico proxy binary to measure (default: the dist build, `target/dist`),
    /// for A/B runs of a build variant.
    #[arg(long)]
    pub portico_binary: Option<PathBuf>,
    /// The Traefik binary (bench.sh builds it with bench/traefik/build.sh); needed when
    /// `traefik` is among the contenders.
    #[arg(long)]
    pub traefik_binary: Option<PathBuf>,
    /// Ingresses of the one instance in the operator phase.
    #[arg(long, default_value_t = 10000)]
    pub operator_ingresses: usize,
    /// Where results.md and results.json go.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
}

/// Everything the phases share.
pub struct Bench {
    pub args: Args,
    pub dir: PathBuf,
    pub release_dir: PathBuf,
    /// The proxy as its image ships it: `target/dist` (bench.sh builds it with
    /// `--profile dist`).
    pub dist_dir: PathBuf,
    pub cp: Option<ControlPlane>,
    pub kubeconfig: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    pub combined_pem: PathBuf,
    pub ca: portico_tests::certs::Ca,
    pub started: Instant,
}

pub const NAMESPACE: &str = "bench";
pub const CLASS: &str = "portico-bench";
pub const TLS_SECRET: &str = "bench-tls";
pub const ADMIN_PORT: u16 = 9090;

/// Addresses the backend listens on: the comparison table's endpoints (10.244.1.x), the
/// churn pool (10.244.2.x) and the scale pool (10.244.3.x).
pub const CHURN_POOL: usize = 60;
pub const SCALE_POOL: usize = 250;

impl Bench {
    pub fn client(&self) -> Result<Client> {
        Ok(self
            .cp
            .as_ref()
            .context("no control plane in this run")?
            .client())
    }
    pub fn has_phase(&self, p: &str) -> bool {
        self.args.phases.iter().any(|x| x == p)
    }
    pub fn portico_binary(&self) -> PathBuf {
        self.args
            .portico_binary
            .clone()
            .unwrap_or_else(|| self.dist_dir.join("portico-proxy"))
    }
    pub fn elapsed(&self) -> String {
        format!("{:>4.0}s", self.started.elapsed().as_secs_f64())
    }
}

pub fn main(args: Args) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

fn preflight(args: &Args) -> Result<()> {
    if std::env::var(portico_tests::netns::ENV).as_deref() != Ok("1") {
        bail!(
            "portico-bench run sends traffic to 10.244.x.y and must run inside tests/netns.sh (use `just bench`)"
        );
    }
    std::net::TcpListener::bind((Ipv4Addr::new(10, 244, 0, 1), 0))
        .context("10.244.0.1 is not local: tests/netns.sh did not set up lo")?;
    for tool in ["taskset", "wrk", "h2load", "nginx", "haproxy"] {
        sys::which(tool)?;
    }
    if args.reps < 1 {
        bail!("--reps must be at least 1");
    }
    if args.contenders.iter().any(|c| c == "traefik") {
        match &args.traefik_binary {
            Some(b) if b.is_file() => {}
            Some(b) => bail!("--traefik-binary {}: no such file", b.display()),
            None => bail!(
                "the traefik contender needs --traefik-binary (bench.sh passes the one bench/traefik/build.sh builds)"
            ),
        }
    }
    Ok(())
}

async fn run(args: Args) -> Result<()> {
    preflight(&args)?;
    let started = Instant::now();
    // This driver and everything it starts run on the load CPU unless told otherwise.
    sys::set_affinity(std::process::id(), sys::LOAD_CPU)?;
    // The run owns this network namespace: widen the ephemeral port range for the
    // new-connection case and let connections reuse TIME_WAIT ports.
    sys::netns_sysctl("net.ipv4.ip_local_port_range", "1024 65000")?;
    sys::netns_sysctl("net.ipv4.tcp_tw_reuse", "1")?;
    sys::netns_sysctl("net.core.somaxconn", "65535")?;

    let release_dir = std::env::current_exe()?
        .parent()
        .context("executable directory")?
        .to_path_buf();
    let dist_dir = release_dir
        .parent()
        .context("target directory")?
        .join("dist");
    let dir = portico_tests::scratch_dir("bench");
    let out = out_dir(&args);
    std::fs::create_dir_all(&out)?;

    // One wildcard certificate for every contender (ECDSA P-256).
    let ca = portico_tests::certs::Ca::new("portico-bench-ca")?;
    let leaf = ca.server(&["*.bench.test", "bench.test"])?;
    let cert_pem = dir.join("cert.pem");
    let key_pem = dir.join("key.pem");
    let combined_pem = dir.join("combined.pem");
    std::fs::write(&cert_pem, &leaf.cert_pem)?;
    std::fs::write(&key_pem, &leaf.key_pem)?;
    std::fs::write(&combined_pem, format!("{}{}", leaf.cert_pem, leaf.key_pem))?;

    let mut bench = Bench {
        args: args.clone(),
        dir: dir.clone(),
        release_dir,
        dist_dir,
        cp: None,
        kubeconfig: dir.join("admin.kubeconfig"),
        cert_pem,
        key_pem,
        combined_pem,
        ca,
        started,
    };
    let mut report = Report::new(&bench);
    println!(
        "==> portico-bench: work files in {}, logs in {}",
        dir.display(),
        portico_tests::process::log_dir().display()
    );

    // The backend, on the load CPU.
    let mut listen: Vec<SocketAddr> = Vec::new();
    for n in 0..table::COMPARISON_SERVICES * table::COMPARISON_ENDPOINTS_PER_SERVICE {
        listen.push(SocketAddr::from((pod_ip(1, n), BACKEND_PORT)));
    }
    for n in 0..CHURN_POOL {
        listen.push(SocketAddr::from((pod_ip(2, n), BACKEND_PORT)));
    }
    for n in 0..SCALE_POOL {
        listen.push(SocketAddr::from((pod_ip(3, n), BACKEND_PORT)));
    }
    let _backend = start_backend(&bench, &listen).await?;

    let want_portico = args.contenders.iter().any(|c| c == "portico");
    if want_portico
        || bench.has_phase("churn")
        || bench.has_phase("scale")
        || bench.has_phase("operator")
    {
        println!(
            "[{}] starting etcd and kube-apiserver on 127.0.0.1 (CPU {})",
            bench.elapsed(),
            sys::LOAD_CPU
        );
        let cp_dir = dir.join("control-plane");
        let cp = tokio::task::spawn_blocking(move || {
            ControlPlane::start(&Options {
                dir: cp_dir,
                controller_manager: false,
                port: 0,
                node_address: None,
            })
        })
        .await??;
        cp.write_kubeconfig(cp.admin_token(), &bench.kubeconfig)?;
        bench.cp = Some(cp);
    }

    let table = Table::comparison(NAMESPACE, CLASS, TLS_SECRET);
    if bench.cp.is_some() {
        let client = bench.client()?;
        create_namespace(&client, NAMESPACE).await?;
        apply(
            &Api::<IngressClass>::all(client.clone()),
            &table::ingress_class(CLASS),
        )
        .await?;
        let secret = table::tls_secret(
            NAMESPACE,
            TLS_SECRET,
            &std::fs::read_to_string(&bench.cert_pem)?,
            &std::fs::read_to_string(&bench.key_pem)?,
        );
        apply(
            &Api::<Secret>::namespaced(client.clone(), NAMESPACE),
            &secret,
        )
        .await?;
        publish_table(&client, &table, 16).await?;
        println!(
            "[{}] published the comparison table: {} Ingresses, {} routes, {} Services",
            bench.elapsed(),
            table.ingresses.len(),
            table.ingresses.iter().map(|i| i.paths.len()).sum::<usize>(),
            table.services.len()
        );
    }

    if bench.has_phase("compare") {
        let results = compare_phase(&bench, &table, &mut report).await;
        match results {
            Ok(r) => report.compare = r,
            Err(e) => {
                println!("!! comparison failed: {e:#}");
                report.failures.push(format!("comparison: {e:#}"));
            }
        }
        report.write(&out)?;
    }
    if bench.has_phase("instructions") {
        println!(
            "[{}] == instructions per request (callgrind) ==",
            bench.elapsed()
        );
        match crate::instructions::run(&bench, &table, &out).await {
            Ok(r) => report.instructions = Some(r),
            Err(e) => {
                println!("!! instructions failed: {e:#}");
                report.failures.push(format!("instructions: {e:#}"));
            }
        }
        report.write(&out)?;
    }
    if bench.has_phase("churn") {
        println!("[{}] == reconfiguration under load ==", bench.elapsed());
        match churn::run(&bench).await {
            Ok(r) => report.churn = Some(r),
            Err(e) => {
                println!("!! churn failed: {e:#}");
                report.failures.push(format!("churn: {e:#}"));
            }
        }
        report.write(&out)?;
    }
    if bench.has_phase("scale") {
        println!("[{}] == scale ==", bench.elapsed());
        match scale::run(&bench).await {
            Ok(r) => report.scale = Some(r),
            Err(e) => {
                println!("!! scale failed: {e:#}");
                report.failures.push(format!("scale: {e:#}"));
            }
        }
    }
    if bench.has_phase("operator") {
        println!("[{}] == operator ==", bench.elapsed());
        match operator::run(&bench).await {
            Ok(r) => report.operator = Some(r),
            Err(e) => {
                println!("!! operator failed: {e:#}");
                report.failures.push(format!("operator: {e:#}"));
            }
        }
    }
    report.total_seconds = started.elapsed().as_secs_f64();
    report.write(&out)?;
    println!("\n{}", report.markdown());
    println!("written to {}", out.join("results.md").display());
    if let Some(cp) = bench.cp.take() {
        cp.stop();
    }
    Ok(())
}

async fn start_backend(bench: &Bench, listen: &[SocketAddr]) -> Result<Process> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", sys::LOAD_CPU])
        .arg(std::env::current_exe()?)
        .arg("backend")
        .arg(format!(
            "--listen={}",
            listen
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ));
    let mut p = Process::spawn("backend", cmd)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(listen[listen.len() - 1])
        .await
        .is_err()
    {
        p.check_running()?;
        if Instant::now() > deadline {
            bail!("the backend did not listen within 10s:\n{}", p.log_tail(20));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "[{}] backend listening on {} addresses (CPU {})",
        bench.elapsed(),
        listen.len(),
        sys::affinity(p.id())
    );
    Ok(p)
}

/// Starts Portico on the comparison table (its class and namespace, the shared default
/// certificate, its contender address) and waits until it is ready; under callgrind when
/// given its directory (instructions.rs). Returns it and how long it took.
pub async fn start_portico(
    bench: &Bench,
    dir: &Path,
    name: &str,
    callgrind: Option<&Path>,
) -> Result<(Contender, Duration)> {
    let default_cert = format!("{NAMESPACE}/{TLS_SECRET}");
    let opts = PorticoOptions {
        binary: &bench.portico_binary(),
        kubeconfig: &bench.kubeconfig,
        class: CLASS,
        namespaces: NAMESPACE,
        listen: contenders::listen_for(Kind::Portico),
        admin_port: ADMIN_PORT,
        default_certificate: Some(&default_cert),
        name,
        callgrind,
    };
    let started = Instant::now();
    let mut c = contenders::spawn_portico(&opts, dir)?;
    // Under callgrind it starts many times slower.
    let within = Duration::from_secs(if callgrind.is_some() { 120 } else { 60 });
    let ready = contenders::wait_ready(&mut c, ADMIN_PORT, started, within).await?;
    Ok((c, ready))
}

async fn compare_phase(
    bench: &Bench,
    table: &Table,
    report: &mut Report,
) -> Result<Vec<CaseResult>> {
    println!(
        "[{}] == comparison: {} ==",
        bench.elapsed(),
        bench.args.contenders.join(", ")
    );
    let mut contenders: Vec<Contender> = Vec::new();
    for name in &bench.args.contenders {
        let c = match name.as_str() {
            "portico" => {
                let dir = bench.dir.join("portico");
                std::fs::create_dir_all(&dir)?;
                let (c, ready) = start_portico(bench, &dir, "portico", None).await?;
                println!(
                    "[{}] Portico ready in {:.0} ms",
                    bench.elapsed(),
                    ready.as_secs_f64() * 1e3
                );
                c
            }
            "nginx" => {
                contenders::start_nginx(
                    table,
                    &bench.dir.join("nginx"),
                    contenders::listen_for(Kind::Nginx),
                    &bench.cert_pem,
                    &bench.key_pem,
                    None,
                )
                .await?
            }
            "haproxy" => {
                contenders::start_haproxy(
                    table,
                    &bench.dir.join("haproxy"),
                    contenders::listen_for(Kind::Haproxy),
                    &bench.combined_pem,
                    None,
                )
                .await?
            }
            "traefik" => {
                let binary = bench
                    .args
                    .traefik_binary
                    .as_deref()
                    .context("--traefik-binary")?;
                contenders::start_traefik(
                    binary,
                    table,
                    &bench.dir.join("traefik"),
                    contenders::listen_for(Kind::Traefik),
                    &bench.cert_pem,
                    &bench.key_pem,
                )
                .await?
            }
            other => bail!("unknown contender {other:?} (portico, nginx, haproxy, traefik)"),
        };
        contenders.push(c);
    }
    let targets = table.comparison_targets();
    let h2_targets = table.h2_targets();
    for c in &contenders {
        contenders::verify_routes(c, table, &targets, Duration::from_secs(30)).await?;
        let rss = sys::rss_mib(c.pid());
        println!(
            "[{}] {} routes all {} benchmark requests correctly; CPUs {}; idle RSS {:.1} MiB",
            bench.elapsed(),
            c.kind.name(),
            targets.len(),
            sys::affinity(c.pid()),
            rss
        );
        report.idle_rss.insert(c.kind, rss);
    }
    let wrk_script = bench.dir.join("targets.lua");
    let wrk_close_script = bench.dir.join("targets-close.lua");
    std::fs::write(&wrk_script, load::wrk_script(&targets, false))?;
    std::fs::write(&wrk_close_script, load::wrk_script(&targets, true))?;
    let setup = compare::Setup {
        contenders: &contenders,
        targets: &targets,
        h2_targets: &h2_targets,
        wrk_script: &wrk_script,
        wrk_close_script: &wrk_close_script,
        duration: Duration::from_secs(bench.args.duration),
        warmup: Duration::from_secs(bench.args.warmup),
        reps: bench.args.reps,
    };
    let mut results = Vec::new();
    for name in &bench.args.cases {
        let case = match name.as_str() {
            "h1-50" => Case::Http1 { conns: 50 },
            "h1-200" => Case::Http1 { conns: 200 },
            "rate" => Case::FixedRate {
                conns: 50,
                rate: bench.args.rate,
            },
            "https" => Case::Https { conns: 200 },
            "h2" => Case::Http2 {
                conns: 50,
                streams: 10,
            },
            "newconn" => Case::NewConnection { conns: 50 },
            // After the comparison, on Portico alone.
            "features" => continue,
            other => bail!("unknown case {other:?}"),
        };
        println!("[{}] {}", bench.elapsed(), case.title());
        results.push(compare::run_case(&setup, case).await?);
    }
    for c in &contenders {
        report.loaded_rss.insert(c.kind, sys::rss_mib(c.pid()));
    }
    if bench.args.profile
        && let Some(portico) = contenders.iter().find(|c| c.kind == Kind::Portico)
    {
        match profile_portico(bench, portico, &setup).await {
            Ok(p) => report.profile = Some(p),
            Err(e) => {
                println!("!! profile failed: {e:#}");
                report.failures.push(format!("profile: {e:#}"));
            }
        }
    }
    if bench.args.cases.iter().any(|c| c == "features")
        && let Some(portico) = contenders.iter().find(|c| c.kind == Kind::Portico)
    {
        println!(
            "[{}] Portico with features on (source range, rate limit, CORS, header rewrites) against itself without",
            bench.elapsed()
        );
        let cases = [
            Case::FixedRate {
                conns: 50,
                rate: bench.args.rate,
            },
            Case::Http1 { conns: 50 },
        ];
        match crate::features::run(&bench.client()?, table, portico, &setup, &cases).await {
            Ok(r) => report.features = Some(r),
            Err(e) => {
                println!("!! features case failed: {e:#}");
                report.failures.push(format!("features on: {e:#}"));
            }
        }
    }
    Ok(results)
}

/// Portico at the fixed rate under `perf record`; the flame graph goes beside results.md.
async fn profile_portico(
    bench: &Bench,
    portico: &Contender,
    setup: &compare::Setup<'_>,
) -> Result<crate::profile::Profile> {
    println!(
        "[{}] profiling Portico at a fixed {} req/s ({} s, perf, user space)",
        bench.elapsed(),
        bench.args.rate,
        bench.args.duration
    );
    let out = out_dir(&bench.args);
    let data = bench.dir.join("perf.data");
    let mut perf = crate::profile::record(portico.pid(), setup.duration, &data)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let only = compare::Setup {
        contenders: std::slice::from_ref(portico),
        ..*setup
    };
    let case = Case::FixedRate {
        conns: 50,
        rate: bench.args.rate,
    };
    let sample = compare::run_one(&only, portico, case, setup.duration).await?;
    let status = perf.wait().await?;
    if !status.success() {
        bail!("perf record exited with {status}");
    }
    let profile = crate::profile::render(&data, &out, "flamegraph")?;
    let _ = std::fs::remove_file(&data);
    println!(
        "[{}] {} samples at {:.0} req/s; flame graph {}",
        bench.elapsed(),
        profile.samples,
        sample.rps,
        profile.svg.display()
    );
    Ok(profile)
}

/// Where results go, absolute.
pub fn out_dir(args: &Args) -> PathBuf {
    if args.out.is_absolute() {
        args.out.clone()
    } else {
        portico_tests::workspace_root().join(&args.out)
    }
}

pub async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    apply(&Api::<Namespace>::all(client.clone()), &ns).await?;
    Ok(())
}

/// Server-side apply with the benchmark's field manager.
pub async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = obj.meta().name.clone().context("object without a name")?;
    api.patch(
        &name,
        &PatchParams::apply("portico-bench").force(),
        &Patch::Apply(obj),
    )
    .await
    .with_context(|| format!("apply {name}"))
}

/// Creates objects with at most `concurrency` requests in flight.
pub async fn create_all<K>(api: &Api<K>, objects: Vec<K>, concurrency: usize) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope> + Serialize + DeserializeOwned + Clone + Debug,
{
    futures::stream::iter(objects.into_iter().map(|o| {
        let api = api.clone();
        async move {
            match api.create(&PostParams::default(), &o).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => {
                    Err(anyhow::Error::from(e).context(format!("create {:?}", o.meta().name)))
                }
            }
        }
    }))
    .buffer_unordered(concurrency)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

/// Services, then EndpointSlices, then Ingresses of `table`.
pub async fn publish_table(client: &Client, table: &Table, concurrency: usize) -> Result<()> {
    let ns = &table.namespace;
    let services = table
        .services
        .keys()
        .map(|s| table::service_object(ns, s, false))
        .collect();
    create_all(
        &Api::<Service>::namespaced(client.clone(), ns),
        services,
        concurrency,
    )
    .await?;
    let slices = table
        .services
        .iter()
        .map(|(s, eps)| table::slice_object(ns, s, eps))
        .collect();
    create_all(
        &Api::<EndpointSlice>::namespaced(client.clone(), ns),
        slices,
        concurrency,
    )
    .await?;
    let ingresses = table
        .ingresses
        .iter()
        .map(|r| table::ingress_object(ns, &table.class, r))
        .collect();
    create_all(
        &Api::<Ingress>::namespaced(client.clone(), ns),
        ingresses,
        concurrency,
    )
    .await?;
    Ok(())
}
