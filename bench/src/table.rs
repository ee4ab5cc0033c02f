//! The routing table every contender serves, written once and rendered four ways: as real
//! Ingresses, Services and EndpointSlices for Portico (through the apiserver), as an
//! `nginx.conf`, as an `haproxy.cfg` with its maps, and as Traefik's static and dynamic
//! (file provider) configuration. A reference matcher with the Ingress v1 rules (exact
//! beats prefix at equal length, prefixes match whole path elements) checks that all four
//! route every benchmark request to the same Service before anything is measured.
//!
//! ```text
//!  Table ─┬─▶ k8s objects ─▶ apiserver ─▶ portico-proxy
//!         ├─▶ nginx.conf (server per host, location per path, upstream keep-alive pools)
//!         ├─▶ haproxy.cfg + exact.map / prefix.map (base → backend, http-reuse always)
//!         ├─▶ traefik.yml + dynamic.yml (a router per path rule and entry point)
//!         └─▶ route(host, path) ─▶ the expected Service of each target
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use portico_tests::fixtures;

/// Every backend endpoint listens on this port.
pub const BACKEND_PORT: u16 = 8080;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Prefix,
    Exact,
}

#[derive(Debug, Clone)]
pub struct PathRule {
    pub path: String,
    pub kind: PathKind,
    pub service: String,
}

#[derive(Debug, Clone)]
pub struct Route {
    /// The Ingress's name.
    pub name: String,
    pub host: String,
    pub paths: Vec<PathRule>,
    pub tls_secret: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub namespace: String,
    pub class: String,
    /// Service name → endpoint addresses (port BACKEND_PORT).
    pub services: BTreeMap<String, Vec<Ipv4Addr>>,
    pub ingresses: Vec<Route>,
}

/// One request of the benchmark: where it goes and which Service must answer it.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub path: String,
    pub service: String,
}

impl Target {
    /// `host,path`, the form `portico-bench rate --target` takes.
    pub fn arg(&self) -> String {
        format!("{},{}", self.host, self.path)
    }
}

/// The `n`-th address of a /24 block `10.244.<third>.x`, x in 1..=250.
pub fn pod_ip(third: u8, n: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, third + (n / 250) as u8, 1 + (n % 250) as u8)
}

/// The backend addresses of the comparison table (10.244.1.1..40).
pub const COMPARISON_SERVICES: usize = 20;
pub const COMPARISON_ENDPOINTS_PER_SERVICE: usize = 2;
pub const COMPARISON_HOSTS: usize = 100;
pub const COMPARISON_PATHS: usize = 50;

impl Table {
    /// The comparison table: 100 hosts with `/` and `/api`, one host with 50 paths, 20
    /// Services of 2 endpoints each — 251 routes.
    pub fn comparison(namespace: &str, class: &str, tls_secret: &str) -> Table {
        let mut services = BTreeMap::new();
        for s in 0..COMPARISON_SERVICES {
            let eps = (0..COMPARISON_ENDPOINTS_PER_SERVICE)
                .map(|e| pod_ip(1, s * COMPARISON_ENDPOINTS_PER_SERVICE + e))
                .collect();
            services.insert(svc_name(s), eps);
        }
        let mut ingresses = Vec::new();
        for h in 0..COMPARISON_HOSTS {
            ingresses.push(Route {
                name: format!("host-{h:03}"),
                host: format!("h{h}.bench.test"),
                paths: vec![
                    PathRule {
                        path: "/".into(),
                        kind: PathKind::Prefix,
                        service: svc_name(h % COMPARISON_SERVICES),
                    },
                    PathRule {
                        path: "/api".into(),
                        kind: PathKind::Prefix,
                        service: svc_name((h + 7) % COMPARISON_SERVICES),
                    },
                ],
                tls_secret: Some(tls_secret.to_string()),
            });
        }
        let mut paths: Vec<PathRule> = (0..COMPARISON_PATHS)
            .map(|p| PathRule {
                path: format!("/p{p}"),
                kind: PathKind::Prefix,
                service: svc_name((p * 3) % COMPARISON_SERVICES),
            })
            .collect();
        paths.push(PathRule {
            path: "/p1/exact".into(),
            kind: PathKind::Exact,
            service: svc_name(19),
        });
        ingresses.push(Route {
            name: "paths".into(),
            host: "paths.bench.test".into(),
            paths,
            tls_secret: Some(tls_secret.to_string()),
        });
        Table {
            namespace: namespace.into(),
            class: class.into(),
            services,
            ingresses,
        }
    }

