//! Data expectations (Great Expectations' job): a suite of checks on a table — schema and types,
//! nulls, ranges, allowed sets, uniqueness, regular expressions, row counts, mean and quantile
//! bounds, and distribution tests against a reference — each reporting what it observed and a
//! few offending values, so a failure says what is wrong, not only that something is.
//!
//! Suites are YAML files stored with the project:
//!
//! ```yaml
//! name: bikes
//! expectations:
//!   - expect: columns_exist
//!     columns: [temp, season]
//!   - expect: between
//!     column: temp
//!     min: -10
//!     max: 45
//!     mostly: 0.99        # optional: the share of values that must pass
//!   - expect: in_set
//!     column: season
//!     values: [winter, spring, summer, fall]
//!   - expect: no_drift     # distribution test against a reference table
//!     column: temp
//!     reference: data/reference.csv
//! ```

use crate::MonitorError;
use crate::drift::{DriftOptions, Method};
use data::frame::{Column, ColumnData, Frame, MISSING, format_number};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    pub name: String,
    pub expectations: Vec<Expectation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Number,
    String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "expect", rename_all = "snake_case")]
pub enum Expectation {
    ColumnsExist {
        columns: Vec<String>,
    },
    Type {
        column: String,
        #[serde(rename = "type")]
        ty: ColumnType,
    },
    NotNull {
        column: String,
        mostly: Option<f64>,
    },
    Between {
        column: String,
        min: Option<f64>,
        max: Option<f64>,
        mostly: Option<f64>,
    },
    InSet {
        column: String,
        values: Vec<serde_yaml_ng::Value>,
        mostly: Option<f64>,
    },
    Unique {
        column: String,
    },
    Regex {
        column: String,
        pattern: String,
        mostly: Option<f64>,
    },
    RowCount {
        min: Option<u64>,
        max: Option<u64>,
    },
    MeanBetween {
        column: String,
        min: Option<f64>,
        max: Option<f64>,
    },
    QuantileBetween {
        column: String,
        quantile: f64,
        min: Option<f64>,
        max: Option<f64>,
    },
    NoDrift {
        /// One column, or every column of the reference when absent.
        column: Option<String>,
        /// A CSV or Parquet table, relative to the suite file.
        reference: PathBuf,
        method: Option<String>,
        threshold: Option<f64>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub expectation: String,
    pub success: bool,
    /// What was measured, in words.
    pub observed: String,
    /// Up to five offending values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unexpected: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuiteResult {
    pub suite: String,
    pub success: bool,
    pub passed: usize,
    pub failed: usize,
    pub results: Vec<Outcome>,
}

impl Suite {
    pub fn load(path: &Path) -> Result<Suite, MonitorError> {
        let suite: Suite = crate::read_yaml(path)?;
        suite.validate()?;
        Ok(suite)
    }

