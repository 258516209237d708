//! Retraining policy: what a `retrain` job does for one model, declared once per model and kept
//! as the registered model's tag `capstan.retrain.policy` (JSON), so it travels with the model
//! and is visible through the MLflow API. This module is the pure part — which rows train the
//! candidate, which rows judge it, and whether it replaces the champion; the executor (in the
//! binary) reads data, trains, registers and moves aliases.
//!
//! The evaluation set is the most recent `evaluation_days` before the newest labelled row: data
//! the champion has not trained on (it is newer than the champion) and the candidate does not
//! train on either, so both are judged on the same unseen, recent rows. The training window ends
//! where the evaluation set begins.

use serde::{Deserialize, Serialize};

pub const POLICY_TAG: &str = "capstan.retrain.policy";
const DAY_MS: f64 = 86_400_000.0;

/// Which labelled rows before the evaluation set train the candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Window {
    /// Every row.
    #[default]
    All,
    /// The last `days` days.
    Sliding { days: f64 },
    /// Every row, drawn with probability halving every `half_life_days` of age (a seeded
    /// weighted resample of the same size, so any learner weights recent rows more).
    RecentWeighted { half_life_days: f64 },
}

/// What a promotion is judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    #[default]
    Rmse,
    Mae,
    Accuracy,
}

impl Metric {
    pub fn lower_is_better(self) -> bool {
        !matches!(self, Metric::Accuracy)
    }
    pub fn name(self) -> &'static str {
        match self {
            Metric::Rmse => "rmse",
            Metric::Mae => "mae",
            Metric::Accuracy => "accuracy",
        }
    }
}

/// How a promoted candidate reaches traffic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Rollout {
    /// Move the `champion` alias (servers follow it with a hot swap: no request fails); the old
    /// champion keeps the alias `previous` for a one-command rollback.
    #[default]
    Promote,
    /// Only set the `challenger` alias: a person (or a deployment's statistics) decides.
    Challenger,
    /// Set `challenger` and open a canary deployment `<model>-canary` (champion vs challenger,
    /// the challenger's share ramping from `start_weight` to `end_weight` over `ramp_seconds`);
    /// every `check_seconds` a `rollout-check` job reads its statistics and, once each arm has
    /// `min_feedback` outcomes, promotes the challenger unless it is significantly worse, or
    /// rolls it back when it is (or when it errs more).
    Canary {
        start_weight: f64,
        end_weight: f64,
        ramp_seconds: u64,
        min_feedback: u64,
        check_seconds: u64,
    },
    /// Set `challenger` and open a shadow deployment `<model>-shadow`: the champion answers every
    /// request, the challenger predicts the same requests and is never seen. Every
    /// `check_seconds` a `rollout-check` job joins both models' logged predictions with the
    /// labels fed back and compares their errors request by request: once `min_labelled` rows
    /// are labelled it promotes a challenger whose mean error is no higher, otherwise rolls it
    /// back — early when it is significantly worse (always-valid p) or errs more.
    Shadow {
        min_labelled: u64,
        check_seconds: u64,
    },
}

/// A shadow deployment's evidence: request counts and failures per model, and for every labelled
/// row both models predicted, each one's loss (squared error, or 0/1 for a class).
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowStats {
    pub champion_requests: u64,
    pub champion_errors: u64,
    pub challenger_requests: u64,
    pub challenger_errors: u64,
    /// (champion's loss, challenger's loss) per labelled row.
    pub losses: Vec<(f64, f64)>,
}

/// A rollback when the challenger fails more than a point more often than the champion, over at
/// least 20 of its requests (`what` names them).
fn errs_more(champion: (u64, u64), challenger: (u64, u64), what: &str) -> Option<CanaryVerdict> {
    let rate = |(errors, n): (u64, u64)| errors as f64 / n.max(1) as f64;
    let (ce, he) = (rate(champion), rate(challenger));
    (challenger.1 >= 20 && he > ce + 0.01).then(|| {
        CanaryVerdict::RolledBack(format!(
            "the challenger failed {:.1}% of {} {what}, the champion {:.1}%",
            he * 100.0,
            challenger.1,
            ce * 100.0
        ))
    })
}

