//! Monitors and alerts. A monitor watches one model over a sliding window of its logged
//! predictions with a list of checks — dataset drift against a reference table, live accuracy
//! below / RMSE above a bound (from feedback labels), latency p99 above a bound, error rate above
//! a bound — and is evaluated on a schedule. A check that starts failing raises one alert (stored,
//! listed, counted on `/metrics`, posted to the monitor's webhook); it raises another only after
//! it has passed again, so one incident is one alert.

use crate::drift::{DriftOptions, DriftReport};
use crate::performance::{Label, LoggedPrediction, live_performance};
use data::frame::Frame;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

fn default_window() -> i64 {
    3600
}

fn default_interval() -> i64 {
    300
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSpec {
    pub name: String,
    pub model: String,
    /// The window of predictions each evaluation looks at.
    #[serde(default = "default_window")]
    pub window_seconds: i64,
    /// How often the scheduler evaluates the monitor.
    #[serde(default = "default_interval")]
    pub interval_seconds: i64,
    /// The reference drift checks compare the window's inputs with: a table (CSV, Parquet) or
    /// its profile (`.json`, from `capstan profile`).
    #[serde(default)]
    pub reference: Option<String>,
    pub checks: Vec<Check>,
    /// Alerts are POSTed here as JSON.
    #[serde(default)]
    pub webhook: Option<String>,
    /// A job queued when this monitor raises alerts (e.g. a retraining), at most one pending per
    /// monitor: alerts of the same incident do not start a second one.
    #[serde(default)]
    pub on_alert: Option<AlertJob>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertJob {
    pub kind: String,
    /// Given to the job with the raised alerts added under `alerts`.
    #[serde(default)]
    pub payload: serde_json::Value,
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// Dataset drift of the model's inputs (Evidently's per-column tests).
    Drift {
        #[serde(default)]
        columns: Option<Vec<String>>,
        /// Share of drifted columns that makes dataset drift (default 0.5).
        #[serde(default)]
        drift_share: Option<f64>,
    },
    AccuracyBelow {
        value: f64,
        /// Fewer labelled predictions than this: no verdict (default 30).
        #[serde(default)]
        min_labeled: Option<usize>,
    },
    RmseAbove {
        value: f64,
        #[serde(default)]
        min_labeled: Option<usize>,
    },
    /// For classifiers whose labels lag: accuracy estimated from calibrated confidence (CBPE)
    /// of the window's unlabelled predictions, calibrated on its labelled ones.
    EstimatedAccuracyBelow {
        value: f64,
        /// Fewer labelled predictions to calibrate on than this: no verdict (default 100).
        #[serde(default)]
        min_calibration: Option<usize>,
    },
    LatencyP99AboveMs {
        value: f64,
    },
    ErrorRateAbove {
        value: f64,
    },
}

impl Check {
    pub fn name(&self) -> &'static str {
        match self {
            Check::Drift { .. } => "drift",
            Check::AccuracyBelow { .. } => "accuracy_below",
            Check::RmseAbove { .. } => "rmse_above",
            Check::EstimatedAccuracyBelow { .. } => "estimated_accuracy_below",
            Check::LatencyP99AboveMs { .. } => "latency_p99_above_ms",
            Check::ErrorRateAbove { .. } => "error_rate_above",
        }
    }
}

impl MonitorSpec {
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() || self.model.trim().is_empty() {
            return Err("a monitor needs a name and a model".into());
        }
        if self.window_seconds <= 0 || self.interval_seconds <= 0 {
            return Err("window_seconds and interval_seconds must be positive".into());
        }
        if self.checks.is_empty() {
            return Err("a monitor needs at least one check".into());
        }
        if let Some(j) = &self.on_alert
            && (j.kind.is_empty() || !j.payload.is_object() && !j.payload.is_null())
        {
            return Err("on_alert needs a job `kind` and an object `payload`".into());
        }
        let mut seen = BTreeSet::new();
        for c in &self.checks {
            if !seen.insert(c.name()) {
                return Err(format!("check {} appears twice", c.name()));
            }
            if matches!(c, Check::Drift { .. }) && self.reference.is_none() {
                return Err("a drift check needs a reference table".into());
            }
            if let Check::Drift {
                drift_share: Some(s),
                ..
            } = c
                && !(0.0..=1.0).contains(s)
            {
                return Err("drift_share must be between 0 and 1".into());
            }
        }
        if let Some(w) = &self.webhook
            && !(w.starts_with("http://") || w.starts_with("https://"))
        {
            return Err("webhook must be an http(s) URL".into());
        }
        Ok(())
    }
}

