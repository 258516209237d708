//! Deployments: one endpoint routed across model variants by weight (A/B), by a ramping weight
//! (canary) or mirrored (shadow: the second variant also predicts, its answer is discarded).
//! Assignment is sticky: the same request key always lands on the same variant.

use crate::{Selector, ServeError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Split,
    Canary,
    Shadow,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantSpec {
    pub name: String,
    pub model: String,
    /// Follow this alias (default `champion` when neither alias nor version is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default)]
    pub weight: f64,
}

impl VariantSpec {
    pub fn selector(&self) -> Selector {
        match (self.version, &self.alias) {
            (Some(v), _) => Selector::Version(v),
            (None, Some(a)) => Selector::Alias(a.clone()),
            (None, None) => Selector::Alias("champion".into()),
        }
    }
}

/// The canary (the last variant) ramps from `start_weight` to `end_weight` over `ramp_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ramp {
    pub start_weight: f64,
    pub end_weight: f64,
    pub ramp_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentSpec {
    pub name: String,
    pub mode: Mode,
    pub variants: Vec<VariantSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<Ramp>,
}

impl DeploymentSpec {
    pub fn validate(&self) -> Result<(), ServeError> {
        let bad = |m: String| Err(ServeError::BadInput(m));
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
        {
            return bad(format!("invalid deployment name '{}'", self.name));
        }
        if self.variants.len() < 2 {
            return bad("a deployment needs at least two variants".into());
        }
        let mut names: Vec<&str> = self.variants.iter().map(|v| v.name.as_str()).collect();
        names.sort();
        names.dedup();
        if names.len() != self.variants.len() || names.iter().any(|n| n.is_empty()) {
            return bad("variant names must be unique and non-empty".into());
        }
        if self
            .variants
            .iter()
            .any(|v| !(v.weight.is_finite() && v.weight >= 0.0))
        {
            return bad("weights must be finite and non-negative".into());
        }
        match self.mode {
            Mode::Split if self.variants.iter().map(|v| v.weight).sum::<f64>() <= 0.0 => {
                bad("split weights must sum to more than zero".into())
            }
            Mode::Shadow if self.variants.len() != 2 => {
                bad("shadow needs exactly two variants: primary, then shadow".into())
            }
            Mode::Canary => match self.ramp {
                Some(r)
                    if (0.0..=1.0).contains(&r.start_weight)
                        && (0.0..=1.0).contains(&r.end_weight)
                        && self.variants.len() == 2 =>
                {
                    Ok(())
                }
                _ => bad(
                    "canary needs two variants (stable, canary) and a ramp with weights in [0, 1]"
                        .into(),
                ),
            },
            _ => Ok(()),
        }
    }

    /// Traffic share of each variant at `now_ms` for a deployment created at `created_ms`.
    pub fn weights_at(&self, created_ms: i64, now_ms: i64) -> Vec<f64> {
        match (self.mode, self.ramp) {
            (Mode::Shadow, _) => vec![1.0, 0.0],
            (Mode::Canary, Some(r)) => {
                let progress = if r.ramp_seconds == 0 {
                    1.0
                } else {
                    ((now_ms - created_ms) as f64 / (r.ramp_seconds as f64 * 1000.0))
                        .clamp(0.0, 1.0)
                };
                let w = r.start_weight + (r.end_weight - r.start_weight) * progress;
                vec![1.0 - w, w]
            }
            _ => {
                let total: f64 = self.variants.iter().map(|v| v.weight).sum();
                self.variants.iter().map(|v| v.weight / total).collect()
            }
        }
    }
}

/// FNV-1a: a stable hash, so assignments survive restarts and agree across replicas.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The variant `key` is assigned to under `weights` (sticky for a given deployment and key).
pub fn assign(deployment: &str, key: &str, weights: &[f64]) -> usize {
    let h = fnv1a(format!("{deployment}\u{0}{key}").as_bytes());
    // Mix the high bits down so nearby keys spread evenly.
    let h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    let mut acc = 0.0;
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        if u < acc {
            return i;
        }
    }
    weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mode: Mode, weights: &[f64]) -> DeploymentSpec {
        DeploymentSpec {
            name: "dep".into(),
            mode,
            variants: weights
                .iter()
                .enumerate()
                .map(|(i, w)| VariantSpec {
                    name: format!("v{i}"),
                    model: "m".into(),
                    alias: None,
                    version: None,
                    weight: *w,
                })
                .collect(),
            ramp: Some(Ramp {
                start_weight: 0.1,
                end_weight: 0.5,
                ramp_seconds: 100,
            }),
        }
    }

    #[test]
    fn constant_arms_that_differ_are_a_clear_difference() {
        let spec = spec(Mode::Split, &[50.0, 50.0]);
        let w = spec.weights_at(0, 0);
        let records: Vec<RequestRecord> = (0..200)
            .map(|i| {
                let variant = if i % 2 == 0 { "v0" } else { "v1" };
                RequestRecord {
                    deployment: "dep".into(),
                    request_id: format!("r{i}"),
                    variant: variant.into(),
                    latency_us: 100,
                    error: false,
                    shadow: false,
                    outcome: Some(if variant == "v0" { 1.0 } else { 0.0 }),
                }
            })
            .collect();
        let r = report(&spec, &w, &records);
        let c = &r.comparisons[0];
        assert_eq!(c.metric, "conversion");
        assert!(c.always_valid_p < 1e-6, "{c:?}");
        assert_eq!(c.verdict, "v0 beats v1", "{c:?}");
    }

    #[test]
    fn assignment_is_sticky_and_follows_weights() {
        let w = spec(Mode::Split, &[70.0, 30.0]).weights_at(0, 0);
        assert_eq!(w, vec![0.7, 0.3]);
        let counts = (0..20_000).fold([0usize; 2], |mut c, i| {
            c[assign("dep", &format!("user-{i}"), &w)] += 1;
            c
        });
        let share = counts[1] as f64 / 20_000.0;
        assert!((share - 0.3).abs() < 0.015, "{share}");
        assert_eq!(assign("dep", "user-42", &w), assign("dep", "user-42", &w));
    }

    #[test]
    fn canary_ramps_and_shadow_sends_all_to_primary() {
        let c = spec(Mode::Canary, &[1.0, 1.0]);
        assert_eq!(c.weights_at(0, 0), vec![0.9, 0.1]);
        let mid = c.weights_at(0, 50_000);
        assert!((mid[1] - 0.3).abs() < 1e-12);
        assert_eq!(c.weights_at(0, 1_000_000)[1], 0.5);
        assert_eq!(
            spec(Mode::Shadow, &[1.0, 1.0]).weights_at(0, 0),
            vec![1.0, 0.0]
        );
        assert!(spec(Mode::Split, &[0.0, 0.0]).validate().is_err());
        assert!(spec(Mode::Shadow, &[1.0, 1.0, 1.0]).validate().is_err());
        assert!(spec(Mode::Split, &[1.0, 1.0]).validate().is_ok());
    }
}

