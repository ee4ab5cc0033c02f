//! Prometheus metrics on a registry of our own. Labels stay low-cardinality: namespace,
//! ingress, service, status class, error kind — never host or path.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Instant;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::lb::{Backend, BackendKey};

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub config_generation: IntGauge,
    pub config_rebuilds: IntCounterVec,
    pub config_rebuild_duration: Histogram,
    pub backend_endpoints: IntGaugeVec,
    pub backend_endpoints_refused: IntGaugeVec,
    pub ingresses: IntGaugeVec,
    pub connections: IntGaugeVec,
    pub connections_refused: IntCounterVec,
    pub log_lines_suppressed: prometheus::IntCounter,
}

#[allow(clippy::expect_used)] // metric definitions are constants; failing here is a bug
fn new_metrics() -> Metrics {
    let registry = Registry::new_custom(Some("portico".into()), None).expect("registry");
    let requests = IntCounterVec::new(
        Opts::new(
            "requests_total",
            "Requests answered, by Ingress, Service and status class",
        ),
        &["namespace", "ingress", "service", "code"],
    )
    .expect("metric");
    let request_duration = HistogramVec::new(
        HistogramOpts::new(
            "request_duration_seconds",
            "Time from request to response headers",
        )
        .buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0,
        ]),
        &["namespace", "ingress"],
    )
    .expect("metric");
    let upstream_errors = IntCounterVec::new(
        Opts::new(
            "upstream_errors_total",
            "Failures talking to upstream endpoints, by kind",
        ),
        &["kind"],
    )
    .expect("metric");
    let config_generation = IntGauge::new(
        "config_generation",
        "Generation of the snapshot being served",
    )
    .expect("metric");
    let config_rebuilds = IntCounterVec::new(
        Opts::new("config_rebuilds_total", "Snapshot builds, by result"),
        &["result"],
    )
    .expect("metric");
    let config_rebuild_duration = Histogram::with_opts(
        HistogramOpts::new(
            "config_rebuild_duration_seconds",
            "Time to build a snapshot",
        )
        .buckets(vec![
            0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
        ]),
    )
    .expect("metric");
    let backend_endpoints = IntGaugeVec::new(
        Opts::new("backend_endpoints", "Usable endpoints per Service port"),
        &["namespace", "service", "port"],
    )
    .expect("metric");
    let backend_endpoints_refused = IntGaugeVec::new(
        Opts::new(
            "backend_endpoints_refused",
            "Endpoints per Service port that EndpointSlices name but the proxy never dials (own, loopback, link-local, metadata, multicast or denied addresses)",
        ),
        &["namespace", "service", "port"],
    )
    .expect("metric");
    let ingresses = IntGaugeVec::new(
        Opts::new("ingresses", "Ingresses in the snapshot, by state"),
        &["state"],
    )
    .expect("metric");
    let connections = IntGaugeVec::new(
        Opts::new("open_connections", "Open downstream connections"),
        &["listener"],
    )
    .expect("metric");
    let connections_refused = IntCounterVec::new(
        Opts::new(
            "connections_refused_total",
            "Downstream connections closed at once because the connection limit was reached",
        ),
        &["listener"],
    )
    .expect("metric");
    let log_lines_suppressed = prometheus::IntCounter::new(
        "log_lines_suppressed_total",
        "Upstream-error and refused-endpoint log lines not written because they were over their budget",
    )
    .expect("metric");
    for c in [
        Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(request_duration.clone()),
        Box::new(upstream_errors.clone()),
        Box::new(config_generation.clone()),
        Box::new(config_rebuilds.clone()),
        Box::new(config_rebuild_duration.clone()),
        Box::new(backend_endpoints.clone()),
        Box::new(backend_endpoints_refused.clone()),
        Box::new(ingresses.clone()),
        Box::new(connections.clone()),
        Box::new(connections_refused.clone()),
        Box::new(log_lines_suppressed.clone()),
    ] {
        registry.register(c).expect("register");
    }
    Metrics {
        registry,
        requests,
        request_duration,
        upstream_errors,
        config_generation,
        config_rebuilds,
        config_rebuild_duration,
        backend_endpoints,
        backend_endpoints_refused,
        ingresses,
        connections,
        connections_refused,
        log_lines_suppressed,
    }
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(new_metrics);

