//! `portico-operator migrate-report`: before a class moves from ingress-nginx to Portico,
//! what Portico would do with each of its Ingresses, annotation by annotation. It reads the
//! cluster through the kubeconfig (read-only) and judges with the same `portico-ingress`
//! rules the proxies use.
//!
//! ```text
//!  Ingresses of --class ─┬─ check() with their namespace's Services ─▶ served | NOT SERVED + why
//!                        └─ nginx::read() ─▶ each nginx.ingress.kubernetes.io/* and its verdict
//!  exit 0: everything would be served; exit 3: something would not be (2: a usage error)
//! ```
//!
//! Host ownership is not judged here: which namespaces share one instance is decided when
//! instances are created, and each refusal then gets its own Event.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use portico_ingress::nginx::{self, NGINX_PREFIX, Support};
use portico_ingress::{IngressKey, Limits};

/// `portico-operator migrate-report [--class NAME] [--accept-risk NAME,...]`
#[derive(clap::Parser, Clone, Debug)]
#[command(
    name = "portico-operator migrate-report",
    about = "What Portico would do with each Ingress of a class and each of its ingress-nginx annotations; exits 3 when one would not be served"
)]
pub struct ReportOptions {
    /// The IngressClass whose Ingresses are judged (also matches the legacy
    /// `kubernetes.io/ingress.class` annotation; class-less ones count when the class is
    /// the cluster default).
    #[arg(long, default_value = "nginx")]
    pub class: String,

    /// ingress-nginx annotations the instance would accept the risk of ignoring
    /// (`spec.ingressNginx.acceptRisk`), names without the prefix.
    #[arg(long, value_delimiter = ',')]
    pub accept_risk: Vec<String>,
}

/// One Ingress's line in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: IngressKey,
    /// Why it would not be served; empty when it would be.
    pub refused: Vec<String>,
    /// Each ingress-nginx annotation: name, value, what Portico does with it.
    pub annotations: Vec<(String, String, String)>,
}

/// The report over every Ingress of a class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub class: String,
    pub entries: Vec<Entry>,
}

impl Report {
    /// Judges `ingresses` (any class) of `class`. `services` finds a Service by namespace
    /// and name.
    pub fn new<'s>(
        class: &str,
        is_default_class: bool,
        ingresses: &[Ingress],
        services: impl Fn(&str, &str) -> Option<&'s Service>,
        limits: &Limits,
    ) -> Report {
        let mut entries: Vec<Entry> = ingresses
            .iter()
            .filter(|i| portico_ingress::belongs_to_class(i, class, is_default_class))
            .map(|ingress| {
                let key = IngressKey::of(ingress);
                let refused = match portico_ingress::check(
                    ingress,
                    |name| services(&key.namespace, name),
                    limits,
                ) {
                    Ok(_) => Vec::new(),
                    Err(problems) => problems.iter().map(ToString::to_string).collect(),
                };
                let read = nginx::read(ingress, &limits.accept_risk);
                let values = ingress.annotations();
                let annotations = read
                    .verdicts
                    .iter()
                    .map(|v| {
                        let value = values
                            .get(&format!("{NGINX_PREFIX}{}", v.name))
                            .cloned()
                            .unwrap_or_default();
                        let verdict = match (&v.bad_value, v.support) {
                            (Some(_), _) => "value not supported".to_owned(),
                            (None, Support::Differs(how)) => format!("honoured, differs: {how}"),
                            (None, Support::FailClosed) if limits.accept_risk.contains(&v.name) => {
                                "ignored (risk accepted)".to_owned()
                            }
                            (None, s) => s.label().to_owned(),
                        };
                        (v.name.clone(), value, verdict)
                    })
                    .collect();
                Entry {
                    key,
                    refused,
                    annotations,
                }
            })
            .collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Report {
            class: class.to_owned(),
            entries,
        }
    }

    /// Ingresses that would not be served.
    pub fn refused(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| !e.refused.is_empty())
            .count()
    }

    /// The text printed: one block per Ingress, then a summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            let state = if e.refused.is_empty() {
                "served"
            } else {
                "NOT SERVED"
            };
            let _ = writeln!(out, "{} {state}", e.key);
            for why in &e.refused {
                let _ = writeln!(out, "  ! {why}");
            }
            for (name, value, verdict) in &e.annotations {
                let _ = writeln!(out, "  {NGINX_PREFIX}{name}={value:?}: {verdict}");
            }
        }
        let not_honoured: usize = self
            .entries
            .iter()
            .flat_map(|e| &e.annotations)
            .filter(|(_, _, v)| !v.starts_with("honoured"))
            .count();
        let _ = writeln!(
            out,
            "class {}: {} Ingresses, {} would not be served, {} annotations not honoured",
            self.class,
            self.entries.len(),
            self.refused(),
            not_honoured
        );
        out
    }
}

