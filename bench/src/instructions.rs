//! User-space instructions per request, counted by callgrind: a figure that does not move
//! with the machine's noise, for A/B runs of a build (`--portico-binary`) that the CPU-time
//! ratios cannot tell apart (they spread by ±10% from run to run on these VMs).
//!
//! Each contender runs alone under `valgrind --tool=callgrind` with instrumentation off; its
//! routes are checked and it is warmed up; instrumentation is turned on for a fixed load,
//! off again, and the counts are dumped and read. Counting instructions, not time: the
//! kernel's share (about half the CPU per request, the same for every proxy) is not in it,
//! and cache misses and branch mispredictions weigh nothing. So callgrind also simulates
//! the caches, with the proxy core's own L2 as the last level (what misses it goes to the
//! shared L3), and the misses per request are reported beside the instructions: two
//! proxies that run as many instructions can still differ by how much memory each
//! request touches. Under callgrind a proxy runs
//! 20-50x slower, so the loads are light: HTTP/1.1 at a fixed 500 req/s (mostly a request per
//! wake-up, as at 30k req/s natively) and HTTP/2 over TLS for a fixed number of requests.
//! The counted dumps are kept beside results.md (`callgrind/<contender>-<case>.out`), for
//! `callgrind_annotate`: an exact profile of where the instructions go.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::contenders::{self, Contender, Kind};
use crate::load::{self, RateSpec};
use crate::run::Bench;
use crate::table::{Table, Target};

/// HTTP/1.1 keep-alive: this rate for this long, over 50 connections.
const H1_RATE: f64 = 500.0;
const H1_SECONDS: u64 = 20;
/// HTTP/2 over TLS: this many requests, 50 connections × 10 streams.
const H2_REQUESTS: u64 = 10_000;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counted {
    pub requests: u64,
    pub instructions: u64,
    /// Simulated level-1 data cache misses, reads and writes.
    pub l1d_misses: u64,
    /// Simulated misses of the core's level-2 cache (callgrind's last level here).
    pub l2_misses: u64,
}

