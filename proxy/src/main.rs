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

use portico_proxy::cli::{self, Args};
use portico_proxy::config::build::Params;
use portico_proxy::config::watch::ConfigLoop;
use portico_proxy::config::{SharedSnapshot, Snapshot};
use portico_proxy::health::Health;
use portico_proxy::serve::proxy::{Proxy, Settings};
use portico_proxy::serve::server;
use portico_proxy::upstream::client::Client;

/// jemalloc: per request it spends fewer instructions and misses the caches less often than
/// glibc's allocator, and it holds less memory at 10,000 Ingresses (README, "Performance").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read when it starts (`_RJEM_MALLOC_CONF` in the environment still
/// overrides them). Each thread caches up to 512-1,024 freed objects of a size instead of
/// 20-200, and trims that cache after every 4 MiB it allocates instead of every 64 KiB: with
/// hundreds of HTTP/2 streams in flight, each size is freed hundreds of times before it is
/// allocated again, and a smaller or more often trimmed cache sends those frees (and the
/// allocations after them) through the shared arena, its lock and its slabs.
#[allow(unsafe_code)] // a symbol jemalloc looks up by name; a constant, never written
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: &[u8; 86] =
    b"tcache_nslots_small_min:512,tcache_nslots_small_max:1024,tcache_gc_incr_bytes:4194304\0";

fn init_tracing(args: &Args) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_format == portico_ingress::LogFormat::Json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(&args);
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        warn!("a rustls crypto provider was already installed");
    }
    // The control runtime runs the watchers, the config loop, the admin server and the
    // signal handling; traffic runs on the worker runtimes (see `run`).
    let control = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("portico-control")
        .enable_all()
        .build()
        .context("starting the control runtime")?;
    control.block_on(run(args))
}

