//! Writes the `IngressController` CRD to `crds/ingresscontroller.yaml` (or stdout with `-`).

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let yaml = portico_operator::crd::crd_yaml()?;
    match std::env::args().nth(1).as_deref() {
        Some("-") => print!("{yaml}"),
        Some(path) => std::fs::write(path, yaml)?,
        None => {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(portico_operator::crd::CRD_FILE);
            std::fs::write(&path, yaml)?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}
