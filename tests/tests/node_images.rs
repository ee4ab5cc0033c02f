//! The node tier's images (tests/node/images.sh) and the Dockerfile users build from keep one
//! runtime contract: the same entrypoint, user and exposed ports for the operator and the
//! proxy. Builds the images for real (no root needed) and reads their OCI configs.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use portico_tests::{bin_path, scratch_dir, workspace_root};

/// What one Dockerfile stage says about running its image.
#[derive(Debug, Default, PartialEq)]
struct Contract {
    entrypoint: Vec<String>,
    user: String,
    ports: BTreeSet<String>,
}

/// The `USER`, `ENTRYPOINT` (exec form) and `EXPOSE` lines of the stage `FROM … AS <stage>`.
fn dockerfile_stage(dockerfile: &str, stage: &str) -> Contract {
    let mut contract = Contract::default();
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
                .unwrap_or_else(|e| panic!("ENTRYPOINT of {stage} is not exec form: {e}"));
        } else if let Some(ports) = line.strip_prefix("EXPOSE ") {
            contract.ports.extend(ports.split_whitespace().map(|p| {
                if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                }
            }));
        }
    }
    assert!(found, "the Dockerfile has no stage {stage}");
    contract
}

fn image_config(dir: &Path, name: &str) -> Contract {
    let path = dir.join(format!("{name}.config.json"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let config: serde_json::Value = serde_json::from_str(&text).expect("image config JSON");
    let c = &config["config"];
    Contract {
        entrypoint: serde_json::from_value(c["Entrypoint"].clone()).expect("Entrypoint"),
        user: c["User"].as_str().unwrap_or_default().to_string(),
        ports: c["ExposedPorts"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default(),
    }
}

#[test]
fn node_images_keep_the_dockerfiles_entrypoint_user_and_ports() {
    let out = scratch_dir("node-images");
    let bins = bin_path("portico-operator")
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let status = Command::new("bash")
        .arg(workspace_root().join("tests/node/images.sh"))
        .arg(&out)
        .arg(&bins)
        .status()
        .expect("run tests/node/images.sh");
    assert!(status.success(), "tests/node/images.sh failed: {status}");

    let dockerfile =
        std::fs::read_to_string(workspace_root().join("Dockerfile")).expect("read Dockerfile");
    for (stage, image) in [("operator", "portico-operator"), ("proxy", "portico-proxy")] {
        let want = dockerfile_stage(&dockerfile, stage);
        assert!(
            !want.entrypoint.is_empty() && !want.user.is_empty() && !want.ports.is_empty(),
            "the Dockerfile's {stage} stage lacks ENTRYPOINT, USER or EXPOSE: {want:?}"
        );
        assert_eq!(
            image_config(&out, image),
            want,
            "the node's {image} image and the Dockerfile's {stage} stage disagree"
        );
    }
    // Non-root, as the chart's and the operator's securityContext require.
    assert_eq!(image_config(&out, "portico-proxy").user, "65532:65532");
    let _ = std::fs::remove_dir_all(&out);
}