impl ShadowStats {
    /// (champion's, challenger's) mean loss over the labelled rows (0 when there are none).
    pub fn mean_losses(&self) -> (f64, f64) {
        let n = self.losses.len().max(1) as f64;
        let sum = |f: fn(&(f64, f64)) -> f64| self.losses.iter().map(f).sum::<f64>();
        (sum(|l| l.0) / n, sum(|l| l.1) / n)
    }
}

/// The shadow rule (see [`Rollout::Shadow`]).
pub fn judge_shadow(s: &ShadowStats, min_labelled: u64) -> CanaryVerdict {
    if let Some(v) = errs_more(
        (s.champion_errors, s.champion_requests),
        (s.challenger_errors, s.challenger_requests),
        "shadowed requests",
    ) {
        return v;
    }
    let n = s.losses.len();
    let (champion, challenger) = s.mean_losses();
    let diffs: Vec<f64> = s.losses.iter().map(|(a, b)| b - a).collect();
    let p = if n >= 2 {
        stats::ab::paired_msprt_p_value(&diffs)
    } else {
        1.0
    };
    let said = format!(
        "mean loss {challenger:.4} vs the champion's {champion:.4} on the same {n} labelled rows, always-valid p = {p:.4}"
    );
    if p < 0.05 && challenger > champion {
        return CanaryVerdict::RolledBack(format!("the challenger is worse: {said}"));
    }
    if (n as u64) < min_labelled {
        return CanaryVerdict::Waiting(format!("{n} of {min_labelled} labelled rows so far"));
    }
    if challenger <= champion {
        CanaryVerdict::Promoted(format!("no worse on live traffic: {said}"))
    } else {
        CanaryVerdict::RolledBack(format!("worse on live traffic: {said}"))
    }
}

/// What a canary's deployment statistics say, arm by arm (outcomes: higher is better).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CanaryStats {
    pub champion_requests: u64,
    pub champion_errors: u64,
    pub challenger_requests: u64,
    pub challenger_errors: u64,
    /// Outcomes fed back per arm (the smaller of the two).
    pub min_feedback: u64,
    /// Challenger's mean outcome minus the champion's.
    pub difference: f64,
    /// The always-valid (mSPRT) p-value of that difference: safe to look at every check.
    pub always_valid_p: f64,
}

/// A canary check's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "kebab-case")]
pub enum CanaryVerdict {
    Waiting(String),
    Promoted(String),
    RolledBack(String),
}

/// The canary rule: roll back on a higher error rate or a significantly worse outcome; promote
/// once every arm has `min_feedback` outcomes and the challenger is not significantly worse.
pub fn judge_canary(s: &CanaryStats, min_feedback: u64) -> CanaryVerdict {
    if let Some(v) = errs_more(
        (s.champion_errors, s.champion_requests),
        (s.challenger_errors, s.challenger_requests),
        "requests",
    ) {
        return v;
    }
    if s.always_valid_p < 0.05 && s.difference < 0.0 {
        return CanaryVerdict::RolledBack(format!(
            "the challenger is worse: outcome {:+.4} vs the champion, always-valid p = {:.4}",
            s.difference, s.always_valid_p
        ));
    }
    if s.min_feedback < min_feedback {
        return CanaryVerdict::Waiting(format!(
            "{} of {min_feedback} outcomes per arm so far",
            s.min_feedback
        ));
    }
    CanaryVerdict::Promoted(format!(
        "not worse after {} outcomes per arm: outcome {:+.4} vs the champion, always-valid p = {:.4}",
        s.min_feedback, s.difference, s.always_valid_p
    ))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The labelled data (CSV or Parquet); new labelled rows are appended to it (file drops).
    pub data: String,
    pub target: String,
    /// The event time of each row (ISO date or date-time, or Unix seconds).
    pub time_column: String,
    /// Columns never used as inputs (ids, leaks of the target); the time column is never one.
    #[serde(default)]
    pub drop: Vec<String>,
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    #[serde(default = "default_rounds")]
    pub rounds: usize,
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    #[serde(default = "default_depth")]
    pub max_depth: usize,
    #[serde(default)]
    pub window: Window,
    #[serde(default = "default_eval_days")]
    pub evaluation_days: f64,
    #[serde(default)]
    pub metric: Metric,
    /// The relative improvement the candidate needs over the champion (0.02 = 2 %).
    #[serde(default)]
    pub min_improvement: f64,
    /// A model-test suite (`capstan test model`) the candidate must pass.
    #[serde(default)]
    pub tests: Option<String>,
    #[serde(default)]
    pub rollout: Rollout,
    /// A retraining with fewer evaluation rows than this is not judged (nothing changes).
    #[serde(default = "default_min_eval_rows")]
    pub min_eval_rows: usize,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// A retraining asked to run only on new data (`if_new_rows`, e.g. from a nightly schedule)
    /// skips unless at least this many labelled rows are newer than the champion's data.
    #[serde(default = "default_min_new_rows")]
    pub min_new_rows: usize,
    /// Queue a retraining as soon as this many labelled rows have arrived over HTTP since the
    /// last retraining (or since the policy was set).
    #[serde(default)]
    pub retrain_after_rows: Option<usize>,
    /// Update incrementally: a `gbm` candidate keeps the champion's trees and adds `rounds`
    /// more fitted to the window (when the champion is boosted trees on the same inputs); a
    /// `linear` candidate adds the window's rows newer than the champion's data to the
    /// champion's least-squares statistics (old rows weighed by `forgetting`).
    #[serde(default)]
    pub warm_start: bool,
    /// With `warm_start` on a linear model: the weight the champion's rows keep (1 = all).
    #[serde(default = "default_forgetting")]
    pub forgetting: f64,
}

