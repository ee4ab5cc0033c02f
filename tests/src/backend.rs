//! The `portico-backend` echo server as a child process (see `src/bin/backend.rs`).

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::process::Process;

/// A running backend; killed when dropped.
#[derive(Debug)]
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub process: Process,
}

impl Backend {
    /// Kills the process at once, as a crashed pod would die.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// Starts a backend named `name` on `addr` and waits until it accepts connections.
pub async fn spawn(addr: SocketAddr, name: &str) -> Result<Backend> {
    let mut cmd = Command::new(crate::bin_path("portico-backend"));
    cmd.arg("--listen").arg(addr.to_string()).arg("--name").arg(name);
    let mut process = Process::spawn(&format!("backend-{name}-{addr}").replace([':', '/'], "_"), cmd)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(Backend { name: name.to_string(), addr, process });
        }
        process.check_running()?;
        if Instant::now() > deadline {
            bail!("backend {name} did not listen on {addr} within 10s:\n{}", process.log_tail(20));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