pub fn set_backend_endpoints(b: &Backend) {
    METRICS
        .backend_endpoints
        .with_label_values(&[
            b.key.namespace.as_str(),
            b.key.service.as_str(),
            b.key.port_name.as_str(),
        ])
        .set(b.endpoints().endpoints.len() as i64);
}

pub fn remove_backend_endpoints(b: &Backend) {
    let labels = [
        b.key.namespace.as_str(),
        b.key.service.as_str(),
        b.key.port_name.as_str(),
    ];
    let _ = METRICS.backend_endpoints.remove_label_values(&labels);
    let _ = METRICS
        .backend_endpoints_refused
        .remove_label_values(&labels);
}

/// Refused endpoints of one Service port; a port with none has no series.
pub fn set_refused_endpoints(key: &BackendKey, refused: usize) {
    let labels = [
        key.namespace.as_str(),
        key.service.as_str(),
        key.port_name.as_str(),
    ];
    if refused == 0 {
        let _ = METRICS
            .backend_endpoints_refused
            .remove_label_values(&labels);
    } else {
        METRICS
            .backend_endpoints_refused
            .with_label_values(&labels)
            .set(refused as i64);
    }
}

/// Whether a refused-endpoint line may be logged now (one budget for the whole proxy: a
/// tenant churning hostile EndpointSlices cannot flood the log); counts it as suppressed
/// when not.
pub fn allow_refusal_log() -> bool {
    static BUDGET: LazyLock<LogBudget> = LazyLock::new(LogBudget::default);
    let allowed = BUDGET.allow();
    if !allowed {
        METRICS.log_lines_suppressed.inc();
    }
    allowed
}

/// Per-route metric handles, resolved on the route's first request and then kept, so that
/// a request does no label lookup (a lock and a hash per request otherwise) and a route no
/// request has reached exports nothing and holds no series (10,000 idle Ingresses would
/// otherwise hold 60,000 series, most of a large proxy's memory).
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    series: Arc<Series>,
    log_budget: Arc<LogBudget>,
}

#[derive(Debug)]
struct Series {
    labels: [String; 3],
    resolved: OnceLock<Resolved>,
    /// Held while resolving or removing: a route removed while an old snapshot still
    /// serves it gets handles that export nothing, never a series brought back.
    removed: Mutex<bool>,
}

#[derive(Debug)]
struct Resolved {
    by_class: [prometheus::IntCounter; 5],
    duration: Histogram,
}

/// Upstream-error log lines a route may write per second; the rest are only counted
/// (`portico_log_lines_suppressed_total`), so one failing backend cannot flood the log.
/// Refused-endpoint lines have one budget of the same size for the whole proxy.
pub const LOG_LINES_PER_SECOND: u32 = 5;

#[derive(Debug, Default)]
struct LogBudget {
    /// The second (since the process started) the count below belongs to.
    second: AtomicU64,
    used: AtomicU32,
}