fn default_forgetting() -> f64 {
    1.0
}

fn default_algorithm() -> String {
    "gbm".into()
}
fn default_rounds() -> usize {
    100
}
fn default_learning_rate() -> f64 {
    0.1
}
fn default_depth() -> usize {
    6
}
fn default_eval_days() -> f64 {
    14.0
}
fn default_min_eval_rows() -> usize {
    50
}
fn default_seed() -> u64 {
    42
}
fn default_min_new_rows() -> usize {
    1
}

impl Policy {
    /// Parses and checks a policy: one that does not validate is never stored.
    pub fn parse(json: &str) -> Result<Policy, String> {
        let p: Policy =
            serde_json::from_str(json).map_err(|e| format!("retraining policy: {e}"))?;
        p.validate()?;
        Ok(p)
    }

    pub fn validate(&self) -> Result<(), String> {
        let bad = |m: String| Err(format!("retraining policy: {m}"));
        if self.data.trim().is_empty() || self.target.is_empty() || self.time_column.is_empty() {
            return bad("`data`, `target` and `time_column` are required".into());
        }
        if !["linear", "logistic", "gbm", "forest", "tree"].contains(&self.algorithm.as_str()) {
            return bad(format!(
                "algorithm `{}` is not linear, logistic, gbm, forest or tree",
                self.algorithm
            ));
        }
        if !(self.evaluation_days > 0.0 && self.evaluation_days.is_finite()) {
            return bad("`evaluation_days` must be a positive number".into());
        }
        if !(0.0..1.0).contains(&self.min_improvement) {
            return bad("`min_improvement` is a fraction in [0, 1)".into());
        }
        if self.retrain_after_rows == Some(0) {
            return bad("`retrain_after_rows` must be at least 1".into());
        }
        if !(self.forgetting > 0.0 && self.forgetting <= 1.0) {
            return bad(format!(
                "`forgetting` is the weight old rows keep, in (0, 1], not {}",
                self.forgetting
            ));
        }
        match self.window {
            Window::Sliding { days } if !(days > 0.0 && days.is_finite()) => {
                bad("a sliding window needs `days` > 0".into())
            }
            Window::RecentWeighted { half_life_days }
                if half_life_days.is_nan() || half_life_days <= 0.0 =>
            {
                bad("a recent-weighted window needs `half_life_days` > 0".into())
            }
            _ if self.rounds == 0 => bad("`rounds` must be at least 1".into()),
            _ if matches!(self.rollout, Rollout::Canary { start_weight, end_weight, .. }
                if !(0.0..=1.0).contains(&start_weight) || !(0.0..=1.0).contains(&end_weight)) =>
            {
                bad("a canary's weights are shares in [0, 1]".into())
            }
            _ if matches!(
                self.rollout,
                Rollout::Canary {
                    check_seconds: 0,
                    ..
                }
            ) =>
            {
                bad("a canary's `check_seconds` must be at least 1".into())
            }
            _ if matches!(
                self.rollout,
                Rollout::Shadow {
                    check_seconds: 0,
                    ..
                } | Rollout::Shadow {
                    min_labelled: 0..=1,
                    ..
                }
            ) =>
            {
                bad("a shadow needs `check_seconds` ≥ 1 and `min_labelled` ≥ 2".into())
            }
            _ => Ok(()),
        }
    }
}

