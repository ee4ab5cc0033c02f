//! The operator as a child process: the real `portico-operator` binary against a test
//! control plane, its admin server (`/metrics`) on a free loopback port.
//!
//! ```text
//!  Operator::start(cp, args) ─▶ Operator::launch(Launch { binary, kubeconfig, cpus, args })
//!        │                       ─▶ portico-operator --admin-address=127.0.0.1 --admin-port=<free>
//!        └─ metrics() ─▶ GET /metrics ─▶ samples(name) ─▶ {labels: value}
//!
//!  (The chart's operator pod runs through `pod::run_operator_from_deployment` instead:
//!   the Deployment's own args and ServiceAccount token.)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ControlPlane;
use crate::process::Process;

/// A running `portico-operator`; it dies with the test process.
pub struct Operator {
    pub process: Process,
    pub admin_port: u16,
}

/// How to launch an operator: the one place its command line is put together.
pub struct Launch<'a> {
    /// Names its log file (`<name>.log` in the test log directory).
    pub name: &'a str,
    /// `portico-operator` of this build (debug for the tests, release for the bench).
    pub binary: PathBuf,
    pub kubeconfig: &'a Path,
    /// A `taskset` CPU list to pin it to.
    pub cpus: Option<&'a str>,
    /// Added after `--admin-address=127.0.0.1 --admin-port=<free>`.
    pub args: Vec<String>,
}

impl<'a> Launch<'a> {
    /// The debug `portico-operator` with `KUBECONFIG=kubeconfig`, no further arguments.
    pub fn new(name: &'a str, kubeconfig: &'a Path) -> Self {
        Launch {
            name,
            binary: crate::bin_path("portico-operator"),
            kubeconfig,
            cpus: None,
            args: Vec::new(),
        }
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
}

impl Operator {
    /// Starts the operator without leader election against `cp`, logging text at `info`
    /// (`debug` for its own crate), with `args` added to its command line.
    pub fn start(cp: &ControlPlane, args: &[String]) -> Result<Operator> {
        Self::launch(
            Launch::new("portico-operator", cp.kubeconfig())
                .args([
                    "--leader-election=false",
                    "--log-format=text",
                    "--log-level=info,portico_operator=debug",
                ])
                .args(args.iter().cloned()),
        )
    }

    /// Starts an operator as `launch` says, its admin server on a free loopback port.
    pub fn launch(launch: Launch<'_>) -> Result<Operator> {
        let admin_port = crate::cluster::free_port()?;
        let mut cmd = match launch.cpus {
            Some(cpus) => {
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", cpus]).arg(&launch.binary);
                cmd
            }
            None => Command::new(&launch.binary),
        };
        cmd.env("KUBECONFIG", launch.kubeconfig)
            .env("RUST_LOG", "info")
            .arg("--admin-address=127.0.0.1")
            .arg(format!("--admin-port={admin_port}"))
            .args(&launch.args);
        let process = Process::spawn(launch.name, cmd)?;
        Ok(Operator {
            process,
            admin_port,
        })
    }

    /// The text of its `/metrics` page.
    pub async fn metrics(&self) -> Result<String> {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.admin_port))
            .await
            .context("connect to the operator's admin server")?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        let (_, body) = body
            .split_once("\r\n\r\n")
            .context("no HTTP header end in the /metrics answer")?;
        Ok(body.to_owned())
    }
}

/// The samples of metric `name` in a Prometheus text page, by their label set (`{...}`, or
/// empty for none).
pub fn samples(page: &str, name: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let labels = series.strip_prefix(name)?;
            if !(labels.is_empty() || labels.starts_with('{')) {
                return None;
            }
            Some((labels.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn samples_are_read_by_label_set() {
        let page = "# HELP x_total x\n# TYPE x_total counter\nx_total{verb=\"get\"} 3\nx_total{verb=\"list\"} 1\nx_total_other 9\ny 2\n";
        let got = super::samples(page, "x_total");
        assert_eq!(got.len(), 2);
        assert_eq!(got["{verb=\"get\"}"], 3.0);
    }
}
