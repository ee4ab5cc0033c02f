//! The load generators, each run on the load CPU (`taskset -c 0`): wrk for HTTP/1.1 (a Lua
//! script rotating over the targets' Host headers and paths, its results printed as JSON by
//! the script's `done`), h2load for HTTP/2, and `portico-bench rate` for a fixed rate.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::process::{Child, Command};

use crate::rate::RateResult;
use crate::sys;
use crate::table::Target;

/// What a saturating run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Throughput {
    pub requests: u64,
    pub rps: f64,
    /// Median and 99th percentile latency (µs); h2load reports only the mean, in `p50_us`.
    pub p50_us: f64,
    pub p99_us: Option<f64>,
    /// Socket errors, timeouts and non-2xx answers.
    pub errors: u64,
}

fn lua_string(s: &str) -> String {
    format!("{s:?}")
}

/// The wrk script: requests formatted once in `init`, handed out round-robin, results as
/// one `BENCH_JSON` line.
pub fn wrk_script(targets: &[Target], close: bool) -> String {
    let mut s = String::from("local reqs = {}\nlocal n = 0\nlocal i = 0\ninit = function(args)\n");
    for t in targets {
        let mut headers = format!("[\"Host\"]={}", lua_string(&t.host));
        if close {
            headers.push_str(", [\"Connection\"]=\"close\"");
        }
        let _ = writeln!(
            s,
            "  n = n + 1; reqs[n] = wrk.format(\"GET\", {}, {{{headers}}})",
            lua_string(&t.path)
        );
    }
    s.push_str(
        r#"end
request = function()
  i = i % n + 1
  return reqs[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50":%d,"p99":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#,
    );
    s
}

fn bench_json(stdout: &str) -> Option<serde_json::Value> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH_JSON "))
        .and_then(|j| serde_json::from_str(j).ok())
}