/// One routed request, as recorded for per-variant statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    pub deployment: String,
    pub request_id: String,
    pub variant: String,
    pub latency_us: i64,
    pub error: bool,
    /// Shadow traffic: predicted, never answered.
    pub shadow: bool,
    /// The business outcome from a later feedback call (1/0 for conversions).
    pub outcome: Option<f64>,
}

/// Persistence of deployments and their request log; implemented by the `store` crate.
#[async_trait::async_trait]
pub trait DeploymentStore: Send + Sync {
    /// Creates or replaces; returns the creation time (a replaced canary restarts its ramp).
    async fn put_deployment(&self, name: &str, spec_json: &str) -> Result<i64, ServeError>;
    async fn get_deployment(&self, name: &str) -> Result<Option<(String, i64)>, ServeError>;
    async fn list_deployments(&self) -> Result<Vec<(String, i64)>, ServeError>;
    async fn delete_deployment(&self, name: &str) -> Result<bool, ServeError>;
    async fn record_request(&self, r: &RequestRecord) -> Result<(), ServeError>;
    /// Attaches an outcome to every variant row of `request_id`; false when the id is unknown.
    async fn record_feedback(
        &self,
        deployment: &str,
        request_id: &str,
        outcome: f64,
    ) -> Result<bool, ServeError>;
    async fn requests(&self, deployment: &str) -> Result<Vec<RequestRecord>, ServeError>;
}

/// Per-variant numbers of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantReport {
    pub name: String,
    pub weight: f64,
    pub requests: u64,
    pub shadow_requests: u64,
    pub errors: u64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub feedback: u64,
    pub outcome_mean: f64,
}

/// A variant against the control (the first variant).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComparisonReport {
    pub variant: String,
    pub control: String,
    /// `conversion` (outcomes all 0/1: two-proportion z-test) or `continuous` (Welch's t-test).
    pub metric: String,
    pub difference: f64,
    pub ci95: (f64, f64),
    pub statistic: f64,
    pub p_value: f64,
    pub prob_variant_better: f64,
    /// Per arm, to detect the observed difference with 80% power at α = 0.05.
    pub required_sample_size: f64,
    /// Always-valid p-value (mSPRT): safe to look at every day.
    pub always_valid_p: f64,
    pub verdict: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploymentReport {
    pub name: String,
    pub mode: Mode,
    pub variants: Vec<VariantReport>,
    /// Chi-square p-value of the observed split against the configured weights.
    pub sample_ratio_p: f64,
    pub comparisons: Vec<ComparisonReport>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
}

