//! The rules the proxy skips Ingresses by, and that the operator reports as Events.

use super::*;
use serde_json::{Value, json};

fn ingress(ns: &str, name: &str, created: &str, annotations: Value, spec: Value) -> Ingress {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "creationTimestamp": created, "annotations": annotations},
        "spec": spec,
    }))
    .expect("ingress")
}

fn rule(host: &str, path_type: &str, path: &str, svc: &str, port: Value) -> Value {
    json!({"host": host, "http": {"paths": [{"path": path, "pathType": path_type,
        "backend": {"service": {"name": svc, "port": port}}}]}})
}

fn services() -> Vec<Service> {
    [
        json!({"metadata": {"name": "web"}, "spec": {"ports": [
            {"name": "http", "port": 80}, {"name": "grpc", "port": 9000, "appProtocol": "kubernetes.io/h2c"}]}}),
        json!({"metadata": {"name": "bare"}, "spec": {"ports": [{"port": 8080}]}}),
        json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "example.com"}}),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).expect("service"))
    .collect()
}

fn run(ing: &Ingress) -> Result<Checked, Vec<Problem>> {
    let svcs = services();
    check(
        ing,
        |name| {
            svcs.iter()
                .find(|s| s.metadata.name.as_deref() == Some(name))
        },
        &Limits::default(),
    )
}

fn problems(spec: Value) -> Vec<String> {
    problems_with(json!({}), spec)
}

fn problems_with(annotations: Value, spec: Value) -> Vec<String> {
    let ing = ingress("a", "i", T0, annotations, spec);
    let svcs = services();
    validate(
        &ing,
        |name| {
            svcs.iter()
                .find(|s| s.metadata.name.as_deref() == Some(name))
        },
        &Limits::default(),
    )
    .iter()
    .map(ToString::to_string)
    .collect()
}

const T0: &str = "2026-01-01T00:00:00Z";

#[test]
fn a_valid_ingress_is_typed_and_its_ports_resolved() {
    let ing = ingress(
        "a",
        "i",
        T0,
        json!({LOAD_BALANCE_ANNOTATION: "header:X-User", SSL_REDIRECT_ANNOTATION: " false "}),
        json!({
            "tls": [{"hosts": ["X.com"], "secretName": "x-cert"}, {"secretName": ""}],
            "defaultBackend": {"service": {"name": "bare", "port": {"number": 8080}}},
            "rules": [
                rule("x.com", "Prefix", "/api/", "web", json!({"name": "grpc"})),
                rule("*.y.com", "ImplementationSpecific", "/", "web", json!({"number": 80})),
            ],
        }),
    );
    let checked = run(&ing).expect("valid");
    assert_eq!(
        checked.load_balance,
        Some(LoadBalance::Header("X-User".into()))
    );
    assert_eq!(checked.ssl_redirect, Some(false));
    assert_eq!(checked.rules.len(), 2);
    assert_eq!(checked.rules[0].path.as_str(), "/api");
    assert_eq!(
        checked.rules[0].backend,
        Backend {
            service: "web".into(),
            port_label: "grpc".into(),
            port_name: "grpc".into(),
            app_protocol: Some("kubernetes.io/h2c".into()),
            tls: None,
        }
    );
    assert_eq!(checked.rules[1].host, HostPattern::Wildcard("y.com".into()));
    assert_eq!(checked.rules[1].path.kind, PathKind::Prefix);
    assert_eq!(checked.rules[1].backend.port_name, "http");
    assert_eq!(
        checked.default_backend.map(|b| (b.port_label, b.port_name)),
        Some(("8080".into(), String::new())),
        "an unnamed port matches EndpointSlice ports by \"\""
    );
    // The entry without hosts covers every rule host, and has no Secret.
    assert_eq!(
        checked.tls,
        vec![
            TlsHost {
                host: HostPattern::Exact("x.com".into()),
                secret: Some("x-cert".into())
            },
            TlsHost {
                host: HostPattern::Exact("x.com".into()),
                secret: None
            },
            TlsHost {
                host: HostPattern::Wildcard("y.com".into()),
                secret: None
            },
        ]
    );
}

