//! Live model performance: labels that arrive after the prediction (feedback) are joined to the
//! prediction log by request id and row, giving accuracy (classes) or RMSE / MAE (numbers) per
//! model version and time window.

use data::frame::{ColumnData, Frame, format_number};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// A label: a number (regression) or a class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelValue {
    Number(f64),
    Class(String),
}

impl LabelValue {
    fn as_class(&self) -> String {
        match self {
            LabelValue::Number(x) => format_number(*x),
            LabelValue::Class(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub request_id: String,
    pub row: i64,
    pub value: LabelValue,
    pub ts_ms: i64,
}

/// Persistence of labels; implemented by the `store` crate.
#[async_trait::async_trait]
pub trait LabelStore: Send + Sync {
    /// Inserts or replaces labels of `model`.
    async fn put_labels(&self, model: &str, labels: &[Label]) -> Result<(), String>;
    /// Labels of `model` for these request ids.
    async fn labels_for(&self, model: &str, request_ids: &[String]) -> Result<Vec<Label>, String>;
}

/// Performance of one version over one time window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowPerformance {
    pub version: i64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub predictions: usize,
    pub labeled: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rmse: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mae: Option<f64>,
}

/// One logged prediction row.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedPrediction {
    pub ts_ms: i64,
    pub request_id: String,
    pub row: i64,
    pub version: i64,
    pub value: Option<f64>,
    pub class: Option<String>,
    pub latency_us: i64,
}

fn numbers(f: &Frame, name: &str) -> Option<Vec<f64>> {
    match &f.column(name)?.data {
        ColumnData::Numeric(v) => Some(v.clone()),
        ColumnData::Categorical { .. } => None,
    }
}

fn texts(f: &Frame, name: &str) -> Option<Vec<Option<String>>> {
    let c = f.column(name)?;
    Some((0..c.len()).map(|i| c.text(i)).collect())
}

/// The prediction rows of a segment read back from the log.
pub fn logged_predictions(segment: &Frame) -> Result<Vec<LoggedPrediction>, String> {
    let missing = |c: &str| format!("segment has no {c} column");
    let ts = numbers(segment, "_ts_ms").ok_or_else(|| missing("_ts_ms"))?;
    let ids = texts(segment, "_request_id").ok_or_else(|| missing("_request_id"))?;
    let rows = numbers(segment, "_row").ok_or_else(|| missing("_row"))?;
    let versions = numbers(segment, "_version").ok_or_else(|| missing("_version"))?;
    let values = numbers(segment, "_prediction").ok_or_else(|| missing("_prediction"))?;
    let classes = texts(segment, "_label");
    let latency = numbers(segment, "_latency_us").ok_or_else(|| missing("_latency_us"))?;
    Ok((0..ts.len())
        .map(|i| LoggedPrediction {
            ts_ms: ts[i] as i64,
            request_id: ids[i].clone().unwrap_or_default(),
            row: rows[i] as i64,
            version: versions[i] as i64,
            value: (!values[i].is_nan()).then_some(values[i]),
            class: classes.as_ref().and_then(|c| c[i].clone()),
            latency_us: latency[i] as i64,
        })
        .collect())
}

/// For every labelled row that versions `a` and `b` both predicted (a shadow deployment's
/// primary and its shadow: the same request id and row), each one's loss — squared error for a
/// number, 0 or 1 for a class — as `(a's, b's)`, in request order.
pub fn paired_losses(
    predictions: &[LoggedPrediction],
    labels: &[Label],
    a: i64,
    b: i64,
) -> Vec<(f64, f64)> {
    let by_key: HashMap<(&str, i64), &LabelValue> = labels
        .iter()
        .map(|l| ((l.request_id.as_str(), l.row), &l.value))
        .collect();
    let loss = |p: &LoggedPrediction, label: &LabelValue| match (&p.class, label, p.value) {
        (Some(class), l, _) => f64::from(u8::from(*class != l.as_class())),
        (None, LabelValue::Number(y), Some(v)) => (v - y).powi(2),
        _ => f64::NAN,
    };
    let mut of_b: HashMap<(&str, i64), &LoggedPrediction> = HashMap::new();
    for p in predictions.iter().filter(|p| p.version == b) {
        of_b.insert((p.request_id.as_str(), p.row), p);
    }
    let mut out = Vec::new();
    for p in predictions.iter().filter(|p| p.version == a) {
        let key = (p.request_id.as_str(), p.row);
        if let (Some(label), Some(q)) = (by_key.get(&key), of_b.remove(&key)) {
            let pair = (loss(p, label), loss(q, label));
            if pair.0.is_finite() && pair.1.is_finite() {
                out.push(pair);
            }
        }
    }
    out
}

/// Joins predictions with labels and scores each (version, window of `window_ms`).
pub fn live_performance(
    predictions: &[LoggedPrediction],
    labels: &[Label],
    window_ms: i64,
) -> Vec<WindowPerformance> {
    let window_ms = window_ms.max(1);
    let by_key: HashMap<(&str, i64), &LabelValue> = labels
        .iter()
        .map(|l| ((l.request_id.as_str(), l.row), &l.value))
        .collect();
    #[derive(Default)]
    struct Acc {
        n: usize,
        labeled: usize,
        correct: usize,
        classified: usize,
        se: f64,
        ae: f64,
        regressed: usize,
    }
    let mut acc: BTreeMap<(i64, i64), Acc> = BTreeMap::new();
    for p in predictions {
        let start = p.ts_ms.div_euclid(window_ms) * window_ms;
        let a = acc.entry((p.version, start)).or_default();
        a.n += 1;
        let Some(label) = by_key.get(&(p.request_id.as_str(), p.row)) else {
            continue;
        };
        a.labeled += 1;
        match (&p.class, label) {
            (Some(class), l) => {
                a.classified += 1;
                if *class == l.as_class() {
                    a.correct += 1;
                }
            }
            (None, LabelValue::Number(y)) => {
                if let Some(v) = p.value {
                    a.regressed += 1;
                    a.se += (v - y) * (v - y);
                    a.ae += (v - y).abs();
                }
            }
            (None, LabelValue::Class(_)) => {}
        }
    }
    acc.into_iter()
        .map(|((version, start), a)| WindowPerformance {
            version,
            start_ms: start,
            end_ms: start + window_ms,
            predictions: a.n,
            labeled: a.labeled,
            accuracy: (a.classified > 0).then(|| a.correct as f64 / a.classified as f64),
            rmse: (a.regressed > 0).then(|| (a.se / a.regressed as f64).sqrt()),
            mae: (a.regressed > 0).then(|| a.ae / a.regressed as f64),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pred(
        ts: i64,
        id: &str,
        row: i64,
        version: i64,
        value: f64,
        class: Option<&str>,
    ) -> LoggedPrediction {
        LoggedPrediction {
            ts_ms: ts,
            request_id: id.into(),
            row,
            version,
            value: Some(value),
            class: class.map(str::to_owned),
            latency_us: 100,
        }
    }

    fn label(id: &str, row: i64, value: LabelValue) -> Label {
        Label {
            request_id: id.into(),
            row,
            value,
            ts_ms: 0,
        }
    }

    #[test]
    fn paired_losses_join_both_versions_on_request_and_row() {
        let preds = vec![
            pred(1, "r1", 0, 1, 10.0, None),
            pred(1, "r1", 0, 2, 12.0, None),
            pred(1, "r1", 1, 1, 5.0, None),
            pred(1, "r1", 1, 2, 4.0, None),
            // Only the primary answered r2; r3 has no label; r4 is another version.
            pred(2, "r2", 0, 1, 7.0, None),
            pred(3, "r3", 0, 1, 1.0, None),
            pred(3, "r3", 0, 2, 1.0, None),
            pred(4, "r4", 0, 3, 1.0, None),
        ];
        let labels = vec![
            label("r1", 0, LabelValue::Number(11.0)),
            label("r1", 1, LabelValue::Number(4.0)),
            label("r2", 0, LabelValue::Number(7.0)),
            label("r4", 0, LabelValue::Number(0.0)),
        ];
        assert_eq!(
            paired_losses(&preds, &labels, 1, 2),
            vec![(1.0, 1.0), (1.0, 0.0)]
        );
        let classes = vec![
            pred(1, "c", 0, 1, f64::NAN, Some("yes")),
            pred(1, "c", 0, 2, f64::NAN, Some("no")),
        ];
        assert_eq!(
            paired_losses(
                &classes,
                &[label("c", 0, LabelValue::Class("no".into()))],
                1,
                2
            ),
            vec![(1.0, 0.0)]
        );
    }

    #[test]
    fn accuracy_and_rmse_per_version_and_window() {
        let preds = vec![
            pred(1_000, "a", 0, 1, 0.9, Some("yes")),
            pred(1_500, "a", 1, 1, 0.7, Some("no")),
            pred(2_500, "b", 0, 1, 0.6, Some("yes")),
            pred(1_200, "c", 0, 2, 0.8, Some("yes")),
        ];
        let labels = vec![
            label("a", 0, LabelValue::Class("yes".into())),
            label("a", 1, LabelValue::Class("yes".into())),
            label("c", 0, LabelValue::Class("yes".into())),
        ];
        let w = live_performance(&preds, &labels, 1_000);
        assert_eq!(w.len(), 3);
        assert_eq!(
            (w[0].version, w[0].start_ms, w[0].predictions, w[0].labeled),
            (1, 1_000, 2, 2)
        );
        assert_eq!(w[0].accuracy, Some(0.5));
        assert_eq!(
            (w[1].version, w[1].start_ms, w[1].labeled, w[1].accuracy),
            (1, 2_000, 0, None)
        );
        assert_eq!((w[2].version, w[2].accuracy), (2, Some(1.0)));

        let preds = vec![
            pred(10, "r", 0, 3, 2.0, None),
            pred(20, "r", 1, 3, 5.0, None),
        ];
        let labels = vec![
            label("r", 0, LabelValue::Number(1.0)),
            label("r", 1, LabelValue::Number(8.0)),
        ];
        let w = live_performance(&preds, &labels, 60_000);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].mae, Some(2.0));
        assert!((w[0].rmse.unwrap() - 5f64.sqrt()).abs() < 1e-12);
    }
}
