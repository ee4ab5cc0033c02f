//! Prometheus metrics on a private registry, served at `/metrics` by [`crate::admin`].

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::error::Error;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub reconciles: IntCounter,
    pub errors: IntCounterVec,
    pub duration: Histogram,
    pub leader: IntGauge,
    /// Requests to the Kubernetes API by verb and resource, counted in the client.
    pub api_requests: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("portico_operator".into()), None)
            .expect("static prefix is valid");
        let reconciles =
            IntCounter::new("reconciles_total", "Reconciliations started").expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "reconcile_errors_total",
                "Failed reconciliations by error kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "reconcile_duration_seconds",
                "Duration of one reconciliation",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )
        .expect("valid metric");
        let leader = IntGauge::new("leader", "1 while this replica holds the leader Lease")
            .expect("valid metric");
        let api_requests = IntCounterVec::new(
            Opts::new(
                "api_requests_total",
                "Requests sent to the Kubernetes API, by verb and resource",
            ),
            &["verb", "resource"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(duration.clone()),
            Box::new(leader.clone()),
            Box::new(api_requests.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            leader,
            api_requests,
        }
    }

    /// Counts one request to the API (see [`request_labels`]).
    pub fn count_request<B>(&self, request: &http::Request<B>) {
        let (verb, resource) = request_labels(request.method(), request.uri());
        self.api_requests
            .with_label_values(&[verb, resource.as_str()])
            .inc();
    }

    pub fn record_error(&self, error: &Error) {
        self.errors.with_label_values(&[error.metric_label()]).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding our own well-formed families cannot fail; an empty page is the fallback.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// `(verb, resource)` of an API request, as the apiserver's audit log names them: `watch`
/// and `list` told apart by the query, `resource` with its subresource (`ingresses/status`).
pub fn request_labels(method: &http::Method, uri: &http::Uri) -> (&'static str, String) {
    // /api/v1/<rest> or /apis/<group>/<version>/<rest>; <rest> may start with namespaces/<ns>/.
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    }
    .unwrap_or_default();
    let rest = match rest {
        ["namespaces", _, kind, tail @ ..] => {
            let mut r = vec![*kind];
            r.extend_from_slice(tail);
            r
        }
        other => other.to_vec(),
    };
    let (resource, named) = match rest.as_slice() {
        [] => (String::from("other"), false),
        [kind] => ((*kind).to_owned(), false),
        [kind, _name] => ((*kind).to_owned(), true),
        [kind, _name, sub, ..] => (format!("{kind}/{sub}"), true),
    };
    let query = uri.query().unwrap_or_default();
    let watch = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verb = match method.as_str() {
        "GET" if watch => "watch",
        "GET" if named => "get",
        "GET" => "list",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "other",
    };
    (verb, resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_labelled_by_verb_and_resource() {
        let cases = [
            (
                "GET",
                "/api/v1/namespaces/a/services?watch=true&timeoutSeconds=290",
                ("watch", "services"),
            ),
            (
                "GET",
                "/apis/networking.k8s.io/v1/ingresses?limit=500",
                ("list", "ingresses"),
            ),
            ("GET", "/api/v1/namespaces/a", ("get", "namespaces")),
            ("GET", "/api/v1/namespaces", ("list", "namespaces")),
            (
                "PATCH",
                "/apis/networking.k8s.io/v1/namespaces/a/ingresses/web/status?fieldManager=x",
                ("patch", "ingresses/status"),
            ),
            (
                "PATCH",
                "/apis/apps/v1/namespaces/a/deployments/portico-web",
                ("patch", "deployments"),
            ),
            (
                "POST",
                "/apis/events.k8s.io/v1/namespaces/a/events",
                ("create", "events"),
            ),
            (
                "DELETE",
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/x",
                ("delete", "clusterroles"),
            ),
            ("GET", "/version", ("list", "other")),
        ];
        for (method, uri, (verb, resource)) in cases {
            let method: http::Method = method.parse().expect("method");
            let uri: http::Uri = uri.parse().expect("uri");
            assert_eq!(
                request_labels(&method, &uri),
                (verb, resource.to_owned()),
                "{uri}"
            );
        }
    }
}