#[test]
fn each_reason_an_ingress_is_not_served() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"rules": [rule("r.com", "ImplementationSpecific", "/api/(.*)", "web", json!({"number": 80}))]}),
            r#"path "/api/(.*)" contains '(': regular expressions are not supported"#,
        ),
        (
            json!({"rules": [rule("r.com", "Prefix", "api", "web", json!({"number": 80}))]}),
            r#"path "api" must start with '/'"#,
        ),
        (
            json!({"rules": [rule("r.com", "Prefix", "/a b", "web", json!({"number": 80}))]}),
            r#"path "/a b" contains ' '"#,
        ),
        (
            json!({"rules": [rule("r.com", "Regex", "/", "web", json!({"number": 80}))]}),
            r#"unknown pathType "Regex""#,
        ),
        (
            json!({"rules": [rule("bad host.com", "Prefix", "/", "web", json!({"number": 80}))]}),
            r#"invalid host "bad host.com""#,
        ),
        (
            json!({"tls": [{"hosts": ["a..com"], "secretName": "s"}]}),
            r#"spec.tls: invalid host "a..com""#,
        ),
        (
            json!({"rules": [rule("m.com", "Prefix", "/", "nope", json!({"number": 80}))]}),
            "Service a/nope not found",
        ),
        (
            json!({"rules": [rule("p.com", "Prefix", "/", "web", json!({"number": 81}))]}),
            "Service a/web has no port 81",
        ),
        (
            json!({"rules": [rule("p.com", "Prefix", "/", "web", json!({"name": "https"}))]}),
            "Service a/web has no port https",
        ),
        (
            json!({"defaultBackend": {"service": {"name": "ext", "port": {"number": 80}}}}),
            "Service a/ext is of type ExternalName, which is not served",
        ),
        (
            json!({"defaultBackend": {"resource": {"apiGroup": "x.io", "kind": "Bucket", "name": "b"}}}),
            "backend without service (resource backends are not supported)",
        ),
        (
            json!({"defaultBackend": {"service": {"name": "web"}}}),
            "backend service web has no port",
        ),
        (
            json!({"defaultBackend": {"service": {"name": "web", "port": {}}}}),
            "backend service web port has neither name nor number",
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(problems(spec.clone()), vec![want.to_string()], "{spec}");
    }
    let ok = json!({"rules": [rule("q.com", "Prefix", "/", "web", json!({"number": 80}))]});
    assert_eq!(
        problems_with(json!({LOAD_BALANCE_ANNOTATION: "random"}), ok.clone()),
        vec![
            "annotation portico.dev/load-balance: unknown load-balance \"random\": expected round-robin, least-request, cookie, client-ip, uri, header:<Header-Name> or cookie:<name>"
        ]
    );
    assert_eq!(
        problems_with(json!({SSL_REDIRECT_ANNOTATION: "yes"}), ok.clone()),
        vec!["annotation portico.dev/ssl-redirect: \"yes\" is not \"true\" or \"false\""]
    );
    assert!(problems(ok).is_empty());
}

#[test]
fn problems_are_distinct_and_bounded() {
    // Three paths on one missing Service: one problem.
    let paths: Vec<_> = ["/a", "/b", "/c"]
        .iter()
        .map(|p| json!({"path": p, "pathType": "Prefix", "backend": {"service": {"name": "nope", "port": {"number": 80}}}}))
        .collect();
    assert_eq!(
        problems(json!({"rules": [{"host": "x.com", "http": {"paths": paths}}]})),
        vec!["Service a/nope not found"]
    );
    // Many different bad paths: at most MAX_PROBLEMS.
    let paths: Vec<_> = (0..50)
        .map(|i| json!({"path": format!("/p{i}/(.*)"), "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}))
        .collect();
    assert_eq!(
        problems(json!({"rules": [{"host": "x.com", "http": {"paths": paths}}]})).len(),
        MAX_PROBLEMS
    );
    // Too many paths: that alone, without looking at each.
    let paths: Vec<_> = (0..=MAX_PATHS_PER_INGRESS)
        .map(|i| json!({"path": format!("/p{i}(.*)"), "pathType": "Prefix", "backend": {"service": {"name": "nope", "port": {"number": 80}}}}))
        .collect();
    assert_eq!(
        problems(json!({"rules": [{"host": "h.com", "http": {"paths": paths}}]})),
        vec!["1001 paths, more than the limit of 1000"]
    );
}

#[test]
fn backend_tls_takes_its_name_and_ca_from_the_service_and_fails_closed_when_asked() {
    let svc = |annotations: Value| -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": "secure", "annotations": annotations},
            "spec": {"ports": [{"name": "https", "port": 443, "appProtocol": "https"}]}}),
        )
        .expect("service")
    };
    let ing = ingress(
        "a",
        "i",
        T0,
        json!({}),
        json!({"rules": [rule("x.com", "Prefix", "/", "secure", json!({"name": "https"}))]}),
    );
    let judge = |s: &Service, allow: bool| {
        let limits = Limits {
            allow_unverified_backend_tls: allow,
            ..Limits::default()
        };
        check(&ing, |_| Some(s), &limits).map(|c| c.rules[0].backend.tls.clone())
    };
    // Default SNI: the Service's cluster DNS name; unverified while the instance allows it.
    assert_eq!(
        judge(&svc(json!({})), true),
        Ok(Some(BackendTls {
            server_name: "secure.a.svc".into(),
            ca: None
        }))
    );
    // Fail closed: no CA and unverified TLS not allowed.
    assert_eq!(
        judge(&svc(json!({})), false).map_err(|p| p[0].to_string()),
        Err("Service a/secure is reached over TLS without a CA to verify it (portico.dev/backend-tls-ca-secret), and this instance does not allow unverified backend TLS".to_string())
    );
    let named = svc(json!({
        BACKEND_TLS_SERVER_NAME_ANNOTATION: "API.internal.example.",
        BACKEND_TLS_CA_ANNOTATION: "backend-ca"
    }));
    assert_eq!(
        judge(&named, false),
        Ok(Some(BackendTls {
            server_name: "api.internal.example".into(),
            ca: Some(CaSource::Secret("backend-ca".into()))
        }))
    );
    assert_eq!(
        judge(
            &svc(json!({BACKEND_TLS_CA_CONFIGMAP_ANNOTATION: "kube-root-ca.crt"})),
            false
        ),
        Ok(Some(BackendTls {
            server_name: "secure.a.svc".into(),
            ca: Some(CaSource::ConfigMap("kube-root-ca.crt".into()))
        }))
    );
    for (annotations, want) in [
        (
            json!({BACKEND_TLS_SERVER_NAME_ANNOTATION: "*.example.com"}),
            "is not a DNS name",
        ),
        (
            json!({BACKEND_TLS_SERVER_NAME_ANNOTATION: "a b"}),
            "is not a DNS name",
        ),
        (
            json!({BACKEND_TLS_CA_ANNOTATION: "../other"}),
            "is not an object name",
        ),
        (
            json!({BACKEND_TLS_CA_CONFIGMAP_ANNOTATION: "Bad_Name"}),
            "is not an object name",
        ),
        (
            json!({BACKEND_TLS_CA_ANNOTATION: "a", BACKEND_TLS_CA_CONFIGMAP_ANNOTATION: "b"}),
            "not both",
        ),
    ] {
        let got = judge(&svc(annotations.clone()), true).map_err(|p| p[0].to_string());
        assert!(
            matches!(&got, Err(e) if e.contains(want)),
            "{annotations}: {got:?}"
        );
    }
}

