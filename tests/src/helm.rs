//! helm, built from its Go module by `tests/helm/build.sh` and cached.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
