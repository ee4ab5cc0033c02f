//! What the Dockerfile says about running an image: the node tier's images
//! (tests/node/images.sh) are checked against it, and the bench runs the proxy with its
//! image's environment.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};

use crate::workspace_root;

/// The runtime contract of one Dockerfile stage.
#[derive(Debug, Default, PartialEq)]
pub struct Stage {
    pub entrypoint: Vec<String>,
    pub user: String,
    /// `80/tcp` form.
    pub ports: BTreeSet<String>,
    /// `ENV` lines (`KEY=value` form), without the base image's.
    pub env: BTreeMap<String, String>,
}

/// The `USER`, `ENTRYPOINT` (exec form), `EXPOSE` and `ENV` lines of the stage
/// `FROM … AS <stage>`.
pub fn stage(dockerfile: &str, stage: &str) -> Result<Stage> {
    let mut contract = Stage::default();
    let mut inside = false;
    let mut found = false;
    for line in dockerfile.lines().map(str::trim) {
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("FROM ") {
            inside = upper.ends_with(&format!(" AS {}", stage.to_ascii_uppercase()));
            found |= inside;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some(user) = line.strip_prefix("USER ") {
            contract.user = user.trim().to_string();
        } else if let Some(entry) = line.strip_prefix("ENTRYPOINT ") {
            contract.entrypoint = serde_json::from_str(entry.trim())
                .with_context(|| format!("ENTRYPOINT of {stage} is not exec form"))?;
        } else if let Some(ports) = line.strip_prefix("EXPOSE ") {
            contract.ports.extend(ports.split_whitespace().map(|p| {
                if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                }
            }));
        } else if let Some(env) = line.strip_prefix("ENV ") {
            let Some((key, value)) = env.trim().split_once('=') else {
                bail!("ENV of {stage} is not KEY=value form: {line}");
            };
            if value.contains(char::is_whitespace) || value.starts_with('"') {
                bail!(
                    "ENV of {stage} has a quoted or spaced value, which this reader does not parse: {line}"
                );
            }
            contract.env.insert(key.to_string(), value.to_string());
        }
    }
    if !found {
        bail!("the Dockerfile has no stage {stage}");
    }
    Ok(contract)
}

/// The workspace Dockerfile's stage `name`.
pub fn workspace_stage(name: &str) -> Result<Stage> {
    let path = workspace_root().join("Dockerfile");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    stage(&text, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKERFILE: &str = r#"
FROM rust AS build
ENV CARGO_HOME=/cargo
FROM base AS proxy
COPY a b
USER 65532:65532
ENV GLIBC_TUNABLES=glibc.malloc.tcache_count=1024
EXPOSE 80 443/tcp
ENTRYPOINT ["/usr/local/bin/portico-proxy"]
"#;

    #[test]
    fn reads_one_stage_and_not_the_others() {
        let s = stage(DOCKERFILE, "proxy").expect("proxy stage");
        assert_eq!(s.entrypoint, ["/usr/local/bin/portico-proxy"]);
        assert_eq!(s.user, "65532:65532");
        assert_eq!(
            s.ports.iter().map(String::as_str).collect::<Vec<_>>(),
            ["443/tcp", "80/tcp"]
        );
        assert_eq!(
            s.env.into_iter().collect::<Vec<_>>(),
            [(
                "GLIBC_TUNABLES".to_string(),
                "glibc.malloc.tcache_count=1024".to_string()
            )]
        );
        assert!(stage(DOCKERFILE, "operator").is_err());
    }

    #[test]
    fn refuses_env_it_cannot_read_exactly() {
        for bad in ["ENV A", "ENV A=\"x y\"", "ENV A=1 B=2"] {
            let text = format!("FROM x AS proxy\n{bad}\n");
            assert!(stage(&text, "proxy").is_err(), "{bad}");
        }
    }
}