/// Reads the cluster and prints the report; `Ok(false)` when an Ingress would not be
/// served.
pub async fn run(options: ReportOptions) -> anyhow::Result<bool> {
    let client = Client::try_default().await?;
    let ingresses = Api::<Ingress>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let is_default_class = Api::<IngressClass>::all(client.clone())
        .get_opt(&options.class)
        .await?
        .as_ref()
        .is_some_and(portico_ingress::is_default_class);
    let namespaces: BTreeSet<String> = ingresses.iter().filter_map(|i| i.namespace()).collect();
    let mut services: BTreeMap<(String, String), Service> = BTreeMap::new();
    for ns in namespaces {
        for s in Api::<Service>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await?
            .items
        {
            services.insert((ns.clone(), s.name_any()), s);
        }
    }
    let limits = Limits {
        accept_risk: options.accept_risk.iter().cloned().collect(),
        ..Limits::default()
    };
    let report = Report::new(
        &options.class,
        is_default_class,
        &ingresses,
        |ns, name| services.get(&(ns.to_owned(), name.to_owned())),
        &limits,
    );
    print!("{}", report.render());
    Ok(report.refused() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_annotation_gets_its_verdict_and_refusals_are_counted() {
        let ing = |name: &str, annotations: serde_json::Value| -> Ingress {
            serde_json::from_value(json!({
                "metadata": {"namespace": "shop", "name": name, "annotations": annotations},
                "spec": {"ingressClassName": "nginx", "rules": [{"host": format!("{name}.example.com"),
                    "http": {"paths": [{"path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]},
            }))
            .expect("ingress")
        };
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"namespace": "shop", "name": "web"},
            "spec": {"ports": [{"port": 80}]},
        }))
        .expect("service");
        let all = [
            ing(
                "mirror",
                json!({"nginx.ingress.kubernetes.io/mirror-target": "http://copy/",
                       "nginx.ingress.kubernetes.io/ssl-redirect": "false"}),
            ),
            ing(
                "auth",
                json!({"nginx.ingress.kubernetes.io/auth-snippet": "return 200;"}),
            ),
        ];
        let report = Report::new("nginx", false, &all, |_, _| Some(&svc), &Limits::default());
        assert_eq!(report.refused(), 1);
        let text = report.render();
        assert!(text.contains("shop/auth NOT SERVED"), "{text}");
        assert!(
            text.contains("nginx.ingress.kubernetes.io/ssl-redirect=\"false\": honoured"),
            "{text}"
        );
        assert!(
            text.contains(
                "nginx.ingress.kubernetes.io/mirror-target=\"http://copy/\": not supported"
            ),
            "{text}"
        );
        assert!(
            text.ends_with(
                "class nginx: 2 Ingresses, 1 would not be served, 2 annotations not honoured\n"
            ),
            "{text}"
        );
        let accepted = Limits {
            accept_risk: ["auth-snippet".to_owned()].into(),
            ..Limits::default()
        };
        let report = Report::new("nginx", false, &all, |_, _| Some(&svc), &accepted);
        assert_eq!(report.refused(), 0);
        assert!(report.render().contains("ignored (risk accepted)"));
    }
}
