//! Portico against nginx, HAProxy and Traefik: every case runs each contender in turn,
//! A B C D, with the order rotated each repetition (A B C D, B C D A, …), so drift over
//! minutes hits every contender alike; ratios are taken pair by pair within a repetition,
//! and the report gives their median.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::contenders::{Contender, Kind};
use crate::load::{self, RateSpec, Throughput};
use crate::sys::{self, CpuTime};
use crate::table::Target;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Case {
    /// HTTP/1.1 keep-alive, wrk, saturating.
    Http1 { conns: usize },
    /// HTTP/1.1 keep-alive at a fixed rate: CPU per request and latency.
    FixedRate { conns: usize, rate: u32 },
    /// HTTP/1.1 over TLS 1.3, keep-alive, wrk.
    Https { conns: usize },
    /// HTTP/2 over TLS (ALPN h2), h2load.
    Http2 { conns: usize, streams: usize },
    /// A new TCP connection for every request (`Connection: close`), wrk.
    NewConnection { conns: usize },
}

impl Case {
    pub fn title(&self) -> String {
        match *self {
            Case::Http1 { conns } => format!("HTTP/1.1 keep-alive, {conns} connections"),
            Case::FixedRate { conns, rate } => format!(
                "HTTP/1.1 at a fixed {}k req/s, {conns} connections",
                rate / 1000
            ),
            Case::Https { conns } => {
                format!("HTTPS (TLS 1.3, HTTP/1.1) keep-alive, {conns} connections")
            }
            Case::Http2 { conns, streams } => {
                format!("HTTP/2 over TLS, {conns} connections × {streams} streams")
            }
            Case::NewConnection { conns } => {
                format!("HTTP/1.1, new connection per request, {conns} connections")
            }
        }
    }
}

/// One measured run of one contender.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: Option<f64>,
    pub errors: u64,
    pub requests: u64,
    /// Proxy CPU per request (µs), user and system.
    pub cpu_user_us: f64,
    pub cpu_sys_us: f64,
    /// For fixed-rate runs: the rate the generator reached.
    pub achieved_rate: Option<f64>,
    /// Share of the proxy CPU used by anything but the contender during the run (noise:
    /// other work on the machine), percent.
    pub foreign_cpu_pct: f64,
    /// The same for the load CPU: anything this run did not start, percent.
    pub foreign_load_cpu_pct: f64,
}

impl Sample {
    pub fn cpu_us(&self) -> f64 {
        self.cpu_user_us + self.cpu_sys_us
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub case: Case,
    /// Runs per contender, in repetition order.
    pub samples: BTreeMap<Kind, Vec<Sample>>,
}

#[derive(Clone, Copy)]
pub struct Setup<'a> {
    pub contenders: &'a [Contender],
    pub targets: &'a [Target],
    pub h2_targets: &'a [Target],
    pub wrk_script: &'a Path,
    pub wrk_close_script: &'a Path,
    pub duration: Duration,
    pub warmup: Duration,
    pub reps: usize,
}

