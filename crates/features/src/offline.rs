//! Point-in-time correct training sets (`get_historical_features`): for each entity row and each
//! requested feature, the value from the latest source row of the same entity whose event time is
//! at or before the row's timestamp — never a value from the future — and no older than the
//! view's TTL; among rows with the same event time the latest created timestamp wins.

use crate::defs::{Definitions, FeatureView, Source};
use crate::time;
use data::frame::{Column, ColumnData, Frame, MISSING, format_number};
use std::collections::HashMap;
use std::path::Path;

/// Timestamps of a column in microseconds, and whether they carried an offset.
pub fn timestamps(c: &Column) -> Result<(Vec<Option<i64>>, Option<bool>), String> {
    match &c.data {
        // Numbers are epoch seconds (UTC).
        ColumnData::Numeric(v) => Ok((
            v.iter()
                .map(|x| (!x.is_nan()).then(|| (x * 1e6).round() as i64))
                .collect(),
            Some(true),
        )),
        ColumnData::Categorical { codes, levels } => {
            let parsed: Vec<time::Stamp> = levels
                .iter()
                .map(|l| time::parse(l))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("column {}: {e}", c.name))?;
            let zoned: Vec<bool> = parsed.iter().map(|p| p.zoned).collect();
            let kind = match (zoned.iter().any(|z| *z), zoned.iter().any(|z| !z)) {
                (true, true) => {
                    return Err(format!(
                        "column {} mixes timestamps with and without a UTC offset",
                        c.name
                    ));
                }
                (true, false) => Some(true),
                (false, true) => Some(false),
                (false, false) => None,
            };
            Ok((
                codes
                    .iter()
                    .map(|&k| (k != MISSING).then(|| parsed[k as usize].micros))
                    .collect(),
                kind,
            ))
        }
    }
}

/// Cell `i` of a key column as text.
fn key_text(c: &Column, i: usize) -> Option<String> {
    match &c.data {
        ColumnData::Numeric(v) => (!v[i].is_nan()).then(|| format_number(v[i])),
        ColumnData::Categorical { codes, levels } => {
            (codes[i] != MISSING).then(|| levels[codes[i] as usize].clone())
        }
    }
}

fn row_key(cols: &[&Column], i: usize) -> Option<String> {
    let mut k = String::new();
    for (n, c) in cols.iter().enumerate() {
        if n > 0 {
            k.push('\u{1f}');
        }
        k.push_str(&key_text(c, i)?);
    }
    Some(k)
}

/// A source indexed by entity key: (event time, created time, row) ascending.
pub struct Indexed {
    pub frame: Frame,
    index: HashMap<String, Vec<(i64, i64, usize)>>,
    zoned: Option<bool>,
}

impl Indexed {
    pub fn build(source: &Source, frame: Frame, keys: &[String]) -> Result<Indexed, String> {
        let ts_col = frame.column(&source.timestamp).ok_or_else(|| {
            format!(
                "source {} has no timestamp column {}",
                source.name, source.timestamp
            )
        })?;
        let (ts, zoned) = timestamps(ts_col).map_err(|e| format!("source {}: {e}", source.name))?;
        let created = match &source.created_timestamp {
            Some(c) => {
                let col = frame.column(c).ok_or_else(|| {
                    format!("source {} has no created-timestamp column {c}", source.name)
                })?;
                timestamps(col)
                    .map_err(|e| format!("source {}: {e}", source.name))?
                    .0
            }
            None => vec![Some(0); frame.rows()],
        };
        let key_cols: Vec<&Column> = keys
            .iter()
            .map(|k| {
                frame
                    .column(k)
                    .ok_or_else(|| format!("source {} has no join key column {k}", source.name))
            })
            .collect::<Result<_, _>>()?;
        let mut index: HashMap<String, Vec<(i64, i64, usize)>> = HashMap::new();
        for i in 0..frame.rows() {
            let (Some(t), Some(key)) = (ts[i], row_key(&key_cols, i)) else {
                continue;
            };
            index
                .entry(key)
                .or_default()
                .push((t, created[i].unwrap_or(i64::MIN), i));
        }
        for v in index.values_mut() {
            v.sort_unstable();
        }
        Ok(Indexed {
            frame,
            index,
            zoned,
        })
    }

