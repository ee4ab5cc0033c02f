//! The Helm chart `charts/portico` without a cluster, with a real helm (built from its Go
//! module by `tests/helm/build.sh`): lint, golden renderings, the values schema, the CRDs,
//! the operator's RBAC. `helm.rs` installs it.
//!
//! ```text
//!  charts/portico ─▶ helm lint (each ci/*-values.yaml)
//!                 ─▶ helm template ─▶ tests/helm/golden/<case>.yaml   (UPDATE_GOLDEN=1 rewrites)
//!                 ─▶ values.yaml ⇔ values.schema.json (defaults, comments, typos refused)
//!                 ─▶ charts/portico/crds ⇔ crds/ ; operator ClusterRole without wildcards
//! ```

use std::path::{Path, PathBuf};
use std::process::Output;

use portico_tests::cluster::KUBERNETES_VERSION;
use portico_tests::workspace_root;
use serde_json::Value;

use portico_tests::helm::{RELEASE, chart_dir, run as helm, text};

/// Set to rewrite the golden files and the chart's copy of the CRDs; review the diff.
const UPDATE: &str = "UPDATE_GOLDEN";

fn golden_dir() -> PathBuf {
    workspace_root().join("tests/helm/golden")
}

fn updating() -> bool {
    std::env::var_os(UPDATE).is_some_and(|v| !v.is_empty() && v != "0")
}

/// `ci/*-values.yaml`, sorted; each is a case for lint and for the golden templates.
fn ci_values() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart_dir().join("ci"))
        .expect("charts/portico/ci exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "charts/portico/ci has no *-values.yaml cases"
    );
    files
}

fn case_name(values: &Path) -> String {
    let file = values
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    file.trim_end_matches("-values.yaml").to_string()
}

/// `helm template` as the golden files and the install use it: the control plane's version.
fn template(extra: &[&str]) -> Output {
    let chart = chart_dir();
    let kube_version = KUBERNETES_VERSION.trim_start_matches('v');
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().expect("utf-8 path"),
        "--namespace",
        "portico-system",
        "--kube-version",
        kube_version,
    ];
    args.extend_from_slice(extra);
    helm(&args)
}

/// The first line where two texts differ, for a readable failure.
fn first_difference(want: &str, got: &str) -> String {
    for (i, (w, g)) in want.lines().zip(got.lines()).enumerate() {
        if w != g {
            return format!("line {}:\n  golden:   {w}\n  rendered: {g}", i + 1);
        }
    }
    format!(
        "lengths differ: golden {} lines, rendered {} lines",
        want.lines().count(),
        got.lines().count()
    )
}