#[test]
fn nginx_regex_paths_only_with_use_regex_or_a_rewrite() {
    let spec = json!({"rules": [
        rule("r.com", "ImplementationSpecific", "/api/(v[0-9]+)/(.*)", "web", json!({"number": 80})),
        rule("r.com", "Exact", "/plain", "web", json!({"number": 80})),
    ]});
    // Without the annotation the regex is still refused.
    assert!(problems(spec.clone())[0].contains("regular expressions are not supported"));
    for annotations in [
        json!({"nginx.ingress.kubernetes.io/use-regex": "true"}),
        json!({"nginx.ingress.kubernetes.io/rewrite-target": "/$2"}),
    ] {
        let checked = run(&ingress("a", "i", T0, annotations, spec.clone())).expect("served");
        assert!(
            checked.rules.iter().all(|r| r.path.kind == PathKind::Regex),
            "every path of the Ingress is a regex, Exact too"
        );
        assert!(checked.rules[0].path.matches("/API/v2/users"));
        assert!(checked.rules[1].path.matches("/plainer"), "^/plain");
        assert!(checked.nginx_routing.regex_paths());
    }
    // A pattern the regex crate cannot compile: not served, with the reason.
    let bad = problems_with(
        json!({"nginx.ingress.kubernetes.io/use-regex": "true"}),
        json!({"rules": [rule("r.com", "Prefix", "/a(?<=b)", "web", json!({"number": 80}))]}),
    );
    assert_eq!(bad.len(), 1);
    assert!(
        bad[0].starts_with(r#"path "/a(?<=b)" is not a regular expression Portico can use"#),
        "{bad:?}"
    );
}

/// The annotation-driven parts of a `Checked` are one shared default when unset, so that
/// 10,000 plain Ingresses do not each hold their own; one that sets them holds its own.
#[test]
fn unset_auth_traffic_and_routing_are_one_shared_default() {
    let spec = json!({"rules": [rule("x.com", "Prefix", "/", "web", json!({"name": "http"}))]});
    let plain = |name| run(&ingress("a", name, T0, json!({}), spec.clone())).expect("served");
    let (one, two) = (plain("one"), plain("two"));
    assert!(Arc::ptr_eq(&one.auth, &two.auth));
    assert!(Arc::ptr_eq(&one.traffic, &two.traffic));
    assert!(Arc::ptr_eq(&one.nginx_routing, &two.nginx_routing));
    let set = run(&ingress(
        "a",
        "set",
        T0,
        json!({
            "nginx.ingress.kubernetes.io/proxy-body-size": "8m",
            "nginx.ingress.kubernetes.io/rewrite-target": "/",
            "nginx.ingress.kubernetes.io/auth-url": "http://auth.a.svc/check",
        }),
        spec.clone(),
    ))
    .expect("served");
    assert!(!Arc::ptr_eq(&one.traffic, &set.traffic));
    assert_ne!(one.traffic, set.traffic);
    assert_ne!(one.nginx_routing, set.nginx_routing);
    assert_ne!(one.auth, set.auth);
    assert_eq!(*one.auth, crate::auth::Auth::default());
}
