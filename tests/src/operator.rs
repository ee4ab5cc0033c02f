//! The operator as a child process: the real `portico-operator` binary against a test
//! control plane, its admin server (`/metrics`) on a free loopback port.
//!
//! ```text
//!  Operator::start(cp, extra args) ─▶ portico-operator --leader-election=false
//!        │                               --admin-address=127.0.0.1 --admin-port=<free>
//!        └─ metrics() ─▶ GET /metrics ─▶ samples(name) ─▶ {labels: value}
//! ```

use std::collections::BTreeMap;
use std::path::Path;
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

impl Operator {
    /// Starts the operator without leader election against `cp`, logging text at `info`
    /// (`debug` for its own crate), with `args` added to its command line.
    pub fn start(cp: &ControlPlane, args: &[String]) -> Result<Operator> {
        let mut all = vec![
            "--log-format=text".to_owned(),
            "--log-level=info,portico_operator=debug".to_owned(),
        ];
        all.extend_from_slice(args);
        Self::start_binary(
            &crate::bin_path("portico-operator"),
            cp.kubeconfig(),
            None,
            &all,
        )
    }

    /// Starts `binary` (a debug or release `portico-operator`) without leader election,
    /// with `KUBECONFIG=kubeconfig`, pinned to `cpus` (a `taskset` list) when given.
    pub fn start_binary(
        binary: &Path,
        kubeconfig: &Path,
        cpus: Option<&str>,
        args: &[String],
    ) -> Result<Operator> {
        let admin_port = crate::cluster::free_port()?;
        let mut cmd = match cpus {
            Some(cpus) => {
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", cpus]).arg(binary);
                cmd
            }
            None => Command::new(binary),
        };
        cmd.env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .args(["--leader-election=false", "--admin-address=127.0.0.1"])
            .arg(format!("--admin-port={admin_port}"))
            .args(args);
        let process = Process::spawn("portico-operator", cmd)?;
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
