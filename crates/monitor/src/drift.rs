//! Column-by-column drift between a reference and a current [`Frame`], as Evidently computes it.
//!
//! The test per column follows Evidently's defaults so verdicts match: by the reference's row
//! count (after dropping missing and infinite values) and the number of distinct values over
//! reference ∪ current —
//!
//! | reference rows | column | distinct | test (drift when) |
//! |---|---|---|---|
//! | ≤ 1000 | numeric | > 5 | two-sample KS (p ≤ threshold, 0.05) |
//! | ≤ 1000 | numeric 3–5, categorical > 2 | | chi-square goodness of fit (p < 0.05) |
//! | ≤ 1000 | any | ≤ 2 | two-proportion z-test (p < 0.05) |
//! | > 1000 | numeric | > 5 | Wasserstein / max(std_ref, 0.001) (≥ 0.1) |
//! | > 1000 | numeric ≤ 5, categorical | | Jensen–Shannon distance, natural log (≥ 0.1) |
//!
//! Binned measures (Jensen–Shannon, PSI, KL, Hellinger) bin numeric columns with more than 20
//! distinct reference values on Sturges edges over reference ∪ current, and everything else by
//! value. PSI, KL and Hellinger are reported for every testable column beside the chosen test.

use data::frame::{ColumnData, Frame, MISSING};
use serde::{Deserialize, Serialize};
use stats::{chisq, distance, histogram, ks, special};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Ks,
    Chisquare,
    Z,
    Wasserstein,
    Jensenshannon,
    Psi,
    KlDiv,
    Hellinger,
}

impl Method {
    pub const ALL: [Method; 8] = [
        Method::Ks,
        Method::Chisquare,
        Method::Z,
        Method::Wasserstein,
        Method::Jensenshannon,
        Method::Psi,
        Method::KlDiv,
        Method::Hellinger,
    ];