impl LogBudget {
    fn allow(&self) -> bool {
        static START: LazyLock<Instant> = LazyLock::new(Instant::now);
        let now = START.elapsed().as_secs();
        if self.second.swap(now, Ordering::Relaxed) != now {
            self.used.store(0, Ordering::Relaxed);
        }
        self.used.fetch_add(1, Ordering::Relaxed) < LOG_LINES_PER_SECOND
    }
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl RouteMetrics {
    pub fn new(namespace: &str, ingress: &str, service: &str) -> Self {
        RouteMetrics {
            series: Arc::new(Series {
                labels: [namespace.into(), ingress.into(), service.into()],
                resolved: OnceLock::new(),
                removed: Mutex::new(false),
            }),
            log_budget: Arc::default(),
        }
    }

    fn resolved(&self) -> &Resolved {
        if let Some(r) = self.series.resolved.get() {
            return r;
        }
        let removed = self
            .series
            .removed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.series.resolved.get_or_init(|| {
            let [namespace, ingress, service] = &self.series.labels;
            if *removed {
                let detached =
                    |_| prometheus::IntCounter::new("detached", "detached").expect("counter");
                return Resolved {
                    by_class: CLASSES.map(detached),
                    duration: Histogram::with_opts(prometheus::HistogramOpts::new(
                        "detached", "detached",
                    ))
                    .expect("histogram"),
                };
            }
            Resolved {
                by_class: CLASSES.map(|c| {
                    METRICS
                        .requests
                        .with_label_values(&[namespace, ingress, service, c])
                }),
                duration: METRICS
                    .request_duration
                    .with_label_values(&[namespace, ingress]),
            }
        })
    }

    /// Whether an upstream-error line for this route may be logged now; counts it as
    /// suppressed when not.
    pub fn allow_log(&self) -> bool {
        let allowed = self.log_budget.allow();
        if !allowed {
            METRICS.log_lines_suppressed.inc();
        }
        allowed
    }

    /// Drops the exported series of this route (its Ingress is gone); requests still on
    /// an older snapshot count nowhere.
    pub fn remove(&self) {
        let mut removed = self
            .series
            .removed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *removed = true;
        let [namespace, ingress, service] = &self.series.labels;
        for c in CLASSES {
            let _ = METRICS
                .requests
                .remove_label_values(&[namespace, ingress, service, c]);
        }
        let _ = METRICS
            .request_duration
            .remove_label_values(&[namespace, ingress]);
    }

    /// Requests that matched no route.
    pub fn unrouted() -> &'static RouteMetrics {
        static UNROUTED: LazyLock<RouteMetrics> = LazyLock::new(|| RouteMetrics::new("", "", ""));
        &UNROUTED
    }

    pub fn observe(&self, status: u16, seconds: f64) {
        let class = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            _ => 4,
        };
        let resolved = self.resolved();
        resolved.by_class[class].inc();
        resolved.duration.observe(seconds);
    }
}

pub fn encode() -> String {
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&METRICS.registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_error_lines_are_rate_limited_per_route() {
        let a = RouteMetrics::new("ns", "log-a", "svc");
        let b = RouteMetrics::new("ns", "log-b", "svc");
        let before = METRICS.log_lines_suppressed.get();
        let allowed = (0..20).filter(|_| a.allow_log()).count() as u32;
        // A second boundary may fall inside the loop: at most two windows' worth.
        assert!(
            (LOG_LINES_PER_SECOND..=2 * LOG_LINES_PER_SECOND).contains(&allowed),
            "{allowed}"
        );
        assert!(
            METRICS.log_lines_suppressed.get() - before >= 20 - 2 * LOG_LINES_PER_SECOND as u64
        );
        assert!(b.allow_log(), "another route has its own budget");
    }

    #[test]
    fn a_removed_route_takes_its_series_with_it() {
        let m = RouteMetrics::new("ns", "gone", "svc");
        m.observe(200, 0.01);
        assert!(encode().contains(r#"ingress="gone""#));
        m.remove();
        assert!(!encode().contains(r#"ingress="gone""#));
    }

    #[test]
    fn a_route_exports_nothing_until_its_first_request_and_nothing_once_removed() {
        let idle = RouteMetrics::new("ns", "idle", "svc");
        assert!(!encode().contains(r#"ingress="idle""#));
        // Removed before any request (an old snapshot still serving it): a late request
        // must not bring the series back.
        let late = RouteMetrics::new("ns", "late", "svc");
        late.remove();
        late.observe(200, 0.01);
        assert!(!encode().contains(r#"ingress="late""#));
        idle.observe(404, 0.01);
        assert!(encode().lines().any(|l| l.contains(r#"code="4xx""#)
            && l.contains(r#"ingress="idle""#)
            && l.ends_with(" 1")));
    }
}
