//! `just bench --profile`: where Portico's user-space time goes at the fixed rate.
//!
//! ```text
//! perf record -F 499 -g --call-graph dwarf -p <proxy> (user space: the run is unprivileged)
//!   ─▶ perf script ─▶ inferno collapse (folded stacks) ─▶ flamegraph.svg
//!                                                     └─▶ top symbols by self time
//! ```
//!
//! The kernel's share (loopback TCP, about half of every proxy's CPU) is not sampled: a
//! user namespace may not profile the kernel, and it is the same for every contender.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use inferno::collapse::Collapse;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub svg: PathBuf,
    pub samples: u64,
    /// By self time.
    pub top_self: Shares,
    /// (symbol, share of samples in %) of stacks that pass through it, for a few entry
    /// points worth watching (timers, allocator, headers, the upstream hand-off).
    pub inclusive: Shares,
}

/// Starts recording `pid` for `duration`; await the returned child, then [`render`].
pub fn record(pid: u32, duration: Duration, data: &Path) -> Result<tokio::process::Child> {
    let child = tokio::process::Command::new("perf")
        .args([
            "record",
            "-q",
            "-F",
            "499",
            "-g",
            "--call-graph",
            "dwarf,16384",
            "-p",
        ])
        .arg(pid.to_string())
        .arg("-o")
        .arg(data)
        .arg("--")
        .args(["sleep", &duration.as_secs().to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting perf (Debian: linux-perf)")?;
    Ok(child)
}

/// Substrings of symbols whose inclusive share is reported.
const WATCHED: &[(&str, &str)] = &[
    ("tokio timers", "tokio::runtime::time"),
    ("malloc and free", "malloc"),
    ("hyper client dispatch", "hyper::client::dispatch"),
    ("forwarded headers", "apply_forwarded"),
    ("route lookup", "RouteTable"),
    ("access checks", "portico_proxy::access"),
];

pub fn render(data: &Path, out_dir: &Path, name: &str) -> Result<Profile> {
    let script = std::process::Command::new("perf")
        .args(["script", "-F", "comm,pid,tid,time,event,ip,sym,dso", "-i"])
        .arg(data)
        .output()
        .context("perf script")?;
    if !script.status.success() {
        bail!(
            "perf script failed: {}",
            String::from_utf8_lossy(&script.stderr)
        );
    }
    let mut folded = Vec::new();
    inferno::collapse::perf::Folder::default()
        .collapse(&script.stdout[..], &mut folded)
        .context("collapsing stacks")?;
    let folded = String::from_utf8_lossy(&folded).into_owned();
    std::fs::write(out_dir.join(format!("{name}.folded")), &folded)?;
    let svg = out_dir.join(format!("{name}.svg"));
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = format!("portico-proxy, user space, {name}");
    let file = std::fs::File::create(&svg)?;
    inferno::flamegraph::from_lines(&mut opts, folded.lines(), std::io::BufWriter::new(file))
        .context("rendering the flame graph")?;
    let (samples, top_self, inclusive) = summarize(&folded);
    Ok(Profile {
        svg,
        samples,
        top_self,
        inclusive,
    })
}

/// (symbol or label, share of samples in %).
type Shares = Vec<(String, f64)>;

/// Total samples, the top 15 symbols by self time, and the watched inclusive shares.
fn summarize(folded: &str) -> (u64, Shares, Shares) {
    let mut total = 0u64;
    let mut leaf: HashMap<&str, u64> = HashMap::new();
    let mut watched = vec![0u64; WATCHED.len()];
    for line in folded.lines() {
        let Some((stack, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(count) = count.parse::<u64>() else {
            continue;
        };
        total += count;
        if let Some(sym) = stack.rsplit(';').next() {
            *leaf.entry(sym).or_default() += count;
        }
        for (i, (_, needle)) in WATCHED.iter().enumerate() {
            if stack.contains(needle) {
                watched[i] += count;
            }
        }
    }
    let pct = |n: u64| {
        if total == 0 {
            0.0
        } else {
            n as f64 * 100.0 / total as f64
        }
    };
    let mut top: Vec<(&str, u64)> = leaf.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let top_self = top
        .into_iter()
        .take(15)
        .map(|(s, n)| (s.to_owned(), pct(n)))
        .collect();
    let inclusive = WATCHED
        .iter()
        .zip(watched)
        .map(|((label, _), n)| (label.to_string(), pct(n)))
        .collect();
    (total, top_self, inclusive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_and_inclusive_shares() {
        let folded =
            "main;serve;malloc 30\nmain;serve;apply_forwarded;malloc 10\nmain;serve;route 60\n";
        let (total, top, inclusive) = summarize(folded);
        assert_eq!(total, 100);
        assert_eq!(top[0], ("route".to_owned(), 60.0));
        assert_eq!(top[1], ("malloc".to_owned(), 40.0));
        let share = |label: &str| inclusive.iter().find(|(l, _)| l == label).map(|(_, p)| *p);
        assert_eq!(share("malloc and free"), Some(40.0));
        assert_eq!(share("forwarded headers"), Some(10.0));
    }
}