    /// The requests the HTTP/1.1 cases rotate over: 16 hosts × (`/`, `/api/items`) and
    /// 8 paths of the path-heavy host, 40 routes in all.
    pub fn comparison_targets(&self) -> Vec<Target> {
        let mut out = Vec::new();
        for h in (0..COMPARISON_HOSTS)
            .step_by(COMPARISON_HOSTS / 16)
            .take(16)
        {
            for path in ["/", "/api/items"] {
                out.push(self.target(&format!("h{h}.bench.test"), path));
            }
        }
        for p in (0..COMPARISON_PATHS).step_by(6).take(8) {
            out.push(self.target("paths.bench.test", &format!("/p{p}/x")));
        }
        out
    }

    /// Paths of the path-heavy host, for h2load (one authority per run).
    pub fn h2_targets(&self) -> Vec<Target> {
        (0..COMPARISON_PATHS)
            .step_by(5)
            .take(10)
            .map(|p| self.target("paths.bench.test", &format!("/p{p}/x")))
            .collect()
    }

    pub fn target(&self, host: &str, path: &str) -> Target {
        let service = self
            .route(host, path)
            .unwrap_or_else(|| panic!("no route for {host}{path} in the benchmark table"));
        Target {
            host: host.into(),
            path: path.into(),
            service: service.to_string(),
        }
    }

    /// The Service the Ingress rules pick for `host` and `path` (the reference matcher).
    pub fn route(&self, host: &str, path: &str) -> Option<&str> {
        let host = host.to_ascii_lowercase();
        // (length, exact?) of the best match so far: longest wins, exact beats prefix.
        let mut best: Option<((usize, bool), &str)> = None;
        for ing in self.ingresses.iter().filter(|i| i.host == host) {
            for rule in &ing.paths {
                let hit = match rule.kind {
                    PathKind::Exact => path == rule.path,
                    PathKind::Prefix => prefix_matches(&rule.path, path),
                };
                if hit {
                    let key = (
                        rule.path.trim_end_matches('/').len(),
                        rule.kind == PathKind::Exact,
                    );
                    if best.is_none_or(|(k, _)| key > k) {
                        best = Some((key, rule.service.as_str()));
                    }
                }
            }
        }
        best.map(|(_, s)| s)
    }

    pub fn endpoints(&self, service: &str) -> &[Ipv4Addr] {
        self.services.get(service).map(Vec::as_slice).unwrap_or(&[])
    }
}

pub fn svc_name(i: usize) -> String {
    format!("svc-{i:02}")
}

/// Ingress `Prefix`: element-wise on `/` boundaries; a trailing `/` in the rule is ignored.
pub fn prefix_matches(rule: &str, path: &str) -> bool {
    let rule = rule.trim_end_matches('/');
    if rule.is_empty() {
        return true;
    }
    path == rule || (path.starts_with(rule) && path.as_bytes().get(rule.len()) == Some(&b'/'))
}

// The objects come from `portico_tests::fixtures`, as the tests' and the demo's do.

pub fn ingress_class(name: &str) -> IngressClass {
    fixtures::ingress_class(name)
}

/// A Service with one port `http` (80 → 8080). `headless` skips the cluster IP, which the
/// proxy never uses (it routes to the EndpointSlices' addresses) and which costs the
/// apiserver an IPAddress object per Service.
pub fn service_object(namespace: &str, name: &str, headless: bool) -> Service {
    fixtures::service(namespace, name, "http", 80, BACKEND_PORT, headless)
}

/// The one EndpointSlice of `service`, named `<service>-bench`, all endpoints ready.
pub fn slice_object(namespace: &str, service: &str, endpoints: &[Ipv4Addr]) -> EndpointSlice {
    let endpoints: Vec<SocketAddr> = endpoints
        .iter()
        .map(|ip| SocketAddr::from((*ip, BACKEND_PORT)))
        .collect();
    fixtures::endpoint_slice(namespace, &slice_name(service), service, "http", &endpoints)
}

