//! The four contenders, each started on the proxy CPU alone (`taskset -c 1`), each on its
//! own pod-like address with the same ports, and each checked to route every benchmark
//! request to the right Service before it is measured.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use portico_tests::process::Process;

use crate::client::{Conn, Tls, format_get};
use crate::sys;
use crate::table::{BACKEND_PORT, Listen, Table, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Kind {
    Portico,
    Nginx,
    Haproxy,
    Traefik,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Portico => "Portico",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "HAProxy",
            Kind::Traefik => "Traefik",
        }
    }

    /// Every contender, in the order the report's columns take.
    pub const ALL: [Kind; 4] = [Kind::Portico, Kind::Nginx, Kind::Haproxy, Kind::Traefik];
    /// The peers Portico's ratios are taken against.
    pub const PEERS: [Kind; 3] = [Kind::Nginx, Kind::Haproxy, Kind::Traefik];
}

pub struct Contender {
    pub kind: Kind,
    pub listen: Listen,
    pub process: Process,
    /// Where its configuration lives (nginx reloads rewrite it).
    pub dir: PathBuf,
}

impl Contender {
    pub fn pid(&self) -> u32 {
        self.process.id()
    }
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from((self.listen.ip, self.listen.http_port))
    }
    pub fn https_addr(&self) -> SocketAddr {
        SocketAddr::from((self.listen.ip, self.listen.https_port))
    }
}

/// How to run `portico-proxy`.
pub struct PorticoOptions<'a> {
    pub binary: &'a Path,
    pub kubeconfig: &'a Path,
    pub class: &'a str,
    pub namespaces: &'a str,
    pub listen: Listen,
    pub admin_port: u16,
    pub default_certificate: Option<&'a str>,
    pub name: &'a str,
    /// Run under callgrind, its files in this directory (instructions.rs).
    pub callgrind: Option<&'a Path>,
}

/// `program` pinned to the proxy CPU; under `callgrind` (instructions.rs) when given: no
/// instrumentation until [`crate::instructions`] turns it on, one output file per process
/// in that directory.
fn on_proxy_cpu(program: &Path, callgrind: Option<&Path>) -> Result<Command> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", sys::PROXY_CPU]);
    if let Some(dir) = callgrind {
        cmd.args(["valgrind", "--tool=callgrind", "--instr-atstart=no"])
            .arg(format!(
                "--callgrind-out-file={}",
                dir.join("callgrind.out.%p").display()
            ));
        // Cache misses too, with the core's own L2 as the last level simulated: what
        // spills out of it goes to the shared L3.
        let l2 = sys::l2_cache(sys::PROXY_CPU)
            .context("the cache simulation needs the proxy CPU's L2 cache")?;
        cmd.arg("--cache-sim=yes")
            .arg(format!("--LL={},{},{}", l2.bytes, l2.ways, l2.line));
    }
    cmd.arg(program);
    Ok(cmd)
}

/// The proxy image's environment (the Dockerfile's `ENV` lines; none since the allocator's
/// settings moved into the binary), so that Portico is measured as it ships.
pub fn portico_env() -> Result<BTreeMap<String, String>> {
    Ok(portico_tests::dockerfile::workspace_stage("proxy")?.env)
}

/// Starts `portico-proxy` pinned to the proxy CPU. Returns once the process is spawned; see
/// [`wait_ready`].
pub fn spawn_portico(o: &PorticoOptions<'_>, dir: &Path) -> Result<Contender> {
    let mut cmd = on_proxy_cpu(o.binary, o.callgrind)?;
    cmd.args([
        format!("--ingress-class={}", o.class),
        format!("--namespaces={}", o.namespaces),
        // The first served namespace holds the catch-alls, as an instance's own would.
        format!(
            "--instance-namespace={}",
            o.namespaces.split(',').next().unwrap_or_default()
        ),
        format!("--http-port={}", o.listen.http_port),
        format!("--https-port={}", o.listen.https_port),
        format!("--admin-port={}", o.admin_port),
        format!("--bind-address={}", o.listen.ip),
        "--ssl-redirect=false".into(),
        "--log-format=text".into(),
        "--log-level=warn".into(),
    ]);
    if let Some(cert) = o.default_certificate {
        cmd.arg(format!("--default-certificate={cert}"));
    }
    cmd.envs(portico_env()?)
        .env("KUBECONFIG", o.kubeconfig)
        .env("POD_IP", o.listen.ip.to_string());
    let process = Process::spawn(o.name, cmd)?;
    Ok(Contender {
        kind: Kind::Portico,
        listen: o.listen,
        process,
        dir: dir.to_path_buf(),
    })
}

