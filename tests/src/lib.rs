//! Portico's test harnesses.
//!
//! ```text
//!  cluster   real etcd + kube-apiserver + kube-controller-manager on 127.0.0.1 (tier 2)
//!  dockerfile  what a Dockerfile stage says about running its image (the node images, bench)
//!  netns     the private network namespace the traffic tests run in (tier 3)
//!  operator  the real portico-operator binary against a control plane, and its /metrics
//!  node      containerd, kubelet, kube-scheduler and kube-proxy for the node tier (root)
//!  pod       a Deployment's pod run as a local process, with its args and ServiceAccount token
//!  backend   the `portico-backend` echo server as a child process on a pod-like address
//!  process   children that die with the test process, with their output in target/test-logs
//! ```

pub mod backend;
pub mod certs;
pub mod cluster;
pub mod dockerfile;
pub mod fixtures;
pub mod helm;
pub mod netns;
pub mod node;
pub mod operator;
pub mod pod;
pub mod process;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
pub use cluster::{ControlPlane, control_plane};

/// The workspace root (where the top Cargo.toml lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Cargo's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// A fresh directory for one run's files, under `/dev/shm/portico-tests/<pid>/` (memory, so
/// etcd needs no disk) or `target/tmp/<pid>/`. Directories left by processes that are gone
/// are removed on first use.
pub fn scratch_dir(prefix: &str) -> PathBuf {
    static BASE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let base = BASE.get_or_init(|| {
        let root = if Path::new("/dev/shm").is_dir() && std::env::var_os("PORTICO_NO_SHM").is_none()
        {
            PathBuf::from("/dev/shm/portico-tests")
        } else {
            target_dir().join("tmp")
        };
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let stale = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
            if stale {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        root.join(std::process::id().to_string())
    });
    let _ = std::fs::create_dir_all(base);
    tempfile::Builder::new()
        .prefix(&format!("{prefix}-"))
        .tempdir_in(base)
        .expect("create a scratch directory")
        .keep()
}

/// A binary of this workspace (`portico-operator`, `portico-proxy`, `portico-backend`), built
/// by `cargo build --workspace --bins` next to the running test executable.
pub fn bin_path(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps/; binaries in target/<profile>/.
    let exe = std::env::current_exe().expect("current test executable");
    let mut dir = exe
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| target_dir().join("debug"));
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let profile_dir = dir;
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` (just test does) before the tests",
        path.display()
    );
    path
}

/// Runs one of the caching build scripts (`tests/kube/build.sh`, `tests/helm/build.sh`), which
/// print what they built on stdout and their progress on stderr, and returns that path.
pub fn cached_build(script: &str, what: &str) -> Result<PathBuf> {
    let path = workspace_root().join(script);
    let out = std::process::Command::new("bash")
        .arg(&path)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("run {}", path.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "building {what} failed ({}): run `bash {script}` to see why \
             (it needs Go 1.25+, and the Go module proxy the first time)",
            out.status
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Applies every CustomResourceDefinition in `crds/` and waits until each is established.
pub async fn install_crds(client: &kube::Client) -> Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, Patch, PatchParams};
    use kube::runtime::wait::{await_condition, conditions};

    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let dir = workspace_root().join("crds");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("read {}", dir.display()))?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let crd: CustomResourceDefinition =
            serde_saphyr::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        let name = crd.metadata.name.clone().context("CRD without a name")?;
        api.patch(
            &name,
            &PatchParams::apply("portico-tests").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .with_context(|| format!("CRD {name} not established within 20s"))??;
    }
    Ok(())
}

/// The one poll of the tests: calls `check` until it yields `Some`, for at most `within`;
/// the error names what was awaited. The first polls follow each other closely (10 ms, then
/// doubling), so a fast change is seen fast; later ones every 200 ms.
pub async fn poll_until<T, F, Fut>(
    what: &str,
    within: std::time::Duration,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + within;
    let mut pause = std::time::Duration::from_millis(10);
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(200));
    }
}

/// An `IngressController` object from a JSON spec.
pub fn ingress_controller(
    namespace: &str,
    name: &str,
    spec: serde_json::Value,
) -> Result<portico_operator::api::IngressController> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "portico.dev/v1alpha1",
        "kind": "IngressController",
        "metadata": { "name": name, "namespace": namespace },
        "spec": spec,
    }))?)
}