pub fn slice_name(service: &str) -> String {
    format!("{service}-bench")
}

pub fn ingress_object(namespace: &str, class: &str, route: &Route) -> Ingress {
    let paths: Vec<(&str, &str, &str, &str)> = route
        .paths
        .iter()
        .map(|p| {
            let kind = match p.kind {
                PathKind::Prefix => "Prefix",
                PathKind::Exact => "Exact",
            };
            (p.path.as_str(), kind, p.service.as_str(), "http")
        })
        .collect();
    fixtures::ingress_object(
        namespace,
        &route.name,
        class,
        &route.host,
        &paths,
        route.tls_secret.as_deref(),
    )
}

pub fn tls_secret(namespace: &str, name: &str, cert_pem: &str, key_pem: &str) -> Secret {
    fixtures::tls_secret(namespace, name, cert_pem, key_pem)
}

/// Where a contender listens.
#[derive(Debug, Clone, Copy)]
pub struct Listen {
    pub ip: Ipv4Addr,
    pub http_port: u16,
    pub https_port: u16,
}

/// The nginx configuration equivalent to `table`: one worker, logging off, an upstream per
/// Service with a keep-alive pool larger than any client count, `keepalive_requests` high
/// (the default 1000 recycles upstream connections), the same forwarded headers Portico
/// sets, and the Ingress path rules as `location` blocks (`= /p` plus `/p/` for a prefix).
pub fn nginx_conf(table: &Table, dir: &Path, listen: Listen, cert: &Path, key: &Path) -> String {
    let d = dir.display();
    let mut c = String::new();
    let _ = write!(
        c,
        "# Generated by portico-bench from the same table as the Ingresses.
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
master_process on;
user root root;
pid {d}/nginx.pid;
error_log stderr error;
events {{ worker_connections 8000; }}
http {{
  access_log off;
  server_tokens off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_timeout 60s;
  keepalive_requests 1000000;
  server_names_hash_bucket_size 128;
  ssl_certificate {cert};
  ssl_certificate_key {key};
  ssl_protocols TLSv1.2 TLSv1.3;
  proxy_http_version 1.1;
  proxy_buffering off;
  proxy_set_header Connection \"\";
  proxy_set_header Host $host;
  proxy_set_header X-Forwarded-For $remote_addr;
  proxy_set_header X-Forwarded-Proto $scheme;
  proxy_set_header X-Forwarded-Host $host;
",
        cert = cert.display(),
        key = key.display(),
    );
    for (name, eps) in &table.services {
        let _ = writeln!(c, "  upstream {name} {{");
        for ip in eps {
            let _ = writeln!(c, "    server {ip}:{BACKEND_PORT};");
        }
        let _ = writeln!(
            c,
            "    keepalive 1024;\n    keepalive_requests 1000000;\n    keepalive_timeout 60s;\n  }}"
        );
    }
    let listen_lines = |default: bool| {
        let d = if default { " default_server" } else { "" };
        format!(
            "    listen {ip}:{hp}{d};\n    listen {ip}:{sp} ssl http2{d};\n",
            ip = listen.ip,
            hp = listen.http_port,
            sp = listen.https_port
        )
    };
    let _ = write!(
        c,
        "  server {{\n{}    server_name _;\n    location / {{ return 404; }}\n  }}\n",
        listen_lines(true)
    );
    // Hosts may repeat across Ingresses; nginx wants one server block per name.
    let mut by_host: BTreeMap<&str, Vec<&PathRule>> = BTreeMap::new();
    for ing in &table.ingresses {
        by_host
            .entry(ing.host.as_str())
            .or_default()
            .extend(ing.paths.iter());
    }
    for (host, rules) in by_host {
        let _ = write!(
            c,
            "  server {{\n{}    server_name {host};\n",
            listen_lines(false)
        );
        let mut exact: BTreeMap<String, &str> = BTreeMap::new();
        let mut prefix: BTreeMap<String, &str> = BTreeMap::new();
        for r in &rules {
            let trimmed = r.path.trim_end_matches('/');
            match r.kind {
                PathKind::Exact => {
                    exact.insert(r.path.clone(), &r.service);
                }
                PathKind::Prefix if trimmed.is_empty() => {
                    prefix.entry("/".into()).or_insert(&r.service);
                }
                PathKind::Prefix => {
                    exact.entry(trimmed.to_string()).or_insert(&r.service);
                    prefix.entry(format!("{trimmed}/")).or_insert(&r.service);
                }
            }
        }
        for (path, svc) in &exact {
            let _ = writeln!(c, "    location = {path} {{ proxy_pass http://{svc}; }}");
        }
        for (path, svc) in &prefix {
            let _ = writeln!(c, "    location {path} {{ proxy_pass http://{svc}; }}");
        }
        if !prefix.contains_key("/") {
            let _ = writeln!(c, "    location / {{ return 404; }}");
        }
        c.push_str("  }\n");
    }
    c.push_str("}\n");
    c
}

/// The HAProxy configuration equivalent to `table`: one thread, no logging, `http-reuse
/// always`, the same forwarded headers, and routing by `base` (host + path) through two
/// maps — exact keys (`map_str`, a tree) and prefix keys ending in `/` (`map_beg`, written
/// longest first) — which is how map-based HAProxy ingress controllers route. Returns
/// (haproxy.cfg, exact.map, prefix.map).
pub fn haproxy_cfg(
    table: &Table,
    dir: &Path,
    listen: Listen,
    pem: &Path,
) -> (String, String, String) {
    let mut exact: BTreeMap<String, String> = BTreeMap::new();
    let mut prefix: BTreeMap<String, String> = BTreeMap::new();
    for ing in &table.ingresses {
        for r in &ing.paths {
            let trimmed = r.path.trim_end_matches('/');
            match r.kind {
                PathKind::Exact => {
                    exact.insert(format!("{}{}", ing.host, r.path), r.service.clone());
                }
                PathKind::Prefix => {
                    if !trimmed.is_empty() {
                        exact
                            .entry(format!("{}{trimmed}", ing.host))
                            .or_insert(r.service.clone());
                    }
                    prefix
                        .entry(format!("{}{trimmed}/", ing.host))
                        .or_insert(r.service.clone());
                }
            }
        }
    }
    let exact_map: String = exact.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
    let mut prefix_entries: Vec<(&String, &String)> = prefix.iter().collect();
    prefix_entries.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(b.0)));
    let prefix_map: String = prefix_entries
        .iter()
        .map(|(k, v)| format!("{k} {v}\n"))
        .collect();
    let d = dir.display();
    let mut c = format!(
        "# Generated by portico-bench from the same table as the Ingresses.
global
  nbthread 1
  maxconn 8000
  pidfile {d}/haproxy.pid
  ssl-default-bind-options ssl-min-ver TLSv1.2
  tune.ssl.default-dh-param 2048

defaults
  mode http
  option http-keep-alive
  option forwardfor
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  timeout http-request 60s

frontend fe
  bind {ip}:{hp}
  bind {ip}:{sp} ssl crt {pem} alpn h2,http/1.1
  http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
  http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-var(txn.be) base,map_str({d}/exact.map)
  http-request set-var(txn.be) base,map_beg({d}/prefix.map) if !{{ var(txn.be) -m found }}
  use_backend %[var(txn.be)] if {{ var(txn.be) -m found }}
  default_backend be_404

backend be_404
  http-request return status 404
",
        ip = listen.ip,
        hp = listen.http_port,
        sp = listen.https_port,
        pem = pem.display(),
    );
    for (name, eps) in &table.services {
        let _ = write!(c, "\nbackend {name}\n  balance roundrobin\n");
        for (i, ip) in eps.iter().enumerate() {
            let _ = writeln!(c, "  server e{i} {ip}:{BACKEND_PORT}");
        }
    }
    (c, exact_map, prefix_map)
}