/// One check's verdict; `failing: None` when the window had no data to judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub check: String,
    pub failing: Option<bool>,
    pub value: Option<f64>,
    pub threshold: f64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnScore {
    pub column: String,
    pub method: String,
    pub score: f64,
    pub drifted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub monitor: String,
    pub model: String,
    pub at_ms: i64,
    pub window_start_ms: i64,
    pub predictions: usize,
    pub results: Vec<CheckResult>,
    #[serde(default)]
    pub drift_share: Option<f64>,
    #[serde(default)]
    pub drift_columns: Vec<ColumnScore>,
    /// Request and error counters seen at this evaluation (for the next one's error rate).
    #[serde(default)]
    pub counters: Option<(u64, u64)>,
}

impl Evaluation {
    pub fn failing(&self) -> BTreeSet<String> {
        self.results
            .iter()
            .filter(|r| r.failing == Some(true))
            .map(|r| r.check.clone())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: i64,
    pub monitor: String,
    pub model: String,
    pub check: String,
    pub message: String,
    pub value: Option<f64>,
    pub threshold: f64,
    pub created_ms: i64,
}

/// Persistence of monitors, their last evaluation, and alerts; implemented by `store`.
#[async_trait::async_trait]
pub trait MonitorStore: Send + Sync {
    async fn put_monitor(&self, spec: &MonitorSpec) -> Result<(), String>;
    async fn get_monitor(
        &self,
        name: &str,
    ) -> Result<Option<(MonitorSpec, Option<Evaluation>)>, String>;
    async fn list_monitors(&self) -> Result<Vec<(MonitorSpec, Option<Evaluation>)>, String>;
    async fn delete_monitor(&self, name: &str) -> Result<bool, String>;
    /// Stores the evaluation and the alerts it raised, in one transaction, if the stored last
    /// evaluation is still the one at `previous_at` (the one the alerts were judged against);
    /// returns the alerts with their ids, or `None` when another evaluator got there first (its
    /// alerts stand; these are dropped, so one incident stays one alert).
    async fn record_evaluation(
        &self,
        eval: &Evaluation,
        alerts: &[Alert],
        previous_at: Option<i64>,
    ) -> Result<Option<Vec<Alert>>, String>;
    async fn list_alerts(&self, monitor: Option<&str>, limit: i64) -> Result<Vec<Alert>, String>;
}

/// What one evaluation sees.
pub struct Window<'a> {
    pub now_ms: i64,
    /// Logged predictions of the model in the window (inputs as columns).
    pub inputs: Option<&'a Frame>,
    pub predictions: &'a [LoggedPrediction],
    pub labels: &'a [Label],
    pub reference: Option<&'a Frame>,
    /// Request and error counters now, and at the previous evaluation.
    pub counters: Option<(u64, u64)>,
    pub previous_counters: Option<(u64, u64)>,
}