pub async fn run_one(
    setup: &Setup<'_>,
    c: &Contender,
    case: Case,
    duration: Duration,
) -> Result<Sample> {
    let before = sys::cpu_time(c.pid());
    let busy_before = sys::cpu_busy(sys::PROXY_CPU);
    let me = std::process::id();
    let load_busy_before = sys::cpu_busy(sys::LOAD_CPU);
    let ours_before = sys::cpu_time_with_reaped(me) - sys::cpu_time_with_reaped(c.pid());
    let wall = std::time::Instant::now();
    let http = format!("http://{}", c.http_addr());
    let https = format!("https://{}", c.https_addr());
    let (t, achieved): (Throughput, Option<f64>) = match case {
        Case::Http1 { conns } => (
            load::wrk(&format!("{http}/"), setup.wrk_script, conns, duration).await?,
            None,
        ),
        Case::Https { conns } => (
            load::wrk(&format!("{https}/"), setup.wrk_script, conns, duration).await?,
            None,
        ),
        Case::NewConnection { conns } => (
            load::wrk(&format!("{http}/"), setup.wrk_close_script, conns, duration).await?,
            None,
        ),
        Case::Http2 { conns, streams } => (
            load::h2load(&https, setup.h2_targets, conns, streams, duration).await?,
            None,
        ),
        Case::FixedRate { conns, rate } => {
            let r = load::rate(&RateSpec {
                addr: c.http_addr(),
                targets: setup.targets.iter().map(Target::arg).collect(),
                conns,
                rate: rate as f64,
                duration,
                tls_sni: None,
                close: false,
            })
            .await?;
            let t = Throughput {
                requests: r.ok,
                rps: r.achieved_rate(),
                p50_us: r.p50_us as f64,
                p99_us: Some(r.p99_us as f64),
                errors: r.failed(),
            };
            (t, Some(r.achieved_rate()))
        }
    };
    let cpu: CpuTime = sys::cpu_time(c.pid()).since(&before);
    let busy = sys::cpu_busy(sys::PROXY_CPU) - busy_before;
    let foreign_cpu_pct = ((busy - cpu.total()) / wall.elapsed().as_secs_f64() * 100.0).max(0.0);
    // Everything this driver started except the contender runs on the load CPU.
    let ours = sys::cpu_time_with_reaped(me) - sys::cpu_time_with_reaped(c.pid()) - ours_before;
    let load_busy = sys::cpu_busy(sys::LOAD_CPU) - load_busy_before;
    let foreign_load_cpu_pct = ((load_busy - ours) / wall.elapsed().as_secs_f64() * 100.0).max(0.0);
    let per = |secs: f64| {
        if t.requests > 0 {
            secs * 1e6 / t.requests as f64
        } else {
            0.0
        }
    };
    Ok(Sample {
        rps: t.rps,
        p50_us: t.p50_us,
        p99_us: t.p99_us,
        errors: t.errors,
        requests: t.requests,
        cpu_user_us: per(cpu.user),
        cpu_sys_us: per(cpu.system),
        achieved_rate: achieved,
        foreign_cpu_pct,
        foreign_load_cpu_pct,
    })
}

/// Runs `case` for every contender, interleaved and rotated, `setup.reps` times.
pub async fn run_case(setup: &Setup<'_>, case: Case) -> Result<CaseResult> {
    let n = setup.contenders.len();
    if !setup.warmup.is_zero() {
        for c in setup.contenders {
            let _ = run_one(setup, c, case, setup.warmup).await?;
        }
    }
    let mut samples: BTreeMap<Kind, Vec<Sample>> = BTreeMap::new();
    for rep in 0..setup.reps {
        for i in 0..n {
            let c = &setup.contenders[(i + rep) % n];
            let s = run_one(setup, c, case, setup.duration).await?;
            println!(
                "    rep {} {:<8} {:>9.0} req/s  p50 {:>7.0} µs  p99 {:>7} µs  cpu {:>5.1} µs/req  errors {}  (others: CPU {} {:.0}%, CPU {} {:.0}%)",
                rep + 1,
                c.kind.name(),
                s.rps,
                s.p50_us,
                s.p99_us
                    .map(|v| format!("{v:.0}"))
                    .unwrap_or_else(|| "-".into()),
                s.cpu_us(),
                s.errors,
                sys::PROXY_CPU,
                s.foreign_cpu_pct,
                sys::LOAD_CPU,
                s.foreign_load_cpu_pct
            );
            samples.entry(c.kind).or_default().push(s);
        }
    }
    for c in setup.contenders {
        if !sys::alive(c.pid()) {
            anyhow::bail!(
                "{} exited during \"{}\"; its log:\n{}",
                c.kind.name(),
                case.title(),
                c.process.log_tail(30)
            );
        }
    }
    Ok(CaseResult { case, samples })
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

impl CaseResult {
    pub fn median_of(&self, kind: Kind, f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.samples.get(&kind)?.iter().filter_map(&f).collect();
        if v.is_empty() { None } else { Some(median(v)) }
    }

    /// The median over repetitions of `f(Portico) / f(other)` taken within each repetition.
    pub fn paired_ratio(&self, other: Kind, f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
        let a = self.samples.get(&Kind::Portico)?;
        let b = self.samples.get(&other)?;
        let v: Vec<f64> = a
            .iter()
            .zip(b.iter())
            .filter_map(|(x, y)| match (f(x), f(y)) {
                (Some(x), Some(y)) if y > 0.0 => Some(x / y),
                _ => None,
            })
            .collect();
        if v.is_empty() { None } else { Some(median(v)) }
    }
}