/// The model tag holding how many labelled rows the data had at the last retraining (or when the
/// policy was set): what `retrain_after_rows` counts from.
pub const ROWS_TAG: &str = "capstan.retrain.rows";

/// Rows (by index) that train the candidate and rows that judge both models.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub train: Vec<usize>,
    pub eval: Vec<usize>,
    /// The newest labelled time (ms): what "now" is for this retraining.
    pub as_of_ms: i64,
    /// Where the evaluation set starts (ms).
    pub eval_start_ms: i64,
}

/// Splits rows by their event times (ms; `None` rows are unusable and left out).
pub fn split(times: &[Option<i64>], policy: &Policy) -> Result<Split, String> {
    let as_of_ms = times
        .iter()
        .flatten()
        .copied()
        .max()
        .ok_or("no row has a readable time")?;
    let eval_start_ms = as_of_ms - (policy.evaluation_days * DAY_MS) as i64;
    let mut eval = Vec::new();
    let mut before = Vec::new();
    for (i, t) in times.iter().enumerate() {
        match t {
            Some(t) if *t > eval_start_ms => eval.push(i),
            Some(t) => before.push((i, *t)),
            None => {}
        }
    }
    let train: Vec<usize> = match policy.window {
        Window::All => before.iter().map(|(i, _)| *i).collect(),
        Window::Sliding { days } => {
            let from = eval_start_ms - (days * DAY_MS) as i64;
            before
                .iter()
                .filter(|(_, t)| *t > from)
                .map(|(i, _)| *i)
                .collect()
        }
        Window::RecentWeighted { half_life_days } => {
            let weights: Vec<f64> = before
                .iter()
                .map(|(_, t)| 0.5f64.powf((eval_start_ms - t) as f64 / (half_life_days * DAY_MS)))
                .collect();
            resample(&weights, policy.seed)
                .into_iter()
                .map(|k| before[k].0)
                .collect()
        }
    };
    if train.is_empty() {
        return Err(format!(
            "no labelled rows before the evaluation set (which starts {} days before the newest row)",
            policy.evaluation_days
        ));
    }
    Ok(Split {
        train,
        eval,
        as_of_ms,
        eval_start_ms,
    })
}

/// `weights.len()` draws with replacement, each index with probability ∝ its weight
/// (systematic resampling: low variance, deterministic for a seed).
fn resample(weights: &[f64], seed: u64) -> Vec<usize> {
    let n = weights.len();
    let total: f64 = weights.iter().sum();
    if n == 0 || total.is_nan() || total <= 0.0 {
        return (0..n).collect();
    }
    let mut rng = base::rng::Rng::new(seed);
    let step = total / n as f64;
    let mut u = rng.next_f64() * step;
    let (mut out, mut acc, mut k) = (Vec::with_capacity(n), weights[0], 0usize);
    for _ in 0..n {
        while u > acc && k + 1 < n {
            k += 1;
            acc += weights[k];
        }
        out.push(k);
        u += step;
    }
    out
}

/// What a retraining decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub promote: bool,
    /// `promoted`, `rejected` or `first-model`.
    pub outcome: &'static str,
    pub reason: String,
    /// Relative improvement over the champion (positive = better).
    pub improvement: Option<f64>,
}