/// Traefik's static configuration: the two entry points on `listen`, the file provider
/// reading `dynamic`, an idle pool per backend as large as nginx's upstream `keepalive`
/// (`maxIdleConnsPerHost` 1024; Traefik's default is 200), logs at error level, and nothing
/// else: no access log, metrics, tracing, API or dashboard, which Traefik leaves off unless
/// configured.
pub fn traefik_static(listen: Listen, dynamic: &Path) -> String {
    traefik_static_with(
        listen,
        "",
        &format!(
            "  file:\n    filename: \"{}\"\n    watch: false\n",
            dynamic.display()
        ),
    )
}

/// [`traefik_static`]'s settings with other `providers` (YAML under `providers:`) and
/// `websecure` (YAML under the HTTPS entry point).
pub fn traefik_static_with(listen: Listen, websecure: &str, providers: &str) -> String {
    format!(
        "# Generated by portico-bench.
global:
  checkNewVersion: false
  sendAnonymousUsage: false
log:
  level: ERROR
entryPoints:
  web:
    address: \"{ip}:{hp}\"
  websecure:
    address: \"{ip}:{sp}\"
{websecure}serversTransport:
  maxIdleConnsPerHost: 1024
providers:
{providers}",
        ip = listen.ip,
        hp = listen.http_port,
        sp = listen.https_port,
    )
}

