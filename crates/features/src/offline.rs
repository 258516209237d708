//! Point-in-time correct training sets (`get_historical_features`): for each entity row and each
//! requested feature, the value from the latest source row of the same entity whose event time is
//! at or before the row's timestamp — never a value from the future — and no older than the
//! view's TTL; among rows with the same event time the latest created timestamp wins.

use crate::defs::{Definitions, FeatureView, Source};
use crate::time;
use data::frame::{Column, ColumnData, Frame, MISSING};
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

pub(crate) fn row_key(cols: &[&Column], i: usize) -> Option<String> {
    let mut k = String::new();
    for (n, c) in cols.iter().enumerate() {
        if n > 0 {
            k.push('\u{1f}');
        }
        k.push_str(&c.text(i)?);
    }
    Some(k)
}

/// An entity key: one part (the common single join key, no allocation) or several. Numbers are
/// keyed by their value, text by an id interned from the source's strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    One(u64),
    Many(Vec<u64>),
}

/// Per key column, how a row's cell becomes a key part.
enum Part<'a> {
    Num(&'a [f64]),
    /// Categorical codes → interned string ids (`None`: a string the source never had).
    Cat(&'a [u32], Vec<Option<u64>>),
}

fn num_bits(x: f64) -> u64 {
    if x == 0.0 { 0 } else { x.to_bits() }
}

fn part_of(p: &Part<'_>, i: usize) -> Option<u64> {
    match p {
        Part::Num(v) => (!v[i].is_nan()).then(|| num_bits(v[i])),
        Part::Cat(codes, ids) => {
            let c = codes[i];
            if c == MISSING { None } else { ids[c as usize] }
        }
    }
}

fn key_of(parts: &[Part<'_>], i: usize) -> Option<Key> {
    if let [p] = parts {
        return part_of(p, i).map(Key::One);
    }
    parts
        .iter()
        .map(|p| part_of(p, i))
        .collect::<Option<Vec<u64>>>()
        .map(Key::Many)
}

/// A fast non-cryptographic hasher for entity keys (FxHash's multiply-rotate, with a final mix).
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
    fn write_isize(&mut self, x: isize) {
        self.write_u64(x as u64);
    }
    fn finish(&self) -> u64 {
        // Fold the high bits down: keys like the bits of small floats differ only there.
        let mut z = self.0;
        z ^= z >> 33;
        z = z.wrapping_mul(0xff51_afd7_ed55_8ccd);
        z ^ (z >> 33)
    }
}

type FxMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

/// A source indexed by entity key: each key's rows, contiguous in `order`, sorted by (event
/// time, created time, row).
pub struct Indexed {
    pub frame: Frame,
    /// Key → (start, len) in `order`.
    index: FxMap<Key, (u32, u32)>,
    order: Vec<u32>,
    ts: Vec<i64>,
    zoned: Option<bool>,
    /// Interned strings of the source's text key columns.
    strings: HashMap<String, u64>,
    key_names: Vec<String>,
    /// Whether each join key is numeric in the source.
    key_numeric: Vec<bool>,
}

impl Indexed {
    pub fn build(source: &Source, frame: Frame, keys: &[String]) -> Result<Indexed, String> {
        let ts_col = frame.column(&source.timestamp).ok_or_else(|| {
            format!(
                "source {} has no timestamp column {}",
                source.name, source.timestamp
            )
        })?;
        let (ts_opt, zoned) =
            timestamps(ts_col).map_err(|e| format!("source {}: {e}", source.name))?;
        let created = match &source.created_timestamp {
            Some(c) => {
                let col = frame.column(c).ok_or_else(|| {
                    format!("source {} has no created-timestamp column {c}", source.name)
                })?;
                Some(
                    timestamps(col)
                        .map_err(|e| format!("source {}: {e}", source.name))?
                        .0,
                )
            }
            None => None,
        };
        let mut strings: HashMap<String, u64> = HashMap::new();
        let mut parts = Vec::new();
        for k in keys {
            let c = frame
                .column(k)
                .ok_or_else(|| format!("source {} has no join key column {k}", source.name))?;
            parts.push(match &c.data {
                ColumnData::Numeric(v) => Part::Num(v),
                ColumnData::Categorical { codes, levels } => {
                    let ids = levels
                        .iter()
                        .map(|l| {
                            let n = strings.len() as u64;
                            Some(*strings.entry(l.clone()).or_insert(n))
                        })
                        .collect();
                    Part::Cat(codes, ids)
                }
            });
        }
        let n = frame.rows();
        // Dense key ids, then a counting sort of rows by id: each key's rows end up contiguous.
        let mut ids: FxMap<Key, u32> = FxMap::default();
        let mut row_id = vec![u32::MAX; n];
        for (i, slot) in row_id.iter_mut().enumerate() {
            if ts_opt[i].is_none() {
                continue;
            }
            if let Some(key) = key_of(&parts, i) {
                let next = ids.len() as u32;
                *slot = *ids.entry(key).or_insert(next);
            }
        }
        let mut start = vec![0u32; ids.len() + 1];
        for &id in &row_id {
            if id != u32::MAX {
                start[id as usize + 1] += 1;
            }
        }
        for k in 1..start.len() {
            start[k] += start[k - 1];
        }
        let ts: Vec<i64> = ts_opt.iter().map(|t| t.unwrap_or(i64::MIN)).collect();
        drop(ts_opt);
        // Scatter (event time, created time, row) so each key's sort runs on contiguous memory.
        let mut fill = start.clone();
        let mut sorted = vec![(0i64, 0i64, 0u32); start[ids.len()] as usize];
        for (i, &id) in row_id.iter().enumerate() {
            if id != u32::MAX {
                let c = created.as_ref().map_or(0, |c| c[i].unwrap_or(i64::MIN));
                sorted[fill[id as usize] as usize] = (ts[i], c, i as u32);
                fill[id as usize] += 1;
            }
        }
        drop(created);
        for w in start.windows(2) {
            sorted[w[0] as usize..w[1] as usize].sort_unstable();
        }
        let order: Vec<u32> = sorted.iter().map(|t| t.2).collect();
        drop(sorted);
        let index = ids
            .into_iter()
            .map(|(k, id)| {
                let (a, b) = (start[id as usize], start[id as usize + 1]);
                (k, (a, b - a))
            })
            .collect();
        let key_numeric = parts.iter().map(|p| matches!(p, Part::Num(_))).collect();
        drop(parts);
        Ok(Indexed {
            frame,
            index,
            order,
            ts,
            zoned,
            strings,
            key_names: keys.to_vec(),
            key_numeric,
        })
    }

    /// The row holding the value for `key` as of `at`, within `ttl_us` (0 = no limit).
    pub fn as_of(&self, key: &Key, at: i64, ttl_us: i64) -> Option<usize> {
        let &(a, len) = self.index.get(key)?;
        let rows = &self.order[a as usize..(a + len) as usize];
        let n = rows.partition_point(|&r| self.ts[r as usize] <= at);
        let row = *rows.get(n.checked_sub(1)?)? as usize;
        (ttl_us == 0 || at - self.ts[row] <= ttl_us).then_some(row)
    }

    /// The keys of `cols` (another frame's join-key columns, in this index's key order).
    fn keys_of(&self, cols: &[&Column], n: usize) -> Vec<Option<Key>> {
        let parts: Vec<Part<'_>> = cols
            .iter()
            .map(|c| match &c.data {
                ColumnData::Numeric(v) => Part::Num(v),
                ColumnData::Categorical { codes, levels } => Part::Cat(
                    codes,
                    levels
                        .iter()
                        .map(|l| self.strings.get(l).copied())
                        .collect(),
                ),
            })
            .collect();
        (0..n).map(|i| key_of(&parts, i)).collect()
    }

    /// The latest row of every key with an event time at or before `at` (within TTL), with the
    /// key as text (join-key values joined by U+001F, as the online store keys entities).
    pub fn latest_all(&self, at: i64, ttl_us: i64) -> Vec<(String, usize)> {
        let cols: Vec<&Column> = self
            .key_names
            .iter()
            .filter_map(|k| self.frame.column(k))
            .collect();
        let mut out: Vec<(String, usize)> = self
            .index
            .keys()
            .filter_map(|k| self.as_of(k, at, ttl_us))
            .filter_map(|r| row_key(&cols, r).map(|k| (k, r)))
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
    let (on_demand, stored): (Vec<&String>, Vec<&String>) =
        req.features.iter().partition(|f| defs.is_on_demand(f));
    let odfvs: Vec<crate::defs::OnDemandRef> = on_demand
        .iter()
        .map(|f| defs.on_demand(f))
        .collect::<Result<_, _>>()?;
    // Stored features, plus the ones on-demand features read; joined under full names.
    let mut needed: Vec<String> = stored.iter().map(|s| s.to_string()).collect();
    for o in &odfvs {
        for src in &o.sources {
            if !needed.contains(src) {
                needed.push(src.clone());
            }
        }
    }
    let joined = join_stored(
        defs,
        base,
        entities,
        &Request {
            features: &needed,
            timestamp: req.timestamp,
            full_feature_names: true,
        },
    )?;
    let full = |r: &str| r.replacen(':', "__", 1);
    let mut out = entities.clone();
    let mut push = |name: String, data: ColumnData| -> Result<(), String> {
        if out.column(&name).is_some() {
            return Err(format!(
                "two columns would be named {name}; ask for full feature names (view__feature)"
            ));
        }
        out.columns.push(Column { name, data });
        Ok(())
    };
    for r in &stored {
        let col = joined
            .column(&full(r))
            .ok_or_else(|| format!("feature {r} was not joined"))?;
        let short = r.split_once(':').map_or(r.as_str(), |x| x.1).to_owned();
        push(
            if req.full_feature_names {
                full(r)
            } else {
                short
            },
            col.data.clone(),
        )?;
    }
    for o in &odfvs {
        let mut inputs: HashMap<String, &[f64]> = HashMap::new();
        for f in &o.request {
            match entities.column(f).map(|c| &c.data) {
                Some(ColumnData::Numeric(v)) => {
                    inputs.insert(f.clone(), v);
                }
                Some(_) => return Err(format!("request field {f} must hold numbers")),
                None => {
                    return Err(format!(
                        "on-demand feature {}:{} needs request field {f} in the entity frame",
                        o.view, o.feature
                    ));
                }
            }
        }
        for src in &o.sources {
            match joined.column(&full(src)).map(|c| &c.data) {
                Some(ColumnData::Numeric(v)) => {
                    let name = src.split_once(':').map_or(src.as_str(), |x| x.1);
                    inputs.insert(name.to_owned(), v);
                }
                _ => return Err(format!("source feature {src} must hold numbers")),
            }
        }
        let values: Vec<f64> = (0..entities.rows())
            .map(|i| o.expr.eval(&|n| inputs.get(n).map_or(f64::NAN, |v| v[i])))
            .map(|x| if x.is_finite() { x } else { f64::NAN })
            .collect();
        let name = if req.full_feature_names {
            format!("{}__{}", o.view, o.feature)
        } else {
            o.feature.clone()
        };
        push(name, ColumnData::Numeric(values))?;
    }
    Ok(out)
}

/// The point-in-time join of stored features only (see [`historical_features`]).
fn join_stored(
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
        for ((c, numeric), k) in key_cols.iter().zip(&idx.key_numeric).zip(&keys) {
            let entity_numeric = matches!(c.data, ColumnData::Numeric(_));
            if entity_numeric != *numeric {
                let kind = |n: bool| if n { "numbers" } else { "text" };
                return Err(format!(
                    "join key {k} holds {} in source {} but {} in the entity frame",
                    kind(*numeric),
                    r.view.source,
                    kind(entity_numeric)
                ));
            }
        }
        let ekeys = idx.keys_of(&key_cols, entities.rows());
        let rows: Vec<Option<usize>> = ekeys
            .iter()
            .zip(&at)
            .map(|(k, t)| idx.as_of(k.as_ref()?, (*t)?, ttl))
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

/// "Every entity as of T" without an entity frame: the join keys (as text) of every entity any
/// requested view knows, and each feature's latest value at or before `at_micros` (within TTL).
/// The requested views must share their join keys.
pub fn all_entities_as_of(
    defs: &Definitions,
    base: &Path,
    features: &[String],
    at_micros: i64,
    full_feature_names: bool,
) -> Result<Frame, String> {
    let refs: Vec<_> = features
        .iter()
        .map(|r| defs.resolve(r))
        .collect::<Result<_, _>>()?;
    let keys = defs.join_keys(refs.first().ok_or("name at least one feature")?.view);
    if let Some(r) = refs.iter().find(|r| defs.join_keys(r.view) != keys) {
        return Err(format!(
            "feature view {} is keyed by {} but {} by {}; ask for views with the same join keys",
            r.view.name,
            defs.join_keys(r.view).join(", "),
            refs[0].view.name,
            keys.join(", ")
        ));
    }
    let mut latest: HashMap<&str, HashMap<String, usize>> = HashMap::new();
    let mut indexed: HashMap<&str, Indexed> = HashMap::new();
    let mut all_keys: std::collections::BTreeSet<String> = Default::default();
    for r in &refs {
        if indexed.contains_key(r.view.name.as_str()) {
            continue;
        }
        let idx = load_view(defs, r.view, base)?;
        let rows: HashMap<String, usize> = idx
            .latest_all(at_micros, r.view.ttl_seconds.saturating_mul(1_000_000))
            .into_iter()
            .collect();
        all_keys.extend(rows.keys().cloned());
        latest.insert(r.view.name.as_str(), rows);
        indexed.insert(r.view.name.as_str(), idx);
    }
    let all_keys: Vec<String> = all_keys.into_iter().collect();
    let mut columns: Vec<Column> = Vec::new();
    for (n, k) in keys.iter().enumerate() {
        let values: Vec<String> = all_keys
            .iter()
            .map(|key| key.split('\u{1f}').nth(n).unwrap_or("").to_owned())
            .collect();
        let mut levels: Vec<String> = values.clone();
        levels.sort();
        levels.dedup();
        let codes = values
            .iter()
            .map(|v| levels.binary_search(v).map_or(MISSING, |i| i as u32))
            .collect();
        columns.push(Column {
            name: k.clone(),
            data: ColumnData::Categorical { codes, levels },
        });
    }
    for r in &refs {
        let idx = &indexed[r.view.name.as_str()];
        let rows_of = &latest[r.view.name.as_str()];
        let rows: Vec<Option<usize>> = all_keys.iter().map(|k| rows_of.get(k).copied()).collect();
        let src = idx
            .frame
            .column(&r.feature.name)
            .ok_or_else(|| format!("source {} has no column {}", r.view.source, r.feature.name))?;
        columns.push(Column {
            name: if full_feature_names {
                format!("{}__{}", r.view.name, r.feature.name)
            } else {
                r.feature.name.clone()
            },
            data: gather(&src.data, &rows),
        });
    }
    Ok(Frame { columns })
}