impl Counted {
    pub fn per_request(&self) -> f64 {
        self.per(self.instructions)
    }
    pub fn per(&self, n: u64) -> f64 {
        n as f64 / self.requests.max(1) as f64
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct InstructionsResult {
    pub h1: BTreeMap<Kind, Counted>,
    pub h2: BTreeMap<Kind, Counted>,
    /// The level-2 cache simulated as callgrind's last level: the proxy CPU's.
    pub l2: crate::sys::CacheGeometry,
}

pub async fn run(bench: &Bench, table: &Table, out: &Path) -> Result<InstructionsResult> {
    which_valgrind()?;
    let l2 = crate::sys::l2_cache(crate::sys::PROXY_CPU)
        .context("the cache simulation needs the proxy CPU's L2 cache")?;
    let keep = out.join("callgrind");
    std::fs::create_dir_all(&keep)?;
    let targets = table.comparison_targets();
    let h2_targets = table.h2_targets();
    let mut result = InstructionsResult {
        h1: BTreeMap::new(),
        h2: BTreeMap::new(),
        l2,
    };
    for name in &bench.args.contenders {
        let dir = bench.dir.join("callgrind").join(name);
        std::fs::create_dir_all(&dir)?;
        let mut c = match name.as_str() {
            "portico" => {
                crate::run::start_portico(bench, &dir, "portico-callgrind", Some(&dir))
                    .await?
                    .0
            }
            "nginx" => {
                contenders::start_nginx(
                    table,
                    &dir,
                    contenders::listen_for(Kind::Nginx),
                    &bench.cert_pem,
                    &bench.key_pem,
                    Some(&dir),
                )
                .await?
            }
            "haproxy" => {
                contenders::start_haproxy(
                    table,
                    &dir,
                    contenders::listen_for(Kind::Haproxy),
                    &bench.combined_pem,
                    Some(&dir),
                )
                .await?
            }
            // Go under valgrind is slow and its runtime's threads make the count a
            // function of scheduling; Traefik is left out here.
            "traefik" => continue,
            other => bail!("unknown contender {other:?} (portico, nginx, haproxy, traefik)"),
        };
        contenders::verify_routes(&c, table, &targets, Duration::from_secs(60)).await?;
        let h1 = count(&dir, &keep.join(format!("{name}-h1.out")), || {
            h1_load(&c, &targets, H1_SECONDS)
        })
        .await?;
        let h2 = count(&dir, &keep.join(format!("{name}-h2.out")), || {
            h2_load(&c, &h2_targets)
        })
        .await?;
        println!(
            "[{}] {} under callgrind, per request: HTTP/1.1 {:.0} instructions, {:.0} L1d and {:.1} L2 misses ({} requests); HTTP/2 {:.0}, {:.0} and {:.1} ({})",
            bench.elapsed(),
            c.kind.name(),
            h1.per_request(),
            h1.per(h1.l1d_misses),
            h1.per(h1.l2_misses),
            h1.requests,
            h2.per_request(),
            h2.per(h2.l1d_misses),
            h2.per(h2.l2_misses),
            h2.requests
        );
        c.process.check_running()?;
        result.h1.insert(c.kind, h1);
        result.h2.insert(c.kind, h2);
    }
    Ok(result)
}

fn which_valgrind() -> Result<()> {
    crate::sys::which("valgrind")?;
    crate::sys::which("callgrind_control")?;
    Ok(())
}

/// Warms up with one run of `load` uninstrumented (connections made, code translated), then
/// counts the instructions of a second run: the total over every process of the contender,
/// read from the files of one dump. The dump with the most is copied to `keep`.
async fn count<F, Fut>(dir: &Path, keep: &Path, load: F) -> Result<Counted>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    load().await.context("warm-up")?;
    let before = dump_files(dir)?;
    // Without a pid, callgrind_control reaches every callgrind run on the machine: this
    // phase runs one contender at a time, and nothing else of the bench under valgrind.
    callgrind_control(&["-i", "on"])?;
    let requests = load().await;
    callgrind_control(&["-i", "off"])?;
    let requests = requests?;
    callgrind_control(&["-d"])?;
    // callgrind writes the dump when the process next runs: wait for it, then a moment
    // for any other process of the contender's.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dump_files(dir)?.iter().any(|f| !before.contains(f)) {
        if Instant::now() > deadline {
            bail!("callgrind wrote no dump in {} within 30 s", dir.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut counted = Counted {
        requests,
        ..Counted::default()
    };
    let mut most = 0;
    for f in dump_files(dir)?.iter().filter(|f| !before.contains(f)) {
        let t = totals(&std::fs::read_to_string(f)?)
            .with_context(|| format!("no events and totals in {}", f.display()))?;
        let n = t.get("Ir").copied().unwrap_or(0);
        counted.instructions += n;
        counted.l1d_misses += ["D1mr", "D1mw"]
            .iter()
            .filter_map(|e| t.get(*e))
            .sum::<u64>();
        counted.l2_misses += ["DLmr", "DLmw"]
            .iter()
            .filter_map(|e| t.get(*e))
            .sum::<u64>();
        if n >= most {
            most = n;
            std::fs::copy(f, keep)?;
        }
    }
    Ok(counted)
}

/// callgrind's dump files: `callgrind.out.<pid>.<n>`.
fn dump_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(rest) = name.strip_prefix("callgrind.out.")
            && rest.split('.').count() == 2
        {
            v.push(p);
        }
    }
    Ok(v)
}

/// The `totals:` line of a callgrind output file, by the names of its `events:` line
/// (`Ir`, and with the cache simulation `D1mr`, `D1mw`, `DLmr`, `DLmw`, ...).
fn totals(text: &str) -> Option<BTreeMap<String, u64>> {
    let line = |prefix: &str| text.lines().find_map(|l| l.strip_prefix(prefix));
    let names = line("events:")?.split_whitespace();
    let values = line("totals:")?
        .split_whitespace()
        .map(|v| v.parse::<u64>().ok());
    let map: Option<BTreeMap<String, u64>> = names
        .zip(values)
        .map(|(n, v)| v.map(|v| (n.to_string(), v)))
        .collect();
    map.filter(|m| m.contains_key("Ir"))
}

fn callgrind_control(args: &[&str]) -> Result<()> {
    let out = Command::new("callgrind_control").args(args).output()?;
    if !out.status.success() {
        bail!(
            "callgrind_control {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

async fn h1_load(c: &Contender, targets: &[Target], seconds: u64) -> Result<u64> {
    let r = load::rate(&RateSpec {
        addr: c.http_addr(),
        targets: targets.iter().map(Target::arg).collect(),
        conns: 50,
        rate: H1_RATE,
        duration: Duration::from_secs(seconds),
        tls_sni: None,
        close: false,
    })
    .await?;
    if r.failed() > 0 {
        bail!(
            "{}: {} of {} requests failed under callgrind: {:?}",
            c.kind.name(),
            r.failed(),
            r.sent,
            r.sample_errors
        );
    }
    Ok(r.ok)
}

async fn h2_load(c: &Contender, targets: &[Target]) -> Result<u64> {
    let base = format!("https://{}", c.https_addr());
    let t = load::h2load_requests(
        &base,
        targets,
        50,
        10,
        H2_REQUESTS,
        Duration::from_secs(300),
    )
    .await?;
    if t.errors > 0 {
        bail!(
            "{}: {} of {} HTTP/2 requests failed under callgrind",
            c.kind.name(),
            t.errors,
            H2_REQUESTS
        );
    }
    Ok(t.requests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_read_from_a_dump() {
        let dump = "version: 1\ncreator: callgrind-3.19.0\npid: 7\ncmd:  nginx\npart: 1\n\ndesc: Trigger: dump\n\npositions: line\nevents: Ir\nsummary: 0\n\nfl=(1)\nfn=(1) main\n0 12\n\ntotals: 46378076\n";
        assert_eq!(totals(dump).expect("totals")["Ir"], 46_378_076);
        assert_eq!(totals("events: Ir\n"), None);
        let cached =
            "events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw\ntotals: 100 40 30 5 7 3 1 2 4\n";
        let t = totals(cached).expect("totals");
        assert_eq!(
            (t["Ir"], t["D1mr"], t["D1mw"], t["DLmr"], t["DLmw"]),
            (100, 7, 3, 2, 4)
        );
    }
}
