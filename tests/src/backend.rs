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
    cmd.arg("--listen")
        .arg(addr.to_string())
        .arg("--name")
        .arg(name);
    let mut process = Process::spawn(
        &format!("backend-{name}-{addr}").replace([':', '/'], "_"),
        cmd,
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Something else may hold the port (a wildcard listener): wait for *this* backend.
        process.check_running()?;
        if answers_as(addr, name).await {
            return Ok(Backend {
                name: name.to_string(),
                addr,
                process,
            });
        }
        if Instant::now() > deadline {
            bail!(
                "backend {name} did not listen on {addr} within 10s:\n{}",
                process.log_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `addr` answers a GET as the backend called `name`.
async fn answers_as(addr: SocketAddr, name: &str) -> bool {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let Ok(uri) = format!("http://{addr}/").parse::<http::Uri>() else {
        return false;
    };
    let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(1), client.get(uri)).await else {
        return false;
    };
    resp.headers()
        .get("x-backend")
        .is_some_and(|v| v.as_bytes() == name.as_bytes())
        && resp.into_body().collect().await.is_ok()
}
