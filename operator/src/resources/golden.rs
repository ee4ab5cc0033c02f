//! Golden tests of the builders: `testdata/<case>/input.yaml` in, one YAML file per kind
//! out. `UPDATE_GOLDEN=1 cargo test -p portico-operator --lib golden` rewrites the
//! expected files; review the diff like code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    Inputs, Settings, deployment, hpa, ingress_class, pdb, rbac, service, service_account,
};
use crate::api::IngressController;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    instance: IngressController,
    #[serde(default)]
    served_namespaces: Vec<String>,
    #[serde(default)]
    tls_secrets: BTreeMap<String, BTreeSet<String>>,
    #[serde(default)]
    trusted_namespaces: BTreeSet<String>,
    #[serde(default)]
    denied_endpoint_cidrs: Vec<String>,
    #[serde(default)]
    host_ownership_exempt: BTreeSet<String>,
    #[serde(default)]
    catch_all_namespaces: BTreeSet<String>,
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/resources/testdata")
}

fn check(dir: &Path, file: &str, value: &impl Serialize, failures: &mut Vec<String>) {
    let path = dir.join(file);
    let actual = serde_saphyr::to_string(value).expect("serializes");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).expect("writes golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        failures.push(format!(
            "{} differs:\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        ));
    }
}

#[test]
fn builders_match_golden_files() {
    let mut failures = Vec::new();
    let mut cases = 0;
    for entry in std::fs::read_dir(testdata()).expect("testdata exists") {
        let dir = entry.expect("dir entry").path();
        let Ok(input) = std::fs::read_to_string(dir.join("input.yaml")) else {
            continue;
        };
        cases += 1;
        let case: Case =
            serde_saphyr::from_str(&input).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let settings = Settings {
            proxy_image: "ghcr.io/portico-dev/portico-proxy:0.1.0".into(),
            trusted_namespaces: case.trusted_namespaces.clone(),
            denied_endpoint_cidrs: case
                .denied_endpoint_cidrs
                .iter()
                .map(|c| c.parse().expect("fixture CIDR"))
                .collect(),
            host_ownership_exempt: case.host_ownership_exempt.clone(),
            catch_all_namespaces: case.catch_all_namespaces.clone(),
            ..Settings::default()
        };
        let inputs = Inputs::new(
            &case.instance,
            case.served_namespaces.clone(),
            case.tls_secrets.clone(),
            &settings,
        )
        .expect("fixture has metadata");
        let namespaces = rbac::role_namespaces(&inputs);
        check(
            &dir,
            "serviceaccount.yaml",
            &service_account::build(&inputs),
            &mut failures,
        );
        check(
            &dir,
            "roles.yaml",
            &namespaces
                .iter()
                .map(|ns| rbac::role(&inputs, ns))
                .collect::<Vec<_>>(),
            &mut failures,
        );
        check(
            &dir,
            "rolebindings.yaml",
            &namespaces
                .iter()
                .map(|ns| rbac::role_binding(&inputs, ns))
                .collect::<Vec<_>>(),
            &mut failures,
        );
        check(
            &dir,
            "clusterrole.yaml",
            &rbac::cluster_role(&inputs),
            &mut failures,
        );
        check(
            &dir,
            "clusterrolebinding.yaml",
            &rbac::cluster_role_binding(&inputs),
            &mut failures,
        );
        check(
            &dir,
            "deployment.yaml",
            &deployment::build(&inputs),
            &mut failures,
        );
        check(
            &dir,
            "service.yaml",
            &service::build(&inputs),
            &mut failures,
        );
        check(
            &dir,
            "ingressclass.yaml",
            &ingress_class::build(&inputs),
            &mut failures,
        );
        check(&dir, "pdb.yaml", &pdb::build(&inputs), &mut failures);
        check(&dir, "hpa.yaml", &hpa::build(&inputs), &mut failures);
    }
    assert!(
        cases >= 2,
        "expected golden cases under {}",
        testdata().display()
    );
    assert!(
        failures.is_empty(),
        "{}\n(regenerate with UPDATE_GOLDEN=1 and review the diff)",
        failures.join("\n")
    );
}