#[test]
fn lint_passes_with_every_ci_values_file() {
    let chart = chart_dir();
    for values in ci_values() {
        let out = helm(&[
            "lint",
            "--strict",
            chart.to_str().expect("utf-8"),
            "--values",
            values.to_str().expect("utf-8"),
        ]);
        assert!(
            out.status.success(),
            "helm lint --strict with {} failed:\n{}{}",
            values.display(),
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

#[test]
fn templates_match_golden_files() {
    let mut stale = Vec::new();
    for values in ci_values() {
        let out = template(&["--values", values.to_str().expect("utf-8")]);
        assert!(
            out.status.success(),
            "helm template with {} failed:\n{}",
            values.display(),
            text(&out.stderr)
        );
        let rendered = text(&out.stdout);
        let golden = golden_dir().join(format!("{}.yaml", case_name(&values)));
        if updating() {
            std::fs::create_dir_all(golden_dir()).expect("create tests/helm/golden");
            std::fs::write(&golden, &rendered).expect("write golden file");
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if want != rendered {
            stale.push(format!(
                "{}: {}",
                golden.display(),
                first_difference(&want, &rendered)
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "rendered templates differ from the golden files; if the change is intended run `{UPDATE}=1 cargo test -p portico-tests --test helm` and review the diff:\n{}",
        stale.join("\n")
    );
}

/// Every leaf of values.yaml has a schema entry whose `default` is that value, and every
/// schema leaf has a description: values.yaml, the schema and docs/configuration.md agree.
#[test]
fn schema_defaults_equal_values_yaml() {
    let values: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(chart_dir().join("values.yaml")).expect("read values.yaml"),
    )
    .expect("values.yaml parses");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("values.schema.json")).expect("read schema"),
    )
    .expect("values.schema.json parses");
    let mut problems = Vec::new();
    check_leaves("", &values, &schema, &mut problems);
    assert!(
        problems.is_empty(),
        "values.yaml and values.schema.json disagree:\n{}",
        problems.join("\n")
    );
}

fn check_leaves(path: &str, value: &Value, schema: &Value, problems: &mut Vec<String>) {
    let described = schema
        .get("description")
        .and_then(Value::as_str)
        .is_some_and(|d| !d.is_empty());
    if !described {
        problems.push(format!("{path}: no description in the schema"));
    }
    // An object with a default of its own (a Kubernetes type such as securityContext) is a
    // leaf for this check: its `properties` only refuse typos, most have no chart value.
    let has_properties = schema.get("properties").is_some() && schema.get("default").is_none();
    if has_properties {
        if schema.get("additionalProperties") != Some(&Value::Bool(false)) {
            problems.push(format!(
                "{path}: schema object without additionalProperties: false"
            ));
        }
        let Some(map) = value.as_object() else {
            problems.push(format!(
                "{path}: schema has properties but values.yaml has {value}"
            ));
            return;
        };
        for (key, child) in map {
            let child_path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            match schema.pointer(&format!("/properties/{key}")) {
                Some(child_schema) => check_leaves(&child_path, child, child_schema, problems),
                None => problems.push(format!(
                    "{child_path}: in values.yaml but not in the schema"
                )),
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for key in props.keys() {
                if key != "global" && !map.contains_key(key) {
                    problems.push(format!(
                        "{path}.{key}: in the schema but not in values.yaml"
                    ));
                }
            }
        }
    } else {
        match schema.get("default") {
            Some(default) if default == value => {}
            Some(default) => problems.push(format!(
                "{path}: schema default {default} but values.yaml has {value}"
            )),
            None => problems.push(format!("{path}: no default in the schema")),
        }
    }
}

/// Every key the chart defines (the schema's properties, down to Kubernetes-typed values
/// such as securityContext, whose inner keys are Kubernetes' own) has a comment line
/// right above it in values.yaml.
#[test]
fn every_values_key_has_a_comment() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("values.schema.json")).expect("read schema"),
    )
    .expect("values.schema.json parses");
    let mut chart_keys = std::collections::BTreeSet::new();
    fn collect(prefix: &str, schema: &Value, out: &mut std::collections::BTreeSet<String>) {
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (key, child) in props {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            out.insert(path.clone());
            if child.get("default").is_none() {
                collect(&path, child, out);
            }
        }
    }
    collect("", &schema, &mut chart_keys);

    let values =
        std::fs::read_to_string(chart_dir().join("values.yaml")).expect("read values.yaml");
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut previous = "";
    let mut uncommented = Vec::new();
    for line in values.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let key = trimmed
            .split_once(':')
            .map(|(k, _)| k)
            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric()));
        if let (false, Some(key)) = (trimmed.starts_with('#') || trimmed.starts_with('-'), key) {
            while stack.last().is_some_and(|(i, _)| *i >= indent) {
                stack.pop();
            }
            let path = stack
                .last()
                .map_or_else(|| key.to_string(), |(_, p)| format!("{p}.{key}"));
            if chart_keys.contains(&path) && !previous.trim_start().starts_with('#') {
                uncommented.push(path.clone());
            }
            stack.push((indent, path));
        }
        if !trimmed.is_empty() {
            previous = line;
        }
    }
    assert!(
        uncommented.is_empty(),
        "keys in values.yaml without a comment line above them: {uncommented:?}"
    );
}

/// The chart ships the CRDs byte for byte as `crds/` has them (generated from the Rust types).
#[test]
fn chart_crds_are_identical_to_crds_dir() {
    let source = workspace_root().join("crds");
    let chart = chart_dir().join("crds");
    let yaml_files = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".yaml"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let want = yaml_files(&source);
    assert!(
        !want.is_empty(),
        "crds/ has no CRD yet: run `cargo run -p portico-operator --bin crdgen`"
    );
    if updating() {
        for stale in yaml_files(&chart) {
            if !want.contains(&stale) {
                std::fs::remove_file(chart.join(&stale)).expect("remove stale chart CRD");
            }
        }
        for name in &want {
            std::fs::copy(source.join(name), chart.join(name)).expect("copy CRD into the chart");
        }
    }
    assert_eq!(
        yaml_files(&chart),
        want,
        "charts/portico/crds/ and crds/ hold different files; run `{UPDATE}=1 cargo test -p portico-tests --test helm`"
    );
    for name in &want {
        let a = std::fs::read(source.join(name)).expect("read crds/");
        let b = std::fs::read(chart.join(name)).expect("read chart crds/");
        assert!(
            a == b,
            "charts/portico/crds/{name} differs from crds/{name}; run `{UPDATE}=1 cargo test -p portico-tests --test helm`"
        );
    }
}