/// Evaluates every check of `spec` on `w`.
pub fn evaluate(spec: &MonitorSpec, w: &Window<'_>) -> Evaluation {
    let mut eval = Evaluation {
        monitor: spec.name.clone(),
        model: spec.model.clone(),
        at_ms: w.now_ms,
        window_start_ms: w.now_ms - spec.window_seconds * 1000,
        predictions: w.predictions.len(),
        results: Vec::new(),
        drift_share: None,
        drift_columns: Vec::new(),
        counters: w.counters,
    };
    let perf = live_performance(w.predictions, w.labels, i64::MAX / 4);
    let labeled: usize = perf.iter().map(|p| p.labeled).sum();
    let weighted = |f: fn(&crate::performance::WindowPerformance) -> Option<f64>| {
        let (mut sum, mut n) = (0.0, 0usize);
        for p in &perf {
            if let Some(v) = f(p) {
                sum += v * p.labeled as f64;
                n += p.labeled;
            }
        }
        (n > 0).then(|| sum / n as f64)
    };
    for check in &spec.checks {
        let name = check.name().to_owned();
        let result = match check {
            Check::Drift {
                columns,
                drift_share,
            } => match (w.inputs, w.reference) {
                (Some(cur), Some(reference)) if cur.rows() > 0 => {
                    let opts = DriftOptions {
                        columns: columns.clone(),
                        drift_share: drift_share.unwrap_or(0.5),
                        ..DriftOptions::default()
                    };
                    let r: DriftReport = crate::drift::drift(reference, cur, &opts);
                    eval.drift_share = Some(r.share_of_drifted_columns);
                    eval.drift_columns = r
                        .columns
                        .iter()
                        .filter_map(|c| {
                            Some(ColumnScore {
                                column: c.column.clone(),
                                method: c.method?.name().to_owned(),
                                score: c.score?,
                                drifted: c.drifted,
                            })
                        })
                        .collect();
                    let drifted: Vec<&str> = r
                        .columns
                        .iter()
                        .filter(|c| c.drifted)
                        .map(|c| c.column.as_str())
                        .collect();
                    CheckResult {
                        check: name,
                        failing: Some(r.dataset_drift),
                        value: Some(r.share_of_drifted_columns),
                        threshold: r.drift_share,
                        message: format!(
                            "{} of {} columns drifted{}",
                            r.number_of_drifted_columns,
                            r.number_of_columns,
                            if drifted.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", drifted.join(", "))
                            }
                        ),
                    }
                }
                _ => no_data(
                    name,
                    drift_share.unwrap_or(0.5),
                    "no predictions in the window",
                ),
            },
            Check::AccuracyBelow { value, min_labeled } => {
                match weighted(|p| p.accuracy).filter(|_| labeled >= min_labeled.unwrap_or(30)) {
                    Some(acc) => CheckResult {
                        check: name,
                        failing: Some(acc < *value),
                        value: Some(acc),
                        threshold: *value,
                        message: format!("accuracy {acc:.4} on {labeled} labelled predictions"),
                    },
                    None => no_data(name, *value, &format!("{labeled} labelled predictions")),
                }
            }
            Check::RmseAbove { value, min_labeled } => {
                // RMSE over versions: pool squared errors by labelled count.
                let pooled = {
                    let (mut se, mut n) = (0.0, 0usize);
                    for p in &perf {
                        if let Some(r) = p.rmse {
                            se += r * r * p.labeled as f64;
                            n += p.labeled;
                        }
                    }
                    (n > 0).then(|| (se / n as f64).sqrt())
                };
                match pooled.filter(|_| labeled >= min_labeled.unwrap_or(30)) {
                    Some(rmse) => CheckResult {
                        check: name,
                        failing: Some(rmse > *value),
                        value: Some(rmse),
                        threshold: *value,
                        message: format!("RMSE {rmse:.4} on {labeled} labelled predictions"),
                    },
                    None => no_data(name, *value, &format!("{labeled} labelled predictions")),
                }
            }
            Check::EstimatedAccuracyBelow {
                value,
                min_calibration,
            } => {
                let labels: std::collections::HashMap<(&str, i64), String> = w
                    .labels
                    .iter()
                    .map(|l| {
                        let text = match &l.value {
                            crate::performance::LabelValue::Class(c) => c.clone(),
                            crate::performance::LabelValue::Number(x) => {
                                data::frame::format_number(*x)
                            }
                        };
                        ((l.request_id.as_str(), l.row), text)
                    })
                    .collect();
                let (mut cal_conf, mut cal_ok, mut unlabelled) =
                    (Vec::new(), Vec::new(), Vec::new());
                for p in w.predictions {
                    let (Some(class), Some(conf)) = (&p.class, p.value) else {
                        continue;
                    };
                    match labels.get(&(p.request_id.as_str(), p.row)) {
                        Some(l) => {
                            cal_conf.push(conf);
                            cal_ok.push(l == class);
                        }
                        None => unlabelled.push(conf),
                    }
                }
                let need = min_calibration.unwrap_or(100);
                match crate::cbpe::Calibrator::fit(&cal_conf, &cal_ok)
                    .filter(|_| cal_conf.len() >= need)
                    .and_then(|c| c.expected_accuracy(&unlabelled))
                {
                    Some(acc) => CheckResult {
                        check: name,
                        failing: Some(acc < *value),
                        value: Some(acc),
                        threshold: *value,
                        message: format!(
                            "estimated accuracy {acc:.4} of {} unlabelled predictions (calibrated on {})",
                            unlabelled.len(),
                            cal_conf.len()
                        ),
                    },
                    None => no_data(
                        name,
                        *value,
                        &format!(
                            "{} labelled predictions to calibrate on (need {need}), {} unlabelled",
                            cal_conf.len(),
                            unlabelled.len()
                        ),
                    ),
                }
            }
            Check::LatencyP99AboveMs { value } => {
                let mut lat: Vec<i64> = w.predictions.iter().map(|p| p.latency_us).collect();
                if lat.is_empty() {
                    no_data(name, *value, "no predictions in the window")
                } else {
                    lat.sort_unstable();
                    let i = ((lat.len() as f64 * 0.99).ceil() as usize).clamp(1, lat.len()) - 1;
                    let p99 = lat[i] as f64 / 1000.0;
                    CheckResult {
                        check: name,
                        failing: Some(p99 > *value),
                        value: Some(p99),
                        threshold: *value,
                        message: format!("p99 latency {p99:.3} ms over {} predictions", lat.len()),
                    }
                }
            }
            Check::ErrorRateAbove { value } => match (w.counters, w.previous_counters) {
                (Some((req, err)), prev) => {
                    let (preq, perr) = prev.unwrap_or((0, 0));
                    let (dreq, derr) = (req.saturating_sub(preq), err.saturating_sub(perr));
                    if dreq == 0 {
                        no_data(name, *value, "no requests since the last evaluation")
                    } else {
                        let rate = derr as f64 / dreq as f64;
                        CheckResult {
                            check: name,
                            failing: Some(rate > *value),
                            value: Some(rate),
                            threshold: *value,
                            message: format!("{derr} errors in {dreq} requests"),
                        }
                    }
                }
                (None, _) => no_data(name, *value, "no request counters"),
            },
        };
        eval.results.push(result);
    }
    eval
}

