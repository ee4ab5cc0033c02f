//! TLS end to end: certificates from Ingress Secrets chosen by SNI, the default
//! certificate, ALPN h2, hot reload, namespace isolation of Secrets, the HTTPS redirect, and
//! an h2c backend — a real apiserver, the proxy from the generated Deployment with its
//! ServiceAccount's token (Secrets readable only by resourceNames), inside the test netns.

mod proxy_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kube::api::{Api, Patch, PatchParams};
use portico_tests::certs::{Ca, Leaf};
use proxy_support::tls::*;
use proxy_support::*;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_certificates_h2_rotation_isolation_redirect_and_h2c() -> Result<()> {
    let cp = portico_tests::control_plane().await;
    portico_tests::netns::require();
    let ns_b = cp.new_namespace("tls-b").await;
    let inst = Instance::create(
        "tls-a",
        json!({ "tls": { "defaultCertificateSecret": "default-cert", "hsts": true } }),
        &[&ns_b],
    )
    .await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());

    let ca = Ca::new("portico-test-ca")?;
    let default_leaf = ca.server(&["default.invalid"])?;
    let exact_leaf = ca.server(&["exact.tls.example.com", "noredirect.tls.example.com"])?;
    let wild_leaf = ca.server(&["*.wild.tls.example.com"])?;
    let bad_cert = ca.server(&["bad.tls.example.com"])?;
    let other_key = ca.server(&["unrelated"])?;
    apply_tls_secret(
        c,
        ns,
        "default-cert",
        &default_leaf.cert_pem,
        &default_leaf.key_pem,
    )
    .await?;
    apply_tls_secret(
        c,
        ns,
        "exact-cert",
        &exact_leaf.cert_pem,
        &exact_leaf.key_pem,
    )
    .await?;
    apply_tls_secret(c, ns, "wild-cert", &wild_leaf.cert_pem, &wild_leaf.key_pem).await?;
    // Malformed: the key does not belong to the certificate.
    apply_tls_secret(c, ns, "bad-cert", &bad_cert.cert_pem, &other_key.key_pem).await?;

    let web = backends("web", 1).await?;
    publish(c, ns, "web", &web).await?;
    let web_b = backends("web-b", 1).await?;
    publish(c, &ns_b, "web", &web_b).await?;
    // An h2c backend: appProtocol kubernetes.io/h2c on the Service port.
    let grpc = backends("grpc", 1).await?;
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": { "name": "grpc", "namespace": ns },
        "spec": { "ports": [{ "name": "h2c", "port": 80, "targetPort": 8080, "appProtocol": "kubernetes.io/h2c" }] }
    }))?;
    Api::<k8s_openapi::api::core::v1::Service>::namespaced(c.clone(), ns)
        .patch(
            "grpc",
            &PatchParams::apply("portico-tests").force(),
            &Patch::Apply(&svc),
        )
        .await?;
    portico_tests::fixtures::apply_endpoints(c, ns, "grpc", "slice", "h2c", &[grpc[0].addr])
        .await?;

    let rule = |host: &str, svc: &str, port: &str| {
        json!({ "host": host, "http": { "paths": [{ "path": "/", "pathType": "Prefix",
            "backend": { "service": { "name": svc, "port": { "name": port } } } }] } })
    };
    apply_ingress(c, json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": { "name": "secure", "namespace": ns },
        "spec": { "ingressClassName": class,
            "tls": [
                { "hosts": ["exact.tls.example.com"], "secretName": "exact-cert" },
                { "hosts": ["*.wild.tls.example.com"], "secretName": "wild-cert" },
                { "hosts": ["bad.tls.example.com"], "secretName": "bad-cert" }
            ],
            "rules": [rule("exact.tls.example.com", "web", "http"), rule("a.wild.tls.example.com", "web", "http"),
                      rule("bad.tls.example.com", "web", "http"), rule("grpc.example.com", "grpc", "h2c")] }
    }))
    .await?;
    apply_ingress(c, json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": { "name": "no-redirect", "namespace": ns, "annotations": { "portico.dev/ssl-redirect": "false" } },
        "spec": { "ingressClassName": class,
            "tls": [{ "hosts": ["noredirect.tls.example.com"], "secretName": "exact-cert" }],
            "rules": [rule("noredirect.tls.example.com", "web", "http")] }
    }))
    .await?;
    // Namespace B names a Secret that exists only in namespace A.
    apply_ingress(
        c,
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": { "name": "thief", "namespace": ns_b },
            "spec": { "ingressClassName": class,
                "tls": [{ "hosts": ["thief.example.com"], "secretName": "exact-cert" }],
                "rules": [rule("thief.example.com", "web", "http")] }
        }),
    )
    .await?;
    // The operator lists the Secrets each namespace's Ingresses reference in its Roles.
    let secrets = BTreeMap::from([
        (
            ns.to_string(),
            BTreeSet::from([
                "exact-cert".to_string(),
                "wild-cert".to_string(),
                "bad-cert".to_string(),
            ]),
        ),
        (ns_b.clone(), BTreeSet::from(["exact-cert".to_string()])),
    ]);
    inst.await_secret_access(secrets).await?;

    let proxy = inst.start_proxy().await?;
    let https = SocketAddr::new(proxy.ip, proxy.https_port);

    // SNI: exact, one-label wildcard, default for unknown hosts; a malformed Secret falls
    // back to the default; another namespace's Secret is never used. The Role grants were
    // just written: a Secret watcher the apiserver's RBAC cache still refused retries, so
    // the good certificates are awaited (a few seconds at most), the rest then asserted.
    eventually(
        Duration::from_secs(15),
        "the exact and wildcard certificates are served",
        || async {
            served_cert(https, "exact.tls.example.com").await.ok() == Some(der(&exact_leaf))
                && served_cert(https, "a.wild.tls.example.com").await.ok() == Some(der(&wild_leaf))
        },
    )
    .await?;
    assert_eq!(
        served_cert(https, "unknown.example.com").await?,
        der(&default_leaf),
        "unknown host"
    );
    assert_eq!(
        served_cert(https, "b.a.wild.tls.example.com").await?,
        der(&default_leaf),
        "wildcard is one label"
    );
    assert_eq!(
        served_cert(https, "bad.tls.example.com").await?,
        der(&default_leaf),
        "malformed Secret"
    );
    assert_eq!(
        served_cert(https, "thief.example.com").await?,
        der(&default_leaf),
        "Secret of another namespace"
    );

    // ALPN h2, and requests over HTTP/2.
    let (tls, _) = tls_connect(https, "exact.tls.example.com", &[b"h2", b"http/1.1"]).await?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = http::Request::get("https://exact.tls.example.com/over-h2")
            .body(Empty::<Bytes>::new())?;
        let resp = h2.send_request(req).await?;
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()
                .get("strict-transport-security")
                .map(|v| v.as_bytes()),
            Some(&b"max-age=31536000"[..]),
            "HSTS opted in"
        );
        let body: serde_json::Value =
            serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?;
        assert_eq!(body["backend"], "web-0");
        assert_eq!(body["headers"]["x-forwarded-proto"], "https");
    }

    // Fronting: a connection made for one certificate cannot carry a request for a host
    // that another certificate (or the default) serves: 421. Hosts the same certificate
    // serves share it.
    let (tls, _) = tls_connect(https, "exact.tls.example.com", &[b"http/1.1"]).await?;
    let (mut fronted, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    for (host, want) in [
        ("a.wild.tls.example.com", 421),
        ("unknown.example.com", 421),
        ("grpc.example.com", 421),
        ("noredirect.tls.example.com", 200),
        ("EXACT.tls.example.com:443", 200),
    ] {
        let req = http::Request::get("/fronted")
            .header("host", host)
            .body(Empty::<Bytes>::new())?;
        fronted.ready().await?;
        let resp = fronted.send_request(req).await?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        assert_eq!(
            status, want,
            "Host {host} over a connection with SNI exact.tls.example.com"
        );
    }
    let (tls, _) = tls_connect(https, "a.wild.tls.example.com", &[b"h2"]).await?;
    let (mut h2w, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = http::Request::get("https://exact.tls.example.com/fronted-h2")
        .body(Empty::<Bytes>::new())?;
    assert_eq!(
        h2w.send_request(req).await?.status(),
        421,
        "HTTP/2 :authority of another certificate's host"
    );

    // Rotation: an HTTP/1.1 connection opened before keeps working; new handshakes see the
    // new certificate within 1 s.
    let (tls, _) = tls_connect(https, "exact.tls.example.com", &[b"http/1.1"]).await?;
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let get_h1 = |h1: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>| {
        let req = http::Request::get("/before-and-after")
            .header("host", "exact.tls.example.com")
            .body(Empty::<Bytes>::new());
        let fut = req.map(|r| h1.send_request(r));
        async move { anyhow::Ok(fut?.await?.status().as_u16()) }
    };
    assert_eq!(get_h1(&mut h1).await?, 200);
    let rotated = ca.server(&["exact.tls.example.com", "noredirect.tls.example.com"])?;
    apply_tls_secret(c, ns, "exact-cert", &rotated.cert_pem, &rotated.key_pem).await?;
    let applied = Instant::now();
    let want = der(&rotated);
    loop {
        if served_cert(https, "exact.tls.example.com").await? == want {
            break;
        }
        if applied.elapsed() > Duration::from_secs(3) {
            bail!("rotated certificate not served within 3s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = applied.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "rotated certificate served after {took:?}"
    );
    assert_eq!(
        get_h1(&mut h1).await?,
        200,
        "connection opened before the rotation still works"
    );

    // Plain HTTP to a TLS host: 308 to https; the annotation turns it off.
    let http = Http::new(&proxy.http_base());
    let r = http.get("exact.tls.example.com", "/some/path?q=1").await?;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some("https://exact.tls.example.com/some/path?q=1")
    );
    // The Location is built from the validated host and the normalized path only: a Host
    // that would point it elsewhere is refused, a path that would is normalized.
    let r = http
        .get("exact.tls.example.com", "//evil.example.com/./x")
        .await?;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some("https://exact.tls.example.com/evil.example.com/x"),
        "no scheme-relative // in the Location"
    );
    for host in [
        "evil.example.com@exact.tls.example.com",
        "exact.tls.example.com/evil",
    ] {
        let r = http.get(host, "/").await?;
        assert_eq!(r.status, 400, "Host {host:?} is refused, not redirected");
        assert!(r.header("location").is_none());
    }
    let r = http.get("noredirect.tls.example.com", "/").await?;
    assert_eq!(r.status, 200, "ssl-redirect: false serves plain HTTP");
    assert_eq!(r.backend(), Some("web-0"));
    assert!(
        r.header("strict-transport-security").is_none(),
        "no HSTS over plain HTTP"
    );

    // The h2c backend receives HTTP/2 from the proxy.
    let r = http.get("grpc.example.com", "/pkg.Service/Method").await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.backend(), Some("grpc-0"));
    assert_eq!(
        r.json["version"], "HTTP/2.0",
        "upstream protocol from appProtocol kubernetes.io/h2c"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_matching_or_default_certificate_the_handshake_fails() -> Result<()> {
    let inst = Instance::create("tls-none", json!({}), &[]).await?;
    let proxy = inst.start_proxy().await?;
    let https = SocketAddr::new(proxy.ip, proxy.https_port);
    let result = tls_connect(https, "nothing.example.com", &[b"http/1.1"]).await;
    assert!(result.is_err(), "handshake must fail without a certificate");
    // The proxy is unharmed.
    proxy_support::eventually(Duration::from_secs(1), "proxy still answers", || async {
        portico_tests::pod::http_status(&format!("{}/healthz", proxy.admin_base())).await
            == Some(200)
    })
    .await?;
    Ok(())
}

/// A TLS-only HTTP/1.1 backend (a pod serving its own certificate) that names itself.
async fn tls_backend(addr: SocketAddr, leaf: &Leaf) -> Result<tokio::task::JoinHandle<()>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())?];
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                // Answers with the SNI the proxy sent.
                let sni = tls.get_ref().1.server_name().unwrap_or("").to_string();
                let svc = hyper::service::service_fn(move |_req| {
                    let body = http_body_util::Full::new(Bytes::from(
                        json!({ "backend": "tls-backend", "sni": sni }).to_string(),
                    ));
                    async move { Ok::<_, std::convert::Infallible>(http::Response::new(body)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backend_by_app_protocol() -> Result<()> {
    let inst = Instance::create("tls-up", json!({}), &[]).await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let addr = SocketAddr::new(portico_tests::netns::pod_ip(), 8443);
    let ca = Ca::new("backend-ca")?;
    let server = tls_backend(addr, &ca.server(&[&addr.ip().to_string()])?).await?;
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": { "name": "secure-backend", "namespace": ns },
        "spec": { "ports": [{ "name": "https", "port": 443, "targetPort": 8443, "appProtocol": "https" }] }
    }))?;
    Api::<k8s_openapi::api::core::v1::Service>::namespaced(c.clone(), ns)
        .patch(
            "secure-backend",
            &PatchParams::apply("portico-tests").force(),
            &Patch::Apply(&svc),
        )
        .await?;
    portico_tests::fixtures::apply_endpoints(c, ns, "secure-backend", "slice", "https", &[addr])
        .await?;
    apply_ingress(
        c,
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": { "name": "up", "namespace": ns },
            "spec": { "ingressClassName": class, "rules": [{ "host": "up.example.com", "http": { "paths": [
                { "path": "/", "pathType": "Prefix",
                  "backend": { "service": { "name": "secure-backend", "port": { "name": "https" } } } }
            ] } }] }
        }),
    )
    .await?;
    let proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    for _ in 0..3 {
        let r = http.get("up.example.com", "/").await?;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            r.backend(),
            Some("tls-backend"),
            "TLS to the backend (appProtocol https)"
        );
    }
    server.abort();
    Ok(())
}

