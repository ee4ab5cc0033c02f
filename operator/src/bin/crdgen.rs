//! Writes the `IngressController` CRD to `crds/ingresscontroller.yaml` and the Helm chart's
//! copy in `charts/portico/crds/` (or to stdout with `-`, or to a path given).

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let yaml = portico_operator::crd::crd_yaml()?;
    match std::env::args().nth(1).as_deref() {
        Some("-") => print!("{yaml}"),
        Some(path) => std::fs::write(path, yaml)?,
        None => {
            // crds/ and the chart's copy, which Helm installs; a test checks they are equal.
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let file = PathBuf::from(portico_operator::crd::CRD_FILE);
            let chart = root.join("charts/portico").join(&file);
            for path in [root.join(&file), chart] {
                std::fs::write(&path, &yaml)?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}