/// The promotion rule: the candidate must pass its tests and beat the champion on the
/// evaluation set by `min_improvement` (relative). With no champion, a candidate that passes its
/// tests becomes the first one.
pub fn decide(
    policy: &Policy,
    champion: Option<f64>,
    candidate: f64,
    tests: Result<(), String>,
) -> Decision {
    let m = policy.metric;
    if let Err(why) = tests {
        return Decision {
            promote: false,
            outcome: "rejected",
            reason: format!("the candidate failed its model tests: {why}"),
            improvement: None,
        };
    }
    if !candidate.is_finite() {
        return Decision {
            promote: false,
            outcome: "rejected",
            reason: format!("the candidate's {} is not a number", m.name()),
            improvement: None,
        };
    }
    let Some(champ) = champion.filter(|c| c.is_finite()) else {
        return Decision {
            promote: true,
            outcome: "first-model",
            reason: format!("no champion to beat; candidate {} {candidate:.4}", m.name()),
            improvement: None,
        };
    };
    let improvement = if m.lower_is_better() {
        (champ - candidate) / champ.abs().max(f64::MIN_POSITIVE)
    } else {
        (candidate - champ) / champ.abs().max(f64::MIN_POSITIVE)
    };
    let promote = improvement >= policy.min_improvement && improvement > 0.0;
    let reason = format!(
        "candidate {name} {candidate:.4} vs champion {champ:.4} on the evaluation set: {pct:+.1}% (needs {need:+.1}%)",
        name = m.name(),
        pct = improvement * 100.0,
        need = policy.min_improvement * 100.0
    );
    Decision {
        promote,
        outcome: if promote { "promoted" } else { "rejected" },
        reason,
        improvement: Some(improvement),
    }
}

