//! helm, built from its Go module by `tests/helm/build.sh` and cached, and what the chart
//! tests share: the chart, its release name, helm run without a cluster.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

/// The helm binary, building it first when it is not cached (`PORTICO_HELM` overrides).
pub fn helm_bin() -> Result<PathBuf> {
    if let Ok(path) = std::env::var("PORTICO_HELM") {
        return Ok(PathBuf::from(path));
    }
    crate::cached_build("tests/helm/build.sh", "helm")
}

/// Runs helm with `args` against the cluster of `kubeconfig`; fails with helm's output.
pub fn helm(kubeconfig: &Path, args: &[&str]) -> Result<Output> {
    let out = Command::new(helm_bin()?)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HELM_CACHE_HOME", crate::target_dir().join("helm/cache"))
        .env("HELM_CONFIG_HOME", crate::target_dir().join("helm/config"))
        .env("HELM_DATA_HOME", crate::target_dir().join("helm/data"))
        .output()
        .context("run helm")?;
    if !out.status.success() {
        bail!(
            "helm {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// The release name the golden files and the install tests use.
pub const RELEASE: &str = "portico";
/// The CRD the chart installs.
pub const CRD_NAME: &str = "ingresscontrollers.portico.dev";
/// The chart's ValidatingAdmissionPolicy and its binding, for release [`RELEASE`].
pub const TENANT_POLICY: &str = "portico-tenant-policy";

/// `charts/portico`.
pub fn chart_dir() -> PathBuf {
    crate::workspace_root().join("charts/portico")
}

/// Runs helm with its cache, config and data in a scratch directory (never the user's) and
/// no cluster unless `--kubeconfig` is among `args`. Panics when helm cannot be built or
/// started; its exit status is the caller's to check.
pub fn run(args: &[&str]) -> Output {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    let bin = BIN.get_or_init(|| {
        helm_bin().unwrap_or_else(|e| {
            panic!("building helm failed ({e:#}): run `bash tests/helm/build.sh` to see why (it needs Go and the Go module proxy the first time)")
        })
    });
    let home = HOME.get_or_init(|| crate::scratch_dir("helm-home"));
    Command::new(bin)
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

/// helm's output as text.
pub fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}