    /// Evidently's name for the test.
    pub fn name(self) -> &'static str {
        match self {
            Method::Ks => "ks",
            Method::Chisquare => "chisquare",
            Method::Z => "z",
            Method::Wasserstein => "wasserstein",
            Method::Jensenshannon => "jensenshannon",
            Method::Psi => "psi",
            Method::KlDiv => "kl_div",
            Method::Hellinger => "hellinger",
        }
    }

    pub fn parse(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Whether the score is a p-value (small = drift) rather than a distance (large = drift).
    pub fn is_p_value(self) -> bool {
        matches!(self, Method::Ks | Method::Chisquare | Method::Z)
    }

    pub fn default_threshold(self) -> f64 {
        if self.is_p_value() { 0.05 } else { 0.1 }
    }

    /// Evidently's comparison for each test (KS uses ≤, the other p-values <).
    pub fn drifted(self, score: f64, threshold: f64) -> bool {
        match self {
            Method::Ks => score <= threshold,
            Method::Chisquare | Method::Z => score < threshold,
            _ => score >= threshold,
        }
    }

    fn applies_to(self, kind: Kind) -> bool {
        !(kind == Kind::Categorical && matches!(self, Method::Ks | Method::Wasserstein))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Numeric,
    Categorical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ColumnRole {
    #[default]
    Feature,
    Target,
    Prediction,
}

/// Per-column overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColumnOptions {
    pub method: Option<Method>,
    pub threshold: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftOptions {
    /// Dataset drift when the share of drifted columns reaches this (Evidently's `drift_share`).
    pub drift_share: f64,
    /// Columns to test; `None` = every reference column not excluded.
    pub columns: Option<Vec<String>>,
    pub exclude: Vec<String>,
    /// Test and threshold for every column unless a column says otherwise.
    pub method: Option<Method>,
    pub threshold: Option<f64>,
    pub per_column: HashMap<String, ColumnOptions>,
    /// Numeric columns to compare as categories.
    pub categorical: Vec<String>,
    pub target: Option<String>,
    pub prediction: Option<String>,
}

impl Default for DriftOptions {
    fn default() -> Self {
        DriftOptions {
            drift_share: 0.5,
            columns: None,
            exclude: Vec::new(),
            method: None,
            threshold: None,
            per_column: HashMap::new(),
            categorical: Vec::new(),
            target: None,
            prediction: None,
        }
    }
}

/// Reference and current shares per bin (numeric, with `edges`) or per value, for plotting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub labels: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edges: Option<Vec<f64>>,
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDrift {
    pub column: String,
    pub role: ColumnRole,
    pub kind: Option<Kind>,
    pub method: Option<Method>,
    /// The test's p-value or distance; `None` when the column is not testable.
    pub score: Option<f64>,
    pub threshold: Option<f64>,
    pub drifted: bool,
    /// Why no test ran (missing column, no values, one distinct value, mismatched types).
    pub not_testable: Option<String>,
    /// Present (non-missing, finite) values.
    pub reference_count: usize,
    pub current_count: usize,
    pub reference_missing: usize,
    pub current_missing: usize,
    pub distinct_values: usize,
    pub psi: Option<f64>,
    pub kl_div: Option<f64>,
    pub hellinger: Option<f64>,
    pub distribution: Option<Distribution>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub reference_rows: usize,
    pub current_rows: usize,
    /// Testable columns.
    pub number_of_columns: usize,
    pub number_of_drifted_columns: usize,
    pub share_of_drifted_columns: f64,
    pub dataset_drift: bool,
    pub drift_share: f64,
    pub columns: Vec<ColumnDrift>,
}

impl DriftReport {
    pub fn column(&self, name: &str) -> Option<&ColumnDrift> {
        self.columns.iter().find(|c| c.column == name)
    }
}

/// Drift of every selected column of `current` against `reference`. Columns are tested in
/// parallel; a column that cannot be tested is reported with the reason, never guessed.
pub fn drift(reference: &Frame, current: &Frame, options: &DriftOptions) -> DriftReport {
    let names: Vec<String> = match &options.columns {
        Some(cols) => cols.clone(),
        None => reference.columns.iter().map(|c| c.name.clone()).collect(),
    };
    let names: Vec<String> = names
        .into_iter()
        .filter(|n| !options.exclude.contains(n))
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(names.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, ColumnDrift)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(name) = names.get(i) else { break };
                        out.push((i, column_drift(reference, current, name, options)));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    let columns: Vec<ColumnDrift> = results.into_iter().map(|(_, c)| c).collect();
    let testable = columns.iter().filter(|c| c.score.is_some()).count();
    let drifted = columns.iter().filter(|c| c.drifted).count();
    let share = if testable > 0 {
        drifted as f64 / testable as f64
    } else {
        0.0
    };
    DriftReport {
        reference_rows: reference.rows(),
        current_rows: current.rows(),
        number_of_columns: testable,
        number_of_drifted_columns: drifted,
        share_of_drifted_columns: share,
        dataset_drift: testable > 0 && share >= options.drift_share,
        drift_share: options.drift_share,
        columns,
    }
}

/// One column's prepared samples.
enum Sample {
    /// Sorted finite values.
    Numeric {
        reference: Vec<f64>,
        current: Vec<f64>,
    },
    /// Counts per label (labels shared by both sides).
    Categorical {
        labels: Vec<String>,
        reference: Vec<u64>,
        current: Vec<u64>,
    },
}

fn not_testable(mut c: ColumnDrift, why: impl Into<String>) -> ColumnDrift {
    c.not_testable = Some(why.into());
    c
}

fn column_drift(
    reference: &Frame,
    current: &Frame,
    name: &str,
    options: &DriftOptions,
) -> ColumnDrift {
    let role = if options.target.as_deref() == Some(name) {
        ColumnRole::Target
    } else if options.prediction.as_deref() == Some(name) {
        ColumnRole::Prediction
    } else {
        ColumnRole::Feature
    };
    let mut out = ColumnDrift {
        column: name.to_owned(),
        role,
        kind: None,
        method: None,
        score: None,
        threshold: None,
        drifted: false,
        not_testable: None,
        reference_count: 0,
        current_count: 0,
        reference_missing: 0,
        current_missing: 0,
        distinct_values: 0,
        psi: None,
        kl_div: None,
        hellinger: None,
        distribution: None,
    };
    let (Some(rc), Some(cc)) = (reference.column(name), current.column(name)) else {
        let side = if reference.column(name).is_none() {
            "reference"
        } else {
            "current"
        };
        return not_testable(out, format!("column missing from the {side} data"));
    };
    let force_cat = options.categorical.iter().any(|c| c == name);
    let (rc, cc) = if force_cat {
        (rc.to_categorical(), cc.to_categorical())
    } else {
        (rc.clone(), cc.clone())
    };
    let sample = match (&rc.data, &cc.data) {
        (ColumnData::Numeric(r), ColumnData::Numeric(c)) => {
            let clean = |v: &[f64]| {
                let mut x: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
                x.sort_unstable_by(f64::total_cmp);
                x
            };
            let (r2, c2) = (clean(r), clean(c));
            out.reference_missing = r.len() - r2.len();
            out.current_missing = c.len() - c2.len();
            Sample::Numeric {
                reference: r2,
                current: c2,
            }
        }
        (
            ColumnData::Categorical {
                codes: rcodes,
                levels: rlevels,
            },
            ColumnData::Categorical {
                codes: ccodes,
                levels: clevels,
            },
        ) => {
            let mut labels: Vec<String> = rlevels.clone();
            let mut index: HashMap<&str, usize> = rlevels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.as_str(), i))
                .collect();
            let cmap: Vec<usize> = clevels
                .iter()
                .map(|l| {
                    *index.entry(l.as_str()).or_insert_with(|| {
                        labels.push(l.clone());
                        labels.len() - 1
                    })
                })
                .collect();
            let mut rcount = vec![0u64; labels.len()];
            let mut ccount = vec![0u64; labels.len()];
            for &c in rcodes {
                if c == MISSING {
                    out.reference_missing += 1;
                } else {
                    rcount[c as usize] += 1;
                }
            }
            for &c in ccodes {
                if c == MISSING {
                    out.current_missing += 1;
                } else {
                    ccount[cmap[c as usize]] += 1;
                }
            }
            // Keep only values present on some side.
            let keep: Vec<usize> = (0..labels.len())
                .filter(|&i| rcount[i] + ccount[i] > 0)
                .collect();
            Sample::Categorical {
                labels: keep.iter().map(|&i| labels[i].clone()).collect(),
                reference: keep.iter().map(|&i| rcount[i]).collect(),
                current: keep.iter().map(|&i| ccount[i]).collect(),
            }
        }
        (ColumnData::Numeric(_), _) => {
            return not_testable(out, "numbers in the reference but text in the current data");
        }
        (_, _) => {
            return not_testable(out, "text in the reference but numbers in the current data");
        }
    };
    let (kind, rn, cn) = match &sample {
        Sample::Numeric { reference, current } => (Kind::Numeric, reference.len(), current.len()),
        Sample::Categorical {
            reference, current, ..
        } => (
            Kind::Categorical,
            reference.iter().sum::<u64>() as usize,
            current.iter().sum::<u64>() as usize,
        ),
    };
    out.kind = Some(kind);
    out.reference_count = rn;
    out.current_count = cn;
    if rn == 0 {
        return not_testable(out, "no values in the reference data (all missing)");
    }
    if cn == 0 {
        return not_testable(
            out,
            "no values in the current data (all missing or empty window)",
        );
    }
    // Value counts over the union (always for categories; for numbers only when few values).
    let counts = match &sample {
        Sample::Numeric { reference, current } => value_counts(reference, current, 64),
        Sample::Categorical {
            labels,
            reference,
            current,
        } => Some(ValueCounts {
            keys: labels.clone(),
            numeric_keys: None,
            reference: reference.clone(),
            current: current.clone(),
        }),
    };
    out.distinct_values = match (&counts, &sample) {
        (Some(vc), _) => vc.keys.len(),
        (None, Sample::Numeric { reference, current }) => distinct_union(reference, current),
        (None, Sample::Categorical { .. }) => 0,
    };
    if out.distinct_values <= 1 {
        return not_testable(
            out,
            "a single distinct value in reference and current: nothing to compare",
        );
    }
    let col_opts = options.per_column.get(name).cloned().unwrap_or_default();
    let method = col_opts
        .method
        .or(options.method)
        .unwrap_or_else(|| default_method(kind, rn, out.distinct_values));
    if !method.applies_to(kind) {
        return not_testable(
            out,
            format!("{} applies to numeric columns only", method.name()),
        );
    }
    let threshold = col_opts
        .threshold
        .or(options.threshold)
        .unwrap_or_else(|| method.default_threshold());
    // Shares for the binned measures, without and with Evidently's zero filling.
    let ref_distinct = match (&counts, &sample) {
        (Some(vc), _) => vc.reference.iter().filter(|&&c| c > 0).count(),
        (None, Sample::Numeric { reference, .. }) => distinct_sorted(reference),
        _ => 0,
    };
    let binned = binned_shares(&sample, counts.as_ref(), kind, ref_distinct);
    let mut filled = binned.clone();
    fill_zeros(&mut filled.0);
    fill_zeros(&mut filled.1);
    let score = match method {
        Method::Ks => match &sample {
            Sample::Numeric { reference, current } => {
                ks::ks_2samp_sorted(reference, current).map(|r| r.p_value)
            }
            _ => None,
        },
        Method::Wasserstein => match &sample {
            Sample::Numeric { reference, current } => {
                let norm = distance::std_population(reference).max(0.001);
                Some(distance::wasserstein_sorted(reference, current) / norm)
            }
            _ => None,
        },
        Method::Chisquare => counts.as_ref().map(|vc| {
            let k = cn as f64 / rn as f64;
            let exp: Vec<f64> = vc.reference.iter().map(|&c| c as f64 * k).collect();
            let obs: Vec<f64> = vc.current.iter().map(|&c| c as f64).collect();
            chisq::chisquare(&obs, &exp).p_value
        }),
        Method::Z => counts.as_ref().map(|vc| z_test(vc, rn, cn)),
        Method::Jensenshannon => Some(distance::jensen_shannon(&binned.0, &binned.1)),
        Method::Psi => Some(distance::psi(&filled.0, &filled.1)),
        Method::KlDiv => Some(distance::kl_divergence(&filled.0, &filled.1)),
        Method::Hellinger => Some(hellinger(&sample, counts.as_ref())),
    };
    let Some(score) = score.filter(|s| !s.is_nan()) else {
        return not_testable(out, format!("{} is undefined on this data", method.name()));
    };
    out.method = Some(method);
    out.threshold = Some(threshold);
    out.score = Some(score);
    out.drifted = method.drifted(score, threshold);
    out.psi = Some(distance::psi(&filled.0, &filled.1));
    out.kl_div = Some(distance::kl_divergence(&filled.0, &filled.1));
    out.hellinger = Some(hellinger(&sample, counts.as_ref()));
    out.distribution = Some(distribution(&sample, counts.as_ref(), binned.2));
    out
}