#[test]
fn typos_and_wrong_types_in_values_are_refused() {
    let refused = [
        ("replicas=two", "/replicas"),
        ("replica=2", "replica"),
        ("image.tga=v1", "tga"),
        ("logLevel=verbose", "/logLevel"),
        ("adminPort=80", "/adminPort"),
        (
            "securityContext.readOnlyRootFileSystem=true",
            "readOnlyRootFileSystem",
        ),
        ("tolerations[0].efect=NoSchedule", "efect"),
        (
            "trustedNamespaces[0]=Not_A_Namespace",
            "/trustedNamespaces/0",
        ),
        (
            "deniedEndpointCIDRs[0]=node-network",
            "/deniedEndpointCIDRs/0",
        ),
        ("deniedEndpointCIDRs[0]=10.0.0.0", "/deniedEndpointCIDRs/0"),
        (
            "metrics.serviceMonitor.enabled=true,metrics.service.enabled=false",
            "/metrics/service/enabled",
        ),
        ("tenantPolicy.maxReplica=3", "maxReplica"),
        (
            "tenantPolicy.allowedServiceTypes={Ingress}",
            "/tenantPolicy/allowedServiceTypes/0",
        ),
        (
            "tenantPolicy.maxResources.cpu=two",
            "/tenantPolicy/maxResources/cpu",
        ),
        (
            "tenantPolicy.privilegedNamespaces[0]=Not_A_Namespace",
            "/tenantPolicy/privilegedNamespaces/0",
        ),
    ];
    for (set, mention) in refused {
        let out = template(&["--set", set]);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "--set {set} was accepted");
        assert!(
            stderr.contains(mention),
            "--set {set} was refused without naming {mention}:\n{stderr}"
        );
    }
    let out = template(&[
        "--set",
        "replicas=2",
        "--set",
        "trustedNamespaces={platform,edge}",
    ]);
    assert!(
        out.status.success(),
        "valid --set refused:\n{}",
        text(&out.stderr)
    );
    let rendered = text(&out.stdout);
    assert!(rendered.contains("--trusted-namespaces=platform,edge"));
    assert!(
        rendered.contains(r#"values: ["platform","edge"]"#),
        "trusted namespaces are exempt from the admission policy:\n{rendered}"
    );
    let out = template(&[
        "--set",
        "tenantPolicy.privilegedNamespaces={edge}",
        "--set",
        "tenantPolicy.maxResources.cpu=",
        "--set",
        "tenantPolicy.admissionPolicy.enabled=false",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rendered = text(&out.stdout);
    assert!(rendered.contains("--privileged-namespaces=edge"));
    assert!(
        rendered.contains("--max-cpu=\n"),
        "no cpu ceiling:\n{rendered}"
    );
    assert!(
        !rendered.contains("ValidatingAdmissionPolicy"),
        "admissionPolicy.enabled=false installs no policy"
    );
}

/// The operator's RBAC, as rendered: no wildcards, no verbs that mint or borrow power, no
/// write access to Secrets, nothing on Pods, ConfigMaps, Nodes or CRDs. (The golden files pin
/// the exact rules; this says which properties must survive any change to them.)
#[test]
fn operator_rbac_has_no_wildcards_or_escalation() {
    let namespaced = chart_dir().join("ci/namespaced-values.yaml");
    for extra in [
        &[][..],
        &["--values", namespaced.to_str().expect("utf-8")][..],
    ] {
        let mut args = vec![
            "--show-only",
            "templates/clusterrole.yaml",
            "--show-only",
            "templates/role.yaml",
        ];
        args.extend_from_slice(extra);
        let out = template(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        check_operator_rules(&text(&out.stdout));
    }
}

fn check_operator_rules(rendered: &str) {
    let mut rules = Vec::new();
    for doc in rendered.split("\n---").filter(|d| d.contains("kind:")) {
        let obj: Value = serde_saphyr::from_str(doc).expect("rendered RBAC parses");
        if let Some(list) = obj.get("rules").and_then(Value::as_array) {
            rules.extend(list.iter().cloned());
        }
    }
    assert!(rules.len() > 5, "no rules found in:\n{rendered}");
    let strings = |rule: &Value, key: &str| -> Vec<String> {
        rule.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    for rule in &rules {
        let (groups, resources, verbs) = (
            strings(rule, "apiGroups"),
            strings(rule, "resources"),
            strings(rule, "verbs"),
        );
        for field in [&groups, &resources, &verbs] {
            assert!(!field.iter().any(|v| v.contains('*')), "wildcard in {rule}");
        }
        for verb in ["escalate", "bind", "impersonate", "deletecollection"] {
            assert!(!verbs.iter().any(|v| v == verb), "verb {verb} in {rule}");
        }
        for resource in [
            "pods",
            "pods/exec",
            "nodes",
            "customresourcedefinitions",
            "serviceaccounts/token",
        ] {
            assert!(
                !resources.iter().any(|r| r == resource),
                "{resource} in {rule}"
            );
        }
        if resources
            .iter()
            .any(|r| r == "secrets" || r == "configmaps" || r == "endpointslices")
        {
            assert!(
                verbs
                    .iter()
                    .all(|v| ["get", "list", "watch"].contains(&v.as_str())),
                "more than read on {resources:?}: {rule}"
            );
        }
        if verbs.iter().any(|v| v == "update") {
            assert!(
                resources
                    .iter()
                    .all(|r| r == "ingresscontrollers/finalizers" || r == "leases"),
                "update is only for finalizers and the Lease (everything else is an apply patch): {rule}"
            );
        }
    }
}
