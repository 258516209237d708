//! The online store: the latest value of every feature per entity, for serving. Materialisation
//! computes a complete snapshot of a view as of an end time (the latest row per entity within
//! TTL, from the offline source) and replaces the view's online values in one atomic switch, so
//! readers see the previous snapshot or the new one — never half of each, even if the process
//! dies mid-way. Lookups answer in Feast's shape: values with a status (`PRESENT`, `NULL_VALUE`,
//! `NOT_FOUND`, `OUTSIDE_MAX_AGE`) and event timestamps.

use crate::defs::{Definitions, FeatureView};
use crate::offline::load_view;
use data::frame::{ColumnData, MISSING};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One online row: the entity's event time and its feature values (in the view's order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnlineRow {
    pub ts: i64,
    pub values: Vec<serde_json::Value>,
}

/// Where online values live; implemented for SQLite / PostgreSQL (`store`) and Redis.
#[async_trait::async_trait]
pub trait OnlineStore: Send + Sync {
    /// Replaces every online row of `view` with `rows` (entity key, row), atomically.
    async fn replace_view(&self, view: &str, rows: &[(String, OnlineRow)]) -> Result<(), String>;
    /// The rows of `keys` (same order; `None` when the entity has no row).
    async fn read(&self, view: &str, keys: &[String]) -> Result<Vec<Option<OnlineRow>>, String>;
    /// A token that changes whenever `view` is replaced (0 before the first materialisation).
    async fn version(&self, view: &str) -> Result<i64, String>;
    /// Every row of `view` (for incremental materialisation).
    async fn read_all(&self, view: &str) -> Result<Vec<(String, OnlineRow)>, String>;
}

/// A read-through cache in front of an online store: rows are kept in memory per view and
/// dropped when the view's version changes (checked at most once per `recheck`), so a server
/// answers lookups from memory yet sees a new materialisation — by any process — within
/// `recheck`.
pub struct CachedOnline {
    inner: std::sync::Arc<dyn OnlineStore>,
    recheck: std::time::Duration,
    views: std::sync::RwLock<HashMap<String, ViewCache>>,
}

struct ViewCache {
    version: i64,
    checked: std::time::Instant,
    rows: HashMap<String, Option<OnlineRow>>,
}

use std::collections::HashMap;

impl CachedOnline {
    pub fn new(
        inner: std::sync::Arc<dyn OnlineStore>,
        recheck: std::time::Duration,
    ) -> CachedOnline {
        CachedOnline {
            inner,
            recheck,
            views: Default::default(),
        }
    }

    fn cached(&self, view: &str, keys: &[String]) -> Option<Vec<Option<OnlineRow>>> {
        let views = self.views.read().unwrap_or_else(|e| e.into_inner());
        let v = views.get(view)?;
        if v.checked.elapsed() > self.recheck {
            return None;
        }
        keys.iter().map(|k| v.rows.get(k).cloned()).collect()
    }
}

#[async_trait::async_trait]
impl OnlineStore for CachedOnline {
    async fn replace_view(&self, view: &str, rows: &[(String, OnlineRow)]) -> Result<(), String> {
        self.inner.replace_view(view, rows).await?;
        self.views
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(view);
        Ok(())
    }

    async fn read(&self, view: &str, keys: &[String]) -> Result<Vec<Option<OnlineRow>>, String> {
        if let Some(hit) = self.cached(view, keys) {
            return Ok(hit);
        }
        let version = self.inner.version(view).await?;
        let missing: Vec<String> = {
            let mut views = self.views.write().unwrap_or_else(|e| e.into_inner());
            let v = views.entry(view.to_owned()).or_insert_with(|| ViewCache {
                version,
                checked: std::time::Instant::now(),
                rows: HashMap::new(),
            });
            if v.version != version {
                v.rows.clear();
                v.version = version;
            }
            v.checked = std::time::Instant::now();
            keys.iter()
                .filter(|k| !v.rows.contains_key(*k))
                .cloned()
                .collect()
        };
        if !missing.is_empty() {
            let fetched = self.inner.read(view, &missing).await?;
            let mut views = self.views.write().unwrap_or_else(|e| e.into_inner());
            if let Some(v) = views.get_mut(view).filter(|v| v.version == version) {
                for (k, r) in missing.into_iter().zip(fetched) {
                    v.rows.insert(k, r);
                }
            }
        }
        let hit: Option<Vec<Option<OnlineRow>>> = {
            let views = self.views.read().unwrap_or_else(|e| e.into_inner());
            views.get(view).filter(|v| v.version == version).map(|v| {
                keys.iter()
                    .map(|k| v.rows.get(k).cloned().flatten())
                    .collect()
            })
        };
        match hit {
            Some(rows) => Ok(rows),
            // Replaced while we read: ask the store directly.
            None => self.inner.read(view, keys).await,
        }
    }

