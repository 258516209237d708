//! Collections: named sets of points (id, vector, JSON payload) over one HNSW index, persisted
//! as `snapshot.bin` (the whole index and payloads) plus `wal.log` (writes since). Writes go to
//! the log and are fsynced before they are applied and acknowledged; searches take a read lock
//! and run while other searches run; a large upsert is applied in slices so searches interleave.

use crate::filter::Filter;
use crate::hnsw::{Hnsw, HnswParams};
use crate::wal::{self, Cursor, Record, Wal};
use crate::{Error, Metric, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// A point id: an unsigned integer or a string (Qdrant allows integers and UUIDs).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PointId {
    Num(u64),
    Str(String),
}

impl PointId {
    pub fn from_json(v: &Value) -> Result<PointId> {
        match v {
            Value::Number(n) => n.as_u64().map(PointId::Num).ok_or_else(|| {
                Error::BadRequest(format!("point id {n} is not an unsigned integer"))
            }),
            Value::String(s) if !s.is_empty() && s.len() <= 256 => Ok(PointId::Str(s.clone())),
            other => Err(Error::BadRequest(format!(
                "point id must be an unsigned integer or a string of 1 to 256 bytes, not {other}"
            ))),
        }
    }
}

impl std::fmt::Display for PointId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PointId::Num(n) => write!(f, "{n}"),
            PointId::Str(s) => f.write_str(s),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub id: PointId,
    pub vector: Vec<f32>,
    #[serde(default)]
    pub payload: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CollectionConfig {
    pub dim: usize,
    pub metric: Metric,
    #[serde(default)]
    pub hnsw: HnswParams,
    /// Keep int8 codes of every vector and walk the graph on them; results are rescored with
    /// the original vectors.
    #[serde(default)]
    pub quantize: bool,
    /// The embedding model that turns texts into this collection's vectors, when points and
    /// queries may be given as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedder: Option<String>,
}

impl CollectionConfig {
    /// Refuses a vector of the wrong dimension or with a non-finite value, naming `what` and
    /// the collection.
    pub fn check_vector(&self, collection: &str, v: &[f32], what: &str) -> Result<()> {
        if v.len() != self.dim {
            return Err(Error::BadRequest(format!(
                "{what} has dimension {}, collection `{collection}` expects {}",
                v.len(),
                self.dim
            )));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(Error::BadRequest(format!(
                "{what} holds a NaN or infinite value"
            )));
        }
        Ok(())
    }

    /// The embedding model that turns texts into this collection's vectors: the one it names,
    /// else all-MiniLM-L6-v2 for a 384-d collection, else none (it takes vectors only).
    pub fn text_model(&self) -> Option<String> {
        self.embedder
            .clone()
            .or_else(|| (self.dim == 384).then(|| "all-MiniLM-L6-v2".to_owned()))
    }

