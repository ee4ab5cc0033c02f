//! `portico-operator migrate-report` over Ingresses modelled on the examples in
//! ingress-nginx's documentation, applied to a real apiserver; the report is read from the
//! binary's stdout and its exit code.

use std::process::Command;

use anyhow::{Context, Result};
use serde_json::{Value, json};

/// An Ingress of `class` for `host`, routing `path` to Service `web`, with annotations.
fn example(ns: &str, class: &str, name: &str, path: &str, kind: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": { "name": name, "namespace": ns, "annotations": annotations },
        "spec": { "ingressClassName": class, "rules": [{ "host": format!("{name}.example.com"),
            "http": { "paths": [{ "path": path, "pathType": kind,
                "backend": { "service": { "name": "web", "port": { "number": 80 } } } }] } }] },
    })
}

#[tokio::test]
async fn migrate_report_judges_each_annotation_and_fails_when_something_would_not_be_served()
-> Result<()> {
    let cp = portico_tests::control_plane().await;
    let client = cp.client();
    let ns = cp.new_namespace("migrate").await;
    // A class no other test uses: the report judges only its Ingresses.
    let class = ns.clone();
    portico_tests::fixtures::apply_service(&client, &ns, "web", "http", 80, 8080).await?;
    let n = "nginx.ingress.kubernetes.io";
    // From ingress-nginx's user guide: rewrite, basic auth, CORS, whitelist, snippets,
    // ssl-redirect, affinity, backend protocol.
    let examples = [
        example(
            &ns,
            &class,
            "rewrite",
            "/something(/|$)(.*)",
            "ImplementationSpecific",
            json!({ format!("{n}/use-regex"): "true", format!("{n}/rewrite-target"): "/$2" }),
        ),
        example(
            &ns,
            &class,
            "basic-auth",
            "/",
            "Prefix",
            json!({ format!("{n}/auth-type"): "basic", format!("{n}/auth-secret"): "basic-auth",
                    format!("{n}/auth-realm"): "Authentication Required - foo" }),
        ),
        example(
            &ns,
            &class,
            "allowlist",
            "/",
            "Prefix",
            json!({ format!("{n}/whitelist-source-range"): "10.0.0.0/24,172.10.0.1" }),
        ),
        example(
            &ns,
            &class,
            "snippet",
            "/",
            "Prefix",
            json!({ format!("{n}/configuration-snippet"): "more_set_headers \"Request-Id: $req_id\";" }),
        ),
        example(
            &ns,
            &class,
            "sticky",
            "/",
            "Prefix",
            json!({ format!("{n}/affinity"): "cookie", format!("{n}/ssl-redirect"): "false",
                    format!("{n}/backend-protocol"): "HTTP" }),
        ),
    ];
    for e in examples {
        portico_tests::fixtures::apply_ingress(&client, e).await?;
    }
    // Another class's Ingress is not in the report.
    portico_tests::fixtures::apply_ingress(
        &client,
        example(&ns, "other", "elsewhere", "/", "Prefix", json!({})),
    )
    .await?;

    let run = |extra: &[&str]| -> Result<(Option<i32>, String)> {
        let out = Command::new(portico_tests::bin_path("portico-operator"))
            .env("KUBECONFIG", cp.kubeconfig())
            .arg("migrate-report")
            .arg(format!("--class={class}"))
            .args(extra)
            .output()
            .context("run portico-operator migrate-report")?;
        Ok((
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    };
    let (code, text) = run(&[])?;
    assert_eq!(code, Some(3), "something would not be served:\n{text}");
    assert!(text.contains(&format!("{ns}/snippet NOT SERVED")), "{text}");
    assert!(text.contains(&format!("{ns}/sticky served")), "{text}");
    // Basic auth is honoured: that Ingress moves as it is (its Secret comes along).
    assert!(text.contains(&format!("{ns}/basic-auth served")), "{text}");
    // Source ranges are honoured: that Ingress moves as it is.
    assert!(text.contains(&format!("{ns}/allowlist served")), "{text}");
    assert!(
        text.contains(&format!("{n}/ssl-redirect=\"false\": honoured")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{n}/configuration-snippet=\"more_set_headers \\\"Request-Id: $req_id\\\";\": not supported, decides access: Ingress not served"
        )),
        "{text}"
    );
    assert!(!text.contains("elsewhere"), "{text}");
    assert!(
        text.contains(&format!("class {class}: 5 Ingresses")),
        "{text}"
    );

    // Accepting the risk of each access-control annotation leaves only what Portico
    // cannot do at all.
    let (_, text) = run(&["--accept-risk=configuration-snippet"])?;
    assert!(text.contains(&format!("{ns}/snippet served")), "{text}");
    assert!(text.contains("ignored (risk accepted)"), "{text}");
    Ok(())
}