    /// Refuses suites that could never pass or that name unknown tests.
    pub fn validate(&self) -> Result<(), MonitorError> {
        let bad = |m: String| Err(MonitorError::Invalid(format!("suite {}: {m}", self.name)));
        for e in &self.expectations {
            let mostly = match e {
                Expectation::NotNull { mostly, .. }
                | Expectation::Between { mostly, .. }
                | Expectation::InSet { mostly, .. }
                | Expectation::Regex { mostly, .. } => *mostly,
                _ => None,
            };
            if let Some(m) = mostly
                && !(0.0..=1.0).contains(&m)
            {
                return bad(format!("mostly must be between 0 and 1, got {m}"));
            }
            match e {
                Expectation::Between { min, max, .. }
                | Expectation::MeanBetween { min, max, .. }
                | Expectation::QuantileBetween { min, max, .. }
                    if min.zip(*max).is_some_and(|(a, b)| a > b) =>
                {
                    return bad(format!("{}: min is above max", describe(e)));
                }
                Expectation::QuantileBetween { quantile, .. }
                    if !(0.0..=1.0).contains(quantile) =>
                {
                    return bad(format!("quantile must be between 0 and 1, got {quantile}"));
                }
                Expectation::Regex { pattern, .. } => {
                    if let Err(err) = regex_automata::meta::Regex::new(pattern) {
                        return bad(format!("invalid regex {pattern:?}: {err}"));
                    }
                }
                Expectation::NoDrift {
                    method: Some(m), ..
                } if Method::parse(m).is_none() => {
                    return bad(format!("unknown drift test {m:?}"));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn range_text(min: Option<f64>, max: Option<f64>) -> String {
    let f = |v: Option<f64>, inf: &str| v.map_or(inf.to_owned(), format_number);
    format!("[{}, {}]", f(min, "-inf"), f(max, "inf"))
}

/// A one-line description of an expectation.
pub fn describe(e: &Expectation) -> String {
    match e {
        Expectation::ColumnsExist { columns } => format!("columns exist: {}", columns.join(", ")),
        Expectation::Type { column, ty } => format!("{column} is of type {ty:?}").to_lowercase(),
        Expectation::NotNull { column, .. } => format!("{column} is not null"),
        Expectation::Between {
            column, min, max, ..
        } => format!("{column} within {}", range_text(*min, *max)),
        Expectation::InSet { column, values, .. } => {
            format!("{column} in a set of {} values", values.len())
        }
        Expectation::Unique { column } => format!("{column} is unique"),
        Expectation::Regex {
            column, pattern, ..
        } => format!("{column} matches /{pattern}/"),
        Expectation::RowCount { min, max } => format!(
            "row count within {}",
            range_text(min.map(|v| v as f64), max.map(|v| v as f64))
        ),
        Expectation::MeanBetween { column, min, max } => {
            format!("mean of {column} within {}", range_text(*min, *max))
        }
        Expectation::QuantileBetween {
            column,
            quantile,
            min,
            max,
        } => format!(
            "quantile {quantile} of {column} within {}",
            range_text(*min, *max)
        ),
        Expectation::NoDrift {
            column, reference, ..
        } => format!(
            "{} does not drift from {}",
            column.as_deref().unwrap_or("no column"),
            reference.display()
        ),
    }
}

fn is_null(c: &Column, i: usize) -> bool {
    match &c.data {
        ColumnData::Numeric(v) => v[i].is_nan(),
        ColumnData::Categorical { codes, .. } => codes[i] == MISSING,
    }
}

fn yaml_text(v: &serde_yaml_ng::Value) -> String {
    match v {
        serde_yaml_ng::Value::String(s) => s.clone(),
        serde_yaml_ng::Value::Number(n) => n.as_f64().map_or(n.to_string(), format_number),
        serde_yaml_ng::Value::Bool(b) => b.to_string(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// Checks each present value with `ok`; passes when the share that passes is at least `mostly`.
fn per_value(
    c: &Column,
    mostly: Option<f64>,
    what: &str,
    ok: impl Fn(usize) -> bool,
) -> (bool, String, Vec<String>) {
    let (mut checked, mut failed, mut examples) = (0usize, 0usize, Vec::new());
    for i in 0..c.len() {
        if is_null(c, i) {
            continue;
        }
        checked += 1;
        if !ok(i) {
            failed += 1;
            if examples.len() < 5 {
                examples.push(c.text(i).unwrap_or_default());
            }
        }
    }
    let share = if checked == 0 {
        1.0
    } else {
        (checked - failed) as f64 / checked as f64
    };
    let need = mostly.unwrap_or(1.0);
    (
        share >= need,
        format!(
            "{failed} of {checked} values {what} ({:.2}% pass, {:.2}% required)",
            share * 100.0,
            need * 100.0
        ),
        examples,
    )
}

fn sorted_numbers(c: &Column) -> Option<Vec<f64>> {
    match &c.data {
        ColumnData::Numeric(v) => {
            let mut x: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
            x.sort_by(f64::total_cmp);
            Some(x)
        }
        ColumnData::Categorical { .. } => None,
    }
}

/// numpy's default (linear) quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn within(v: f64, min: Option<f64>, max: Option<f64>) -> bool {
    min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)
}

/// Runs `suite` on `table`; references of `no_drift` resolve against `base_dir`.
pub fn run(suite: &Suite, table: &Frame, base_dir: &Path) -> SuiteResult {
    let results: Vec<Outcome> = suite
        .expectations
        .iter()
        .map(|e| {
            let (success, observed, unexpected) = check(e, table, base_dir);
            Outcome {
                expectation: describe(e),
                success,
                observed,
                unexpected,
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

fn check(e: &Expectation, t: &Frame, base_dir: &Path) -> (bool, String, Vec<String>) {
    let column = |name: &str| t.column(name).ok_or_else(|| format!("no column {name}"));
    let fail = |m: String| (false, m, Vec::new());
    match e {
        Expectation::ColumnsExist { columns } => {
            let missing: Vec<String> = columns
                .iter()
                .filter(|c| t.column(c).is_none())
                .cloned()
                .collect();
            (
                missing.is_empty(),
                if missing.is_empty() {
                    format!("all {} present", columns.len())
                } else {
                    format!("missing: {}", missing.join(", "))
                },
                missing,
            )
        }
        Expectation::RowCount { min, max } => {
            let n = t.rows() as u64;
            (
                min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m),
                format!("{n} rows"),
                Vec::new(),
            )
        }
        Expectation::NoDrift {
            column: col,
            reference,
            method,
            threshold,
        } => {
            let path = base_dir.join(reference);
            let r = match data::frame::read_frame(&path) {
                Ok(r) => r,
                Err(err) => return fail(format!("cannot read the reference: {err}")),
            };
            let opts = DriftOptions {
                columns: col.as_ref().map(|c| vec![c.clone()]),
                method: method.as_deref().and_then(Method::parse),
                threshold: *threshold,
                ..DriftOptions::default()
            };
            let report = crate::drift::drift(&r, t, &opts);
            let drifted: Vec<String> = report
                .columns
                .iter()
                .filter(|c| c.drifted)
                .map(|c| {
                    format!(
                        "{} ({} {})",
                        c.column,
                        c.method.map_or("-", |m| m.name()),
                        c.score.map_or("-".into(), |s| format!("{s:.4}"))
                    )
                })
                .collect();
            let untestable: Vec<String> = report
                .columns
                .iter()
                .filter_map(|c| {
                    c.not_testable
                        .as_ref()
                        .map(|w| format!("{}: {w}", c.column))
                })
                .collect();
            let ok = drifted.is_empty() && untestable.is_empty();
            let mut observed = format!(
                "{} of {} columns drifted",
                drifted.len(),
                report.columns.len()
            );
            if !untestable.is_empty() {
                observed += &format!("; not testable: {}", untestable.join("; "));
            }
            (ok, observed, drifted)
        }
        Expectation::Type { column: c, ty } => match column(c) {
            Err(m) => fail(m),
            Ok(col) => {
                let actual = match col.data {
                    ColumnData::Numeric(_) => ColumnType::Number,
                    ColumnData::Categorical { .. } => ColumnType::String,
                };
                let examples = match (&col.data, ty) {
                    (ColumnData::Categorical { levels, .. }, ColumnType::Number) => levels
                        .iter()
                        .filter(|l| l.parse::<f64>().is_err())
                        .take(5)
                        .cloned()
                        .collect(),
                    _ => Vec::new(),
                };
                (
                    actual == *ty,
                    format!("{actual:?}").to_lowercase(),
                    examples,
                )
            }
        },
        Expectation::NotNull { column: c, mostly } => match column(c) {
            Err(m) => fail(m),
            Ok(col) => {
                let nulls = (0..col.len()).filter(|&i| is_null(col, i)).count();
                let share = 1.0 - nulls as f64 / col.len().max(1) as f64;
                let need = mostly.unwrap_or(1.0);
                (
                    share >= need,
                    format!("{nulls} of {} values null", col.len()),
                    Vec::new(),
                )
            }
        },
        Expectation::Between {
            column: c,
            min,
            max,
            mostly,
        } => match column(c) {
            Err(m) => fail(m),
            Ok(col) => match &col.data {
                ColumnData::Numeric(v) => per_value(
                    col,
                    *mostly,
                    &format!("outside {}", range_text(*min, *max)),
                    |i| within(v[i], *min, *max),
                ),
                _ => fail(format!("{c} is not numeric")),
            },
        },
        Expectation::InSet {
            column: c,
            values,
            mostly,
        } => match column(c) {
            Err(m) => fail(m),
            Ok(col) => {
                let allowed: HashSet<String> = values.iter().map(yaml_text).collect();
                per_value(col, *mostly, "not in the set", |i| {
                    col.text(i).is_some_and(|v| allowed.contains(&v))
                })
            }
        },
        Expectation::Unique { column: c } => match column(c) {
            Err(m) => fail(m),
            Ok(col) => {
                let mut seen = HashSet::new();
                let mut dups = Vec::new();
                let mut n_dup = 0;
                for i in 0..col.len() {
                    if let Some(v) = col.text(i)
                        && !seen.insert(v.clone())
                    {
                        n_dup += 1;
                        if dups.len() < 5 {
                            dups.push(v);
                        }
                    }
                }
                (n_dup == 0, format!("{n_dup} duplicate values"), dups)
            }
        },
        Expectation::Regex {
            column: c,
            pattern,
            mostly,
        } => match (column(c), regex_automata::meta::Regex::new(pattern)) {
            (Err(m), _) => fail(m),
            (_, Err(err)) => fail(format!("invalid regex: {err}")),
            (Ok(col), Ok(re)) => per_value(col, *mostly, "not matching", |i| {
                col.text(i).is_some_and(|v| re.is_match(v.as_str()))
            }),
        },
        Expectation::MeanBetween {
            column: c,
            min,
            max,
        } => match column(c).map(sorted_numbers) {
            Err(m) => fail(m),
            Ok(None) => fail(format!("{c} is not numeric")),
            Ok(Some(v)) if v.is_empty() => fail(format!("{c} has no values")),
            Ok(Some(v)) => {
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                (
                    within(mean, *min, *max),
                    format!("mean {mean:.6}"),
                    Vec::new(),
                )
            }
        },
        Expectation::QuantileBetween {
            column: c,
            quantile: q,
            min,
            max,
        } => match column(c).map(sorted_numbers) {
            Err(m) => fail(m),
            Ok(None) => fail(format!("{c} is not numeric")),
            Ok(Some(v)) if v.is_empty() => fail(format!("{c} has no values")),
            Ok(Some(v)) => {
                let x = quantile(&v, *q);
                (
                    within(x, *min, *max),
                    format!("quantile {q} = {x:.6}"),
                    Vec::new(),
                )
            }
        },
    }
}
