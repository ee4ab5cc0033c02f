//! `portico-proxy`: serves the Ingresses of one IngressClass.
//!
//! Lifecycle: watch and build the first snapshot → ready → serve. On SIGTERM (or SIGINT):
//! fail readiness, keep serving for `--drain-period` (endpoints controllers and load
//! balancers stop sending), stop accepting, let in-flight requests finish (bounded by
//! `--request-timeout`), exit 0.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use portico_proxy::cli::Args;
use portico_proxy::config::build::Params;
use portico_proxy::config::watch::{ConfigLoop, Health};
use portico_proxy::config::{SharedSnapshot, Snapshot};
use portico_proxy::http::client::Client;
use portico_proxy::http::proxy::{Proxy, Settings};
use portico_proxy::http::server;

fn init_tracing(args: &Args) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(&args);
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        warn!("a rustls crypto provider was already installed");
    }

    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster or KUBECONFIG)")?;
    let shared: SharedSnapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let health = Arc::new(Health::default());
    let params = Params {
        class_name: args.ingress_class.clone(),
        namespaces: args
            .namespaces
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect::<BTreeSet<_>>(),
        default_policy: args.load_balance.clone(),
        ssl_redirect: args.ssl_redirect,
        default_certificate: args.default_certificate.clone(),
    };
    info!(class = %params.class_name, namespaces = ?params.namespaces, "starting");
    let (config_loop, rx) = ConfigLoop::new(client, params, shared.clone(), health.clone());
    tokio::spawn(config_loop.run(rx));

    let http_listener = server::bind(SocketAddr::new(args.bind_address, args.http_port))
        .with_context(|| format!("binding the HTTP port {}", args.http_port))?;
    let https_listener = server::bind(SocketAddr::new(args.bind_address, args.https_port))
        .with_context(|| format!("binding the HTTPS port {}", args.https_port))?;
    let admin_listener = server::bind(SocketAddr::new(args.bind_address, args.admin_port))
        .with_context(|| format!("binding the admin port {}", args.admin_port))?;

    let upstream = Arc::new(Client::new(args.connect_timeout, args.idle_timeout));
    let proxy = Arc::new(Proxy {
        snapshot: shared.clone(),
        client: upstream.clone(),
        settings: Settings {
            trusted_proxies: args.trusted_proxy_cidrs.clone(),
            retries: args.retries,
            request_timeout: args.request_timeout,
            hsts: args.hsts,
            https_port: args.https_port,
        },
    });
    let tls_config =
        portico_proxy::tls::server_config(shared.clone(), args.min_tls_version == "1.3")
            .context("building the TLS server config")?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config));

    let stop = CancellationToken::new();
    let drain_bound = args.request_timeout + Duration::from_secs(1);
    let http = tokio::spawn(server::serve(
        "http",
        http_listener,
        None,
        proxy.clone(),
        stop.clone(),
        args.idle_timeout,
        drain_bound,
    ));
    let https = tokio::spawn(server::serve(
        "https",
        https_listener,
        Some(acceptor),
        proxy.clone(),
        stop.clone(),
        args.idle_timeout,
        drain_bound,
    ));
    let admin_stop = CancellationToken::new();
    tokio::spawn(portico_proxy::admin::serve(
        admin_listener,
        health.clone(),
        admin_stop.clone(),
    ));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            upstream.prune();
        }
    });

    shutdown_signal().await;
    info!(drain_period = ?args.drain_period, "shutdown signal: not ready, still serving for the drain period");
    health.start_draining();
    tokio::time::sleep(args.drain_period).await;
    stop.cancel();
    let _ = tokio::join!(http, https);
    admin_stop.cancel();
    info!("drained; exiting");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the proxy");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