    pub fn validate(&self) -> Result<()> {
        if !(1..=65_536).contains(&self.dim) {
            return Err(Error::BadRequest(format!(
                "vector size must be between 1 and 65536, not {}",
                self.dim
            )));
        }
        self.hnsw.validate()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CollectionInfo {
    pub name: String,
    pub config: CollectionConfig,
    pub points_count: usize,
    /// Nodes in the graph, replaced and deleted ones included until the next compaction.
    pub indexed_nodes: usize,
    pub quantized: bool,
    pub wal_bytes: u64,
    /// Sequence number of the last applied write.
    pub sequence: u64,
}

#[derive(Clone, Debug)]
pub struct SearchRequest {
    pub vector: Vec<f32>,
    pub limit: usize,
    pub offset: usize,
    pub filter: Option<Filter>,
    /// Beam width of the graph search; defaults to `max(64, limit + offset)`.
    pub ef: Option<usize>,
    pub exact: bool,
    pub score_threshold: Option<f32>,
    pub with_payload: bool,
    pub with_vector: bool,
}

impl SearchRequest {
    pub fn new(vector: Vec<f32>, limit: usize) -> SearchRequest {
        SearchRequest {
            vector,
            limit,
            offset: 0,
            filter: None,
            ef: None,
            exact: false,
            score_threshold: None,
            with_payload: true,
            with_vector: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScoredPoint {
    pub id: PointId,
    pub score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

/// A filter matching at most this many points is answered by an exact scan of them: cheaper
/// than walking a graph where almost every node is a detour, and exact.
const EXACT_BELOW: usize = 2_000;
/// Writes are applied in slices this big so searches are not held up by a bulk upsert.
const APPLY_SLICE: usize = 256;
/// The log is folded into a new snapshot when it grows past this.
const WAL_FOLD_BYTES: u64 = 64 << 20;
/// Quantization starts once there is enough data to learn the range from.
const QUANTIZE_AT: usize = 1_024;

struct State {
    index: Hnsw,
    ids: Vec<PointId>,
    payloads: Vec<Map<String, Value>>,
    alive: Vec<bool>,
    by_id: HashMap<PointId, u32>,
    sequence: u64,
}

impl State {
    fn new(config: &CollectionConfig) -> State {
        State {
            index: Hnsw::new(config.dim, config.metric, config.hnsw),
            ids: Vec::new(),
            payloads: Vec::new(),
            alive: Vec::new(),
            by_id: HashMap::new(),
            sequence: 0,
        }
    }

    fn live(&self) -> usize {
        self.by_id.len()
    }

    fn upsert(&mut self, point: Point, quantize: bool) {
        if let Some(old) = self.by_id.remove(&point.id) {
            self.alive[old as usize] = false;
            self.payloads[old as usize] = Map::new();
        }
        let node = self.index.insert(&point.vector);
        debug_assert_eq!(node as usize, self.ids.len());
        self.ids.push(point.id.clone());
        self.payloads.push(point.payload);
        self.alive.push(true);
        self.by_id.insert(point.id, node);
        if quantize && !self.index.is_quantized() && self.index.len() >= QUANTIZE_AT {
            self.index.quantize();
        }
    }

    fn delete(&mut self, id: &PointId) {
        if let Some(old) = self.by_id.remove(id) {
            self.alive[old as usize] = false;
            self.payloads[old as usize] = Map::new();
        }
    }

    fn apply(&mut self, record: Record, quantize: bool) {
        match record {
            Record::Upsert(points) => {
                for p in points {
                    self.upsert(p, quantize);
                }
            }
            Record::Delete(ids) => {
                for id in &ids {
                    self.delete(id);
                }
            }
        }
    }

    /// Rebuilds the graph from the live points (drops tombstones).
    fn compacted(&self, config: &CollectionConfig) -> State {
        let mut fresh = State::new(config);
        fresh.sequence = self.sequence;
        for node in 0..self.ids.len() {
            if self.alive[node] {
                fresh.upsert(
                    Point {
                        id: self.ids[node].clone(),
                        vector: self.index.vector(node as u32).to_vec(),
                        payload: self.payloads[node].clone(),
                    },
                    config.quantize,
                );
            }
        }
        fresh
    }

    fn write_snapshot(&self, w: &mut impl Write) -> std::io::Result<()> {
        let mut buf = Vec::new();
        buf.extend_from_slice(SNAPSHOT_MAGIC);
        buf.extend_from_slice(&self.sequence.to_le_bytes());
        self.index.write_to(&mut buf)?;
        buf.extend_from_slice(&(self.ids.len() as u64).to_le_bytes());
        for node in 0..self.ids.len() {
            buf.push(self.alive[node] as u8);
            wal::put_id(&mut buf, &self.ids[node]);
            wal::put_payload(&mut buf, &self.payloads[node]);
        }
        let crc = wal::crc32(&buf);
        w.write_all(&buf)?;
        w.write_all(&crc.to_le_bytes())
    }

    fn read_snapshot(bytes: &[u8], path: &Path) -> Result<State> {
        let corrupt = |why: &str| Error::Corrupt {
            path: path.display().to_string(),
            why: why.to_owned(),
        };
        if bytes.len() < SNAPSHOT_MAGIC.len() + 12
            || &bytes[..SNAPSHOT_MAGIC.len()] != SNAPSHOT_MAGIC
        {
            return Err(corrupt("not a Capstan vector snapshot"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if wal::crc32(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return Err(corrupt("checksum mismatch"));
        }
        let mut rest = &body[SNAPSHOT_MAGIC.len()..];
        let mut seq = [0u8; 8];
        rest.read_exact(&mut seq)?;
        let index = Hnsw::read_from(&mut rest).map_err(|e| corrupt(&e.to_string()))?;
        let mut c = Cursor(rest);
        let n = c.u64().ok_or_else(|| corrupt("point table"))? as usize;
        if n != index.len() {
            return Err(corrupt("point table does not match the index"));
        }
        let mut state = State {
            index,
            ids: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            alive: Vec::with_capacity(n),
            by_id: HashMap::with_capacity(n),
            sequence: u64::from_le_bytes(seq),
        };
        for node in 0..n {
            let alive = c.u8().ok_or_else(|| corrupt("point table"))? == 1;
            let id = c.id().ok_or_else(|| corrupt("point id"))?;
            let payload = c.payload().ok_or_else(|| corrupt("payload"))?;
            if alive {
                state.by_id.insert(id.clone(), node as u32);
            }
            state.ids.push(id);
            state.payloads.push(payload);
            state.alive.push(alive);
        }
        Ok(state)
    }
}

const SNAPSHOT_MAGIC: &[u8] = b"CAPVEC01";

pub struct Collection {
    name: String,
    dir: PathBuf,
    config: CollectionConfig,
    state: RwLock<State>,
    wal: Mutex<Wal>,
}

fn poisoned<T>(e: std::sync::PoisonError<T>) -> T {
    e.into_inner()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Collection {
    fn create(dir: PathBuf, name: &str, config: CollectionConfig) -> Result<Collection> {
        config.validate()?;
        fs::create_dir_all(&dir)?;
        let tmp = dir.join("config.json.tmp");
        fs::write(
            &tmp,
            serde_json::to_vec_pretty(&config).map_err(|e| Error::BadRequest(e.to_string()))?,
        )?;
        File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, dir.join("config.json"))?;
        sync_dir(&dir)?;
        Self::open(dir, name)
    }

    fn open(dir: PathBuf, name: &str) -> Result<Collection> {
        let config_path = dir.join("config.json");
        let config: CollectionConfig =
            serde_json::from_slice(&fs::read(&config_path)?).map_err(|e| Error::Corrupt {
                path: config_path.display().to_string(),
                why: e.to_string(),
            })?;
        let snapshot = dir.join("snapshot.bin");
        let mut state = match fs::read(&snapshot) {
            Ok(bytes) => State::read_snapshot(&bytes, &snapshot)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::new(&config),
            Err(e) => return Err(e.into()),
        };
        let quantize = config.quantize;
        let wal = Wal::open(&dir.join("wal.log"), |seq, record| {
            if seq > state.sequence {
                state.apply(record, quantize);
                state.sequence = seq;
            }
        })?;
        Ok(Collection {
            name: name.to_owned(),
            dir,
            config,
            state: RwLock::new(state),
            wal: Mutex::new(wal),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The collection's own directory (companions such as an ingestion manifest live there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &CollectionConfig {
        &self.config
    }

    pub fn info(&self) -> CollectionInfo {
        let wal_bytes = self.wal.lock().unwrap_or_else(poisoned).bytes;
        let state = self.state.read().unwrap_or_else(poisoned);
        CollectionInfo {
            name: self.name.clone(),
            config: self.config.clone(),
            points_count: state.live(),
            indexed_nodes: state.index.len(),
            quantized: state.index.is_quantized(),
            wal_bytes,
            sequence: state.sequence,
        }
    }

    fn check_vector(&self, v: &[f32], what: &str) -> Result<()> {
        self.config.check_vector(&self.name, v, what)
    }

    /// Sequence number of the last applied write.
    pub fn sequence(&self) -> u64 {
        self.state.read().unwrap_or_else(poisoned).sequence
    }

    /// Inserts or replaces points. Returns once the batch is in the log on disk and applied:
    /// an acknowledged upsert survives a crash. All-or-nothing: a bad point refuses the batch.
    pub fn upsert(&self, mut points: Vec<Point>) -> Result<u64> {
        for p in &mut points {
            self.check_vector(&p.vector, &format!("point {}", p.id))?;
            self.config.metric.prepare(&mut p.vector);
        }
        self.write(Record::Upsert(points))
    }

    /// Deletes points by id (unknown ids are ignored, as a repeated delete must be).
    pub fn delete(&self, ids: Vec<PointId>) -> Result<u64> {
        self.write(Record::Delete(ids))
    }

    /// Deletes every point a filter matches; returns how many.
    pub fn delete_matching(&self, filter: &Filter) -> Result<usize> {
        let mut wal = self.wal.lock().unwrap_or_else(poisoned);
        let ids: Vec<PointId> = {
            let s = self.state.read().unwrap_or_else(poisoned);
            (0..s.ids.len())
                .filter(|&n| s.alive[n] && filter.matches(&s.ids[n], &s.payloads[n]))
                .map(|n| s.ids[n].clone())
                .collect()
        };
        let n = ids.len();
        self.write_locked(&mut wal, Record::Delete(ids))?;
        Ok(n)
    }

    fn write(&self, record: Record) -> Result<u64> {
        let mut wal = self.wal.lock().unwrap_or_else(poisoned);
        self.write_locked(&mut wal, record)
    }

    fn write_locked(&self, wal: &mut Wal, record: Record) -> Result<u64> {
        let seq = self.sequence() + 1;
        wal.append(seq, &record)?;
        match record {
            Record::Upsert(points) => {
                let mut points = points.into_iter().peekable();
                while points.peek().is_some() {
                    let mut s = self.state.write().unwrap_or_else(poisoned);
                    for p in points.by_ref().take(APPLY_SLICE) {
                        s.upsert(p, self.config.quantize);
                    }
                }
            }
            delete => self
                .state
                .write()
                .unwrap_or_else(poisoned)
                .apply(delete, self.config.quantize),
        }
        self.state.write().unwrap_or_else(poisoned).sequence = seq;
        if wal.bytes > WAL_FOLD_BYTES {
            self.snapshot_locked(wal)?;
        }
        Ok(seq)
    }

    /// Folds the log into a fresh snapshot (compacting away replaced and deleted points when
    /// they are more than a quarter of the graph) and empties the log.
    pub fn snapshot(&self) -> Result<()> {
        let mut wal = self.wal.lock().unwrap_or_else(poisoned);
        self.snapshot_locked(&mut wal)
    }

    fn snapshot_locked(&self, wal: &mut Wal) -> Result<()> {
        {
            let needs_compaction = {
                let s = self.state.read().unwrap_or_else(poisoned);
                s.index.len() - s.live() > s.index.len() / 4
            };
            if needs_compaction {
                let fresh = self
                    .state
                    .read()
                    .unwrap_or_else(poisoned)
                    .compacted(&self.config);
                *self.state.write().unwrap_or_else(poisoned) = fresh;
            }
        }
        let tmp = self.dir.join("snapshot.bin.tmp");
        {
            let mut w = BufWriter::new(File::create(&tmp)?);
            self.state
                .read()
                .unwrap_or_else(poisoned)
                .write_snapshot(&mut w)?;
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join("snapshot.bin"))?;
        sync_dir(&self.dir)?;
        // The snapshot carries the sequence number, so a crash before this reset only means
        // replaying records the snapshot already holds, which recovery skips.
        wal.reset()?;
        Ok(())
    }

    /// Writes a self-contained snapshot file elsewhere (a backup to restore from).
    pub fn export_snapshot(&self, path: &Path) -> Result<()> {
        let _wal = self.wal.lock().unwrap_or_else(poisoned);
        let tmp = path.with_extension("tmp");
        {
            let mut w = BufWriter::new(File::create(&tmp)?);
            self.state
                .read()
                .unwrap_or_else(poisoned)
                .write_snapshot(&mut w)?;
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        Ok(())
    }

    pub fn count(&self, filter: Option<&Filter>) -> usize {
        let s = self.state.read().unwrap_or_else(poisoned);
        match filter {
            None => s.live(),
            Some(f) => (0..s.ids.len())
                .filter(|&n| s.alive[n] && f.matches(&s.ids[n], &s.payloads[n]))
                .count(),
        }
    }

    pub fn get(&self, ids: &[PointId], with_vector: bool) -> Vec<Point> {
        let s = self.state.read().unwrap_or_else(poisoned);
        ids.iter()
            .filter_map(|id| {
                let n = *s.by_id.get(id)?;
                Some(Point {
                    id: id.clone(),
                    vector: if with_vector {
                        s.index.vector(n).to_vec()
                    } else {
                        Vec::new()
                    },
                    payload: s.payloads[n as usize].clone(),
                })
            })
            .collect()
    }

    /// Pages through points in id order: up to `limit` points after `offset`, and the next
    /// offset when there are more.
    pub fn scroll(
        &self,
        filter: Option<&Filter>,
        offset: Option<&PointId>,
        limit: usize,
    ) -> (Vec<Point>, Option<PointId>) {
        let s = self.state.read().unwrap_or_else(poisoned);
        let ordered: BTreeMap<&PointId, u32> = s
            .by_id
            .iter()
            .filter(|(id, n)| {
                offset.is_none_or(|o| *id >= o)
                    && filter.is_none_or(|f| f.matches(id, &s.payloads[**n as usize]))
            })
            .map(|(id, n)| (id, *n))
            .collect();
        let mut page: Vec<Point> = ordered
            .iter()
            .take(limit + 1)
            .map(|(id, n)| Point {
                id: (*id).clone(),
                vector: Vec::new(),
                payload: s.payloads[*n as usize].clone(),
            })
            .collect();
        let next = if page.len() > limit {
            page.pop().map(|p| p.id)
        } else {
            None
        };
        (page, next)
    }

    pub fn search(&self, req: &SearchRequest) -> Result<Vec<ScoredPoint>> {
        self.check_vector(&req.vector, "query vector")?;
        if !(1..=10_000).contains(&req.limit) {
            return Err(Error::BadRequest(format!(
                "limit must be between 1 and 10000, not {}",
                req.limit
            )));
        }
        if req.ef.is_some_and(|ef| !(1..=100_000).contains(&ef)) {
            return Err(Error::BadRequest(
                "hnsw_ef must be between 1 and 100000".into(),
            ));
        }
        let mut query = req.vector.clone();
        self.config.metric.prepare(&mut query);
        let k = req.limit + req.offset;
        let ef = req.ef.unwrap_or(64).max(k);
        let s = self.state.read().unwrap_or_else(poisoned);
        let allow_live = |n: u32| s.alive[n as usize];
        let allow_filtered = |n: u32| {
            s.alive[n as usize]
                && req
                    .filter
                    .as_ref()
                    .is_none_or(|f| f.matches(&s.ids[n as usize], &s.payloads[n as usize]))
        };
        let allow: &dyn Fn(u32) -> bool = if req.filter.is_some() {
            &allow_filtered
        } else {
            &allow_live
        };
        let small = s.live() <= EXACT_BELOW
            || req
                .filter
                .as_ref()
                .is_some_and(|_| estimate_matches(&s, allow) <= EXACT_BELOW);
        let mut found = if req.exact || small {
            s.index.exact(&query, k, Some(allow))
        } else {
            let found = s.index.search(&query, k, ef, Some(allow));
            if found.len() < k && req.filter.is_some() {
                // The graph ran out of reachable matches: answer exactly instead of short.
                s.index.exact(&query, k, Some(allow))
            } else {
                found
            }
        };
        let metric = self.config.metric;
        if let Some(t) = req.score_threshold {
            found.retain(|f| metric.passes(metric.score(f.0), t));
        }
        Ok(found
            .into_iter()
            .skip(req.offset)
            .map(|(d, n)| ScoredPoint {
                id: s.ids[n as usize].clone(),
                score: metric.score(d),
                payload: req.with_payload.then(|| s.payloads[n as usize].clone()),
                vector: req.with_vector.then(|| s.index.vector(n).to_vec()),
            })
            .collect())
    }
}

/// How many live points a predicate lets through, from a deterministic sample of ≤ 1,024 nodes.
fn estimate_matches(s: &State, allow: &dyn Fn(u32) -> bool) -> usize {
    let n = s.ids.len();
    let step = (n / 1024).max(1);
    let (mut seen, mut hit) = (0usize, 0usize);
    for node in (0..n).step_by(step) {
        seen += 1;
        hit += allow(node as u32) as usize;
    }
    if seen == 0 {
        return 0;
    }
    // A filter nothing in the sample passes may still match a few points: scan exactly.
    (hit * n).div_ceil(seen)
}

/// All collections under one directory. An exclusive lock file keeps a second process from
/// opening the same directory (two writers would interleave their logs).
pub struct Collections {
    root: PathBuf,
    open: RwLock<BTreeMap<String, Arc<Collection>>>,
    _lock: File,
}

pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "collection name `{name}` must be 1 to 64 letters, digits, `_` or `-`"
        )))
    }
}

impl Collections {
    pub fn open(root: &Path) -> Result<Collections> {
        fs::create_dir_all(root)?;
        let lock = File::create(root.join(".lock"))?;
        if let Err(e) = lock.try_lock() {
            return Err(Error::Conflict(format!(
                "the vector store at {} is in use by another process ({e}); \
                 talk to the running server instead",
                root.display()
            )));
        }
        let mut open = BTreeMap::new();
        for entry in fs::read_dir(root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                if (name.starts_with(".creating-") || name.starts_with(".deleting-"))
                    && entry.file_type()?.is_dir()
                {
                    // A half-created or half-deleted collection from a crash.
                    fs::remove_dir_all(entry.path())?;
                }
                continue;
            }
            if entry.path().join("config.json").is_file() {
                let c = Collection::open(entry.path(), &name)?;
                open.insert(name, Arc::new(c));
            }
        }
        Ok(Collections {
            root: root.to_owned(),
            open: RwLock::new(open),
            _lock: lock,
        })
    }

    /// Where exported snapshots are written.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.root.join(".snapshots")
    }

    pub fn list(&self) -> Vec<Arc<Collection>> {
        self.open
            .read()
            .unwrap_or_else(poisoned)
            .values()
            .cloned()
            .collect()
    }

    pub fn get(&self, name: &str) -> Result<Arc<Collection>> {
        self.open
            .read()
            .unwrap_or_else(poisoned)
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("collection `{name}` does not exist")))
    }

    pub fn create(&self, name: &str, config: CollectionConfig) -> Result<Arc<Collection>> {
        validate_name(name)?;
        config.validate()?;
        let mut open = self.open.write().unwrap_or_else(poisoned);
        if open.contains_key(name) {
            return Err(Error::Conflict(format!(
                "collection `{name}` already exists"
            )));
        }
        // Built under a hidden name and renamed: a crash never leaves half a collection.
        let staging = self.root.join(format!(".creating-{name}"));
        let _ = fs::remove_dir_all(&staging);
        Collection::create(staging.clone(), name, config)?;
        let dir = self.root.join(name);
        fs::rename(&staging, &dir)?;
        sync_dir(&self.root)?;
        let c = Arc::new(Collection::open(dir, name)?);
        open.insert(name.to_owned(), c.clone());
        Ok(c)
    }

    /// Creates a collection from an exported snapshot file.
    pub fn restore(&self, name: &str, snapshot: &Path) -> Result<Arc<Collection>> {
        validate_name(name)?;
        let bytes = fs::read(snapshot)?;
        let state = State::read_snapshot(&bytes, snapshot)?;
        let config = CollectionConfig {
            dim: state.index.dim(),
            metric: state.index.metric(),
            hnsw: state.index.params(),
            quantize: state.index.is_quantized(),
            embedder: None,
        };
        let mut open = self.open.write().unwrap_or_else(poisoned);
        if open.contains_key(name) {
            return Err(Error::Conflict(format!(
                "collection `{name}` already exists"
            )));
        }
        let staging = self.root.join(format!(".creating-{name}"));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging)?;
        fs::write(
            staging.join("config.json"),
            serde_json::to_vec_pretty(&config).map_err(|e| Error::BadRequest(e.to_string()))?,
        )?;
        fs::write(staging.join("snapshot.bin"), &bytes)?;
        File::open(staging.join("snapshot.bin"))?.sync_all()?;
        let dir = self.root.join(name);
        fs::rename(&staging, &dir)?;
        sync_dir(&self.root)?;
        let c = Arc::new(Collection::open(dir, name)?);
        open.insert(name.to_owned(), c.clone());
        Ok(c)
    }

    pub fn delete(&self, name: &str) -> Result<()> {
        let mut open = self.open.write().unwrap_or_else(poisoned);
        let c = open
            .remove(name)
            .ok_or_else(|| Error::NotFound(format!("collection `{name}` does not exist")))?;
        let trash = self.root.join(format!(".deleting-{name}"));
        fs::rename(&c.dir, &trash)?;
        sync_dir(&self.root)?;
        fs::remove_dir_all(&trash)?;
        Ok(())
    }
}