/// One single-threaded runtime per CPU, each with its own listening sockets on the shared
/// ports (SO_REUSEPORT) and its own upstream connection pool: no work stealing and no
/// shared pool on the request path (measured 3-5% faster than one multi-thread runtime).
async fn run(args: Args) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster or KUBECONFIG)")?;
    let shared: SharedSnapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let health = Arc::new(Health::default());
    let params = Params {
        class_name: args.ingress_class.clone(),
        instance_namespace: args.instance_namespace.clone(),
        tenant_policy: portico_ingress::TenantPolicy {
            host_ownership: args.host_ownership,
            catch_all_namespaces: args
                .catch_all_namespaces
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        },
        namespaces: args
            .namespaces
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect::<BTreeSet<_>>(),
        default_policy: cli::load_balance(&args)
            .map_err(|e| anyhow::anyhow!("--load-balance: {e}"))?,
        ssl_redirect: args.ssl_redirect,
        default_certificate: cli::default_certificate(&args),
        limits: args.limits(),
    };
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 64);
    info!(class = %params.class_name, namespaces = ?params.namespaces, workers, "starting");
    let endpoint_policy = cli::endpoint_policy(&args);
    if endpoint_policy.own.is_empty() {
        warn!(
            "this pod's addresses are unknown (POD_IPS unset, --bind-address unspecified): endpoints naming them are not refused"
        );
    }
    info!(denied = ?endpoint_policy.denied, own = ?endpoint_policy.own, "endpoints refused besides loopback, link-local, metadata, multicast and broadcast");
    let (config_loop, rx) = ConfigLoop::new(client, params, shared.clone(), health.clone());
    let config_loop = config_loop.with_endpoint_policy(endpoint_policy.clone());
    // One rate-limit table for the pod: its limits are per pod, across workers.
    let limiter = Arc::new(portico_proxy::access::limit::Limiter::new());
    let auth_answers = Arc::new(portico_proxy::access::external::AnswerCache::default());
    tokio::spawn(config_loop.run(rx));

    let admin_listener = tokio::net::TcpListener::from_std(
        server::bind(
            SocketAddr::new(cli::bind_address(&args), args.admin_port),
            false,
        )
        .with_context(|| format!("binding the admin port {}", args.admin_port))?,
    )?;
    let admin_stop = CancellationToken::new();
    tokio::spawn(portico_proxy::admin::serve(
        admin_listener,
        health.clone(),
        admin_stop.clone(),
    ));

    let settings = Settings {
        trusted_proxies: args.trusted_proxy_cidrs.clone(),
        retries: args.retries,
        request_timeout: args.request_timeout.get(),
        hsts: args.hsts,
        https_port: args.https_port,
        allow_encoded_slashes: args.encoded_slashes == portico_ingress::EncodedSlashes::Keep,
        keep_underscores: args.underscores_in_headers == portico_ingress::UnderscoreHeaders::Keep,
        tunnel_idle_timeout: args.tunnel_idle_timeout.get(),
        max_body_size: args.max_request_body_size.0,
        max_connections_per_endpoint: args.max_connections_per_endpoint,
        endpoint_wait: args.connect_timeout.get(),
        access_log: if args.access_log {
            Some(
                portico_proxy::http::access_log::AccessLog::stdout()
                    .context("starting the access log writer")?,
            )
        } else {
            None
        },
    };
    let acceptor = portico_proxy::tls::Acceptor::new(
        shared.clone(),
        args.min_tls_version == portico_ingress::TlsVersion::V1_3,
    )
    .context("building the TLS server config")?;
    let stop = CancellationToken::new();
    let drain_bound = args.request_timeout.get() + Duration::from_secs(1);
    // One connection limit for the whole pod, across listeners and workers.
    let mut limits = server::Limits::new(
        args.max_connections as usize,
        args.idle_timeout.get(),
        drain_bound,
    );
    limits.http2_max_concurrent_streams = args.http2_max_concurrent_streams;
    limits.http2_initial_stream_window = args.http2_initial_stream_window;
    limits.proxy_protocol = args.proxy_protocol;
    let http_addr = SocketAddr::new(cli::bind_address(&args), args.http_port);
    let https_addr = SocketAddr::new(cli::bind_address(&args), args.https_port);
    let mut threads = Vec::new();
    for i in 0..workers {
        // Bind here, so a taken port fails the start instead of a worker.
        let http_listener = server::bind(http_addr, workers > 1)
            .with_context(|| format!("binding the HTTP port {}", args.http_port))?;
        let https_listener = server::bind(https_addr, workers > 1)
            .with_context(|| format!("binding the HTTPS port {}", args.https_port))?;
        let upstream = Arc::new(Client::new(
            args.connect_timeout.get(),
            args.idle_timeout.get(),
        ));
        let proxy = Arc::new(Proxy {
            snapshot: shared.clone(),
            client: upstream.clone(),
            settings: settings.clone(),
            access: portico_proxy::access::Shared {
                limiter: limiter.clone(),
                auth: portico_proxy::access::external::AuthClient::new(
                    upstream.clone(),
                    endpoint_policy.clone(),
                    auth_answers.clone(),
                ),
            },
            timers: Default::default(),
        });
        let (acceptor, stop, limits) = (acceptor.clone(), stop.clone(), limits.clone());
        let thread = std::thread::Builder::new()
            .name(format!("portico-worker-{i}"))
            .spawn(move || -> anyhow::Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let http = tokio::net::TcpListener::from_std(http_listener)?;
                    let https = tokio::net::TcpListener::from_std(https_listener)?;
                    let pruner = tokio::spawn(async move {
                        let mut tick = tokio::time::interval(Duration::from_secs(30));
                        loop {
                            tick.tick().await;
                            upstream.prune();
                        }
                    });
                    tokio::join!(
                        server::serve(
                            "http",
                            http,
                            None,
                            proxy.clone(),
                            stop.clone(),
                            limits.clone(),
                        ),
                        server::serve("https", https, Some(acceptor), proxy, stop, limits,),
                    );
                    pruner.abort();
                    anyhow::Ok(())
                })
            })
            .context("starting a worker thread")?;
        threads.push(thread);
    }

    shutdown_signal().await;
    info!(drain_period = ?args.drain_period, "shutdown signal: not ready, still serving for the drain period");
    health.start_draining();
    tokio::time::sleep(args.drain_period.get()).await;
    stop.cancel();
    let joined = tokio::task::spawn_blocking(move || {
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .map_err(|_| anyhow::anyhow!("a worker thread panicked"))?
            })
            .collect::<anyhow::Result<Vec<()>>>()
    })
    .await?;
    admin_stop.cancel();
    joined?;
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

#[cfg(test)]
mod tests {
    /// One of jemalloc's settings, by its mallctl name.
    #[allow(unsafe_code)] // a mallctl read; each caller asks for the type jemalloc gives it
    fn jemalloc_option<T: Copy>(name: &str) -> anyhow::Result<T> {
        let key = format!("opt.{name}\0");
        unsafe { tikv_jemalloc_ctl::raw::read(key.as_bytes()) }
            .map_err(|e| anyhow::anyhow!("reading jemalloc's opt.{name}: {e}"))
    }

    /// jemalloc reads its settings from a symbol it looks up by name, and ignores a name or a
    /// setting it does not know: read back what it runs with.
    #[test]
    fn jemalloc_runs_with_the_settings_the_binary_carries() -> anyhow::Result<()> {
        assert_eq!(jemalloc_option::<u32>("tcache_nslots_small_min")?, 512);
        assert_eq!(jemalloc_option::<u32>("tcache_nslots_small_max")?, 1024);
        assert_eq!(jemalloc_option::<usize>("tcache_gc_incr_bytes")?, 4 << 20);
        Ok(())
    }
}
