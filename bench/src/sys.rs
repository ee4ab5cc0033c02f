//! What the benchmark reads from Linux: CPU time and resident memory of a process tree
//! (`/proc/<pid>/stat`, `/proc/<pid>/status`), CPU affinity (`taskset`), the machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The CPU the contender under test runs on, alone.
pub const PROXY_CPU: &str = "1";
/// The CPU of the load generators, the backend, the control plane and this driver.
pub const LOAD_CPU: &str = "0";

/// User and system CPU seconds of a process and all its descendants (nginx's master and
/// worker, for example).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTime {
    pub user: f64,
    pub system: f64,
}

impl CpuTime {
    pub fn total(&self) -> f64 {
        self.user + self.system
    }
    pub fn since(&self, earlier: &CpuTime) -> CpuTime {
        CpuTime {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
        }
    }
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Fields of /proc/<pid>/stat after the command name: (ppid, utime, stime) in ticks.
fn stat_fields(pid: u32) -> Option<(u32, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4, utime 14, stime 15.
    Some((
        f.get(1)?.parse().ok()?,
        f.get(11)?.parse().ok()?,
        f.get(12)?.parse().ok()?,
    ))
}

/// Whether `pid` still runs (exists and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| {
            t.rfind(')')
                .map(|i| t[i + 2..].starts_with(|c| c != 'Z' && c != 'X'))
        })
        .unwrap_or(false)
}

/// `pid` and every live descendant.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            && let Some((ppid, _, _)) = stat_fields(p)
        {
            parents.push((p, ppid));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// CPU seconds of a process tree including its children that have exited and been reaped
/// (`cutime`/`cstime`): the load generators finish before the measurement ends.
pub fn cpu_time_with_reaped(pid: u32) -> f64 {
    let ticks = clock_ticks();
    process_tree(pid)
        .into_iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let rest = &text[text.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let sum: u64 = (11..=14)
                .filter_map(|i| f.get(i)?.parse::<u64>().ok())
                .sum();
            Some(sum as f64 / ticks)
        })
        .sum()
}

/// CPU time of every thread of `pid` (`/proc/<pid>/task/*/schedstat`: nanoseconds on a CPU),
/// finer than the 10 ms ticks of `/proc/<pid>/stat`. Threads that have exited are not counted.
pub fn cpu_ns(pid: u32) -> std::time::Duration {
    let ns: u64 = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| {
            let text = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            text.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum();
    std::time::Duration::from_nanos(ns)
}

pub fn cpu_time(pid: u32) -> CpuTime {
    let ticks = clock_ticks();
    let mut t = CpuTime::default();
    for p in process_tree(pid) {
        if let Some((_, u, s)) = stat_fields(p) {
            t.user += u as f64 / ticks;
            t.system += s as f64 / ticks;
        }
    }
    t
}

/// Busy seconds of one CPU since boot (/proc/stat: everything but idle and iowait). A
/// task's stime includes the softirq work done in its context, so irq and softirq time
/// count here too; what ksoftirqd does for our traffic shows up as other work.
pub fn cpu_busy(cpu: &str) -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let label = format!("cpu{cpu} ");
    stat.lines()
        .find(|l| l.starts_with(&label))
        .map(|l| {
            let f: Vec<f64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal
            let busy: f64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
            busy / clock_ticks()
        })
        .unwrap_or(0.0)
}

/// The 1-minute load average.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

/// Resident memory (VmRSS) of a process tree, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    process_tree(pid)
        .into_iter()
        .filter_map(|p| {
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .sum::<f64>()
        / 1024.0
}

/// Sets the CPU affinity of every thread of `pid` (and its descendants).
pub fn set_affinity(pid: u32, cpus: &str) -> Result<()> {
    for p in process_tree(pid) {
        let out = Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &p.to_string()])
            .output()?;
        if !out.status.success() && Path::new(&format!("/proc/{p}")).exists() {
            bail!(
                "taskset -a -p -c {cpus} {p}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

/// The CPUs `pid` may run on (`Cpus_allowed_list`).
pub fn affinity(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Cpus_allowed_list:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
        })
        .unwrap_or_else(|| "?".into())
}

/// The full path of a program on PATH.
pub fn which(program: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in
        std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
    {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "{program} is not installed (`just bench` installs it: apt-get install nginx-light haproxy wrk nghttp2-client)"
    )
}

/// First line of a program's version output.
pub fn version(program: &str, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .map(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_else(|_| "?".into())
}

/// The machine, for the report: CPU model, cores, kernel, memory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    pub memory_gib: f64,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "?".into());
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    Machine {
        cpu_model,
        cores,
        kernel,
        memory_gib,
    }
}

/// Raises a per-netns sysctl the run may change (it owns the network namespace).
pub fn netns_sysctl(name: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    std::fs::write(&path, value).with_context(|| format!("write {path}"))
}

/// A cache's geometry as valgrind's `--LL=<size>,<ways>,<line>` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CacheGeometry {
    pub bytes: u64,
    pub ways: u64,
    pub line: u64,
}

/// The unified level-2 cache of `cpu`, from sysfs: private to a core on the machines this
/// runs on, behind which the shared level 3 sits.
pub fn l2_cache(cpu: &str) -> Result<CacheGeometry> {
    let base = PathBuf::from(format!("/sys/devices/system/cpu/cpu{cpu}/cache"));
    for e in std::fs::read_dir(&base).with_context(|| format!("reading {}", base.display()))? {
        let dir = e?.path();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).map(|s| s.trim().to_string());
        if read("level").ok().as_deref() == Some("2")
            && read("type").ok().as_deref() == Some("Unified")
        {
            return parse_cache(
                &read("size")?,
                &read("ways_of_associativity")?,
                &read("coherency_line_size")?,
            )
            .with_context(|| format!("the cache described in {}", dir.display()));
        }
    }
    bail!("no unified level-2 cache under {}", base.display())
}

fn parse_cache(size: &str, ways: &str, line: &str) -> Result<CacheGeometry> {
    let bytes = match size.strip_suffix('K') {
        Some(k) => k.parse::<u64>()? * 1024,
        None => match size.strip_suffix('M') {
            Some(m) => m.parse::<u64>()? * 1024 * 1024,
            None => size.parse()?,
        },
    };
    Ok(CacheGeometry {
        bytes,
        ways: ways.parse()?,
        line: line.parse()?,
    })
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    #[test]
    fn cache_sizes_are_read_as_sysfs_writes_them() {
        let g = parse_cache("1024K", "8", "64").expect("parsed");
        assert_eq!(
            g,
            CacheGeometry {
                bytes: 1 << 20,
                ways: 8,
                line: 64
            }
        );
        assert_eq!(parse_cache("2M", "16", "64").expect("M").bytes, 2 << 20);
        assert!(parse_cache("big", "8", "64").is_err());
    }
}
