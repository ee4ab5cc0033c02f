//! `portico-bench`: the driver behind `just bench`.
//!
//! ```text
//!  just bench ─ cargo build --release ─ tests/netns.sh taskset -c 0 portico-bench run
//!
//!  CPU 0: this driver, etcd + kube-apiserver, the backend, wrk / h2load / `rate`
//!  CPU 1: the contender under test, alone
//!
//!  table ─┬─ Ingresses, Services, EndpointSlices ─▶ apiserver ─▶ portico-proxy ─┐
//!         ├─ nginx.conf ─▶ nginx (1 worker) ────────────────────────────────────┼─▶ backend
//!         └─ haproxy.cfg + maps ─▶ HAProxy (1 thread) ───────────────────────────┘  10.244.1-3.x
//!
//!  1. compare  each case: A B C, B C A, C A B …  ─▶ medians, paired ratios
//!  2. churn    1,000 API changes under load ─▶ failed requests, propagation p50/p99
//!              (and nginx reloading its configuration for the same changes)
//!  3. scale    10,000 Ingresses / 50,000 endpoints ─▶ RSS, start→ready, change, latency
//!  4. operator 10,000 Ingresses of one instance ─▶ new Ingress → status address: ms, CPU
//! ```
//!
//! Subcommands `backend` and `rate` are the upstream server and the fixed-rate load
//! generator, run as child processes of `run`.

mod backend;
mod churn;
mod client;
mod compare;
mod contenders;
mod features;
mod instructions;
mod load;
mod operator;
mod profile;
mod rate;
mod report;
mod run;
mod scale;
mod sys;
mod table;

use std::net::SocketAddr;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "portico-bench",
    about = "Portico's proxy against nginx, HAProxy and Traefik; churn; scale"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the benchmarks (inside the network namespace of tests/netns.sh).
    Run(run::Args),
    /// The upstream server: 200 with a 2-byte body and `x-backend: <address>`.
    Backend {
        #[arg(long, required = true, num_args = 1.., value_delimiter = ',')]
        listen: Vec<SocketAddr>,
    },
    /// A fixed-rate HTTP/1.1 load generator.
    Rate(rate::Args),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Run(args) => run::main(args),
        Cmd::Backend { listen } => backend::run(&listen),
        Cmd::Rate(args) => rate::run(args),
    }
}
