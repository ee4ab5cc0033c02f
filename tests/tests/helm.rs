//! The Helm chart `charts/portico`, checked with a real helm (built from its Go module by
//! `tests/helm/build.sh`) and installed into the real control plane.
//!
//! ```text
//!  charts/portico ─▶ helm lint (each ci/*-values.yaml)
//!                 ─▶ helm template ─▶ tests/helm/golden/<case>.yaml   (PORTICO_UPDATE_GOLDEN=1 rewrites)
//!                 ─▶ helm install ─▶ chart Deployment's args + chart ServiceAccount's token
//!                                     ─▶ portico-operator (local process) ─▶ IngressController children
//!                 ─▶ helm uninstall ─▶ nothing of the chart left
//! ```
//!
//! The operator runs with exactly the arguments the chart renders and with a real token of
//! the chart's ServiceAccount, so the chart's RBAC, not the admin's, is what is exercised.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::IngressClass;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
};
use kube::core::NamespaceResourceScope;
use portico_tests::cluster::{KUBERNETES_VERSION, free_port};
use portico_tests::pod::PodTemplate;
use portico_tests::process::Process;
use portico_tests::{bin_path, control_plane, scratch_dir, workspace_root};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Set to rewrite the golden files and the chart's copy of the CRDs; review the diff.
const UPDATE: &str = "PORTICO_UPDATE_GOLDEN";
/// The release name the golden files and the install test use.
const RELEASE: &str = "portico";
const CRD_NAME: &str = "ingresscontrollers.portico.dev";
/// The chart's ValidatingAdmissionPolicy and its binding, for release [`RELEASE`].
const TENANT_POLICY: &str = "portico-tenant-policy";

fn chart_dir() -> PathBuf {
    workspace_root().join("charts/portico")
}

fn golden_dir() -> PathBuf {
    workspace_root().join("tests/helm/golden")
}