/// Statistics of a deployment from its request log.
pub fn report(
    spec: &DeploymentSpec,
    weights: &[f64],
    records: &[RequestRecord],
) -> DeploymentReport {
    use stats::ab as stats;
    let mut variants = Vec::new();
    let mut outcomes: Vec<Vec<f64>> = Vec::new();
    for (v, w) in spec.variants.iter().zip(weights) {
        let mine: Vec<&RequestRecord> = records.iter().filter(|r| r.variant == v.name).collect();
        let mut lat: Vec<f64> = mine
            .iter()
            .filter(|r| !r.error)
            .map(|r| r.latency_us as f64 / 1000.0)
            .collect();
        lat.sort_by(f64::total_cmp);
        let out: Vec<f64> = mine
            .iter()
            .filter(|r| !r.shadow)
            .filter_map(|r| r.outcome)
            .collect();
        variants.push(VariantReport {
            name: v.name.clone(),
            weight: *w,
            requests: mine.iter().filter(|r| !r.shadow).count() as u64,
            shadow_requests: mine.iter().filter(|r| r.shadow).count() as u64,
            errors: mine.iter().filter(|r| r.error).count() as u64,
            latency_p50_ms: percentile(&lat, 50.0),
            latency_p99_ms: percentile(&lat, 99.0),
            feedback: out.len() as u64,
            outcome_mean: if out.is_empty() {
                0.0
            } else {
                out.iter().sum::<f64>() / out.len() as f64
            },
        });
        outcomes.push(out);
    }
    let routed: Vec<(f64, f64)> = variants
        .iter()
        .filter(|v| v.weight > 0.0)
        .map(|v| (v.requests as f64, v.weight))
        .collect();
    let sample_ratio_p = if routed.len() >= 2 && routed.iter().map(|r| r.0).sum::<f64>() > 0.0 {
        stats::srm_p_value(
            &routed.iter().map(|r| r.0).collect::<Vec<_>>(),
            &routed.iter().map(|r| r.1).collect::<Vec<_>>(),
        )
    } else {
        1.0
    };
    let control = &outcomes[0];
    let mut comparisons = Vec::new();
    for (i, out) in outcomes.iter().enumerate().skip(1) {
        let (cname, vname) = (spec.variants[0].name.clone(), spec.variants[i].name.clone());
        if control.len() < 2 || out.len() < 2 {
            comparisons.push(ComparisonReport {
                variant: vname,
                control: cname,
                metric: "none".into(),
                difference: 0.0,
                ci95: (0.0, 0.0),
                statistic: 0.0,
                p_value: 1.0,
                prob_variant_better: 0.5,
                required_sample_size: f64::INFINITY,
                always_valid_p: 1.0,
                verdict: "not enough feedback yet".into(),
            });
            continue;
        }
        let binary = control.iter().chain(out).all(|v| *v == 0.0 || *v == 1.0);
        let (a, b) = (
            stats::Arm::from_values(control),
            stats::Arm::from_values(out),
        );
        let (metric, test, prob, tau2) = if binary {
            let (xa, xb) = (control.iter().sum::<f64>(), out.iter().sum::<f64>());
            (
                "conversion",
                stats::two_proportion_z(xa, a.n, xb, b.n),
                stats::prob_b_beats_a(xa, a.n, xb, b.n),
                stats::default_tau2(&a, true),
            )
        } else {
            (
                "continuous",
                stats::welch_t(&a, &b),
                stats::prob_b_beats_a_normal(&a, &b),
                stats::default_tau2(&a, false),
            )
        };
        let always_valid_p = if binary {
            // Conversions weigh the difference against the pooled proportion's variance, as the
            // z-test does: arms that are each constant (all 0 vs all 1) have no sample variance,
            // and their difference is the clearest there is, not none.
            let pooled = (a.mean * a.n + b.mean * b.n) / (a.n + b.n);
            let var = pooled * (1.0 - pooled);
            stats::msprt_p_value(&stats::Arm { var, ..a }, &stats::Arm { var, ..b }, tau2)
        } else {
            stats::msprt_p_value(&a, &b, tau2)
        };
        let pooled_var = (a.var + b.var) / 2.0;
        let verdict = if sample_ratio_p < 0.001 {
            "sample ratio mismatch: the split itself is off, do not trust these results".to_owned()
        } else if always_valid_p < 0.05 {
            if test.diff > 0.0 {
                format!("{vname} beats {cname}")
            } else {
                format!("{cname} beats {vname}")
            }
        } else {
            "no significant difference yet".to_owned()
        };
        comparisons.push(ComparisonReport {
            variant: vname,
            control: cname,
            metric: metric.into(),
            difference: test.diff,
            ci95: (test.ci_low, test.ci_high),
            statistic: test.statistic,
            p_value: test.p_value,
            prob_variant_better: prob,
            required_sample_size: stats::required_sample_size(test.diff, pooled_var, 0.05, 0.8),
            always_valid_p,
            verdict,
        });
    }
    DeploymentReport {
        name: spec.name.clone(),
        mode: spec.mode,
        variants,
        sample_ratio_p,
        comparisons,
    }
}