/// A Service `name` with one `appProtocol: https` port 443 → 8443, annotated, published
/// with `addr`.
async fn https_service(
    c: &kube::Client,
    ns: &str,
    name: &str,
    annotations: serde_json::Value,
    addr: SocketAddr,
) -> Result<()> {
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": name, "namespace": ns, "annotations": annotations },
        "spec": { "ports": [{ "name": "https", "port": 443, "targetPort": 8443, "appProtocol": "https" }] }
    }))?;
    Api::<k8s_openapi::api::core::v1::Service>::namespaced(c.clone(), ns)
        .patch(
            name,
            &PatchParams::apply("portico-tests").force(),
            &Patch::Apply(&svc),
        )
        .await?;
    portico_tests::fixtures::apply_endpoints(c, ns, name, "slice", "https", &[addr]).await?;
    Ok(())
}

async fn apply_ca_secret(c: &kube::Client, ns: &str, name: &str, ca_pem: &str) -> Result<()> {
    proxy_support::tls::apply_opaque_secret(c, ns, name, json!({ "ca.crt": ca_pem })).await
}

fn https_ingress(ns: &str, class: &str, host: &str, svc: &str) -> serde_json::Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": { "name": svc, "namespace": ns },
        "spec": { "ingressClassName": class, "rules": [{ "host": host, "http": { "paths": [
            { "path": "/", "pathType": "Prefix",
              "backend": { "service": { "name": svc, "port": { "name": "https" } } } }
        ] } }] }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tls_sends_sni_verifies_with_the_services_ca_and_fails_closed() -> Result<()> {
    let inst = Instance::create("tls-verify", json!({}), &[]).await?;
    let (c, ns, class) = (&inst.client, inst.ns.as_str(), inst.class.as_str());
    let ca = Ca::new("backend-ca")?;
    let other_ca = Ca::new("someone-elses-ca")?;
    apply_ca_secret(c, ns, "backend-ca", &ca.cert_pem).await?;
    apply_ca_secret(c, ns, "other-ca", &other_ca.cert_pem).await?;
    // Each Service fronts a backend serving a certificate from `ca` for api.internal.example.
    //   verified: SNI from the annotation, the certificate checked against the Service's CA;
    //   impostor: checked against another CA: refused (502), never served unverified;
    //   missing: a CA Secret that does not exist: fails closed too;
    //   unverified: no CA: the default SNI, unverified (allowed by default), and a Warning.
    let mut servers = Vec::new();
    //   from-configmap: the CA bundle in a ConfigMap instead of a Secret.
    let bundle: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "backend-ca-bundle", "namespace": ns },
        "data": { "ca.crt": ca.cert_pem },
    }))?;
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(c.clone(), ns)
        .patch(
            "backend-ca-bundle",
            &PatchParams::apply("portico-tests").force(),
            &Patch::Apply(&bundle),
        )
        .await?;
    for (svc, ca_annotation) in [
        ("verified", Some(("secret", "backend-ca"))),
        ("impostor", Some(("secret", "other-ca"))),
        ("missing", Some(("secret", "no-such-ca"))),
        ("from-configmap", Some(("configmap", "backend-ca-bundle"))),
        ("unverified", None),
    ] {
        let addr = SocketAddr::new(portico_tests::netns::pod_ip(), 8443);
        servers.push(tls_backend(addr, &ca.server(&["api.internal.example"])?).await?);
        let annotations = match ca_annotation {
            Some((kind, name)) => json!({
                "portico.dev/backend-tls-server-name": "api.internal.example",
                format!("portico.dev/backend-tls-ca-{kind}"): name }),
            None => json!({}),
        };
        https_service(c, ns, svc, annotations, addr).await?;
    }
    for svc in [
        "verified",
        "impostor",
        "missing",
        "from-configmap",
        "unverified",
    ] {
        apply_ingress(
            c,
            https_ingress(ns, class, &format!("{svc}.example.com"), svc),
        )
        .await?;
    }
    inst.await_secret_access(BTreeMap::from([(
        ns.to_string(),
        BTreeSet::from([
            "backend-ca".to_string(),
            "other-ca".to_string(),
            "no-such-ca".to_string(),
        ]),
    )]))
    .await?;
    let proxy = inst.start_proxy().await?;
    let http = Http::new(&proxy.http_base());
    eventually(OPERATOR_WAIT, "the verified backend answers", || {
        let http = http.clone();
        async move { status_of(&http, "verified.example.com", "/").await == 200 }
    })
    .await?;
    let r = http.get("verified.example.com", "/").await?;
    assert_eq!(
        r.json["sni"], "api.internal.example",
        "SNI from the annotation"
    );
    eventually(
        OPERATOR_WAIT,
        "the backend verified by a ConfigMap's CA answers",
        || {
            let http = http.clone();
            async move { status_of(&http, "from-configmap.example.com", "/").await == 200 }
        },
    )
    .await?;
    assert_eq!(
        http.get("impostor.example.com", "/").await?.status,
        502,
        "wrong CA"
    );
    assert_eq!(
        http.get("missing.example.com", "/").await?.status,
        502,
        "missing CA Secret"
    );
    let r = http.get("unverified.example.com", "/").await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["sni"], format!("unverified.{ns}.svc"), "default SNI");
    eventually(OPERATOR_WAIT, "an UnverifiedBackendTLS Event", || async {
        warnings_on(c, ns, "unverified", "UnverifiedBackendTLS")
            .await
            .iter()
            .any(|n| n.contains("unverified") && n.contains("allowUnverified"))
    })
    .await?;
    assert!(
        warnings_on(c, ns, "verified", "UnverifiedBackendTLS")
            .await
            .is_empty(),
        "no warning for a verified backend"
    );

    // An instance that does not allow unverified backend TLS does not serve such an
    // Ingress at all, and says why.
    let strict = Instance::create(
        "tls-strict",
        json!({ "backendTLS": { "allowUnverified": false } }),
        &[],
    )
    .await?;
    let (c2, ns2, class2) = (&strict.client, strict.ns.as_str(), strict.class.as_str());
    let plain2 = SocketAddr::new(portico_tests::netns::pod_ip(), 8443);
    let _p2 = tls_backend(plain2, &ca.server(&["whatever"])?).await?;
    https_service(c2, ns2, "unverified", json!({}), plain2).await?;
    apply_ingress(
        c2,
        https_ingress(ns2, class2, "strict.example.com", "unverified"),
    )
    .await?;
    let proxy2 = strict.start_proxy().await?;
    let http2 = Http::new(&proxy2.http_base());
    eventually(
        OPERATOR_WAIT,
        "an IngressRejected Event naming the unverified backend",
        || async {
            warnings_on(c2, ns2, "unverified", "IngressRejected")
                .await
                .iter()
                .any(|n| n.contains("does not allow unverified backend TLS"))
        },
    )
    .await?;
    assert_eq!(
        http2.get("strict.example.com", "/").await?.status,
        404,
        "not served"
    );
    Ok(())
}
