//! `capstan deploy …`: create deployments and read their A/B statistics from the command line.

use crate::platform::{Error, Platform};
use crate::report::table;
use clap::Subcommand;
use serving::deploy::{DeploymentSpec, Mode, Ramp, VariantSpec, report};

#[derive(Subcommand)]
pub enum DeployCmd {
    /// Create or replace a deployment.
    Create {
        name: String,
        /// `NAME=MODEL@ALIAS:WEIGHT` or `NAME=MODEL/VERSION:WEIGHT`; the first is the control.
        #[arg(long = "variant", required = true)]
        variants: Vec<String>,
        #[arg(long, default_value = "split", value_parser = ["split", "canary", "shadow"])]
        mode: String,
        /// Canary ramp `START:END:SECONDS` of the second variant's share, e.g. 0.05:0.5:3600.
        #[arg(long)]
        ramp: Option<String>,
    },
    /// List deployments with their current traffic split.
    List,
    /// Per-variant traffic, latency and outcomes, and the A/B tests against the control.
    Stats { name: String },
}

fn parse_variant(s: &str) -> Result<VariantSpec, Error> {
    let bad = || {
        Error::Other(format!(
            "variant '{s}' is not NAME=MODEL@ALIAS:WEIGHT or NAME=MODEL/VERSION:WEIGHT"
        ))
    };
    let (name, rest) = s.split_once('=').ok_or_else(bad)?;
    let (target, weight) = match rest.rsplit_once(':') {
        Some((t, w)) => (t, w.parse::<f64>().map_err(|_| bad())?),
        None => (rest, 1.0),
    };
    let (model, alias, version) = if let Some((m, a)) = target.split_once('@') {
        (m, Some(a.to_owned()), None)
    } else if let Some((m, v)) = target.rsplit_once('/') {
        (m, None, Some(v.parse::<i64>().map_err(|_| bad())?))
    } else {
        (target, None, None)
    };
    Ok(VariantSpec {
        name: name.to_owned(),
        model: model.to_owned(),
        alias,
        version,
        weight,
    })
}

fn parse_ramp(s: &str) -> Result<Ramp, Error> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || Error::Other(format!("ramp '{s}' is not START:END:SECONDS"));
    match parts[..] {
        [a, b, c] => Ok(Ramp {
            start_weight: a.parse().map_err(|_| bad())?,
            end_weight: b.parse().map_err(|_| bad())?,
            ramp_seconds: c.parse().map_err(|_| bad())?,
        }),
        _ => Err(bad()),
    }
}

fn serve_err(e: serving::ServeError) -> Error {
    Error::Other(e.to_string())
}

pub async fn run(
    p: &Platform,
    config: &crate::config::Config,
    cmd: DeployCmd,
) -> Result<(), Error> {
    use serving::deploy::DeploymentStore;
    match cmd {
        DeployCmd::Create {
            name,
            variants,
            mode,
            ramp,
        } => {
            let mode = match mode.as_str() {
                "canary" => Mode::Canary,
                "shadow" => Mode::Shadow,
                _ => Mode::Split,
            };
            let spec = DeploymentSpec {
                name: name.clone(),
                mode,
                variants: variants
                    .iter()
                    .map(|v| parse_variant(v))
                    .collect::<Result<_, _>>()?,
                ramp: ramp.as_deref().map(parse_ramp).transpose()?,
            };
            spec.validate().map_err(serve_err)?;
            let state = p.state(config, None);
            for v in &spec.variants {
                let served = state
                    .serving
                    .get(&v.model, &v.selector())
                    .await
                    .map_err(|e| Error::Other(format!("variant '{}': {e}", v.name)))?;
                println!("  {} → {} version {}", v.name, v.model, served.version);
            }
            let json = serde_json::to_string(&spec).map_err(|e| Error::Other(e.to_string()))?;
            p.db.put_deployment(&name, &json).await.map_err(serve_err)?;
            println!(
                "deployment {name} ({mode:?}) created; predict at POST /deployments/{name}/infer"
            );
        }
        DeployCmd::List => {
            let now = base::now_millis();
            let rows: Vec<Vec<String>> =
                p.db.list_deployments()
                    .await
                    .map_err(serve_err)?
                    .iter()
                    .filter_map(|(json, created)| {
                        serde_json::from_str::<DeploymentSpec>(json)
                            .ok()
                            .map(|s| (s, *created))
                    })
                    .map(|(s, created)| {
                        let w = s.weights_at(created, now);
                        let split: Vec<String> = s
                            .variants
                            .iter()
                            .zip(&w)
                            .map(|(v, w)| format!("{}={:.0}%", v.name, w * 100.0))
                            .collect();
                        vec![
                            s.name.clone(),
                            format!("{:?}", s.mode).to_lowercase(),
                            split.join(" "),
                        ]
                    })
                    .collect();
            print!("{}", table(&["name", "mode", "traffic"], &rows));
        }
        DeployCmd::Stats { name } => {
            let (json, created) =
                p.db.get_deployment(&name)
                    .await
                    .map_err(serve_err)?
                    .ok_or_else(|| Error::Other(format!("no deployment named '{name}'")))?;
            let spec: DeploymentSpec =
                serde_json::from_str(&json).map_err(|e| Error::Other(e.to_string()))?;
            let records = p.db.requests(&name).await.map_err(serve_err)?;
            let r = report(
                &spec,
                &spec.weights_at(created, base::now_millis()),
                &records,
            );
            let rows: Vec<Vec<String>> = r
                .variants
                .iter()
                .map(|v| {
                    vec![
                        v.name.clone(),
                        format!("{:.0}%", v.weight * 100.0),
                        v.requests.to_string(),
                        v.errors.to_string(),
                        format!("{:.2}", v.latency_p50_ms),
                        format!("{:.2}", v.latency_p99_ms),
                        v.feedback.to_string(),
                        format!("{:.4}", v.outcome_mean),
                    ]
                })
                .collect();
            println!(
                "deployment {name} ({:?}); sample-ratio check p = {:.4}",
                r.mode, r.sample_ratio_p
            );
            print!(
                "{}",
                table(
                    &[
                        "variant", "weight", "requests", "errors", "p50 ms", "p99 ms", "feedback",
                        "outcome"
                    ],
                    &rows
                )
            );
            for c in &r.comparisons {
                println!(
                    "\n{} vs {} ({}): difference {:+.4} [95% CI {:+.4}, {:+.4}], p = {:.4}, P({} better) = {:.3}, always-valid p = {:.4}, n needed per arm ≈ {}\n  verdict: {}",
                    c.variant,
                    c.control,
                    c.metric,
                    c.difference,
                    c.ci95.0,
                    c.ci95.1,
                    c.p_value,
                    c.variant,
                    c.prob_variant_better,
                    c.always_valid_p,
                    c.required_sample_size,
                    c.verdict
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_variants() {
        let v = super::parse_variant("B=churn@challenger:30").expect("variant");
        assert_eq!(
            (
                v.name.as_str(),
                v.model.as_str(),
                v.alias.as_deref(),
                v.weight
            ),
            ("B", "churn", Some("challenger"), 30.0)
        );
        let v = super::parse_variant("A=churn/3:70").expect("variant");
        assert_eq!(v.version, Some(3));
        assert!(super::parse_variant("nonsense").is_err());
        assert!(super::parse_ramp("0.1:0.5:60").is_ok());
    }
}
