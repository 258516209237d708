//! Reference profiles: a table's statistics computed once, stored as JSON, and merged across
//! chunks or time, so drift checks compare against the profile instead of re-reading the
//! reference. Per numeric column: count, missing, moments, min and max, the exact values while
//! there are at most 1,000 (small references keep exact tests), exact value counts while there
//! are at most 64 distinct values, and a quantile summary of at most 2,048 weighted points
//! (equal-weight buckets, merged by re-bucketing); per text column: exact category counts.
//!
//! [`Profile::to_frame`] turns a profile back into a stand-in reference table with the same row
//! count class (≤ 1000 or more), the same distinct values where they were few, and the quantile
//! function of the summary elsewhere, so drift runs Evidently's selection and tests unchanged —
//! exactly where the profile is exact, and within the summary's resolution where it is not.

use data::frame::{Column, ColumnData, Frame, MISSING};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const EXACT_VALUES: usize = 1000;
pub const MAX_DISTINCT: usize = 64;
pub const QUANTILES: usize = 2048;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Sketch {
    Numeric {
        count: u64,
        missing: u64,
        sum: f64,
        sum_sq: f64,
        min: f64,
        max: f64,
        /// Every value, sorted, while `count <= EXACT_VALUES`.
        values: Option<Vec<f64>>,
        /// Value counts while there are at most `MAX_DISTINCT` distinct values.
        counts: Option<Vec<(f64, u64)>>,
        /// (value, weight), ascending.
        summary: Vec<(f64, f64)>,
    },
    Categorical {
        count: u64,
        missing: u64,
        counts: BTreeMap<String, u64>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    pub name: String,
    pub sketch: Sketch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub format: String,
    pub rows: u64,
    pub columns: Vec<ColumnProfile>,
}

const FORMAT: &str = "capstan.profile/1";

/// Re-buckets sorted weighted points into at most `QUANTILES` equal-weight points.
fn compress(mut pts: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    if pts.len() <= QUANTILES {
        return pts;
    }
    let total: f64 = pts.iter().map(|p| p.1).sum();
    let per = total / QUANTILES as f64;
    let mut out = Vec::with_capacity(QUANTILES);
    let (mut wsum, mut vsum) = (0.0, 0.0);
    for (v, w) in pts {
        let mut w = w;
        while wsum + w > per && out.len() + 1 < QUANTILES {
            let take = per - wsum;
            vsum += v * take;
            out.push((vsum / per, per));
            w -= take;
            wsum = 0.0;
            vsum = 0.0;
        }
        wsum += w;
        vsum += v * w;
    }
    if wsum > 0.0 {
        out.push((vsum / wsum, wsum));
    }
    out
}

fn numeric_sketch(v: &[f64]) -> Sketch {
    let mut x: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    x.sort_by(f64::total_cmp);
    let missing = (v.len() - x.len()) as u64;
    let mut counts: Vec<(f64, u64)> = Vec::new();
    for &val in &x {
        match counts.last_mut() {
            Some(last) if last.0 == val => last.1 += 1,
            _ => counts.push((val, 1)),
        }
        if counts.len() > MAX_DISTINCT {
            break;
        }
    }
    Sketch::Numeric {
        count: x.len() as u64,
        missing,
        sum: x.iter().sum(),
        sum_sq: x.iter().map(|v| v * v).sum(),
        min: x.first().copied().unwrap_or(f64::NAN),
        max: x.last().copied().unwrap_or(f64::NAN),
        values: (x.len() <= EXACT_VALUES).then(|| x.clone()),
        counts: (counts.len() <= MAX_DISTINCT).then_some(counts),
        summary: compress(x.iter().map(|&v| (v, 1.0)).collect()),
    }
}

fn merge_counts(a: &[(f64, u64)], b: &[(f64, u64)]) -> Option<Vec<(f64, u64)>> {
    let mut m: BTreeMap<u64, (f64, u64)> = BTreeMap::new();
    for &(v, c) in a.iter().chain(b) {
        let e = m.entry((v + 0.0).to_bits()).or_insert((v, 0));
        e.1 += c;
    }
    let mut out: Vec<(f64, u64)> = m.into_values().collect();
    out.sort_by(|x, y| x.0.total_cmp(&y.0));
    (out.len() <= MAX_DISTINCT).then_some(out)
}

impl Sketch {
    fn merge(&self, other: &Sketch) -> Option<Sketch> {
        match (self, other) {
            (
                Sketch::Numeric {
                    count: c1,
                    missing: m1,
                    sum: s1,
                    sum_sq: q1,
                    min: lo1,
                    max: hi1,
                    values: v1,
                    counts: k1,
                    summary: p1,
                },
                Sketch::Numeric {
                    count: c2,
                    missing: m2,
                    sum: s2,
                    sum_sq: q2,
                    min: lo2,
                    max: hi2,
                    values: v2,
                    counts: k2,
                    summary: p2,
                },
            ) => {
                let count = c1 + c2;
                let values = match (v1, v2) {
                    (Some(a), Some(b)) if count as usize <= EXACT_VALUES => {
                        let mut v: Vec<f64> = a.iter().chain(b).copied().collect();
                        v.sort_by(f64::total_cmp);
                        Some(v)
                    }
                    _ => None,
                };
                Some(Sketch::Numeric {
                    count,
                    missing: m1 + m2,
                    sum: s1 + s2,
                    sum_sq: q1 + q2,
                    min: lo1.min(*lo2),
                    max: hi1.max(*hi2),
                    values,
                    counts: match (k1, k2) {
                        (Some(a), Some(b)) => merge_counts(a, b),
                        _ => None,
                    },
                    summary: compress(p1.iter().chain(p2).copied().collect()),
                })
            }
            (
                Sketch::Categorical {
                    count: c1,
                    missing: m1,
                    counts: k1,
                },
                Sketch::Categorical {
                    count: c2,
                    missing: m2,
                    counts: k2,
                },
            ) => {
                let mut counts = k1.clone();
                for (k, v) in k2 {
                    *counts.entry(k.clone()).or_default() += v;
                }
                Some(Sketch::Categorical {
                    count: c1 + c2,
                    missing: m1 + m2,
                    counts,
                })
            }
            _ => None,
        }
    }
}

impl Profile {
    pub fn of(t: &Frame) -> Profile {
        let columns = t
            .columns
            .iter()
            .map(|c| ColumnProfile {
                name: c.name.clone(),
                sketch: match &c.data {
                    ColumnData::Numeric(v) => numeric_sketch(v),
                    ColumnData::Categorical { codes, levels } => {
                        let mut counts = BTreeMap::new();
                        let mut missing = 0;
                        for &k in codes {
                            if k == MISSING {
                                missing += 1;
                            } else {
                                *counts.entry(levels[k as usize].clone()).or_default() += 1;
                            }
                        }
                        Sketch::Categorical {
                            count: codes.len() as u64 - missing,
                            missing,
                            counts,
                        }
                    }
                },
            })
            .collect();
        Profile {
            format: FORMAT.into(),
            rows: t.rows() as u64,
            columns,
        }
    }

    /// The profile of both tables' rows. Columns of one side only, or numbers on one side and
    /// text on the other, are an error.
    pub fn merge(&self, other: &Profile) -> Result<Profile, String> {
        if self.columns.len() != other.columns.len() {
            return Err("profiles of different columns cannot merge".into());
        }
        let columns = self
            .columns
            .iter()
            .map(|c| {
                let o = other
                    .columns
                    .iter()
                    .find(|o| o.name == c.name)
                    .ok_or_else(|| format!("column {} is in one profile only", c.name))?;
                Ok(ColumnProfile {
                    name: c.name.clone(),
                    sketch: c.sketch.merge(&o.sketch).ok_or_else(|| {
                        format!("column {}: numbers in one, text in the other", c.name)
                    })?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Profile {
            format: FORMAT.into(),
            rows: self.rows + other.rows,
            columns,
        })
    }

    pub fn from_json(bytes: &[u8]) -> Result<Profile, String> {
        let p: Profile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if p.format != FORMAT {
            return Err(format!("not a {FORMAT} file (format {:?})", p.format));
        }
        Ok(p)
    }

    /// A stand-in reference table (see the module docs); `points` bounds the rows of columns
    /// that are only known through their summary (at least 1,001 so the test selection holds).
    pub fn to_frame(&self, points: usize) -> Frame {
        let points = points.max(EXACT_VALUES + 1);
        let columns = self
            .columns
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                data: match &c.sketch {
                    Sketch::Categorical {
                        counts, missing, ..
                    } => {
                        let levels: Vec<String> = counts.keys().cloned().collect();
                        let mut codes = Vec::new();
                        for (i, n) in counts.values().enumerate() {
                            codes.extend(std::iter::repeat_n(i as u32, *n as usize));
                        }
                        codes.extend(std::iter::repeat_n(MISSING, *missing as usize));
                        ColumnData::Categorical { codes, levels }
                    }
                    Sketch::Numeric {
                        count,
                        values,
                        counts,
                        summary,
                        min,
                        max,
                        ..
                    } => ColumnData::Numeric(match (values, counts) {
                        (Some(v), _) => v.clone(),
                        (None, Some(k)) => {
                            // Shares kept; at most `points` rows.
                            let scale = (points as f64 / *count as f64).min(1.0);
                            k.iter()
                                .flat_map(|(v, n)| {
                                    std::iter::repeat_n(
                                        *v,
                                        ((*n as f64 * scale).round() as usize).max(1),
                                    )
                                })
                                .collect()
                        }
                        (None, None) => expand(summary, points.min(*count as usize), *min, *max),
                    }),
                },
            })
            .collect();
        Frame { columns }
    }
}

/// `n` values following the summary's quantile function, the first and last exactly min and max.
fn expand(summary: &[(f64, f64)], n: usize, min: f64, max: f64) -> Vec<f64> {
    if summary.is_empty() || n == 0 {
        return Vec::new();
    }
    let total: f64 = summary.iter().map(|p| p.1).sum();
    // Centre of each point's weight, in cumulative-weight units.
    let mut centres = Vec::with_capacity(summary.len());
    let mut acc = 0.0;
    for p in summary {
        centres.push(acc + p.1 / 2.0);
        acc += p.1;
    }
    let mut out = Vec::with_capacity(n);
    let mut j = 0;
    for i in 0..n {
        let u = (i as f64 + 0.5) / n as f64 * total;
        while j + 1 < centres.len() && centres[j + 1] < u {
            j += 1;
        }
        let v = if u <= centres[0] {
            summary[0].0
        } else if j + 1 >= centres.len() {
            summary[summary.len() - 1].0
        } else {
            let t = (u - centres[j]) / (centres[j + 1] - centres[j]);
            summary[j].0 + t * (summary[j + 1].0 - summary[j].0)
        };
        out.push(v);
    }
    out[0] = min;
    out[n - 1] = max;
    out
}

/// Rows a profile stands in for when used as a drift reference.
pub const STAND_IN_POINTS: usize = 100_000;

/// A drift reference from a table (CSV, Parquet) or a profile (`.json`).
pub fn read_reference(path: &std::path::Path) -> Result<Frame, String> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let p = Profile::from_json(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(p.to_frame(STAND_IN_POINTS));
    }
    data::frame::read_frame(path).map_err(|e| e.to_string())
}