    async fn version(&self, view: &str) -> Result<i64, String> {
        self.inner.version(view).await
    }

    async fn read_all(&self, view: &str) -> Result<Vec<(String, OnlineRow)>, String> {
        self.inner.read_all(view).await
    }
}

/// The snapshot of `view` as of `end_micros`: each entity's latest row within TTL.
pub fn snapshot(
    defs: &Definitions,
    view: &FeatureView,
    base: &Path,
    end_micros: i64,
) -> Result<Vec<(String, OnlineRow)>, String> {
    let idx = load_view(defs, view, base)?;
    let source = defs
        .source(&view.source)
        .ok_or_else(|| format!("unknown source {}", view.source))?;
    let ts_col = idx
        .frame
        .column(&source.timestamp)
        .ok_or_else(|| format!("source {} has no timestamp column", source.name))?;
    let (ts, _) = crate::offline::timestamps(ts_col)?;
    let cols: Vec<&data::frame::Column> = view
        .features
        .iter()
        .map(|f| {
            idx.frame
                .column(&f.name)
                .ok_or_else(|| format!("source {} has no column {}", source.name, f.name))
        })
        .collect::<Result<_, _>>()?;
    let ttl = view.ttl_seconds.saturating_mul(1_000_000);
    Ok(idx
        .latest_all(end_micros, ttl)
        .into_iter()
        .map(|(key, row)| {
            let values = cols.iter().map(|c| cell_json(c, row)).collect();
            (
                key,
                OnlineRow {
                    ts: ts[row].unwrap_or(0),
                    values,
                },
            )
        })
        .collect())
}

fn cell_json(c: &data::frame::Column, row: usize) -> serde_json::Value {
    match &c.data {
        ColumnData::Numeric(v) if v[row].is_nan() => serde_json::Value::Null,
        ColumnData::Numeric(v) => serde_json::json!(v[row]),
        ColumnData::Categorical { codes, levels } => {
            if codes[row] == MISSING {
                serde_json::Value::Null
            } else {
                serde_json::json!(levels[codes[row] as usize])
            }
        }
    }
}

/// [`snapshot`] reading the source `chunk_rows` rows (or one Parquet row group) at a time:
/// memory grows with the number of entities, not with the length of the source's history.
pub fn snapshot_chunked(
    defs: &Definitions,
    view: &FeatureView,
    base: &Path,
    end_micros: i64,
    chunk_rows: usize,
) -> Result<Vec<(String, OnlineRow)>, String> {
    snapshot_incremental(
        defs,
        view,
        base,
        Vec::new(),
        i64::MIN,
        end_micros,
        chunk_rows,
    )
}

