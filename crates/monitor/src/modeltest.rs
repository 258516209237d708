//! Model tests: metric thresholds overall and per data slice, invariance (a perturbation that
//! must not change predictions), directional expectations (a change that must move the score one
//! way), and a minimum improvement over the current champion on the same data. Suites are YAML:
//!
//! ```yaml
//! name: bc_model
//! target: diagnosis
//! tests:
//!   - {test: metric, metric: accuracy, min: 0.9}
//!   - {test: metric, metric: accuracy, min: 0.8, slice: {column: mean_radius, min: 15}}
//!   - {test: invariance, column: mean_fractal_dimension, add: 0.0001, max_changed: 0.02}
//!   - {test: directional, column: worst_radius, add: 5, class: malignant, expect: increase}
//!   - {test: beats_champion, metric: accuracy, margin: 0.0}
//! ```

use crate::MonitorError;
use crate::expect::{Outcome, SuiteResult};
use data::frame::{ColumnData, Frame, format_number};
use learn::{ModelPackage, Prediction, Task};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricName {
    Accuracy,
    Rmse,
    Mae,
    R2,
}

impl MetricName {
    fn higher_is_better(self) -> bool {
        matches!(self, MetricName::Accuracy | MetricName::R2)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Slice {
    pub column: String,
    pub equals: Option<serde_yaml_ng::Value>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Increase,
    Decrease,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "test", rename_all = "snake_case")]
pub enum ModelTest {
    Metric {
        metric: MetricName,
        min: Option<f64>,
        max: Option<f64>,
        slice: Option<Slice>,
    },
    Invariance {
        column: String,
        add: Option<f64>,
        set: Option<serde_yaml_ng::Value>,
        /// Largest share of predictions allowed to change (default 0).
        max_changed: Option<f64>,
    },
    Directional {
        column: String,
        add: f64,
        expect: Direction,
        /// For classifiers: the class whose probability must move.
        class: Option<String>,
        /// Share of rows that must move that way or stay (default 1).
        min_share: Option<f64>,
    },
    BeatsChampion {
        metric: MetricName,
        /// The candidate must be better by at least this much (default 0).
        margin: Option<f64>,
    },
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSuite {
    pub name: String,
    pub target: String,
    pub tests: Vec<ModelTest>,
}

impl ModelSuite {
    pub fn load(path: &Path) -> Result<ModelSuite, MonitorError> {
        let s: ModelSuite = crate::read_yaml(path)?;
        for t in &s.tests {
            if let ModelTest::Invariance { add, set, .. } = t
                && add.is_some() == set.is_some()
            {
                return Err(MonitorError::Invalid(format!(
                    "suite {}: an invariance test needs exactly one of add or set",
                    s.name
                )));
            }
        }
        Ok(s)
    }
}

/// The model's input rows from a table: numeric inputs by name, one-hot inputs `column=value`
/// from a text column. Fails naming the first input the table cannot provide.
pub fn rows_for(package: &ModelPackage, t: &Frame) -> Result<Vec<Vec<f64>>, String> {
    let n = t.rows();
    let mut cols: Vec<Vec<f64>> = Vec::new();
    for input in package.input_names() {
        let values = match t.column(input).map(|c| &c.data) {
            Some(ColumnData::Numeric(v)) => {
                if let Some(i) = v.iter().position(|x| x.is_nan()) {
                    return Err(format!("input {input} is missing in row {}", i + 1));
                }
                v.clone()
            }
            Some(ColumnData::Categorical { .. }) => {
                return Err(format!("input {input} must be numeric"));
            }
            None => {
                let (col, value) = input
                    .split_once('=')
                    .ok_or_else(|| format!("the data has no column {input}"))?;
                let c = t
                    .column(col)
                    .ok_or_else(|| format!("the data has no column {col} (for input {input})"))?;
                (0..n)
                    .map(|i| f64::from(u8::from(c.text(i).as_deref() == Some(value))))
                    .collect()
            }
        };
        cols.push(values);
    }
    Ok((0..n)
        .map(|i| cols.iter().map(|c| c[i]).collect())
        .collect())
}

fn yaml_text(v: &serde_yaml_ng::Value) -> String {
    match v {
        serde_yaml_ng::Value::String(s) => s.clone(),
        serde_yaml_ng::Value::Number(n) => n.as_f64().map_or(n.to_string(), format_number),
        serde_yaml_ng::Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// The metric of predictions against the target column's cells.
fn metric(m: MetricName, preds: &[Prediction], truth: &[Option<String>]) -> Result<f64, String> {
    let pairs: Vec<(&Prediction, &String)> = preds
        .iter()
        .zip(truth)
        .filter_map(|(p, t)| t.as_ref().map(|t| (p, t)))
        .collect();
    if pairs.is_empty() {
        return Err("no labelled rows".into());
    }
    let n = pairs.len() as f64;
    if m == MetricName::Accuracy {
        let correct = pairs
            .iter()
            .filter(|(p, t)| match p {
                Prediction::Class { label, .. } => label == *t,
                Prediction::Value(v) => t.parse::<f64>().is_ok_and(|y| y == *v),
            })
            .count();
        return Ok(correct as f64 / n);
    }
    let xy: Vec<(f64, f64)> = pairs
        .iter()
        .map(|(p, t)| match p {
            Prediction::Value(v) => t
                .parse::<f64>()
                .map(|y| (*v, y))
                .map_err(|_| format!("target {t:?} is not a number")),
            Prediction::Class { .. } => Err(format!("{m:?} needs a regression model")),
        })
        .collect::<Result<_, _>>()?;
    Ok(match m {
        MetricName::Rmse => (xy.iter().map(|(p, y)| (p - y).powi(2)).sum::<f64>() / n).sqrt(),
        MetricName::Mae => xy.iter().map(|(p, y)| (p - y).abs()).sum::<f64>() / n,
        _ => {
            let mean = xy.iter().map(|(_, y)| y).sum::<f64>() / n;
            let ss_res: f64 = xy.iter().map(|(p, y)| (y - p).powi(2)).sum();
            let ss_tot: f64 = xy.iter().map(|(_, y)| (y - mean).powi(2)).sum();
            1.0 - ss_res / ss_tot
        }
    })
}

fn predict(p: &ModelPackage, t: &Frame) -> Result<Vec<Prediction>, String> {
    let rows = rows_for(p, t)?;
    p.predict(&rows).map_err(|e| e.to_string())
}

/// The table with `column` perturbed (`add` to numbers or `set` to a value).
fn perturbed(
    t: &Frame,
    column: &str,
    add: Option<f64>,
    set: Option<&serde_yaml_ng::Value>,
) -> Result<Frame, String> {
    let mut out = t.clone();
    let c = out
        .columns
        .iter_mut()
        .find(|c| c.name == column)
        .ok_or_else(|| format!("the data has no column {column}"))?;
    match (&mut c.data, add, set) {
        (ColumnData::Numeric(v), Some(a), _) => v.iter_mut().for_each(|x| *x += a),
        (ColumnData::Numeric(v), None, Some(s)) => {
            let x: f64 = yaml_text(s)
                .parse()
                .map_err(|_| format!("{column} is numeric; set it to a number"))?;
            v.iter_mut().for_each(|y| *y = x);
        }
        (ColumnData::Categorical { codes, levels }, None, Some(s)) => {
            let value = yaml_text(s);
            let code = match levels.iter().position(|l| *l == value) {
                Some(i) => i as u32,
                None => {
                    levels.push(value);
                    (levels.len() - 1) as u32
                }
            };
            codes.iter_mut().for_each(|c| *c = code);
        }
        (ColumnData::Categorical { .. }, Some(_), _) => {
            return Err(format!("{column} is text; use set, not add"));
        }
        _ => return Err("give add or set".into()),
    }
    Ok(out)
}

fn score_of(p: &Prediction, class: Option<&str>, package: &ModelPackage) -> Option<f64> {
    match p {
        Prediction::Value(v) => Some(*v),
        Prediction::Class { probabilities, .. } => {
            let classes = package.class_names();
            let i = match class {
                Some(c) => classes.iter().position(|x| x == c)?,
                None => classes.len().checked_sub(1)?,
            };
            probabilities.get(i).copied()
        }
    }
}

fn changed(a: &Prediction, b: &Prediction) -> bool {
    match (a, b) {
        (Prediction::Value(x), Prediction::Value(y)) => (x - y).abs() > 1e-9 * x.abs().max(1.0),
        (Prediction::Class { label: x, .. }, Prediction::Class { label: y, .. }) => x != y,
        _ => true,
    }
}

/// Runs the suite on `model` (and `champion`, for `beats_champion`) over `t`.
pub fn run(
    suite: &ModelSuite,
    model: &ModelPackage,
    champion: Option<&ModelPackage>,
    t: &Frame,
) -> SuiteResult {
    let truth: Vec<Option<String>> = match t.column(&suite.target) {
        Some(c) => (0..c.len()).map(|i| c.text(i)).collect(),
        None => vec![None; t.rows()],
    };
    let base = predict(model, t);
    let results: Vec<Outcome> = suite
        .tests
        .iter()
        .map(|test| {
            let r = base
                .as_ref()
                .map_err(|e| e.clone())
                .and_then(|preds| check(test, model, champion, t, preds, &truth));
            let (success, observed) = r.unwrap_or_else(|e| (false, e));
            Outcome {
                expectation: describe(test),
                success,
                observed,
                unexpected: Vec::new(),
            }
        })
        .collect();
    let passed = results.iter().filter(|r| r.success).count();
    SuiteResult {
        suite: suite.name.clone(),
        success: passed == results.len(),
        passed,
        failed: results.len() - passed,
        results,
    }
}

fn describe(t: &ModelTest) -> String {
    let bounds = |min: &Option<f64>, max: &Option<f64>| {
        let f = |v: &Option<f64>, d: &str| v.map_or(d.to_owned(), format_number);
        format!("[{}, {}]", f(min, "-inf"), f(max, "inf"))
    };
    match t {
        ModelTest::Metric {
            metric,
            min,
            max,
            slice,
        } => format!(
            "{} within {}{}",
            format!("{metric:?}").to_lowercase(),
            bounds(min, max),
            slice.as_ref().map_or(String::new(), |s| format!(
                " where {}{}",
                s.column,
                match &s.equals {
                    Some(v) => format!(" = {}", yaml_text(v)),
                    None => format!(" in {}", bounds(&s.min, &s.max)),
                }
            ))
        ),
        ModelTest::Invariance {
            column, add, set, ..
        } => match (add, set) {
            (Some(a), _) => format!("invariant to {column} + {}", format_number(*a)),
            (_, Some(s)) => format!("invariant to {column} := {}", yaml_text(s)),
            _ => format!("invariant to {column}"),
        },
        ModelTest::Directional {
            column,
            add,
            expect,
            class,
            ..
        } => format!(
            "{} {} when {column} + {}",
            class
                .as_ref()
                .map_or("prediction".to_owned(), |c| format!("P({c})")),
            format!("{expect:?}").to_lowercase() + "s",
            format_number(*add)
        ),
        ModelTest::BeatsChampion { metric, margin } => format!(
            "beats the champion on {} by {}",
            format!("{metric:?}").to_lowercase(),
            format_number(margin.unwrap_or(0.0))
        ),
    }
}

fn check(
    test: &ModelTest,
    model: &ModelPackage,
    champion: Option<&ModelPackage>,
    t: &Frame,
    preds: &[Prediction],
    truth: &[Option<String>],
) -> Result<(bool, String), String> {
    match test {
        ModelTest::Metric {
            metric: m,
            min,
            max,
            slice,
        } => {
            let keep: Vec<bool> = match slice {
                None => vec![true; preds.len()],
                Some(s) => {
                    let c = t
                        .column(&s.column)
                        .ok_or_else(|| format!("the data has no column {}", s.column))?;
                    (0..c.len())
                        .map(|i| match (&s.equals, &c.data) {
                            (Some(v), _) => c.text(i) == Some(yaml_text(v)),
                            (None, ColumnData::Numeric(x)) => {
                                s.min.is_none_or(|m| x[i] >= m) && s.max.is_none_or(|m| x[i] <= m)
                            }
                            (None, _) => false,
                        })
                        .collect()
                }
            };
            let p: Vec<Prediction> = preds
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(p, _)| p.clone())
                .collect();
            let y: Vec<Option<String>> = truth
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(y, _)| y.clone())
                .collect();
            let v = metric(*m, &p, &y)?;
            let ok = min.is_none_or(|lo| v >= lo) && max.is_none_or(|hi| v <= hi);
            Ok((ok, format!("{v:.4} on {} rows", p.len())))
        }
        ModelTest::Invariance {
            column,
            add,
            set,
            max_changed,
        } => {
            let after = predict(model, &perturbed(t, column, *add, set.as_ref())?)?;
            let n = preds
                .iter()
                .zip(&after)
                .filter(|(a, b)| changed(a, b))
                .count();
            let share = n as f64 / preds.len().max(1) as f64;
            Ok((
                share <= max_changed.unwrap_or(0.0),
                format!(
                    "{n} of {} predictions changed ({:.2}%)",
                    preds.len(),
                    share * 100.0
                ),
            ))
        }
        ModelTest::Directional {
            column,
            add,
            expect,
            class,
            min_share,
        } => {
            if model.task == Task::Classification
                && class.is_none()
                && model.class_names().len() > 2
            {
                return Err("name the class whose probability must move".into());
            }
            let after = predict(model, &perturbed(t, column, Some(*add), None)?)?;
            let mut good = 0;
            for (a, b) in preds.iter().zip(&after) {
                let (x, y) = (
                    score_of(a, class.as_deref(), model).ok_or("unknown class")?,
                    score_of(b, class.as_deref(), model).ok_or("unknown class")?,
                );
                let ok = match expect {
                    Direction::Increase => y >= x,
                    Direction::Decrease => y <= x,
                };
                good += usize::from(ok);
            }
            let share = good as f64 / preds.len().max(1) as f64;
            Ok((
                share >= min_share.unwrap_or(1.0),
                format!(
                    "{good} of {} rows moved as expected ({:.2}%)",
                    preds.len(),
                    share * 100.0
                ),
            ))
        }
        ModelTest::BeatsChampion { metric: m, margin } => {
            let Some(champ) = champion else {
                return Ok((true, "no champion yet: nothing to beat".into()));
            };
            let ours = metric(*m, preds, truth)?;
            let theirs = metric(*m, &predict(champ, t)?, truth)?;
            let margin = margin.unwrap_or(0.0);
            let ok = if m.higher_is_better() {
                ours >= theirs + margin
            } else {
                ours <= theirs - margin
            };
            Ok((ok, format!("candidate {ours:.4}, champion {theirs:.4}")))
        }
    }
}
