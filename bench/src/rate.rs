//! `portico-bench rate`: a fixed-rate HTTP/1.1 load generator (wrk drives as fast as it can;
//! CPU per request, latency at 10k Ingresses and the load under churn need a fixed rate).
//!
//! Each of `--conns` connections sends one request at a time on its own schedule
//! (`conns / rate` apart), rotating over `--target host,path` pairs. Latency is measured
//! from the moment a request is written (with `--close`, from the connect) to the end of
//! its response. Every failure is counted: non-2xx, connect, I/O and timeout errors. On
//! SIGINT it stops early and still prints its result, one `BENCH_JSON {...}` line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::client::{Conn, Tls, format_get};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Where to send the requests.
    #[arg(long)]
    pub addr: SocketAddr,
    /// `host,path` pairs to rotate over (repeatable).
    #[arg(long = "target", required = true)]
    pub targets: Vec<String>,
    #[arg(long, default_value_t = 50)]
    pub conns: usize,
    /// Requests per second, all connections together.
    #[arg(long)]
    pub rate: f64,
    /// Seconds.
    #[arg(long)]
    pub duration: f64,
    /// Speak TLS with this SNI name (an IP address sends none).
    #[arg(long)]
    pub tls_sni: Option<String>,
    /// A new connection for every request (`Connection: close`).
    #[arg(long)]
    pub close: bool,
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
}

/// What one run of the generator measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RateResult {
    pub requested_rate: f64,
    pub duration_s: f64,
    pub sent: u64,
    pub ok: u64,
    /// Non-2xx answers by status code.
    pub non_2xx: BTreeMap<u16, u64>,
    pub connect_errors: u64,
    pub io_errors: u64,
    pub timeouts: u64,
    pub p50_us: u32,
    pub p90_us: u32,
    pub p99_us: u32,
    pub p999_us: u32,
    pub max_us: u32,
    /// First few error messages, for the log.
    pub sample_errors: Vec<String>,
}

impl RateResult {
    pub fn failed(&self) -> u64 {
        self.non_2xx.values().sum::<u64>() + self.connect_errors + self.io_errors + self.timeouts
    }
    pub fn achieved_rate(&self) -> f64 {
        if self.duration_s > 0.0 {
            self.sent as f64 / self.duration_s
        } else {
            0.0
        }
    }
}

#[derive(Default)]
struct Local {
    sent: u64,
    ok: u64,
    non_2xx: BTreeMap<u16, u64>,
    connect_errors: u64,
    io_errors: u64,
    timeouts: u64,
    latencies: Vec<u32>,
    errors: Vec<String>,
}

impl Local {
    fn error(&mut self, e: &anyhow::Error) {
        let text = format!("{e:#}");
        if text.contains("timed out") {
            self.timeouts += 1;
        } else {
            self.io_errors += 1;
        }
        if self.errors.len() < 5 {
            self.errors.push(text);
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    if args.rate <= 0.0 || args.conns == 0 || args.duration <= 0.0 {
        bail!("--rate, --conns and --duration must be positive");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(generate(args))?;
    println!("BENCH_JSON {}", serde_json::to_string(&result)?);
    Ok(())
}

async fn generate(args: Args) -> Result<RateResult> {
    let requests: Vec<Arc<[u8]>> = args
        .targets
        .iter()
        .map(|t| {
            let (host, path) = t.split_once(',').unwrap_or((t.as_str(), "/"));
            Arc::from(format_get(host, path, args.close))
        })
        .collect();
    let tls = match &args.tls_sni {
        Some(sni) => Some(Tls::new(sni, true)?),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.store(true, Ordering::Release);
        });
    }
    let interval = Duration::from_secs_f64(args.conns as f64 / args.rate);
    let timeout = Duration::from_millis(args.timeout_ms);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration);
    let mut tasks = Vec::new();
    for i in 0..args.conns {
        let requests = requests.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        let addr = args.addr;
        let close = args.close;
        tasks.push(tokio::spawn(async move {
            let mut local = Local::default();
            let mut next = start + interval.mul_f64(i as f64 / args.conns as f64);
            let mut conn: Option<Conn> = None;
            let mut k = i;
            loop {
                let now = Instant::now();
                if now >= end || stop.load(Ordering::Acquire) {
                    break;
                }
                if next > now {
                    tokio::time::sleep_until(next.into()).await;
                } else if now - next > Duration::from_millis(100) {
                    // Far behind (the server stalled): restart the schedule instead of bursting.
                    next = now;
                }
                next += interval;
                k = (k + 1) % requests.len();
                let t0 = Instant::now();
                if conn.is_none() {
                    match Conn::connect(addr, tls.as_ref(), timeout).await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            local.sent += 1;
                            local.connect_errors += 1;
                            if local.errors.len() < 5 {
                                local.errors.push(format!("{e:#}"));
                            }
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                let t_send = if close { t0 } else { Instant::now() };
                local.sent += 1;
                match c.request(&requests[k], timeout).await {
                    Ok(response) => {
                        local
                            .latencies
                            .push(t_send.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        if (200..300).contains(&response.status) {
                            local.ok += 1;
                        } else {
                            *local.non_2xx.entry(response.status).or_default() += 1;
                        }
                        if response.close || close {
                            conn = None;
                        }
                    }
                    Err(e) => {
                        local.error(&e);
                        conn = None;
                    }
                }
            }
            local
        }));
    }
    let mut all = Local::default();
    for task in tasks {
        let l = task.await?;
        all.sent += l.sent;
        all.ok += l.ok;
        for (code, n) in l.non_2xx {
            *all.non_2xx.entry(code).or_default() += n;
        }
        all.connect_errors += l.connect_errors;
        all.io_errors += l.io_errors;
        all.timeouts += l.timeouts;
        all.latencies.extend(l.latencies);
        for e in l.errors {
            if all.errors.len() < 5 {
                all.errors.push(e);
            }
        }
    }
    let elapsed = start
        .elapsed()
        .min(Duration::from_secs_f64(args.duration) + Duration::from_secs(1));
    all.latencies.sort_unstable();
    let pct = |p: f64| -> u32 {
        if all.latencies.is_empty() {
            return 0;
        }
        let idx = ((all.latencies.len() as f64 - 1.0) * p).round() as usize;
        all.latencies[idx.min(all.latencies.len() - 1)]
    };
    Ok(RateResult {
        requested_rate: args.rate,
        duration_s: elapsed.as_secs_f64(),
        sent: all.sent,
        ok: all.ok,
        non_2xx: all.non_2xx.clone(),
        connect_errors: all.connect_errors,
        io_errors: all.io_errors,
        timeouts: all.timeouts,
        p50_us: pct(0.50),
        p90_us: pct(0.90),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
        max_us: all.latencies.last().copied().unwrap_or(0),
        sample_errors: all.errors.clone(),
    })
}
