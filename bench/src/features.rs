//! Portico with features on, against itself without them: the comparison table's Ingresses
//! again under `feat-` hosts with a source range (that admits the load), a rate limit (that
//! never refuses it), CORS and two header rewrites (`X-Forwarded-Prefix` and the upstream's
//! `Host`), so each request takes those checks and rewrites. Plain and featured targets
//! alternate within one proxy, repetition by repetition, so the ratio is the cost of the
//! features alone.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, bail};
use k8s_openapi::api::networking::v1::Ingress;
use kube::Client;
use kube::api::Api;
use serde::Serialize;

use crate::compare::{self, Case, Sample, Setup, median};
use crate::contenders::Contender;
use crate::load;
use crate::table::{self, Table, Target};

/// The annotations every featured Ingress carries.
pub const ANNOTATIONS: &[(&str, &str)] = &[
    (
        "nginx.ingress.kubernetes.io/whitelist-source-range",
        "10.244.0.0/16",
    ),
    ("nginx.ingress.kubernetes.io/limit-rps", "1000000"),
    ("nginx.ingress.kubernetes.io/enable-cors", "true"),
    ("nginx.ingress.kubernetes.io/x-forwarded-prefix", "/feat"),
    (
        "nginx.ingress.kubernetes.io/upstream-vhost",
        "feat.internal",
    ),
];

#[derive(Debug, Clone, Serialize)]
pub struct FeatureCase {
    pub title: String,
    pub plain: Vec<Sample>,
    pub featured: Vec<Sample>,
}

impl FeatureCase {
    /// Median of the per-repetition ratios featured / plain of `f`.
    pub fn ratio(&self, f: impl Fn(&Sample) -> f64) -> Option<f64> {
        let ratios: Vec<f64> = self
            .plain
            .iter()
            .zip(&self.featured)
            .filter(|(p, _)| f(p) > 0.0)
            .map(|(p, x)| f(x) / f(p))
            .collect();
        (!ratios.is_empty()).then(|| median(ratios))
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FeaturesResult {
    pub cases: Vec<FeatureCase>,
}

fn featured(target: &Target) -> Target {
    Target {
        host: format!("feat-{}", target.host),
        ..target.clone()
    }
}

/// Applies the featured Ingresses and waits until Portico serves them.
async fn publish(client: &Client, table: &Table, portico: &Contender) -> Result<()> {
    let api = Api::<Ingress>::namespaced(client.clone(), &table.namespace);
    for route in &table.ingresses {
        let mut r = route.clone();
        r.name = format!("feat-{}", r.name);
        r.host = format!("feat-{}", r.host);
        let mut ing = table::ingress_object(&table.namespace, &table.class, &r);
        ing.metadata.annotations = Some(
            ANNOTATIONS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        );
        crate::run::apply(&api, &ing).await?;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let head = featured_head(portico).await.unwrap_or_default();
        // CORS answered, and the backend saw both rewrites (backend.rs echoes them).
        if head.starts_with("http/1.1 200")
            && head.contains("access-control-allow-origin")
            && head.contains("x-seen-prefix: /feat")
            && head.contains("x-seen-host: feat.internal")
        {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("Portico did not serve the featured Ingresses within 30 s: {head:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The response head of one CORS request to a featured host, lowercased.
async fn featured_head(portico: &Contender) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(portico.http_addr()).await?;
    s.write_all(
        b"GET /p0/x HTTP/1.1\r\nHost: feat-paths.bench.test\r\nOrigin: https://app.example\r\nConnection: close\r\n\r\n",
    )
    .await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await??;
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    Ok(text.split("\r\n\r\n").next().unwrap_or("").to_owned())
}

/// Runs `cases` on Portico alone, plain and featured targets alternating.
pub async fn run(
    client: &Client,
    table: &Table,
    portico: &Contender,
    setup: &Setup<'_>,
    cases: &[Case],
) -> Result<FeaturesResult> {
    publish(client, table, portico).await?;
    let featured_targets: Vec<Target> = setup.targets.iter().map(featured).collect();
    let script = setup.wrk_script.with_file_name("targets-featured.lua");
    std::fs::write(&script, load::wrk_script(&featured_targets, false))?;
    let plain = Setup {
        contenders: std::slice::from_ref(portico),
        ..*setup
    };
    let with = Setup {
        contenders: std::slice::from_ref(portico),
        targets: &featured_targets,
        wrk_script: &script,
        ..*setup
    };
    let mut out = FeaturesResult::default();
    for &case in cases {
        println!("    features on: {}", case.title());
        if !setup.warmup.is_zero() {
            compare::run_one(&with, portico, case, setup.warmup).await?;
        }
        let mut fc = FeatureCase {
            title: case.title(),
            plain: Vec::new(),
            featured: Vec::new(),
        };
        for rep in 0..setup.reps {
            let order = if rep % 2 == 0 {
                [&plain, &with]
            } else {
                [&with, &plain]
            };
            for s in order {
                let sample = compare::run_one(s, portico, case, setup.duration).await?;
                let featured = std::ptr::eq(s, &with);
                println!(
                    "    rep {} {:<9} {:>9.0} req/s  cpu {:>5.1} µs/req  errors {}",
                    rep + 1,
                    if featured { "featured" } else { "plain" },
                    sample.rps,
                    sample.cpu_us(),
                    sample.errors
                );
                if featured {
                    fc.featured.push(sample);
                } else {
                    fc.plain.push(sample);
                }
            }
        }
        out.cases.push(fc);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rps: f64, cpu: f64) -> Sample {
        Sample {
            rps,
            cpu_user_us: cpu,
            ..Sample::default()
        }
    }

    #[test]
    fn ratios_are_medians_of_pairs() {
        let c = FeatureCase {
            title: "t".into(),
            plain: vec![sample(100.0, 10.0), sample(200.0, 10.0), sample(100.0, 0.0)],
            featured: vec![sample(90.0, 11.0), sample(100.0, 12.0), sample(50.0, 5.0)],
        };
        assert_eq!(c.ratio(|s| s.rps), Some(0.5));
        // The run with no CPU measured is left out of the CPU ratio.
        assert_eq!(c.ratio(Sample::cpu_us), Some(1.15));
    }
}