    /// The row holding the value for `key` as of `at`, within `ttl_us` (0 = no limit).
    pub fn as_of(&self, key: &str, at: i64, ttl_us: i64) -> Option<usize> {
        let rows = self.index.get(key)?;
        let n = rows.partition_point(|(t, _, _)| *t <= at);
        let (t, _, row) = *rows.get(n.checked_sub(1)?)?;
        (ttl_us == 0 || at - t <= ttl_us).then_some(row)
    }

    /// The latest row of every key with an event time at or before `at` (within TTL).
    pub fn latest_all(&self, at: i64, ttl_us: i64) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = self
            .index
            .keys()
            .filter_map(|k| self.as_of(k, at, ttl_us).map(|r| (k.clone(), r)))
            .collect();
        out.sort();
        out
    }
}

/// Reads and indexes the source of `view`.
pub fn load_view(defs: &Definitions, view: &FeatureView, base: &Path) -> Result<Indexed, String> {
    let source = defs
        .source(&view.source)
        .ok_or_else(|| format!("unknown source {}", view.source))?;
    let frame = data::frame::read_frame(&base.join(&source.path))
        .map_err(|e| format!("source {}: {e}", source.name))?;
    Indexed::build(source, frame, &defs.join_keys(view))
}

/// Options of a historical retrieval.
pub struct Request<'a> {
    pub features: &'a [String],
    /// The entity frame's timestamp column.
    pub timestamp: &'a str,
    /// Name output columns `view__feature` instead of `feature`.
    pub full_feature_names: bool,
}

/// The entity frame with one column per requested feature, joined point-in-time.
pub fn historical_features(
    defs: &Definitions,
    base: &Path,
    entities: &Frame,
    req: &Request<'_>,
) -> Result<Frame, String> {
    let refs: Vec<_> = req
        .features
        .iter()
        .map(|r| defs.resolve(r))
        .collect::<Result<_, _>>()?;
    let ts_col = entities
        .column(req.timestamp)
        .ok_or_else(|| format!("the entity frame has no timestamp column {}", req.timestamp))?;
    let (at, entity_zoned) = timestamps(ts_col).map_err(|e| format!("entity frame: {e}"))?;
    let mut out = entities.clone();
    let mut loaded: HashMap<&str, Indexed> = HashMap::new();
    for r in &refs {
        if !loaded.contains_key(r.view.name.as_str()) {
            let idx = load_view(defs, r.view, base)?;
            if let (Some(a), Some(b)) = (entity_zoned, idx.zoned)
                && a != b
            {
                return Err(format!(
                    "the entity frame's timestamps are {} but source {} has {} ones; give both a UTC offset",
                    if a { "zoned" } else { "naive" },
                    r.view.source,
                    if b { "zoned" } else { "naive" }
                ));
            }
            loaded.insert(r.view.name.as_str(), idx);
        }
    }
    for r in &refs {
        let idx = &loaded[r.view.name.as_str()];
        let keys = defs.join_keys(r.view);
        let key_cols: Vec<&Column> = keys
            .iter()
            .map(|k| {
                entities.column(k).ok_or_else(|| {
                    format!(
                        "the entity frame has no join key column {k} (for {})",
                        r.view.name
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let ttl = r.view.ttl_seconds.saturating_mul(1_000_000);
        let rows: Vec<Option<usize>> = (0..entities.rows())
            .map(|i| {
                let t = at[i]?;
                let key = row_key(&key_cols, i)?;
                idx.as_of(&key, t, ttl)
            })
            .collect();
        let src = idx
            .frame
            .column(&r.feature.name)
            .ok_or_else(|| format!("source {} has no column {}", r.view.source, r.feature.name))?;
        let name = if req.full_feature_names {
            format!("{}__{}", r.view.name, r.feature.name)
        } else {
            r.feature.name.clone()
        };
        if out.column(&name).is_some() {
            return Err(format!(
                "two columns would be named {name}; ask for full feature names (view__feature)"
            ));
        }
        out.columns.push(Column {
            name,
            data: gather(&src.data, &rows),
        });
    }
    Ok(out)
}

/// The cells of `data` at `rows` (missing where `None`).
pub fn gather(data: &ColumnData, rows: &[Option<usize>]) -> ColumnData {
    match data {
        ColumnData::Numeric(v) => {
            ColumnData::Numeric(rows.iter().map(|r| r.map_or(f64::NAN, |i| v[i])).collect())
        }
        ColumnData::Categorical { codes, levels } => ColumnData::Categorical {
            codes: rows
                .iter()
                .map(|r| r.map_or(MISSING, |i| codes[i]))
                .collect(),
            levels: levels.clone(),
        },
    }
}