/// Waits until Portico's `/readyz` answers 200 and returns how long that took from `since`.
pub async fn wait_ready(
    c: &mut Contender,
    admin_port: u16,
    since: Instant,
    timeout: Duration,
) -> Result<Duration> {
    let admin = SocketAddr::from((c.listen.ip, admin_port));
    let request = format_get(&admin.to_string(), "/readyz", false);
    let deadline = since + timeout;
    loop {
        c.process.check_running()?;
        if let Ok(mut conn) = Conn::connect(admin, None, Duration::from_millis(200)).await
            && let Ok(r) = conn.request(&request, Duration::from_secs(1)).await
            && r.status == 200
        {
            return Ok(since.elapsed());
        }
        if Instant::now() > deadline {
            bail!(
                "{} not ready within {timeout:?}; its log:\n{}",
                c.process.name(),
                c.process.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes the nginx configuration for `table` and starts nginx (master + one worker) on
/// the proxy CPU, under callgrind when given its directory.
pub async fn start_nginx(
    table: &Table,
    dir: &Path,
    listen: Listen,
    cert: &Path,
    key: &Path,
    callgrind: Option<&Path>,
) -> Result<Contender> {
    std::fs::create_dir_all(dir)?;
    let conf = dir.join("nginx.conf");
    let mut text = crate::table::nginx_conf(table, dir, listen, cert, key);
    if callgrind.is_some() {
        // A worker forked by the master drops root for nginx's user, and callgrind can
        // then neither write its counts nor be reached by callgrind_control: one process
        // runs the worker's event loop instead.
        text = text.replace("master_process on;", "master_process off;");
    }
    std::fs::write(&conf, text)?;
    let nginx = sys::which("nginx")?;
    let check = Command::new(&nginx)
        .arg("-t")
        .arg("-q")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .args(["-e", "stderr"])
        .output()?;
    if !check.status.success() {
        bail!(
            "nginx -t refused {}: {}",
            conf.display(),
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let mut cmd = on_proxy_cpu(&nginx, callgrind)?;
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .args(["-e", "stderr"]);
    let process = Process::spawn("nginx", cmd)?;
    let mut c = Contender {
        kind: Kind::Nginx,
        listen,
        process,
        dir: dir.to_path_buf(),
    };
    wait_listening(&mut c).await?;
    Ok(c)
}

/// Rewrites nginx.conf for `table` and reloads nginx (SIGHUP to the master), as an nginx
/// based ingress controller does on a configuration change.
pub fn reload_nginx(c: &Contender, table: &Table, cert: &Path, key: &Path) -> Result<()> {
    let conf = c.dir.join("nginx.conf");
    let tmp = c.dir.join("nginx.conf.new");
    std::fs::write(
        &tmp,
        crate::table::nginx_conf(table, &c.dir, c.listen, cert, key),
    )?;
    std::fs::rename(&tmp, &conf)?;
    c.process.signal(libc::SIGHUP);
    Ok(())
}

/// Writes haproxy.cfg and its maps for `table` and starts HAProxy (one thread) on the
/// proxy CPU, under callgrind when given its directory.
pub async fn start_haproxy(
    table: &Table,
    dir: &Path,
    listen: Listen,
    pem: &Path,
    callgrind: Option<&Path>,
) -> Result<Contender> {
    std::fs::create_dir_all(dir)?;
    let (cfg, exact, prefix) = crate::table::haproxy_cfg(table, dir, listen, pem);
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg)?;
    std::fs::write(dir.join("exact.map"), exact)?;
    std::fs::write(dir.join("prefix.map"), prefix)?;
    let haproxy = sys::which("haproxy")?;
    let check = Command::new(&haproxy)
        .arg("-c")
        .arg("-q")
        .arg("-f")
        .arg(&path)
        .output()?;
    if !check.status.success() {
        bail!(
            "haproxy -c refused {}: {}{}",
            path.display(),
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let mut cmd = on_proxy_cpu(&haproxy, callgrind)?;
    cmd.arg("-db").arg("-f").arg(&path);
    let process = Process::spawn("haproxy", cmd)?;
    let mut c = Contender {
        kind: Kind::Haproxy,
        listen,
        process,
        dir: dir.to_path_buf(),
    };
    wait_listening(&mut c).await?;
    Ok(c)
}

/// Writes Traefik's static and dynamic configuration for `table` and starts `binary` on the
/// proxy CPU with `GOMAXPROCS=1` (one core, like nginx's one worker and HAProxy's one
/// thread). The file provider loads the routes after the ports open; [`verify_routes`]
/// waits for them.
pub async fn start_traefik(
    binary: &Path,
    table: &Table,
    dir: &Path,
    listen: Listen,
    cert: &Path,
    key: &Path,
) -> Result<Contender> {
    std::fs::create_dir_all(dir)?;
    let dynamic = dir.join("dynamic.yml");
    std::fs::write(&dynamic, crate::table::traefik_dynamic(table, cert, key))?;
    let static_conf = dir.join("traefik.yml");
    std::fs::write(&static_conf, crate::table::traefik_static(listen, &dynamic))?;
    spawn_traefik(binary, &static_conf, dir, listen).await
}

/// Starts Traefik with `config` (its static configuration) on the proxy CPU with
/// `GOMAXPROCS=1`, and waits for its ports.
pub async fn spawn_traefik(
    binary: &Path,
    config: &Path,
    dir: &Path,
    listen: Listen,
) -> Result<Contender> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", sys::PROXY_CPU])
        .arg(binary)
        .arg(format!("--configFile={}", config.display()))
        .env("GOMAXPROCS", "1")
        .current_dir(dir);
    let process = Process::spawn("traefik", cmd)?;
    let mut c = Contender {
        kind: Kind::Traefik,
        listen,
        process,
        dir: dir.to_path_buf(),
    };
    wait_listening(&mut c).await?;
    Ok(c)
}

async fn wait_listening(c: &mut Contender) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        c.process.check_running()?;
        if tokio::net::TcpStream::connect(c.http_addr()).await.is_ok()
            && tokio::net::TcpStream::connect(c.https_addr()).await.is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not listen on {} within 10s:\n{}",
                c.kind.name(),
                c.http_addr(),
                c.process.log_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a response came from an endpoint of `service`.
pub fn served_by(table: &Table, service: &str, backend: Option<&str>) -> bool {
    let Some(b) = backend else { return false };
    table
        .endpoints(service)
        .iter()
        .any(|ip| b == format!("{ip}:{BACKEND_PORT}"))
}

/// Sends every target (twice, to see both endpoints) over HTTP and once over HTTPS, and
/// fails unless each is answered 200 by an endpoint of the Service the Ingress rules pick.
/// Retries for up to `timeout` (Portico may still be applying its first sync).
pub async fn verify_routes(
    c: &Contender,
    table: &Table,
    targets: &[Target],
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let tls = Tls::new(&c.listen.ip.to_string(), true)?;
    loop {
        let result = async {
            let mut conn = Conn::connect(c.http_addr(), None, Duration::from_secs(2)).await?;
            for t in targets.iter().chain(targets.iter()) {
                let r = conn
                    .request(&format_get(&t.host, &t.path, false), Duration::from_secs(2))
                    .await?;
                if r.status != 200 || !served_by(table, &t.service, r.backend.as_deref()) {
                    bail!(
                        "{}{} answered {} from {:?}, expected 200 from {}",
                        t.host,
                        t.path,
                        r.status,
                        r.backend,
                        t.service
                    );
                }
                if r.close {
                    conn = Conn::connect(c.http_addr(), None, Duration::from_secs(2)).await?;
                }
            }
            let mut tls_conn = Conn::connect(c.https_addr(), Some(&tls), Duration::from_secs(2))
                .await
                .context("TLS")?;
            let t = &targets[0];
            let r = tls_conn
                .request(&format_get(&t.host, &t.path, false), Duration::from_secs(2))
                .await?;
            if r.status != 200 || !served_by(table, &t.service, r.backend.as_deref()) {
                bail!(
                    "HTTPS {}{} answered {} from {:?}",
                    t.host,
                    t.path,
                    r.status,
                    r.backend
                );
            }
            anyhow::Ok(())
        }
        .await;
        match result {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                bail!(
                    "{} does not route the benchmark table correctly: {e:#}",
                    c.kind.name()
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The pod-like address of each contender.
pub fn listen_for(kind: Kind) -> Listen {
    let ip = match kind {
        Kind::Portico => Ipv4Addr::new(10, 244, 0, 10),
        Kind::Nginx => Ipv4Addr::new(10, 244, 0, 11),
        Kind::Haproxy => Ipv4Addr::new(10, 244, 0, 12),
        Kind::Traefik => Ipv4Addr::new(10, 244, 0, 13),
    };
    Listen {
        ip,
        http_port: 8080,
        https_port: 8443,
    }
}
