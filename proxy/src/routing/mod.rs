//! The route model and request matching (Ingress v1 semantics, see DESIGN.md "Routing
//! semantics").
//!
//! ```text
//! request ─▶ normalize host ─▶ exact host │ one-label wildcard │ host-less rules
//!                                   └─▶ ordered path rules (longest first, Exact before Prefix)
//!                                          └─▶ first match ─▶ Route ─▶ RouteBackend(s)
//!        no host or path rule matched ─▶ defaultBackend (unless the host is isolated) ─▶ 404
//! ```
//!
//! The model is deliberately more general than Ingress: a path rule carries header matches
//! and a list of weighted backends, so Gateway API HTTPRoute can map onto it later. The
//! Ingress builder fills one backend and no header matches.

pub mod cors;
pub mod host;
pub mod nginx;
pub mod path;
pub mod traffic;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use http::HeaderMap;

use crate::key::ObjectKey;
use crate::lb::{Backend, Policy};
pub use host::HostPattern;
pub use path::{PathKind, PathMatch};

pub use crate::upstream::UpstreamProtocol;

/// One backend of a route: where the endpoints live and how to talk to them.
#[derive(Debug, Clone)]
pub struct RouteBackend {
    pub backend: Arc<Backend>,
    pub protocol: UpstreamProtocol,
    /// Relative weight among the route's backends (Ingress: always one backend).
    pub weight: u32,
    /// For `Https`: the SNI sent and how the certificate is checked.
    pub tls: Option<Arc<crate::upstream::tls::UpstreamTls>>,
}

/// ingress-nginx's `default-backend` of an Ingress: asked instead when the rule's Service
/// has no endpoints, or answered one of `codes`.
#[derive(Debug)]
pub struct ErrorBackend {
    pub backend: Arc<Backend>,
    pub service: String,
    pub codes: Vec<u16>,
}

/// What a matched request does. Shared by every path rule built from the same Ingress
/// backend.
#[derive(Debug)]
pub struct Route {
    /// The Ingress this route came from (metrics labels, logs).
    pub ingress: ObjectKey,
    /// The Service name, for metrics.
    pub service: String,
    pub backends: Vec<RouteBackend>,
    pub policy: Policy,
    /// Plain-HTTP requests get a 308 to HTTPS (the host has TLS and redirect is on).
    pub https_redirect: bool,
    pub metrics: crate::metrics::RouteMetrics,
    /// Weighted routes: the request count that walks the weights (see `pick_backend`).
    pub rotor: AtomicU32,
    /// ingress-nginx's access control: rate limits, source ranges, basic and external
    /// auth (`None`: anyone, unlimited).
    pub access: Option<Arc<crate::access::Access>>,
    /// ingress-nginx's `default-backend` with `custom-http-errors`.
    pub error_backend: Option<Arc<ErrorBackend>>,
    /// The Ingress's overrides of body size, timeouts, retries and access logging.
    pub traffic: traffic::RouteTraffic,
    /// ingress-nginx routing annotations (rewrite, redirects, upstream Host and prefix);
    /// `None` for most routes, so a request without them reads one pointer.
    pub nginx: Option<Box<nginx::NginxRoute>>,
}

/// Multiplier that spreads a weighted rotation: prime, so coprime with most totals.
const ROTOR_STRIDE: u64 = 7919;

impl Route {
    /// Picks a backend by weight (one backend: no counting). The n-th request takes slot
    /// `n * stride mod total`: over every `total` requests each backend gets exactly its
    /// weight, interleaved rather than in runs, across all worker threads.
    pub fn pick_backend(&self) -> Option<&RouteBackend> {
        match self.backends.len() {
            0 => None,
            1 => self.backends.first(),
            _ => {
                let total: u32 = self.backends.iter().map(|b| b.weight).sum();
                if total == 0 {
                    return self.backends.first();
                }
                let stride = if u64::from(total).is_multiple_of(ROTOR_STRIDE) {
                    1
                } else {
                    ROTOR_STRIDE
                };
                let n = u64::from(self.rotor.fetch_add(1, Ordering::Relaxed) % total);
                // `n * stride mod total` is below `total`, a u32.
                let mut n = u32::try_from(n * stride % u64::from(total)).unwrap_or(0);
                for b in &self.backends {
                    if n < b.weight {
                        return Some(b);
                    }
                    n -= b.weight;
                }
                self.backends.last()
            }
        }
    }
}