/// Traefik's dynamic configuration (file provider) equivalent to `table`: for every path rule
/// a router on the HTTP entry point and one with TLS on the HTTPS entry point, each with the
/// rule Traefik's own Kubernetes Ingress provider writes under `strictPrefixMatching`
/// ([`traefik_rule`]); a service per Service, round robin over its endpoints; the
/// certificate as the default of the default store (the load generators send no SNI).
pub fn traefik_dynamic(table: &Table, cert: &Path, key: &Path) -> String {
    let mut c = String::from(
        "# Generated by portico-bench from the same table as the Ingresses.\nhttp:\n  routers:\n",
    );
    for ing in &table.ingresses {
        for (i, r) in ing.paths.iter().enumerate() {
            let (rule, priority) = traefik_rule(&ing.host, r);
            let rule = rule.replace('\'', "''");
            for (suffix, entry_point, tls) in
                [("", "web", ""), ("-tls", "websecure", "      tls: {}\n")]
            {
                let _ = write!(
                    c,
                    "    {name}-{i}{suffix}:\n      entryPoints: [{entry_point}]\n      rule: '{rule}'\n      \
                     priority: {priority}\n      service: {svc}\n{tls}",
                    name = ing.name,
                    svc = r.service,
                );
            }
        }
    }
    c.push_str("  services:\n");
    for (name, eps) in &table.services {
        let _ = writeln!(c, "    {name}:\n      loadBalancer:\n        servers:");
        for ip in eps {
            let _ = writeln!(c, "          - url: http://{ip}:{BACKEND_PORT}");
        }
    }
    let _ = write!(
        c,
        "tls:
  certificates:
    - certFile: \"{cert}\"
      keyFile: \"{key}\"
  stores:
    default:
      defaultCertificate:
        certFile: \"{cert}\"
        keyFile: \"{key}\"
",
        cert = cert.display(),
        key = key.display(),
    );
    c
}