/// The snapshot as of `end_micros` from the snapshot as of `start_micros` (`previous`) and the
/// source rows with an event time in (start, end] — what `materialize-incremental` writes. Rows
/// that arrive late with an event time at or before `start` are not picked up (materialise in
/// full for that).
pub fn snapshot_incremental(
    defs: &Definitions,
    view: &FeatureView,
    base: &Path,
    previous: Vec<(String, OnlineRow)>,
    start_micros: i64,
    end_micros: i64,
    chunk_rows: usize,
) -> Result<Vec<(String, OnlineRow)>, String> {
    let source = defs
        .source(&view.source)
        .ok_or_else(|| format!("unknown source {}", view.source))?;
    let keys = defs.join_keys(view);
    // entity → (event time, created time, position in the source, values); the previous
    // snapshot's rows lose every tie to a scanned row.
    let mut best: HashMap<String, (i64, i64, u64, Vec<serde_json::Value>)> = previous
        .into_iter()
        .map(|(k, r)| (k, (r.ts, i64::MIN, 0, r.values)))
        .collect();
    let mut seen = 1u64;
    data::frame::for_each_chunk(&base.join(&source.path), chunk_rows, |chunk| {
        let col = |name: &str, what: &str| {
            chunk
                .column(name)
                .ok_or_else(|| format!("source {} has no {what} column {name}", source.name))
        };
        let (ts, _) = crate::offline::timestamps(col(&source.timestamp, "timestamp")?)?;
        let created = match &source.created_timestamp {
            Some(c) => Some(crate::offline::timestamps(col(c, "created-timestamp")?)?.0),
            None => None,
        };
        let key_cols: Vec<&data::frame::Column> = keys
            .iter()
            .map(|k| col(k, "join key"))
            .collect::<Result<_, _>>()?;
        let feature_cols: Vec<&data::frame::Column> = view
            .features
            .iter()
            .map(|f| col(&f.name, "feature"))
            .collect::<Result<_, _>>()?;
        for i in 0..chunk.rows() {
            let pos = seen + i as u64;
            let (Some(t), Some(k)) = (ts[i], crate::offline::row_key(&key_cols, i)) else {
                continue;
            };
            if t > end_micros || t <= start_micros {
                continue;
            }
            let c = created.as_ref().map_or(0, |c| c[i].unwrap_or(i64::MIN));
            if best.get(&k).is_some_and(|b| (b.0, b.1, b.2) >= (t, c, pos)) {
                continue;
            }
            let values = feature_cols.iter().map(|fc| cell_json(fc, i)).collect();
            best.insert(k, (t, c, pos, values));
        }
        seen += chunk.rows() as u64;
        Ok(())
    })?;
    let ttl = view.ttl_seconds.saturating_mul(1_000_000);
    let mut out: Vec<(String, OnlineRow)> = best
        .into_iter()
        .filter(|(_, b)| ttl == 0 || end_micros - b.0 <= ttl)
        .map(|(k, (ts, _, _, values))| (k, OnlineRow { ts, values }))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The online key of an entity from its join-key values (as `offline` keys them).
pub fn entity_key(values: &[String]) -> String {
    values.join("\u{1f}")
}

/// Feast's `/get-online-features` answer for `features` of the entities in `entities`
/// (join key → values, all the same length), as of `now_micros`.
pub async fn get_online_features(
    defs: &Definitions,
    store: &dyn OnlineStore,
    features: &[String],
    entities: &serde_json::Map<String, serde_json::Value>,
    now_micros: i64,
    full_feature_names: bool,
) -> Result<serde_json::Value, String> {
    use serde_json::{Value, json};
    let n = entities
        .values()
        .map(|v| v.as_array().map_or(0, Vec::len))
        .max()
        .unwrap_or(0);
    let mut entity_values: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (k, v) in entities {
        let arr = v
            .as_array()
            .ok_or_else(|| format!("entity {k} must be a list of values"))?;
        if arr.len() != n {
            return Err(format!(
                "entity {k} has {} values, others have {n}",
                arr.len()
            ));
        }
        let texts = arr
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                Value::Number(num) => Ok(num
                    .as_f64()
                    .map_or(num.to_string(), data::frame::format_number)),
                other => Err(format!("entity {k}: {other} is not a string or number")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        entity_values.insert(k.as_str(), texts);
    }
    // On-demand features are computed from request fields (given among `entities`, as Feast
    // does) and the stored features they read, which are fetched with the rest.
    let odfvs: Vec<crate::defs::OnDemandRef> = features
        .iter()
        .filter(|f| defs.is_on_demand(f))
        .map(|f| defs.on_demand(f))
        .collect::<Result<_, _>>()?;
    let mut stored: Vec<String> = features
        .iter()
        .filter(|f| !defs.is_on_demand(f))
        .cloned()
        .collect();
    for o in &odfvs {
        for src in &o.sources {
            if !stored.contains(src) {
                stored.push(src.clone());
            }
        }
    }
    let refs: Vec<_> = stored
        .iter()
        .map(|f| defs.resolve(f))
        .collect::<Result<_, _>>()?;
    let mut computed: std::collections::HashMap<String, Value> = Default::default();
    let mut names: Vec<String> = entities.keys().cloned().collect();
    let mut results: Vec<Value> = entities
        .keys()
        .map(|k| {
            json!({"values": entities[k], "statuses": vec!["PRESENT"; n], "event_timestamps": vec!["1970-01-01T00:00:00Z"; n]})
        })
        .collect();
    // One read per view.
    let mut cache: std::collections::HashMap<&str, Vec<Option<OnlineRow>>> = Default::default();
    for r in &refs {
        let view = r.view;
        if !cache.contains_key(view.name.as_str()) {
            let keys = defs.join_keys(view);
            let cols: Vec<&Vec<String>> = keys
                .iter()
                .map(|k| {
                    entity_values
                        .get(k.as_str())
                        .ok_or_else(|| format!("feature view {} needs entity key {k}", view.name))
                })
                .collect::<Result<_, _>>()?;
            let ekeys: Vec<String> = (0..n)
                .map(|i| entity_key(&cols.iter().map(|c| c[i].clone()).collect::<Vec<_>>()))
                .collect();
            cache.insert(view.name.as_str(), store.read(&view.name, &ekeys).await?);
        }
        let rows = &cache[view.name.as_str()];
        let fi = view
            .features
            .iter()
            .position(|f| f.name == r.feature.name)
            .unwrap_or(0);
        let ttl = view.ttl_seconds.saturating_mul(1_000_000);
        let (mut values, mut statuses, mut stamps) = (Vec::new(), Vec::new(), Vec::new());
        for row in rows {
            match row {
                None => {
                    values.push(Value::Null);
                    statuses.push("NOT_FOUND");
                    stamps.push("1970-01-01T00:00:00Z".to_owned());
                }
                Some(r) => {
                    let v = r.values.get(fi).cloned().unwrap_or(Value::Null);
                    let status = if ttl > 0 && now_micros - r.ts > ttl {
                        "OUTSIDE_MAX_AGE"
                    } else if v.is_null() {
                        "NULL_VALUE"
                    } else {
                        "PRESENT"
                    };
                    values.push(if status == "OUTSIDE_MAX_AGE" {
                        Value::Null
                    } else {
                        v
                    });
                    statuses.push(status);
                    stamps.push(crate::time::format_micros(r.ts));
                }
            }
        }
        computed.insert(
            format!("{}:{}", view.name, r.feature.name),
            json!({"values": values, "statuses": statuses, "event_timestamps": stamps}),
        );
    }
    for o in &odfvs {
        let (mut values, mut statuses) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let row_value = |i: usize| {
            o.expr.eval(&|name| {
                if o.request.iter().any(|r| r == name) {
                    return entities
                        .get(name)
                        .and_then(|v| v.get(i))
                        .and_then(Value::as_f64)
                        .unwrap_or(f64::NAN);
                }
                o.sources
                    .iter()
                    .find(|s| s.split_once(':').is_some_and(|x| x.1 == name))
                    .and_then(|s| computed[s.as_str()]["values"][i].as_f64())
                    .unwrap_or(f64::NAN)
            })
        };
        for v in (0..n).map(row_value) {
            if v.is_finite() {
                values.push(json!(v));
                statuses.push("PRESENT");
            } else {
                values.push(Value::Null);
                statuses.push("NULL_VALUE");
            }
        }
        let now = crate::time::format_micros(now_micros);
        computed.insert(
            format!("{}:{}", o.view, o.feature),
            json!({"values": values, "statuses": statuses, "event_timestamps": vec![now; n]}),
        );
    }
    for f in features {
        let (view, feature) = f.split_once(':').unwrap_or(("", f.as_str()));
        names.push(if full_feature_names {
            format!("{view}__{feature}")
        } else {
            feature.to_owned()
        });
        results.push(computed.get(f.as_str()).cloned().unwrap_or(Value::Null));
    }
    Ok(json!({"metadata": {"feature_names": names}, "results": results}))
}