fn no_data(check: String, threshold: f64, why: &str) -> CheckResult {
    CheckResult {
        check,
        failing: None,
        value: None,
        threshold,
        message: format!("no verdict: {why}"),
    }
}

/// Alerts for checks failing now that were not failing at the previous evaluation. A check
/// without a verdict keeps its previous state (no data is not recovery).
pub fn new_alerts(previous: Option<&Evaluation>, now: &Evaluation) -> Vec<Alert> {
    let before = previous.map(Evaluation::failing).unwrap_or_default();
    now.results
        .iter()
        .filter(|r| r.failing == Some(true) && !before.contains(&r.check))
        .map(|r| Alert {
            id: 0,
            monitor: now.monitor.clone(),
            model: now.model.clone(),
            check: r.check.clone(),
            message: r.message.clone(),
            value: r.value,
            threshold: r.threshold,
            created_ms: now.at_ms,
        })
        .collect()
}

/// Carries failing states forward over evaluations without data, so a quiet window neither
/// clears an incident nor re-raises it.
pub fn carry_forward(previous: Option<&Evaluation>, now: &mut Evaluation) {
    let Some(prev) = previous else { return };
    for r in &mut now.results {
        if r.failing.is_none()
            && let Some(p) = prev.results.iter().find(|p| p.check == r.check)
            && p.failing == Some(true)
        {
            r.failing = Some(true);
            r.message = format!("{} (still failing from the last verdict)", r.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::performance::LabelValue;

    fn spec(checks: Vec<Check>) -> MonitorSpec {
        MonitorSpec {
            name: "m".into(),
            model: "bc".into(),
            window_seconds: 60,
            interval_seconds: 10,
            reference: Some("ref.csv".into()),
            checks,
            webhook: None,
            on_alert: None,
        }
    }

    fn pred(id: &str, class: &str, latency_us: i64) -> LoggedPrediction {
        LoggedPrediction {
            ts_ms: 1_000,
            request_id: id.into(),
            row: 0,
            version: 1,
            value: Some(0.9),
            class: Some(class.into()),
            latency_us,
        }
    }

    #[test]
    fn checks_judge_the_window_and_alert_once_per_incident() {
        let s = spec(vec![
            Check::AccuracyBelow {
                value: 0.8,
                min_labeled: Some(2),
            },
            Check::LatencyP99AboveMs { value: 5.0 },
            Check::ErrorRateAbove { value: 0.1 },
        ]);
        let preds: Vec<LoggedPrediction> = (0..4)
            .map(|i| pred(&format!("r{i}"), "yes", if i == 3 { 9_000 } else { 1_000 }))
            .collect();
        let labels: Vec<Label> = (0..4)
            .map(|i| Label {
                request_id: format!("r{i}"),
                row: 0,
                value: LabelValue::Class(if i < 2 { "yes" } else { "no" }.into()),
                ts_ms: 0,
            })
            .collect();
        let w = Window {
            now_ms: 2_000,
            inputs: None,
            predictions: &preds,
            labels: &labels,
            reference: None,
            counters: Some((100, 20)),
            previous_counters: Some((50, 10)),
        };
        let e = evaluate(&s, &w);
        assert_eq!(e.results[0].value, Some(0.5));
        assert_eq!(e.results[0].failing, Some(true));
        assert_eq!(
            e.results[1].value,
            Some(9.0),
            "p99 of 4 values is the largest"
        );
        assert_eq!(e.results[1].failing, Some(true));
        assert_eq!(e.results[2].value, Some(0.2));
        assert_eq!(e.results[2].failing, Some(true));
        let first = new_alerts(None, &e);
        assert_eq!(first.len(), 3);
        // Still failing at the next evaluation: no new alert.
        assert!(new_alerts(Some(&e), &e).is_empty());
        // A quiet window keeps the incident open instead of clearing it.
        let quiet_w = Window {
            predictions: &[],
            labels: &[],
            counters: Some((100, 20)),
            previous_counters: Some((100, 20)),
            ..w
        };
        let mut quiet = evaluate(&s, &quiet_w);
        assert!(quiet.results.iter().all(|r| r.failing.is_none()));
        carry_forward(Some(&e), &mut quiet);
        assert!(new_alerts(Some(&e), &quiet).is_empty());
        assert_eq!(quiet.failing().len(), 3);
    }

    #[test]
    fn estimated_accuracy_uses_labelled_predictions_to_calibrate() {
        let s = spec(vec![Check::EstimatedAccuracyBelow {
            value: 0.9,
            min_calibration: Some(4),
        }]);
        // Confidence 0.9 predictions are right 3 times in 4 when labelled; two more unlabelled.
        let mut preds: Vec<LoggedPrediction> = (0..6)
            .map(|i| pred(&format!("r{i}"), "yes", 1_000))
            .collect();
        for p in &mut preds {
            p.value = Some(0.9);
        }
        let labels: Vec<Label> = (0..4)
            .map(|i| Label {
                request_id: format!("r{i}"),
                row: 0,
                value: LabelValue::Class(if i == 0 { "no" } else { "yes" }.into()),
                ts_ms: 0,
            })
            .collect();
        let w = Window {
            now_ms: 2_000,
            inputs: None,
            predictions: &preds,
            labels: &labels,
            reference: None,
            counters: None,
            previous_counters: None,
        };
        let e = evaluate(&s, &w);
        assert_eq!(e.results[0].value, Some(0.75), "{:?}", e.results[0]);
        assert_eq!(e.results[0].failing, Some(true));
        assert!(
            e.results[0].message.contains("2 unlabelled"),
            "{}",
            e.results[0].message
        );
    }

    #[test]
    fn specs_are_validated() {
        let mut s = spec(vec![Check::Drift {
            columns: None,
            drift_share: None,
        }]);
        assert!(s.validate().is_ok());
        s.reference = None;
        assert!(s.validate().unwrap_err().contains("reference"));
        let mut s = spec(vec![]);
        assert!(s.validate().unwrap_err().contains("at least one check"));
        s.checks = vec![
            Check::LatencyP99AboveMs { value: 1.0 },
            Check::LatencyP99AboveMs { value: 2.0 },
        ];
        assert!(s.validate().unwrap_err().contains("twice"));
        s.checks.pop();
        s.webhook = Some("ftp://x".into());
        assert!(s.validate().unwrap_err().contains("webhook"));
        let parsed: Result<MonitorSpec, _> = serde_json::from_str(
            r#"{"name": "x", "model": "m", "checks": [{"check": "latency_p99_above_ms", "value": 20}]}"#,
        );
        let parsed = parsed.unwrap();
        assert_eq!(
            (parsed.window_seconds, parsed.interval_seconds),
            (3600, 300)
        );
    }
}