fn default_method(kind: Kind, reference_rows: usize, distinct: usize) -> Method {
    match (reference_rows <= 1000, kind) {
        (true, Kind::Numeric) if distinct > 5 => Method::Ks,
        (true, _) if distinct > 2 => Method::Chisquare,
        (true, _) => Method::Z,
        (false, Kind::Numeric) if distinct > 5 => Method::Wasserstein,
        (false, _) => Method::Jensenshannon,
    }
}

struct ValueCounts {
    keys: Vec<String>,
    /// The numeric value of each key (numeric columns only), ascending.
    numeric_keys: Option<Vec<f64>>,
    reference: Vec<u64>,
    current: Vec<u64>,
}

/// Counts per distinct value over two sorted samples, or `None` with more than `limit` values.
fn value_counts(reference: &[f64], current: &[f64], limit: usize) -> Option<ValueCounts> {
    let mut keys = BTreeMap::<u64, (f64, u64, u64)>::new();
    let key = |x: f64| {
        let x = if x == 0.0 { 0.0 } else { x }; // -0.0 and 0.0 are one value
        x.to_bits()
    };
    let mut add = |v: &[f64], side: usize| -> bool {
        let mut i = 0;
        while i < v.len() {
            let x = v[i];
            let mut j = i;
            while j < v.len() && v[j] == x {
                j += 1;
            }
            let e = keys.entry(key(x)).or_insert((x, 0, 0));
            if side == 0 {
                e.1 += (j - i) as u64;
            } else {
                e.2 += (j - i) as u64;
            }
            if keys.len() > limit {
                return false;
            }
            i = j;
        }
        true
    };
    if !add(reference, 0) || !add(current, 1) {
        return None;
    }
    let mut entries: Vec<(f64, u64, u64)> = keys.into_values().collect();
    entries.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some(ValueCounts {
        keys: entries
            .iter()
            .map(|e| data::frame::format_number(e.0))
            .collect(),
        numeric_keys: Some(entries.iter().map(|e| e.0).collect()),
        reference: entries.iter().map(|e| e.1).collect(),
        current: entries.iter().map(|e| e.2).collect(),
    })
}

