//! `portico-cluster`: the test control plane for a person (`just cluster`).
//!
//! `portico-cluster up` starts etcd, kube-apiserver and kube-controller-manager on
//! 127.0.0.1, writes `target/cluster/admin.kubeconfig` and `target/cluster/env`, prints how to
//! use them, and stays in the foreground until SIGTERM or Ctrl-C, when it stops everything.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use portico_tests::cluster::{ControlPlane, KUBERNETES_VERSION, Options};

#[derive(Parser)]
#[command(about = "A local Kubernetes control plane for Portico")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the control plane and run until interrupted.
    Up {
        /// Directory for certificates, kubeconfig and etcd data.
        #[arg(long, default_value_os_t = portico_tests::target_dir().join("cluster"))]
        dir: PathBuf,
        /// The apiserver port (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

fn main() -> Result<()> {
    let Cli {
        command: Cmd::Up { dir, port },
    } = Cli::parse();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    eprintln!("starting etcd, kube-apiserver {KUBERNETES_VERSION} and kube-controller-manager...");
    let cp = ControlPlane::start(&Options {
        dir: dir.clone(),
        controller_manager: true,
        port,
        node_address: None,
    })?;
    let env = format!(
        "export KUBECONFIG={kc}\nexport PORTICO_API_SERVER={server}\nexport PORTICO_CA={ca}\nexport PORTICO_ADMIN_TOKEN={token}\n",
        kc = cp.kubeconfig().display(),
        server = cp.server(),
        ca = dir.join("ca.crt").display(),
        token = cp.admin_token(),
    );
    std::fs::write(dir.join("env"), &env)?;
    println!("control plane ready at {}", cp.server());
    println!("  export KUBECONFIG={}", cp.kubeconfig().display());
    println!("  kubectl get namespaces");
    println!(
        "  curl --cacert {} -H \"Authorization: Bearer {}\" {}/version",
        dir.join("ca.crt").display(),
        cp.admin_token(),
        cp.server()
    );
    println!(
        "  (all of this is in {}; `just cluster-down` stops it)",
        dir.join("env").display()
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut check = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = check.tick() => {
                    if let Err(e) = cp.check_running() {
                        eprintln!("{e:#}");
                        break;
                    }
                }
            }
        }
        anyhow::Ok(())
    })?;
    eprintln!("stopping the control plane");
    cp.stop();
    Ok(())
}