fn updating() -> bool {
    std::env::var_os(UPDATE).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The helm binary: `PORTICO_HELM`, or the one `tests/helm/build.sh` builds and caches.
fn helm_bin() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        if let Some(path) = std::env::var_os("PORTICO_HELM") {
            return PathBuf::from(path);
        }
        let script = workspace_root().join("tests/helm/build.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(out.status.success(), "building helm failed: run `bash tests/helm/build.sh` to see why (it needs Go and the Go module proxy the first time)");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// Runs helm with its cache, config and data in a scratch directory (never the user's) and
/// no cluster unless `--kubeconfig` is among `args`.
fn helm(args: &[&str]) -> Output {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    let home = HOME.get_or_init(|| scratch_dir("helm-home"));
    Command::new(helm_bin())
        .args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG")
        .env_remove("HELM_NAMESPACE")
        .env_remove("HELM_KUBECONTEXT")
        .output()
        .expect("run helm")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
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

// ---------------------------------------------------------------------------------------
// Install into the real control plane.

/// Polls `get` until `name` exists.
async fn wait_for<K>(api: &Api<K>, name: &str, timeout: Duration) -> Result<K>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(obj) = api.get_opt(name).await? {
            return Ok(obj);
        }
        if Instant::now() > deadline {
            bail!("{name} did not appear within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `get` until `name` is gone.
async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: Duration) -> Result<()>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let deadline = Instant::now() + timeout;
    while api.get_opt(name).await?.is_some() {
        if Instant::now() > deadline {
            bail!("{name} still exists after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Names of the objects of kind `K` in `namespace` that carry the chart's labels.
async fn chart_objects<K>(client: &kube::Client, namespace: &str) -> Result<Vec<String>>
where
    K: kube::Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api = Api::<K>::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default().labels(&format!(
            "app.kubernetes.io/instance={RELEASE},helm.sh/chart"
        )))
        .await?;
    Ok(list
        .items
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                K::kind(&K::DynamicType::default()),
                o.meta().name.clone().unwrap_or_default()
            )
        })
        .collect())
}

/// Runs the chart's operator pod as a local process, as the kubelet would: the container's
/// args and downward-API env (`PodTemplate`) and a real token of the pod's ServiceAccount.
/// Only `--admin-port` moves to a free port of this machine.
async fn run_operator_from_chart(namespace: &str) -> Result<(Process, String)> {
    let cp = control_plane().await;
    let pod = PodTemplate::from_deployment(cp, namespace, RELEASE, IpAddr::V4(Ipv4Addr::LOCALHOST))
        .await?;
    assert_eq!(
        pod.service_account, RELEASE,
        "the chart's Deployment runs as the chart's ServiceAccount"
    );
    let admin_port = free_port()?;
    let args: Vec<String> = pod
        .args
        .iter()
        .map(|a| {
            if a.starts_with("--admin-port=") {
                format!("--admin-port={admin_port}")
            } else {
                a.clone()
            }
        })
        .collect();
    assert!(
        !args.iter().any(|a| a.contains("$(")),
        "unexpanded variable in the chart's args: {args:?}"
    );

    let token = cp
        .service_account_token(namespace, &pod.service_account)
        .await?;
    let dir = scratch_dir("helm-operator");
    let kubeconfig = cp.write_kubeconfig(&token, &dir.join("kubeconfig"))?;
    let mut cmd = Command::new(bin_path("portico-operator"));
    cmd.args(&args).env("KUBECONFIG", &kubeconfig);
    for (k, v) in &pod.env {
        cmd.env(k, v);
    }
    let mut process = Process::spawn("helm-operator", cmd)?;

    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("http://127.0.0.1:{admin_port}/healthz");
    while portico_tests::pod::http_status(&url).await != Some(200) {
        process
            .check_running()
            .with_context(|| format!("portico-operator {} exited", args.join(" ")))?;
        if Instant::now() > deadline {
            bail!(
                "portico-operator not healthy within 30s:\n{}",
                process.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((process, token))
}

fn ingress_controller_api(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("portico.dev", "v1alpha1", "IngressController"),
        "ingresscontrollers",
    );
    Api::namespaced_with(client, namespace, &resource)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_reconciles_with_the_charts_rbac_and_uninstall_leaves_nothing() -> Result<()> {
    let cp = control_plane().await;
    let client = cp.client();
    let release_ns = cp.new_namespace("portico-system").await;
    let kubeconfig = cp.kubeconfig().to_str().expect("utf-8 path").to_string();
    let chart = chart_dir().to_str().expect("utf-8 path").to_string();
    let install = |extra: &[&str]| {
        let mut args = vec![
            "install",
            RELEASE,
            chart.as_str(),
            "--namespace",
            release_ns.as_str(),
            "--kubeconfig",
            kubeconfig.as_str(),
        ];
        args.extend_from_slice(extra);
        helm(&args)
    };

    // The schema guards the real install too: a typo installs nothing.
    let refused = install(&["--set", "replicas=two"]);
    assert!(
        !refused.status.success(),
        "helm install --set replicas=two was accepted"
    );
    assert!(
        text(&refused.stderr).contains("/replicas"),
        "{}",
        text(&refused.stderr)
    );
    assert!(
        Api::<Deployment>::namespaced(client.clone(), &release_ns)
            .get_opt(RELEASE)
            .await?
            .is_none()
    );

    // Debug logs, so that a `forbidden` anywhere in the operator shows in its log.
    let installed = install(&["--set", "logLevel=debug"]);
    assert!(
        installed.status.success(),
        "helm install failed:\n{}{}",
        text(&installed.stdout),
        text(&installed.stderr)
    );
    assert!(
        text(&installed.stdout).contains("kind: IngressController"),
        "NOTES.txt should show the next step:\n{}",
        text(&installed.stdout)
    );

    // What the chart installed.
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    wait_for(&crds, CRD_NAME, Duration::from_secs(10)).await?;
    let mut installed_objects = Vec::new();
    installed_objects.extend(chart_objects::<Deployment>(&client, &release_ns).await?);
    installed_objects.extend(chart_objects::<ServiceAccount>(&client, &release_ns).await?);
    installed_objects.extend(chart_objects::<Service>(&client, &release_ns).await?);
    installed_objects.extend(chart_objects::<PodDisruptionBudget>(&client, &release_ns).await?);
    installed_objects.extend(chart_objects::<Role>(&client, &release_ns).await?);
    installed_objects.extend(chart_objects::<RoleBinding>(&client, &release_ns).await?);
    installed_objects.extend(chart_objects::<Lease>(&client, &release_ns).await?);
    installed_objects.sort();
    assert_eq!(
        installed_objects,
        [
            "Deployment/portico",
            "Lease/portico",
            "PodDisruptionBudget/portico",
            "Role/portico",
            "RoleBinding/portico",
            "Service/portico",
            "ServiceAccount/portico"
        ]
    );
    Api::<ClusterRole>::all(client.clone())
        .get(RELEASE)
        .await
        .context("chart ClusterRole")?;
    Api::<ClusterRoleBinding>::all(client.clone())
        .get(RELEASE)
        .await
        .context("chart ClusterRoleBinding")?;
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .get(TENANT_POLICY)
        .await
        .context("chart ValidatingAdmissionPolicy")?;
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .get(TENANT_POLICY)
        .await
        .context("chart ValidatingAdmissionPolicyBinding")?;
    // The CRD may take a moment to be served after helm created it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while ingress_controller_api(client.clone(), &release_ns)
        .list(&ListParams::default())
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the chart's CRD is not served within 20s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The operator, as the chart runs it.
    let (mut operator, token) = run_operator_from_chart(&release_ns).await?;

    // Least privilege, seen from the operator's own token: no Pods, and ConfigMaps (held
    // only to grant a backend CA bundle to a proxy) read, never written.
    let as_operator = cp.client_with_token(&token);
    let tenant = cp.new_namespace("team").await;
    let config_map: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "x" }
    }))?;
    for (what, result) in [
        (
            "create configmaps",
            Api::<ConfigMap>::namespaced(as_operator.clone(), &tenant)
                .create(&Default::default(), &config_map)
                .await
                .map(|_| ()),
        ),
        (
            "list pods",
            Api::<Pod>::namespaced(as_operator.clone(), &tenant)
                .list(&ListParams::default())
                .await
                .map(|_| ()),
        ),
    ] {
        match result {
            Err(kube::Error::Api(e)) if e.code == 403 => {}
            other => bail!("the operator's token could {what} in {tenant}: {other:?}"),
        }
    }

    // An instance, reconciled with the chart's RBAC.
    // A second namespace that consents, so the operator must write RBAC outside the
    // instance's namespace; a default certificate, so the proxy Role names a Secret and the
    // apiserver's escalation check needs the chart's Secrets rule.
    let shop = cp.new_namespace("shop").await;
    let team_label = format!("portico-test/team-{tenant}");
    let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone());
    for ns in [&tenant, &shop] {
        let mut patch = json!({ "metadata": { "labels": { team_label.as_str(): "yes" } } });
        if ns == &shop {
            patch["metadata"]["annotations"] =
                json!({ "portico.dev/allowed-ingress-controllers": format!("{tenant}/web") });
        }
        namespaces
            .patch(
                ns,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await?;
    }
    let instances = ingress_controller_api(client.clone(), &tenant);
    let instance: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "portico.dev/v1alpha1",
        "kind": "IngressController",
        "metadata": { "name": "web", "namespace": tenant },
        "spec": {
            "service": { "type": "ClusterIP" },
            "namespaceSelector": { "matchLabels": { team_label.as_str(): "yes" } },
            "tls": { "defaultCertificateSecret": "web-default-cert" }
        }
    }))?;
    instances
        .create(&PostParams::default(), &instance)
        .await
        .context("create IngressController")?;
    // An Ingress of the class in the consenting namespace, naming a Service that exists (the
    // operator validates backends as the proxy does): the operator writes its status.
    portico_tests::fixtures::apply_service(&client, &shop, "shop", "http", 80, 8080).await?;
    let ingress: k8s_openapi::api::networking::v1::Ingress = serde_json::from_value(json!({
        "metadata": { "name": "shop", "namespace": shop },
        "spec": { "ingressClassName": "web", "rules": [{ "host": "shop.example.com", "http": { "paths": [
            { "path": "/", "pathType": "Prefix", "backend": { "service": { "name": "shop", "port": { "number": 80 } } } }] } }] }
    }))?;
    let ingresses =
        Api::<k8s_openapi::api::networking::v1::Ingress>::namespaced(client.clone(), &shop);
    ingresses
        .create(&PostParams::default(), &ingress)
        .await
        .context("create Ingress")?;

    let children = Duration::from_secs(60);
    let rbac_name = format!("portico:{tenant}:web");
    let check = async {
        wait_for(
            &Api::<ServiceAccount>::namespaced(client.clone(), &tenant),
            "portico-web",
            children,
        )
        .await?;
        wait_for(
            &Api::<Role>::namespaced(client.clone(), &tenant),
            &rbac_name,
            children,
        )
        .await?;
        wait_for(
            &Api::<RoleBinding>::namespaced(client.clone(), &tenant),
            &rbac_name,
            children,
        )
        .await?;
        wait_for(
            &Api::<Role>::namespaced(client.clone(), &shop),
            &rbac_name,
            children,
        )
        .await?;
        wait_for(
            &Api::<RoleBinding>::namespaced(client.clone(), &shop),
            &rbac_name,
            children,
        )
        .await?;
        wait_for(
            &Api::<ClusterRole>::all(client.clone()),
            &rbac_name,
            children,
        )
        .await?;
        wait_for(
            &Api::<ClusterRoleBinding>::all(client.clone()),
            &rbac_name,
            children,
        )
        .await?;
        wait_for(
            &Api::<Deployment>::namespaced(client.clone(), &tenant),
            "portico-web",
            children,
        )
        .await?;
        wait_for(
            &Api::<Service>::namespaced(client.clone(), &tenant),
            "portico-web",
            children,
        )
        .await?;
        wait_for(
            &Api::<PodDisruptionBudget>::namespaced(client.clone(), &tenant),
            "portico-web",
            children,
        )
        .await?;
        wait_for(&Api::<IngressClass>::all(client.clone()), "web", children).await?;
        // Status writes need ingresscontrollers/status and ingresses/status.
        let deadline = Instant::now() + children;
        loop {
            let ic = instances.get("web").await?;
            let observed = ic
                .data
                .pointer("/status/conditions/0/observedGeneration")
                .and_then(Value::as_i64);
            let lb = ingresses
                .get("shop")
                .await?
                .status
                .and_then(|s| s.load_balancer)
                .and_then(|l| l.ingress)
                .unwrap_or_default();
            if observed == ic.metadata.generation && !lb.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "status not written within {children:?}: instance {:?}, Ingress loadBalancer {lb:?}",
                    ic.data.get("status")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::Ok(())
    };
    if let Err(e) = check.await {
        bail!("{e:#}\noperator log:\n{}", operator.log_tail(60));
    }
    let role = Api::<Role>::namespaced(client.clone(), &tenant)
        .get(&rbac_name)
        .await?;
    let secrets_rule = role
        .rules
        .iter()
        .flatten()
        .find(|r| r.resources.iter().flatten().any(|res| res == "secrets"));
    assert_eq!(
        secrets_rule.and_then(|r| r.resource_names.clone()),
        Some(vec!["web-default-cert".to_string()]),
        "the proxy Role should name exactly the default certificate: {role:?}"
    );
    let log = operator.log_tail(400);
    assert!(
        !log.contains("forbidden"),
        "the operator hit a permission the chart does not grant:\n{log}"
    );

    // Deleting the instance removes its cluster-scoped children too (the operator's job).
    instances.delete("web", &DeleteParams::default()).await?;
    let cleanup = async {
        wait_gone(&Api::<IngressClass>::all(client.clone()), "web", children).await?;
        wait_gone(
            &Api::<ClusterRoleBinding>::all(client.clone()),
            &rbac_name,
            children,
        )
        .await?;
        wait_gone(
            &Api::<ClusterRole>::all(client.clone()),
            &rbac_name,
            children,
        )
        .await?;
        wait_gone(
            &Api::<RoleBinding>::namespaced(client.clone(), &shop),
            &rbac_name,
            children,
        )
        .await?;
        wait_gone(
            &Api::<Role>::namespaced(client.clone(), &shop),
            &rbac_name,
            children,
        )
        .await?;
        wait_gone(&instances, "web", children).await?;
        anyhow::Ok(())
    };
    if let Err(e) = cleanup.await {
        bail!("{e:#}\noperator log:\n{}", operator.log_tail(60));
    }

    // The operator leads through the chart's Lease; a `helm upgrade` leaves the holder alone
    // (three-way merge: the chart's manifest never had those fields).
    let leases = Api::<Lease>::namespaced(client.clone(), &release_ns);
    let holder = |l: &Lease| l.spec.as_ref().and_then(|s| s.holder_identity.clone());
    let before = holder(&leases.get(RELEASE).await?);
    assert!(
        before.is_some(),
        "the operator never took the chart's Lease"
    );
    let upgraded = helm(&[
        "upgrade",
        RELEASE,
        &chart,
        "--namespace",
        &release_ns,
        "--kubeconfig",
        &kubeconfig,
        "--reuse-values",
        "--set",
        "logFormat=text",
    ]);
    assert!(
        upgraded.status.success(),
        "helm upgrade failed:\n{}",
        text(&upgraded.stderr)
    );
    assert_eq!(
        holder(&leases.get(RELEASE).await?),
        before,
        "helm upgrade reset the operator's Lease"
    );
    let args = Api::<Deployment>::namespaced(client.clone(), &release_ns)
        .get(RELEASE)
        .await?
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.containers.first().and_then(|c| c.args.clone()))
        .unwrap_or_default();
    assert!(
        args.contains(&"--log-format=text".to_string()),
        "upgrade did not reach the Deployment: {args:?}"
    );
    operator.terminate();
    let status = operator.wait_timeout(Duration::from_secs(15)).await?;
    assert!(
        status.success(),
        "the operator did not exit cleanly on SIGTERM ({status}):\n{}",
        operator.log_tail(40)
    );

    // Uninstall: nothing of the chart is left. The CRD stays, as Helm keeps crds/ on
    // purpose (deleting it would delete every team's IngressController).
    let uninstalled = helm(&[
        "uninstall",
        RELEASE,
        "--namespace",
        &release_ns,
        "--kubeconfig",
        &kubeconfig,
        "--wait",
        "--timeout",
        "60s",
    ]);
    assert!(
        uninstalled.status.success(),
        "helm uninstall failed:\n{}",
        text(&uninstalled.stderr)
    );
    let mut left = Vec::new();
    left.extend(chart_objects::<Deployment>(&client, &release_ns).await?);
    left.extend(chart_objects::<ServiceAccount>(&client, &release_ns).await?);
    left.extend(chart_objects::<Service>(&client, &release_ns).await?);
    left.extend(chart_objects::<PodDisruptionBudget>(&client, &release_ns).await?);
    left.extend(chart_objects::<Role>(&client, &release_ns).await?);
    left.extend(chart_objects::<RoleBinding>(&client, &release_ns).await?);
    left.extend(chart_objects::<Lease>(&client, &release_ns).await?);
    assert!(left.is_empty(), "helm uninstall left {left:?}");
    assert!(
        Api::<ClusterRole>::all(client.clone())
            .get_opt(RELEASE)
            .await?
            .is_none(),
        "ClusterRole left behind"
    );
    assert!(
        Api::<ClusterRoleBinding>::all(client.clone())
            .get_opt(RELEASE)
            .await?
            .is_none(),
        "ClusterRoleBinding left behind"
    );
    assert!(
        Api::<ValidatingAdmissionPolicy>::all(client.clone())
            .get_opt(TENANT_POLICY)
            .await?
            .is_none(),
        "ValidatingAdmissionPolicy left behind"
    );
    assert!(
        Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
            .get_opt(TENANT_POLICY)
            .await?
            .is_none(),
        "ValidatingAdmissionPolicyBinding left behind"
    );
    let releases = helm(&[
        "list",
        "--all",
        "--namespace",
        &release_ns,
        "--kubeconfig",
        &kubeconfig,
        "--short",
    ]);
    assert_eq!(
        text(&releases.stdout).trim(),
        "",
        "helm still lists a release"
    );
    assert!(
        crds.get_opt(CRD_NAME).await?.is_some(),
        "the CRD is kept by design (Helm's crds/ policy)"
    );
    Ok(())
}