/// The Traefik rule and priority for one Ingress path: the rule as Traefik's Kubernetes
/// Ingress provider builds it with `strictPrefixMatching` (whole path elements, like the
/// Ingress spec: `Path("/p") || PathPrefix("/p/")`), and an explicit priority that ranks
/// longer paths first and an exact path above a prefix of the same length. Traefik's default
/// priority is the rule's length, which would put `/p1`'s longer prefix rule above the exact
/// `/p1/exact`.
pub fn traefik_rule(host: &str, rule: &PathRule) -> (String, usize) {
    let trimmed = rule.path.trim_end_matches('/');
    let path = match rule.kind {
        PathKind::Exact => format!("Path({:?})", rule.path),
        PathKind::Prefix if trimmed.is_empty() => "PathPrefix(\"/\")".to_string(),
        PathKind::Prefix => format!("(Path({trimmed:?}) || PathPrefix(\"{trimmed}/\"))"),
    };
    let priority = 1 + 2 * trimmed.len() + usize::from(rule.kind == PathKind::Exact);
    (format!("Host({host:?}) && {path}"), priority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_matcher_follows_the_ingress_rules() {
        let t = Table::comparison("bench", "c", "tls");
        assert_eq!(t.route("h3.bench.test", "/"), Some(svc_name(3).as_str()));
        assert_eq!(
            t.route("h3.bench.test", "/api"),
            Some(svc_name(10).as_str())
        );
        assert_eq!(
            t.route("h3.bench.test", "/api/x"),
            Some(svc_name(10).as_str())
        );
        assert_eq!(
            t.route("h3.bench.test", "/apix"),
            Some(svc_name(3).as_str())
        );
        assert_eq!(
            t.route("paths.bench.test", "/p1/exact"),
            Some(svc_name(19).as_str())
        );
        assert_eq!(
            t.route("paths.bench.test", "/p1/exact/"),
            Some(svc_name(3).as_str())
        );
        assert_eq!(t.route("paths.bench.test", "/p10x"), None);
        assert_eq!(t.route("nope.bench.test", "/"), None);
        assert!(t.ingresses.iter().map(|i| i.paths.len()).sum::<usize>() >= 100);
        assert_eq!(t.comparison_targets().len(), 40);
    }

    #[test]
    fn traefik_rules_are_the_ingress_providers_with_ingress_priorities() {
        let rule = |path: &str, kind| PathRule {
            path: path.into(),
            kind,
            service: "s".into(),
        };
        let (root, root_prio) = traefik_rule("a.test", &rule("/", PathKind::Prefix));
        assert_eq!(root, r#"Host("a.test") && PathPrefix("/")"#);
        let (api, api_prio) = traefik_rule("a.test", &rule("/api/", PathKind::Prefix));
        assert_eq!(
            api,
            r#"Host("a.test") && (Path("/api") || PathPrefix("/api/"))"#
        );
        let (exact, exact_prio) = traefik_rule("a.test", &rule("/api", PathKind::Exact));
        assert_eq!(exact, r#"Host("a.test") && Path("/api")"#);
        // Longer paths first; exact above a prefix of the same length; never 0 (Traefik's
        // "use the rule's length").
        assert!(0 < root_prio && root_prio < api_prio && api_prio < exact_prio);
        let (_, longer) = traefik_rule("a.test", &rule("/api/v1", PathKind::Prefix));
        assert!(longer > exact_prio);
    }

    #[test]
    fn traefik_config_has_a_router_per_rule_and_entry_point_and_every_endpoint() {
        let t = Table::comparison("bench", "c", "tls");
        let dynamic = traefik_dynamic(&t, Path::new("/d/cert.pem"), Path::new("/d/key.pem"));
        let routes: usize = t.ingresses.iter().map(|i| i.paths.len()).sum();
        assert_eq!(dynamic.matches("entryPoints: [web]").count(), routes);
        assert_eq!(dynamic.matches("entryPoints: [websecure]").count(), routes);
        assert_eq!(dynamic.matches("tls: {}").count(), routes);
        assert!(dynamic.contains(
            "    paths-50:\n      entryPoints: [web]\n      rule: 'Host(\"paths.bench.test\") && \
             Path(\"/p1/exact\")'\n      priority: 20\n      service: svc-19\n"
        ));
        assert!(dynamic.contains("    svc-00:\n      loadBalancer:\n        servers:\n          - url: http://10.244.1.1:8080\n          - url: http://10.244.1.2:8080\n"));
        assert_eq!(dynamic.matches("certFile: \"/d/cert.pem\"").count(), 2);
        let listen = Listen {
            ip: Ipv4Addr::new(10, 0, 0, 1),
            http_port: 80,
            https_port: 443,
        };
        let stat = traefik_static(listen, Path::new("/d/dynamic.yml"));
        assert!(stat.contains("  web:\n    address: \"10.0.0.1:80\"\n"));
        assert!(stat.contains("  websecure:\n    address: \"10.0.0.1:443\"\n"));
        assert!(stat.contains("filename: \"/d/dynamic.yml\""));
        for off in ["accessLog", "metrics", "tracing", "api"] {
            assert!(!stat.contains(off), "{off} must stay off");
        }
    }
}