fn distinct_sorted(v: &[f64]) -> usize {
    if v.is_empty() {
        return 0;
    }
    1 + v.windows(2).filter(|w| w[0] != w[1]).count()
}

fn distinct_union(a: &[f64], b: &[f64]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() || j < b.len() {
        let x = if j >= b.len() || (i < a.len() && a[i] <= b[j]) {
            a[i]
        } else {
            b[j]
        };
        n += 1;
        while i < a.len() && a[i] == x {
            i += 1;
        }
        while j < b.len() && b[j] == x {
            j += 1;
        }
    }
    n
}

/// Evidently's two-proportion z-test on the share of the smallest value.
fn z_test(vc: &ValueCounts, rn: usize, cn: usize) -> f64 {
    let ref_distinct = vc.reference.iter().filter(|&&c| c > 0).count();
    let cur_distinct = vc.current.iter().filter(|&&c| c > 0).count();
    if ref_distinct == 1
        && cur_distinct == 1
        && vc
            .reference
            .iter()
            .zip(&vc.current)
            .any(|(a, b)| *a > 0 && *b > 0)
    {
        return 1.0;
    }
    // The first key in sorted order (numbers numerically, text lexicographically).
    let first = match &vc.numeric_keys {
        Some(_) => 0,
        None => (0..vc.keys.len())
            .min_by(|&a, &b| vc.keys[a].cmp(&vc.keys[b]))
            .unwrap_or(0),
    };
    let (n1, n2) = (rn as f64, cn as f64);
    let p1 = (n1 - vc.reference[first] as f64) / n1;
    let p2 = (n2 - vc.current[first] as f64) / n2;
    let pooled = (p1 * n1 + p2 * n2) / (n1 + n2);
    let z = (p1 - p2) / (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    2.0 * (1.0 - special::normal_cdf(z.abs()))
}

/// Reference and current shares as Evidently's `get_binned_data` builds them (before zero
/// filling), and the Sturges edges when the column was binned.
fn binned_shares(
    sample: &Sample,
    counts: Option<&ValueCounts>,
    kind: Kind,
    ref_distinct: usize,
) -> (Vec<f64>, Vec<f64>, Option<Vec<f64>>) {
    match sample {
        Sample::Numeric { reference, current } if kind == Kind::Numeric && ref_distinct > 20 => {
            let lo = reference[0].min(current[0]);
            let hi = reference[reference.len() - 1].max(current[current.len() - 1]);
            let edges = histogram::sturges_edges(lo, hi, reference.len() + current.len());
            let binner = histogram::Binner::new(edges.clone());
            (
                binner.shares(reference),
                binner.shares(current),
                Some(edges),
            )
        }
        _ => {
            let shares_of = |c: &[u64]| {
                let n: u64 = c.iter().sum();
                c.iter().map(|&x| x as f64 / n as f64).collect::<Vec<_>>()
            };
            match counts {
                Some(vc) => (shares_of(&vc.reference), shares_of(&vc.current), None),
                None => {
                    // Numeric with many distinct values but few in the reference: count by value.
                    let vc = value_counts_unbounded(sample);
                    (shares_of(&vc.0), shares_of(&vc.1), None)
                }
            }
        }
    }
}

fn value_counts_unbounded(sample: &Sample) -> (Vec<u64>, Vec<u64>) {
    match sample {
        Sample::Numeric { reference, current } => value_counts(reference, current, usize::MAX)
            .map(|vc| (vc.reference, vc.current))
            .unwrap_or_default(),
        Sample::Categorical {
            reference, current, ..
        } => (reference.clone(), current.clone()),
    }
}

/// Evidently's `feel_zeroes`: a zero share becomes min(non-zero)/10⁶ when that minimum is at
/// most 10⁻⁴, else 10⁻⁴.
fn fill_zeros(shares: &mut [f64]) {
    let min = shares
        .iter()
        .copied()
        .filter(|&s| s != 0.0)
        .fold(f64::INFINITY, f64::min);
    if !min.is_finite() {
        return;
    }
    let fill = if min <= 1e-4 { min / 1e6 } else { 1e-4 };
    for s in shares.iter_mut().filter(|s| **s == 0.0) {
        *s = fill;
    }
}

/// Evidently's Hellinger distance: by value for categories; for numbers on Sturges edges over
/// the distinct values.
fn hellinger(sample: &Sample, counts: Option<&ValueCounts>) -> f64 {
    match sample {
        Sample::Numeric { reference, current } => {
            let distinct = match counts {
                Some(vc) => vc.keys.len(),
                None => distinct_union(reference, current),
            };
            let lo = reference[0].min(current[0]);
            let hi = reference[reference.len() - 1].max(current[current.len() - 1]);
            let binner = histogram::Binner::new(histogram::sturges_edges(lo, hi, distinct));
            distance::hellinger(&binner.shares(reference), &binner.shares(current))
        }
        Sample::Categorical {
            reference, current, ..
        } => {
            let (rn, cn) = (
                reference.iter().sum::<u64>() as f64,
                current.iter().sum::<u64>() as f64,
            );
            let p: Vec<f64> = reference.iter().map(|&c| c as f64 / rn).collect();
            let q: Vec<f64> = current.iter().map(|&c| c as f64 / cn).collect();
            distance::hellinger(&p, &q)
        }
    }
}

/// What the report plots: the binned shares, or the 20 most common values (+ "other").
fn distribution(
    sample: &Sample,
    counts: Option<&ValueCounts>,
    edges: Option<Vec<f64>>,
) -> Distribution {
    if let (Some(edges), Sample::Numeric { reference, current }) = (&edges, sample) {
        let binner = histogram::Binner::new(edges.clone());
        return Distribution {
            labels: edges[..edges.len() - 1]
                .iter()
                .map(|e| format!("{e:.4}"))
                .collect(),
            edges: Some(edges.clone()),
            reference: binner.shares(reference),
            current: binner.shares(current),
        };
    }
    let (keys, rc, cc) = match counts {
        Some(vc) => (vc.keys.clone(), vc.reference.clone(), vc.current.clone()),
        None => {
            let (r, c) = value_counts_unbounded(sample);
            ((0..r.len()).map(|i| i.to_string()).collect(), r, c)
        }
    };
    let (rn, cn) = (rc.iter().sum::<u64>() as f64, cc.iter().sum::<u64>() as f64);
    let mut order: Vec<usize> = (0..keys.len()).collect();
    if keys.len() > 20 {
        order.sort_by(|&a, &b| {
            let sa = rc[a] as f64 / rn + cc[a] as f64 / cn;
            let sb = rc[b] as f64 / rn + cc[b] as f64 / cn;
            sb.total_cmp(&sa)
        });
    }
    let top = &order[..order.len().min(20)];
    let mut d = Distribution {
        labels: top.iter().map(|&i| keys[i].clone()).collect(),
        edges: None,
        reference: top.iter().map(|&i| rc[i] as f64 / rn).collect(),
        current: top.iter().map(|&i| cc[i] as f64 / cn).collect(),
    };
    if order.len() > 20 {
        d.labels.push("(other)".into());
        d.reference.push(1.0 - d.reference.iter().sum::<f64>());
        d.current.push(1.0 - d.current.iter().sum::<f64>());
    }
    d
}
