//! The node tier's images (tests/node/images.sh) and the Dockerfile users build from keep one
//! runtime contract: the same entrypoint, user, exposed ports and environment for the
//! operator and the proxy. Builds the images for real (no root needed) and reads their OCI configs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use portico_tests::dockerfile::{Stage, workspace_stage};
use portico_tests::{bin_path, scratch_dir};

/// An image config's contract; of its `Env`, what the Dockerfile's base image would set
/// (`PATH`) is left out.
fn image_config(dir: &Path, name: &str) -> Stage {
    let path = dir.join(format!("{name}.config.json"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let config: serde_json::Value = serde_json::from_str(&text).expect("image config JSON");
    let c = &config["config"];
    let env: Vec<String> = serde_json::from_value(c["Env"].clone()).unwrap_or_default();
    Stage {
        entrypoint: serde_json::from_value(c["Entrypoint"].clone()).expect("Entrypoint"),
        user: c["User"].as_str().unwrap_or_default().to_string(),
        ports: c["ExposedPorts"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default(),
        env: env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| *k != "PATH")
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

#[test]
fn node_images_keep_the_dockerfiles_entrypoint_user_ports_and_env() {
    let out = scratch_dir("node-images");
    let bins = bin_path("portico-operator")
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let status = Command::new("bash")
        .arg(portico_tests::workspace_root().join("tests/node/images.sh"))
        .arg(&out)
        .arg(&bins)
        .status()
        .expect("run tests/node/images.sh");
    assert!(status.success(), "tests/node/images.sh failed: {status}");

    for (stage, image) in [("operator", "portico-operator"), ("proxy", "portico-proxy")] {
        let want = workspace_stage(stage).expect("read the Dockerfile");
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
    let proxy = image_config(&out, "portico-proxy");
    assert_eq!(proxy.user, "65532:65532");
    let _ = std::fs::remove_dir_all(&out);
}