/// A request condition on a path rule: an exact header value, or an exact cookie value
/// (canary Ingresses; Gateway API header matches later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMatch {
    Header {
        name: http::HeaderName,
        value: String,
    },
    Cookie {
        name: String,
        value: String,
    },
    /// A header whose value the pattern matches (anywhere in it).
    HeaderPattern {
        name: http::HeaderName,
        pattern: portico_ingress::nginx::HeaderPattern,
    },
}

impl HeaderMatch {
    fn matches(&self, headers: &HeaderMap) -> bool {
        match self {
            HeaderMatch::Header { name, value } => {
                headers.get(name).and_then(|v| v.to_str().ok()) == Some(value.as_str())
            }
            HeaderMatch::HeaderPattern { name, pattern } => headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| pattern.is_match(v)),
            HeaderMatch::Cookie { name, value } => headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .any(|(k, v)| k == name && v == value),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PathRule {
    pub path: PathMatch,
    pub headers: Vec<HeaderMatch>,
    pub route: Arc<Route>,
}

impl PathRule {
    fn matches(&self, path: &str, headers: &HeaderMap) -> bool {
        self.path.matches(path) && self.headers.iter().all(|h| h.matches(headers))
    }
}

/// Path rules of one host, kept in match order.
#[derive(Debug, Clone, Default)]
pub struct HostRules {
    rules: Vec<PathRule>,
    /// A request matching none of these paths gets 404, not the default backend: the host
    /// belongs to another namespace than the default backend does.
    pub isolated: bool,
}

impl HostRules {
    /// Adds a rule unless the same path match (kind and path) and headers already exist;
    /// returns the existing rule's route on conflict. Callers insert oldest Ingress first,
    /// so the oldest wins.
    pub fn insert(&mut self, rule: PathRule) -> Result<(), Arc<Route>> {
        if let Some(existing) = self
            .rules
            .iter()
            .find(|r| r.path == rule.path && same_headers(&r.headers, &rule.headers))
        {
            return Err(existing.route.clone());
        }
        self.rules.push(rule);
        Ok(())
    }

    /// Longest match first; at equal length Exact before Prefix; more header conditions
    /// first. Stable, so insertion order (oldest Ingress) breaks remaining ties.
    fn sort(&mut self) {
        self.rules.sort_by(|a, b| {
            b.path
                .match_len()
                .cmp(&a.path.match_len())
                .then(a.path.kind.rank().cmp(&b.path.kind.rank()))
                .then(b.headers.len().cmp(&a.headers.len()))
        });
    }

    pub fn find(&self, path: &str, headers: &HeaderMap) -> Option<&Arc<Route>> {
        self.rules
            .iter()
            .find(|r| r.matches(path, headers))
            .map(|r| &r.route)
    }

    /// The route of the rule for `path` without request conditions (a canary's primary).
    pub fn plain_route(&self, path: &PathMatch) -> Option<&Arc<Route>> {
        self.rules
            .iter()
            .find(|r| r.path == *path && r.headers.is_empty())
            .map(|r| &r.route)
    }

    /// Replaces the route of the rule for `path` without request conditions.
    pub fn set_plain_route(&mut self, path: &PathMatch, route: Arc<Route>) {
        if let Some(r) = self
            .rules
            .iter_mut()
            .find(|r| r.path == *path && r.headers.is_empty())
        {
            r.route = route;
        }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn same_headers(a: &[HeaderMatch], b: &[HeaderMatch]) -> bool {
    a == b
}

/// The whole routing table of one snapshot.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: HashMap<Arc<str>, HostRules>,
    /// Keyed by the suffix after `*.`, e.g. `foo.com` for `*.foo.com`.
    wildcard: HashMap<Arc<str>, HostRules>,
    any_host: HostRules,
    default_backend: Option<Arc<Route>>,
}

/// Why a lookup found nothing or what it found.
#[derive(Debug)]
pub enum RouteMatch<'a> {
    Rule(&'a Arc<Route>),
    Default(&'a Arc<Route>),
    NotFound,
}

impl RouteTable {
    /// Room for `hosts` exact hosts without growing.
    pub fn with_capacity(hosts: usize) -> Self {
        RouteTable {
            exact: HashMap::with_capacity(hosts),
            ..RouteTable::default()
        }
    }

    pub fn has_default_backend(&self) -> bool {
        self.default_backend.is_some()
    }

    pub fn host_rules_mut(&mut self, host: &HostPattern) -> &mut HostRules {
        match host {
            HostPattern::Exact(h) => self.exact.entry(h.clone()).or_default(),
            HostPattern::Wildcard(suffix) => self.wildcard.entry(suffix.clone()).or_default(),
            HostPattern::Any => &mut self.any_host,
        }
    }

    /// Sets the default backend unless one is set already (oldest Ingress first).
    pub fn set_default_backend(&mut self, route: Arc<Route>) -> Result<(), Arc<Route>> {
        match &self.default_backend {
            Some(existing) => Err(existing.clone()),
            None => {
                self.default_backend = Some(route);
                Ok(())
            }
        }
    }

    /// Call once after all inserts.
    pub fn finish(&mut self) {
        self.exact.retain(|_, r| !r.is_empty());
        self.wildcard.retain(|_, r| !r.is_empty());
        for rules in self.exact.values_mut().chain(self.wildcard.values_mut()) {
            rules.sort();
        }
        self.any_host.sort();
    }

    /// Host is already normalized (lowercase, no port). The most specific host that has
    /// rules decides; within it the path rules decide; then the default backend.
    pub fn find(&self, host: &str, path: &str, headers: &HeaderMap) -> RouteMatch<'_> {
        let rules = self
            .exact
            .get(host)
            .or_else(|| {
                host.split_once('.')
                    .and_then(|(_, suffix)| self.wildcard.get(suffix))
            })
            .unwrap_or(&self.any_host);
        if let Some(route) = rules.find(path, headers) {
            return RouteMatch::Rule(route);
        }
        if rules.isolated {
            return RouteMatch::NotFound;
        }
        match &self.default_backend {
            Some(route) => RouteMatch::Default(route),
            None => RouteMatch::NotFound,
        }
    }

    pub fn rule_count(&self) -> usize {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .map(HostRules::len)
            .sum::<usize>()
            + self.any_host.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::BackendKey;

    fn route(name: &str) -> Arc<Route> {
        Arc::new(Route {
            ingress: ObjectKey::new("ns", name),
            service: name.to_string(),
            backends: vec![RouteBackend {
                backend: Arc::new(Backend::new(BackendKey::new("ns", name, ""))),
                protocol: UpstreamProtocol::Http1,
                weight: 1,
                tls: None,
            }],
            policy: Policy::RoundRobin,
            https_redirect: false,
            metrics: crate::metrics::RouteMetrics::new("ns", name, name),
            rotor: AtomicU32::new(0),
            access: None,
            error_backend: None,
            traffic: Default::default(),
            nginx: None,
        })
    }

    fn table(rules: &[(&str, PathKind, &str, &str)], default: Option<&str>) -> RouteTable {
        let mut t = RouteTable::default();
        for (host, kind, path, name) in rules {
            let host = HostPattern::parse(host).expect("host");
            let rule = PathRule {
                path: PathMatch::new(*kind, path).expect("path"),
                headers: vec![],
                route: route(name),
            };
            let _ = t.host_rules_mut(&host).insert(rule);
        }
        if let Some(d) = default {
            let _ = t.set_default_backend(route(d));
        }
        t.finish();
        t
    }

    fn hit(t: &RouteTable, host: &str, path: &str) -> Option<String> {
        // As the proxy does: no host (HTTP/1.0) matches only host-less rules.
        let host = if host.is_empty() {
            std::borrow::Cow::Borrowed("")
        } else {
            crate::http::target::validate_host(host).expect("valid test host")
        };
        match t.find(&host, path, &HeaderMap::new()) {
            RouteMatch::Rule(r) | RouteMatch::Default(r) => Some(r.ingress.name.clone()),
            RouteMatch::NotFound => None,
        }
    }

    use PathKind::*;

    // Conformance cases from shared/notes/control-plane.md.
    #[test]
    fn exact_path() {
        let t = table(&[("", Exact, "/foo", "exact")], None);
        assert_eq!(hit(&t, "x", "/foo").as_deref(), Some("exact"));
        assert_eq!(hit(&t, "x", "/foo/"), None);
        assert_eq!(hit(&t, "x", "/FOO"), None);
        assert_eq!(hit(&t, "x", "/bar"), None);
    }

    #[test]
    fn prefix_path() {
        let t = table(&[("", Prefix, "/foo", "prefix")], None);
        assert_eq!(hit(&t, "x", "/foo").as_deref(), Some("prefix"));
        assert_eq!(hit(&t, "x", "/foo/").as_deref(), Some("prefix"));
        assert_eq!(hit(&t, "x", "/foo/bar").as_deref(), Some("prefix"));
        assert_eq!(hit(&t, "x", "/FOO"), None);
        assert_eq!(hit(&t, "x", "/foobar"), None);
    }

    #[test]
    fn longest_prefix_element_wise() {
        let t = table(
            &[("", Prefix, "/aaa", "aaa"), ("", Prefix, "/aaa/bbb", "bbb")],
            None,
        );
        assert_eq!(hit(&t, "x", "/aaa/bbb/ccc").as_deref(), Some("bbb"));
        assert_eq!(hit(&t, "x", "/aaa/ccc").as_deref(), Some("aaa"));
        assert_eq!(hit(&t, "x", "/aaaccc"), None);
    }

    #[test]
    fn exact_beats_prefix_on_same_path() {
        let t = table(
            &[("", Prefix, "/foo", "prefix"), ("", Exact, "/foo", "exact")],
            None,
        );
        assert_eq!(hit(&t, "x", "/foo").as_deref(), Some("exact"));
        assert_eq!(hit(&t, "x", "/foo/x").as_deref(), Some("prefix"));
    }

    #[test]
    fn trailing_slashes() {
        let t = table(
            &[
                ("", Prefix, "/aaa/bbb/", "prefix"),
                ("", Exact, "/foo/", "exact"),
            ],
            None,
        );
        assert_eq!(hit(&t, "x", "/aaa/bbb").as_deref(), Some("prefix"));
        assert_eq!(hit(&t, "x", "/aaa/bbb/").as_deref(), Some("prefix"));
        assert_eq!(hit(&t, "x", "/foo/").as_deref(), Some("exact"));
        assert_eq!(hit(&t, "x", "/foo"), None);
    }

    #[test]
    fn root_prefix_matches_everything() {
        let t = table(&[("", Prefix, "/", "root")], None);
        assert_eq!(hit(&t, "x", "/").as_deref(), Some("root"));
        assert_eq!(hit(&t, "x", "/anything/at/all").as_deref(), Some("root"));
    }

    #[test]
    fn implementation_specific_is_prefix() {
        let t = table(&[("", ImplementationSpecific, "/foo", "is")], None);
        assert_eq!(hit(&t, "x", "/foo/bar").as_deref(), Some("is"));
        assert_eq!(hit(&t, "x", "/foobar"), None);
    }

    #[test]
    fn wildcard_one_label() {
        let t = table(&[("*.foo.com", Prefix, "/", "wild")], None);
        assert_eq!(hit(&t, "bar.foo.com", "/").as_deref(), Some("wild"));
        assert_eq!(hit(&t, "baz.bar.foo.com", "/"), None);
        assert_eq!(hit(&t, "foo.com", "/"), None);
    }

    #[test]
    fn exact_host_beats_wildcard_and_ignores_case_and_port() {
        let t = table(
            &[
                ("*.foo.com", Prefix, "/", "wild"),
                ("bar.foo.com", Prefix, "/", "exact"),
            ],
            None,
        );
        assert_eq!(hit(&t, "BAR.Foo.com:8080", "/").as_deref(), Some("exact"));
        assert_eq!(hit(&t, "qux.foo.com", "/").as_deref(), Some("wild"));
    }

    #[test]
    fn hostless_rules_match_any_host() {
        let t = table(
            &[("", Prefix, "/", "any"), ("a.com", Prefix, "/", "a")],
            None,
        );
        assert_eq!(hit(&t, "a.com", "/").as_deref(), Some("a"));
        assert_eq!(hit(&t, "b.com", "/").as_deref(), Some("any"));
        assert_eq!(hit(&t, "", "/").as_deref(), Some("any"));
    }

    #[test]
    fn default_backend_then_404() {
        let t = table(&[("a.com", Exact, "/x", "a")], Some("default"));
        assert_eq!(hit(&t, "a.com", "/x").as_deref(), Some("a"));
        assert_eq!(hit(&t, "a.com", "/y").as_deref(), Some("default"));
        assert_eq!(hit(&t, "b.com", "/").as_deref(), Some("default"));
        let t = table(&[("a.com", Exact, "/x", "a")], None);
        assert_eq!(hit(&t, "b.com", "/"), None);
    }

    #[test]
    fn an_isolated_host_gets_404_not_the_default_backend() {
        let mut t = table(
            &[("a.com", Exact, "/x", "a"), ("b.com", Exact, "/x", "b")],
            Some("default"),
        );
        t.host_rules_mut(&HostPattern::Exact("a.com".into()))
            .isolated = true;
        assert_eq!(hit(&t, "a.com", "/x").as_deref(), Some("a"));
        assert_eq!(hit(&t, "a.com", "/y"), None);
        assert_eq!(hit(&t, "b.com", "/y").as_deref(), Some("default"));
        assert_eq!(hit(&t, "c.com", "/").as_deref(), Some("default"));
    }

    #[test]
    fn first_inserted_wins_conflict() {
        // The builder inserts the oldest Ingress first.
        let t = table(
            &[("a.com", Prefix, "/", "old"), ("a.com", Prefix, "/", "new")],
            None,
        );
        assert_eq!(hit(&t, "a.com", "/").as_deref(), Some("old"));
    }

    #[test]
    fn header_match_is_more_specific() {
        let mut t = RouteTable::default();
        let rules = t.host_rules_mut(&HostPattern::Any);
        let _ = rules.insert(PathRule {
            path: PathMatch::new(Prefix, "/").expect("p"),
            headers: vec![],
            route: route("plain"),
        });
        let _ = rules.insert(PathRule {
            path: PathMatch::new(Prefix, "/").expect("p"),
            headers: vec![HeaderMatch::Header {
                name: http::HeaderName::from_static("x-canary"),
                value: "1".into(),
            }],
            route: route("canary"),
        });
        t.finish();
        let mut h = HeaderMap::new();
        assert!(matches!(t.find("a", "/", &h), RouteMatch::Rule(r) if r.ingress.name == "plain"));
        h.insert("x-canary", http::HeaderValue::from_static("1"));
        assert!(matches!(t.find("a", "/", &h), RouteMatch::Rule(r) if r.ingress.name == "canary"));
    }

    #[test]
    fn cookie_match_reads_every_cookie_pair() {
        let m = HeaderMatch::Cookie {
            name: "canary".into(),
            value: "always".into(),
        };
        let mut h = HeaderMap::new();
        assert!(!m.matches(&h));
        h.insert(
            http::header::COOKIE,
            http::HeaderValue::from_static("a=1; canary=always"),
        );
        assert!(m.matches(&h));
        h.insert(
            http::header::COOKIE,
            http::HeaderValue::from_static("xcanary=always; canary=never"),
        );
        assert!(!m.matches(&h));
    }

    #[test]
    fn weights_are_exact_over_each_rotation_and_interleaved() {
        let weighted = |w: &[u32]| Route {
            backends: w
                .iter()
                .enumerate()
                .map(|(i, w)| RouteBackend {
                    backend: Arc::new(Backend::new(BackendKey::new("ns", &format!("b{i}"), ""))),
                    protocol: UpstreamProtocol::Http1,
                    weight: *w,
                    tls: None,
                })
                .collect(),
            ..Arc::try_unwrap(route("w")).expect("sole owner")
        };
        let r = weighted(&[70, 30]);
        let picks: Vec<String> = (0..1000)
            .map(|_| {
                r.pick_backend()
                    .expect("backend")
                    .backend
                    .key
                    .service
                    .clone()
            })
            .collect();
        assert_eq!(picks.iter().filter(|s| *s == "b1").count(), 300);
        // Interleaved: no run of the minority backend longer than a few requests.
        let first_hundred = picks[..100].iter().filter(|s| *s == "b1").count();
        assert_eq!(first_hundred, 30, "exact within every 100 requests");
    }
}