/// Parses an event time to ms since the epoch: `YYYY-MM-DD`, `YYYY-MM-DD[T ]HH:MM[:SS]` (UTC),
/// or a number of Unix seconds.
pub fn parse_time_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return secs.is_finite().then_some((secs * 1000.0) as i64);
    }
    let (date, time) = match s.find(['T', ' ']) {
        Some(i) => (&s[..i], Some(s[i + 1..].trim_end_matches('Z'))),
        None => (s, None),
    };
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    if d.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return None;
    }
    let mut secs = days_from_civil(y, mo, da) * 86_400;
    if let Some(t) = time {
        let mut parts = t.split(':').map(|p| p.parse::<f64>().ok());
        let h = parts.next()??;
        let m = parts.next().flatten().unwrap_or(0.0);
        let sec = parts.next().flatten().unwrap_or(0.0);
        secs += (h * 3600.0 + m * 60.0 + sec) as i64;
    }
    Some(secs * 1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(window: Window) -> Policy {
        Policy::parse(&format!(
            r#"{{"data": "d.csv", "target": "y", "time_column": "t", "evaluation_days": 2, "window": {}}}"#,
            serde_json::to_string(&window).expect("json")
        ))
        .expect("policy")
    }

    const DAY: i64 = 86_400_000;

    #[test]
    fn times_parse_as_utc() {
        assert_eq!(parse_time_ms("1970-01-02"), Some(DAY));
        assert_eq!(parse_time_ms("2011-01-01"), Some(1_293_840_000_000));
        assert_eq!(
            parse_time_ms("2011-01-01T06:30:00Z"),
            Some(1_293_840_000_000 + 6 * 3_600_000 + 1_800_000)
        );
        assert_eq!(parse_time_ms("2012-02-29 00:00"), Some(1_330_473_600_000));
        assert_eq!(parse_time_ms("1293840000"), Some(1_293_840_000_000));
        assert_eq!(parse_time_ms("2011-13-01"), None);
        assert_eq!(parse_time_ms("yesterday"), None);
    }

    #[test]
    fn the_evaluation_set_is_the_newest_days_and_the_window_ends_before_it() {
        // Day 0..10, one row a day, plus a row without a time.
        let mut times: Vec<Option<i64>> = (0..=10).map(|d| Some(d * DAY)).collect();
        times.push(None);
        let s = split(&times, &policy(Window::All)).expect("split");
        assert_eq!(s.as_of_ms, 10 * DAY);
        assert_eq!(s.eval, vec![9, 10], "strictly newer than as_of - 2 days");
        assert_eq!(s.train, (0..=8).collect::<Vec<_>>());
        let s = split(&times, &policy(Window::Sliding { days: 3.0 })).expect("split");
        assert_eq!(s.train, vec![6, 7, 8]);
        let s = split(
            &times,
            &policy(Window::RecentWeighted {
                half_life_days: 1.0,
            }),
        )
        .expect("split");
        assert_eq!(s.train.len(), 9, "a resample of the same size");
        let newest = s.train.iter().filter(|&&i| i == 8).count();
        let oldest = s.train.iter().filter(|&&i| i <= 2).count();
        assert!(newest >= 4 && oldest == 0, "{:?}", s.train);
        assert!(
            split(&[Some(0)], &policy(Window::All)).is_err(),
            "nothing to train on"
        );
        assert!(split(&[None], &policy(Window::All)).is_err());
    }

    #[test]
    fn promotion_needs_tests_and_a_margin() {
        let mut p = policy(Window::All);
        p.min_improvement = 0.05;
        let d = decide(&p, Some(100.0), 90.0, Ok(()));
        assert!(d.promote);
        assert_eq!(d.outcome, "promoted");
        assert!((d.improvement.expect("some") - 0.1).abs() < 1e-12);
        let d = decide(&p, Some(100.0), 97.0, Ok(()));
        assert!(!d.promote, "3% is under the 5% margin");
        assert!(d.reason.contains("needs +5.0%"), "{}", d.reason);
        assert!(!decide(&p, Some(100.0), 120.0, Ok(())).promote);
        let d = decide(&p, Some(100.0), 50.0, Err("slice rmse too high".into()));
        assert!(!d.promote && d.reason.contains("slice rmse"));
        assert!(!decide(&p, Some(100.0), f64::NAN, Ok(())).promote);
        assert_eq!(decide(&p, None, 10.0, Ok(())).outcome, "first-model");
        p.metric = Metric::Accuracy;
        p.min_improvement = 0.0;
        assert!(decide(&p, Some(0.8), 0.85, Ok(())).promote);
        assert!(
            !decide(&p, Some(0.8), 0.8, Ok(())).promote,
            "a tie keeps the champion"
        );
    }

    #[test]
    fn shadows_compare_both_models_on_the_same_rows() {
        // The challenger's loss is a little lower on most rows, noisily.
        let better: Vec<(f64, f64)> = (0..60)
            .map(|i| {
                let base = 100.0 + (i * 37 % 50) as f64;
                (base, base - 5.0 + (i * 13 % 7) as f64)
            })
            .collect();
        let s = ShadowStats {
            champion_requests: 60,
            champion_errors: 0,
            challenger_requests: 60,
            challenger_errors: 0,
            losses: better[..10].to_vec(),
        };
        match judge_shadow(&s, 50) {
            CanaryVerdict::Waiting(why) => assert_eq!(why, "10 of 50 labelled rows so far"),
            v => panic!("{v:?}"),
        }
        let all = ShadowStats {
            losses: better.clone(),
            ..s.clone()
        };
        match judge_shadow(&all, 50) {
            CanaryVerdict::Promoted(why) => assert!(why.contains("no worse"), "{why}"),
            v => panic!("{v:?}"),
        }
        // Clearly worse: rolled back before `min_labelled`, by the always-valid test.
        let worse = ShadowStats {
            losses: better[..30].iter().map(|(a, b)| (*b, *a + 40.0)).collect(),
            ..s.clone()
        };
        match judge_shadow(&worse, 50) {
            CanaryVerdict::RolledBack(why) => {
                assert!(why.contains("the challenger is worse"), "{why}")
            }
            v => panic!("{v:?}"),
        }
        // A hair worse, not significantly: waits, then rolls back once enough rows say so.
        let hair: Vec<(f64, f64)> = better
            .iter()
            .enumerate()
            .map(|(i, (a, _))| (*a, a + if i % 2 == 0 { 3.0 } else { -2.5 }))
            .collect();
        let unclear = ShadowStats {
            losses: hair,
            ..s.clone()
        };
        match judge_shadow(&unclear, 50) {
            CanaryVerdict::RolledBack(why) => {
                assert!(why.contains("worse on live traffic"), "{why}")
            }
            v => panic!("{v:?}"),
        }
        let failing = ShadowStats {
            challenger_errors: 6,
            ..all
        };
        match judge_shadow(&failing, 50) {
            CanaryVerdict::RolledBack(why) => assert!(why.contains("failed 10.0%"), "{why}"),
            v => panic!("{v:?}"),
        }
        let p = Policy::parse(
            r#"{"data": "d.csv", "target": "y", "time_column": "t", "rollout": {"shadow": {"min_labelled": 200, "check_seconds": 30}}}"#,
        )
        .expect("shadow policy");
        assert_eq!(
            p.rollout,
            Rollout::Shadow {
                min_labelled: 200,
                check_seconds: 30
            }
        );
        let err = Policy::parse(
            r#"{"data": "d.csv", "target": "y", "time_column": "t", "rollout": {"shadow": {"min_labelled": 1, "check_seconds": 30}}}"#,
        )
        .unwrap_err();
        assert!(err.contains("min_labelled"), "{err}");
    }

    #[test]
    fn canaries_wait_promote_or_roll_back() {
        let base = CanaryStats {
            champion_requests: 100,
            champion_errors: 0,
            challenger_requests: 100,
            challenger_errors: 0,
            min_feedback: 10,
            difference: 0.3,
            always_valid_p: 0.01,
        };
        assert!(matches!(judge_canary(&base, 30), CanaryVerdict::Waiting(_)));
        let enough = CanaryStats {
            min_feedback: 40,
            ..base
        };
        assert!(matches!(
            judge_canary(&enough, 30),
            CanaryVerdict::Promoted(_)
        ));
        let unclear = CanaryStats {
            difference: -0.1,
            always_valid_p: 0.4,
            ..enough
        };
        assert!(
            matches!(judge_canary(&unclear, 30), CanaryVerdict::Promoted(_)),
            "not worse"
        );
        let worse = CanaryStats {
            difference: -0.3,
            always_valid_p: 0.001,
            min_feedback: 5,
            ..base
        };
        match judge_canary(&worse, 30) {
            CanaryVerdict::RolledBack(why) => assert!(why.contains("worse"), "{why}"),
            v => panic!("{v:?}"),
        }
        let failing = CanaryStats {
            challenger_errors: 5,
            ..enough
        };
        match judge_canary(&failing, 30) {
            CanaryVerdict::RolledBack(why) => assert!(why.contains("failed 5.0%"), "{why}"),
            v => panic!("{v:?}"),
        }
        let p = Policy::parse(
            r#"{"data": "d.csv", "target": "y", "time_column": "t", "rollout": {"canary": {"start_weight": 0.1, "end_weight": 0.5, "ramp_seconds": 600, "min_feedback": 100, "check_seconds": 60}}}"#,
        )
        .expect("canary policy");
        assert!(matches!(
            p.rollout,
            Rollout::Canary {
                min_feedback: 100,
                ..
            }
        ));
        assert!(Policy::parse(
            r#"{"data": "d.csv", "target": "y", "time_column": "t", "rollout": {"canary": {"start_weight": 2, "end_weight": 0.5, "ramp_seconds": 0, "min_feedback": 1, "check_seconds": 1}}}"#,
        )
        .is_err());
    }

    #[test]
    fn bad_policies_are_refused_with_the_reason() {
        let e = Policy::parse(r#"{"data": "d.csv", "target": "y"}"#).expect_err("no time");
        assert!(e.contains("time_column"), "{e}");
        let e = Policy::parse(
            r#"{"data": "d.csv", "target": "y", "time_column": "t", "algorithm": "svm"}"#,
        )
        .expect_err("algorithm");
        assert!(e.contains("svm"));
        let e = Policy::parse(
            r#"{"data": "d.csv", "target": "y", "time_column": "t", "window": {"kind": "sliding", "days": 0}}"#,
        )
        .expect_err("window");
        assert!(e.contains("sliding"));
        assert!(
            Policy::parse(r#"{"data": "d.csv", "target": "y", "time_column": "t", "colour": 1}"#)
                .is_err()
        );
    }
}