async fn run_bounded(mut cmd: Command, limit: Duration, what: &str) -> Result<String> {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().with_context(|| format!("start {what}"))?;
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .with_context(|| format!("{what} did not finish within {limit:?}"))??;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// wrk, one thread, `conns` connections, for `duration`.
pub async fn wrk(url: &str, script: &Path, conns: usize, duration: Duration) -> Result<Throughput> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", sys::LOAD_CPU, "wrk", "-t1"])
        .arg(format!("-c{conns}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .args(["--timeout", "5s", "-s"])
        .arg(script)
        .arg(url);
    let stdout = run_bounded(cmd, duration + Duration::from_secs(20), "wrk").await?;
    let j =
        bench_json(&stdout).with_context(|| format!("no BENCH_JSON in wrk's output:\n{stdout}"))?;
    let g = |k: &str| j.get(k).and_then(|v| v.as_f64()).unwrap_or(0.0);
    let requests = g("requests");
    let secs = g("duration_us") / 1e6;
    let errors = g("connect") + g("read") + g("write") + g("status") + g("timeout");
    Ok(Throughput {
        requests: requests as u64,
        rps: if secs > 0.0 { requests / secs } else { 0.0 },
        p50_us: g("p50"),
        p99_us: Some(g("p99")),
        errors: errors as u64,
    })
}

/// h2load over TLS (ALPN h2), one thread, `conns` connections × `streams` concurrent
/// streams, for `duration`, rotating over the targets' paths with one `:authority`.
pub async fn h2load(
    base: &str,
    targets: &[Target],
    conns: usize,
    streams: usize,
    duration: Duration,
) -> Result<Throughput> {
    let mut cmd = h2load_command(base, targets, conns, streams);
    cmd.arg(format!("-D{}", duration.as_secs().max(1)));
    let stdout = run_bounded(cmd, duration + Duration::from_secs(20), "h2load").await?;
    parse_h2load(&stdout).with_context(|| format!("cannot read h2load's output:\n{stdout}"))
}

/// h2load as [`h2load`] does, for exactly `requests` requests, given at most `limit`.
pub async fn h2load_requests(
    base: &str,
    targets: &[Target],
    conns: usize,
    streams: usize,
    requests: u64,
    limit: Duration,
) -> Result<Throughput> {
    let mut cmd = h2load_command(base, targets, conns, streams);
    cmd.arg(format!("-n{requests}"));
    let stdout = run_bounded(cmd, limit, "h2load").await?;
    parse_h2load(&stdout).with_context(|| format!("cannot read h2load's output:\n{stdout}"))
}

fn h2load_command(base: &str, targets: &[Target], conns: usize, streams: usize) -> Command {
    let authority = targets.first().map(|t| t.host.clone()).unwrap_or_default();
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", sys::LOAD_CPU, "h2load", "-t", "1"])
        .arg(format!("-c{conns}"))
        .arg(format!("-m{streams}"))
        .arg("-H")
        .arg(format!(":authority: {authority}"));
    for t in targets {
        cmd.arg(format!("{base}{}", t.path));
    }
    cmd
}

fn parse_h2load(out: &str) -> Option<Throughput> {
    let finished = out.lines().find(|l| l.starts_with("finished in"))?;
    let rps: f64 = finished
        .split(',')
        .nth(1)?
        .trim()
        .strip_suffix("req/s")?
        .trim()
        .parse()
        .ok()?;
    let requests_line = out.lines().find(|l| l.starts_with("requests:"))?;
    let field = |name: &str| -> Option<u64> {
        requests_line
            .split(',')
            .find(|p| p.trim().ends_with(name))?
            .split_whitespace()
            .find_map(|w| w.parse().ok())
    };
    let succeeded = field("succeeded")?;
    let failed = field("failed").unwrap_or(0)
        + field("errored").unwrap_or(0)
        + field("timeout").unwrap_or(0);
    let status = out.lines().find(|l| l.starts_with("status codes:"))?;
    let two_xx: u64 = status
        .split(',')
        .find(|p| p.contains("2xx"))?
        .split_whitespace()
        .find_map(|w| w.parse().ok())?;
    let non_2xx = succeeded.saturating_sub(two_xx);
    let time = out.lines().find(|l| l.starts_with("time for request:"))?;
    let mean = time.split_whitespace().nth(5).and_then(parse_h2_duration)?;
    Some(Throughput {
        requests: succeeded,
        rps,
        p50_us: mean,
        p99_us: None,
        errors: failed + non_2xx,
    })
}

fn parse_h2_duration(s: &str) -> Option<f64> {
    let (num, scale) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * scale)
}

/// How to run `portico-bench rate`.
#[derive(Debug, Clone)]
pub struct RateSpec {
    pub addr: SocketAddr,
    pub targets: Vec<String>,
    pub conns: usize,
    pub rate: f64,
    pub duration: Duration,
    pub tls_sni: Option<String>,
    pub close: bool,
}

/// Starts the fixed-rate generator on the load CPU; [`finish_rate`] collects its result.
pub fn spawn_rate(spec: &RateSpec) -> Result<Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", sys::LOAD_CPU])
        .arg(exe)
        .arg("rate")
        .arg(format!("--addr={}", spec.addr))
        .arg(format!("--conns={}", spec.conns))
        .arg(format!("--rate={}", spec.rate))
        .arg(format!("--duration={}", spec.duration.as_secs_f64()));
    for t in &spec.targets {
        cmd.arg(format!("--target={t}"));
    }
    if let Some(sni) = &spec.tls_sni {
        cmd.arg(format!("--tls-sni={sni}"));
    }
    if spec.close {
        cmd.arg("--close");
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().context("start portico-bench rate")
}

/// Stops the generator early when `interrupt` (SIGINT, it still reports) and reads its result.
pub async fn finish_rate(child: Child, interrupt: bool, limit: Duration) -> Result<RateResult> {
    if interrupt && let Some(pid) = child.id() {
        // taskset exec'd the generator, so this pid is the generator itself.
        let _ = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
    }
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .context("rate generator did not finish")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let j = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH_JSON "))
        .with_context(|| {
            format!(
                "no result from the rate generator: {}{}",
                stdout,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok(serde_json::from_str(j)?)
}

/// Runs the fixed-rate generator for its whole duration.
pub async fn rate(spec: &RateSpec) -> Result<RateResult> {
    let child = spawn_rate(spec)?;
    finish_rate(child, false, spec.duration + Duration::from_secs(20)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_h2load_output() {
        let out = "finished in 5.00s, 41234.20 req/s, 1.53MB/s
requests: 206171 total, 206671 started, 206171 done, 206171 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 206171 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 7.65MB (8021290) total, 1.02MB (1067811) headers (space savings 93.10%), 402.67KB (412342) data
                     min         max         mean         sd        +/- sd
time for request:      306us     19.51ms      2.42ms      1.07ms    71.90%
";
        let t = parse_h2load(out).expect("parse");
        assert_eq!(t.requests, 206171);
        assert!((t.rps - 41234.2).abs() < 0.01);
        assert!((t.p50_us - 2420.0).abs() < 0.01);
        assert_eq!(t.errors, 0);
    }
}
