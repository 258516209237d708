//! The collections API, in Qdrant's REST shapes so its clients and habits carry over:
//!
//! | route | does |
//! |---|---|
//! | `GET /collections` | list |
//! | `PUT /collections/{name}` | create: `{"vectors": {"size", "distance"}, "hnsw_config", "quantization_config", "embedding_model"}` |
//! | `GET`/`DELETE /collections/{name}` | info / drop |
//! | `PUT /collections/{name}/points` | upsert `{"points": [{"id", "vector" or "text", "payload"}]}` |
//! | `POST /collections/{name}/points` | retrieve `{"ids": […]}` |
//! | `POST /collections/{name}/points/search` | `{"vector" or "text", "limit", "filter", "params": {"hnsw_ef", "exact"}, …}` |
//! | `POST /collections/{name}/points/delete` | `{"points": [ids]}` or `{"filter": …}` |
//! | `POST /collections/{name}/points/count` / `…/scroll` | counting and paging with a filter |
//! | `POST /collections/{name}/snapshots` | export a snapshot file |
//!
//! Answers are `{"result": …, "status": "ok", "time": seconds}`; errors `{"status": {"error":
//! message}, "time": …}` with 400 (bad input), 404 (unknown collection), 409 (exists).
//! Points and queries may carry `text` instead of a vector when the collection names an
//! embedding model: the server embeds them.

use crate::AppState;
use crate::embedding::{DEFAULT_MODEL, ModelError};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;
use vector::{
    CollectionConfig, Filter, HnswParams, Metric, Point, PointId, SearchRequest, VectorCollection,
    VectorStore,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/collections", get(list))
        .route(
            "/collections/{name}",
            put(create).get(info).delete(drop_collection),
        )
        .route("/collections/{name}/points", put(upsert).post(retrieve))
        .route("/collections/{name}/points/search", post(search))
        .route("/collections/{name}/points/delete", post(delete))
        .route("/collections/{name}/points/count", post(count))
        .route("/collections/{name}/points/scroll", post(scroll))
        .route("/collections/{name}/snapshots", post(snapshot))
}

pub struct VecError {
    status: StatusCode,
    message: String,
}

impl From<rag::Error> for VecError {
    fn from(e: rag::Error) -> VecError {
        match e {
            rag::Error::Vector(v) => VecError::from(v),
            rag::Error::BadRequest(m) => VecError::bad(m),
            rag::Error::Embedding(neural::Error::BadInput(m)) => VecError::bad(m),
            other => {
                tracing::error!(error = %other, "rag");
                VecError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    message: other.to_string(),
                }
            }
        }
    }
}

impl VecError {
    pub fn bad(m: impl Into<String>) -> VecError {
        VecError {
            status: StatusCode::BAD_REQUEST,
            message: m.into(),
        }
    }
}

impl From<vector::Error> for VecError {
    fn from(e: vector::Error) -> VecError {
        let status = match &e {
            vector::Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            vector::Error::NotFound(_) => StatusCode::NOT_FOUND,
            vector::Error::Conflict(_) => StatusCode::CONFLICT,
            vector::Error::Io(_) | vector::Error::Corrupt { .. } => {
                tracing::error!(error = %e, "vector store");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        VecError {
            status,
            message: e.to_string(),
        }
    }
}

impl From<ModelError> for VecError {
    fn from(e: ModelError) -> VecError {
        let status = match e {
            ModelError::Unknown(_) | ModelError::BadInput(_) => StatusCode::BAD_REQUEST,
            ModelError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        VecError {
            status,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for VecError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"status": {"error": self.message}, "time": 0.0})),
        )
            .into_response()
    }
}

type Answer = Result<Json<Value>, VecError>;

fn ok(result: Value, started: Instant) -> Answer {
    Ok(Json(
        json!({"result": result, "status": "ok", "time": started.elapsed().as_secs_f64()}),
    ))
}

fn body(bytes: &[u8]) -> Result<Value, VecError> {
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| VecError::bad(format!("request body is not JSON: {e}")))
}

/// Runs a vector-store or RAG step off the async threads.
pub async fn blocking<T: Send + 'static, E: Into<VecError> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, VecError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| VecError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("vector task failed: {e}"),
        })?
        .map_err(Into::into)
}

pub fn usize_field(v: &Value, key: &str, default: usize) -> Result<usize, VecError> {
    match &v[key] {
        Value::Null => Ok(default),
        x => x
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| VecError::bad(format!("`{key}` must be a non-negative integer"))),
    }
}

fn bool_field(v: &Value, key: &str, default: bool) -> Result<bool, VecError> {
    match &v[key] {
        Value::Null => Ok(default),
        Value::Bool(b) => Ok(*b),
        _ => Err(VecError::bad(format!("`{key}` must be true or false"))),
    }
}

fn filter_field(v: &Value) -> Result<Option<Filter>, VecError> {
    match &v["filter"] {
        Value::Null => Ok(None),
        f => Ok(Some(Filter::parse(f)?)),
    }
}

fn vector_of(v: &Value, what: &str) -> Result<Vec<f32>, VecError> {
    let items = v
        .as_array()
        .ok_or_else(|| VecError::bad(format!("{what} must be a list of numbers")))?;
    items
        .iter()
        .map(|x| {
            x.as_f64()
                .map(|f| f as f32)
                .ok_or_else(|| VecError::bad(format!("{what} must be a list of numbers")))
        })
        .collect()
}

fn embedder_of(c: &dyn VectorCollection) -> Result<String, VecError> {
    c.config().text_model().ok_or_else(|| {
        VecError::bad(format!(
            "collection `{}` names no embedding model; send vectors, not text",
            c.name()
        ))
    })
}

async fn list(State(s): State<AppState>) -> Answer {
    let t = Instant::now();
    let store = store(&s).await?;
    let names: Vec<Value> = blocking(move || store.list())
        .await?
        .iter()
        .map(|n| json!({"name": n}))
        .collect();
    ok(json!({"collections": names}), t)
}

async fn create(
    State(s): State<AppState>,
    Path(name): Path<String>,
    raw: axum::body::Bytes,
) -> Answer {
    let t = Instant::now();
    let b = body(&raw)?;
    let embedder = b["embedding_model"].as_str().map(str::to_owned);
    let vectors = &b["vectors"];
    let dim = match (&vectors["size"], &embedder) {
        (Value::Null, Some(model)) => s.embeddings.get(model).await?.dim(),
        (size, _) => size
            .as_u64()
            .ok_or_else(|| VecError::bad("`vectors.size` (the dimension) is required"))?
            as usize,
    };
    let metric = match vectors["distance"].as_str() {
        None if embedder.is_some() => Metric::Cosine,
        None => {
            return Err(VecError::bad(
                "`vectors.distance` (Cosine, Dot or Euclid) is required",
            ));
        }
        Some(d) => Metric::parse(d).ok_or_else(|| {
            VecError::bad(format!("unknown distance `{d}` (Cosine, Dot, Euclid)"))
        })?,
    };
    let defaults = HnswParams::default();
    let hnsw = &b["hnsw_config"];
    let config = CollectionConfig {
        dim,
        metric,
        hnsw: HnswParams {
            m: usize_field(hnsw, "m", defaults.m)?,
            ef_construction: usize_field(hnsw, "ef_construct", defaults.ef_construction)?,
            seed: defaults.seed,
        },
        quantize: match &b["quantization_config"] {
            Value::Null => false,
            q if q["scalar"]["type"] == "int8" => true,
            _ => {
                return Err(VecError::bad(
                    "quantization_config supports {\"scalar\": {\"type\": \"int8\"}}",
                ));
            }
        },
        embedder,
    };
    let store = store(&s).await?;
    blocking(move || store.create(&name, config).map(|_| ())).await?;
    ok(json!(true), t)
}

async fn info(State(s): State<AppState>, Path(name): Path<String>) -> Answer {
    let t = Instant::now();
    let c = collection(&s, &name).await?;
    let i = blocking(move || c.info()).await?;
    ok(
        json!({
            "status": "green",
            "points_count": i.points_count,
            "indexed_vectors_count": i.indexed_nodes,
            "config": {
                "params": {"vectors": {"size": i.config.dim, "distance": i.config.metric}},
                "hnsw_config": {"m": i.config.hnsw.m, "ef_construct": i.config.hnsw.ef_construction},
                "quantization_config": if i.config.quantize { json!({"scalar": {"type": "int8"}}) } else { Value::Null },
                "embedding_model": i.config.embedder,
            },
            "quantized": i.quantized,
            "wal_bytes": i.wal_bytes,
            "sequence": i.sequence,
        }),
        t,
    )
}

async fn drop_collection(State(s): State<AppState>, Path(name): Path<String>) -> Answer {
    let t = Instant::now();
    let store = store(&s).await?;
    blocking(move || store.delete(&name)).await?;
    ok(json!(true), t)
}

async fn upsert(
    State(s): State<AppState>,
    Path(name): Path<String>,
    raw: axum::body::Bytes,
) -> Answer {
    let t = Instant::now();
    let b = body(&raw)?;
    let c = collection(&s, &name).await?;
    let items = b["points"]
        .as_array()
        .ok_or_else(|| VecError::bad("`points` must be a list"))?;
    let mut points = Vec::with_capacity(items.len());
    let mut texts: Vec<(usize, String)> = Vec::new();
    for (i, p) in items.iter().enumerate() {
        let id = PointId::from_json(&p["id"])
            .map_err(|e| VecError::bad(format!("points[{i}].id: {e}")))?;
        let payload = match &p["payload"] {
            Value::Null => Default::default(),
            Value::Object(m) => m.clone(),
            _ => {
                return Err(VecError::bad(format!(
                    "points[{i}].payload must be an object"
                )));
            }
        };
        let vector = match (&p["vector"], &p["text"]) {
            (Value::Null, Value::String(text)) => {
                texts.push((i, text.clone()));
                Vec::new()
            }
            (Value::Null, _) => {
                return Err(VecError::bad(format!(
                    "points[{i}] needs a `vector` or a `text`"
                )));
            }
            (v, _) => vector_of(v, &format!("points[{i}].vector"))?,
        };
        points.push(Point {
            id,
            vector,
            payload,
        });
    }
    if !texts.is_empty() {
        let model = embedder_of(c.as_ref())?;
        let vectors = s
            .embeddings
            .embed(&model, texts.iter().map(|(_, t)| t.clone()).collect())
            .await?;
        for ((i, _), v) in texts.iter().zip(vectors) {
            points[*i].vector = v;
        }
    }
    let seq = blocking(move || c.upsert(points)).await?;
    ok(json!({"operation_id": seq, "status": "completed"}), t)
}

async fn retrieve(
    State(s): State<AppState>,
    Path(name): Path<String>,
    raw: axum::body::Bytes,
) -> Answer {
    let t = Instant::now();
    let b = body(&raw)?;
    let c = collection(&s, &name).await?;
    let ids = b["ids"]
        .as_array()
        .ok_or_else(|| VecError::bad("`ids` must be a list of point ids"))?
        .iter()
        .map(PointId::from_json)
        .collect::<Result<Vec<_>, _>>()?;
    let with_vector = bool_field(&b, "with_vector", false)?;
    let points: Vec<Value> = blocking(move || c.get(&ids, with_vector))
        .await?
        .into_iter()
        .map(|p| point_json(p, with_vector))
        .collect();
    ok(json!(points), t)
}

fn point_json(p: Point, with_vector: bool) -> Value {
    let mut v = json!({"id": p.id, "payload": p.payload});
    if with_vector {
        v["vector"] = json!(p.vector);
    }
    v
}

async fn search(
    State(s): State<AppState>,
    Path(name): Path<String>,
    raw: axum::body::Bytes,
) -> Answer {
    let t = Instant::now();
    let b = body(&raw)?;
    let c = collection(&s, &name).await?;
    let vector = match (&b["vector"], &b["text"]) {
        (Value::Null, Value::String(text)) => {
            if text.trim().is_empty() {
                return Err(VecError::bad("`text` is empty"));
            }
            let model = embedder_of(c.as_ref())?;
            s.embeddings
                .embed(&model, vec![text.clone()])
                .await?
                .pop()
                .unwrap_or_default()
        }
        (Value::Null, _) => return Err(VecError::bad("a search needs a `vector` or a `text`")),
        (v, _) => vector_of(v, "vector")?,
    };
    let mut req = SearchRequest::new(vector, usize_field(&b, "limit", 10)?);
    req.offset = usize_field(&b, "offset", 0)?;
    req.filter = filter_field(&b)?;
    req.with_payload = bool_field(&b, "with_payload", true)?;
    req.with_vector = bool_field(&b, "with_vector", false)?;
    req.exact = bool_field(&b["params"], "exact", false)?;
    req.ef = match &b["params"]["hnsw_ef"] {
        Value::Null => None,
        _ => Some(usize_field(&b["params"], "hnsw_ef", 0)?),
    };
    req.score_threshold = match &b["score_threshold"] {
        Value::Null => None,
        x => Some(
            x.as_f64()
                .ok_or_else(|| VecError::bad("`score_threshold` must be a number"))?
                as f32,
        ),
    };
    let found = blocking(move || c.search(&req)).await?;
    ok(json!(found), t)
}

async fn delete(
    State(s): State<AppState>,
    Path(name): Path<String>,
    raw: axum::body::Bytes,
) -> Answer {
    let t = Instant::now();
    let b = body(&raw)?;
    let c = collection(&s, &name).await?;
    let seq_or_count = match (&b["points"], filter_field(&b)?) {
        (Value::Array(ids), None) => {
            let ids = ids
                .iter()
                .map(PointId::from_json)
                .collect::<Result<Vec<_>, _>>()?;
            let n = ids.len();
            blocking(move || c.delete(ids)).await?;
            n
        }
        (Value::Null, Some(f)) => blocking(move || c.delete_matching(&f)).await?,
        _ => {
            return Err(VecError::bad(
                "delete takes `points` (a list of ids) or a `filter`",
            ));
        }
    };
    ok(json!({"status": "completed", "deleted": seq_or_count}), t)
}

async fn count(
    State(s): State<AppState>,
    Path(name): Path<String>,
    raw: axum::body::Bytes,
) -> Answer {
    let t = Instant::now();
    let b = body(&raw)?;
    let c = collection(&s, &name).await?;
    let f = filter_field(&b)?;
    let n = blocking(move || c.count(f.as_ref())).await?;
    ok(json!({"count": n}), t)
}

async fn scroll(
    State(s): State<AppState>,
    Path(name): Path<String>,
    raw: axum::body::Bytes,
) -> Answer {
    let t = Instant::now();
    let b = body(&raw)?;
    let c = collection(&s, &name).await?;
    let f = filter_field(&b)?;
    let limit = usize_field(&b, "limit", 10)?.clamp(1, 10_000);
    let offset = match &b["offset"] {
        Value::Null => None,
        o => Some(PointId::from_json(o)?),
    };
    let (page, next) = blocking(move || c.scroll(f.as_ref(), offset.as_ref(), limit)).await?;
    let points: Vec<Value> = page.into_iter().map(|p| point_json(p, false)).collect();
    ok(json!({"points": points, "next_page_offset": next}), t)
}

async fn snapshot(State(s): State<AppState>, Path(name): Path<String>) -> Answer {
    let t = Instant::now();
    let c = collection(&s, &name).await?;
    let dir = store(&s).await?.snapshot_dir().ok_or_else(|| {
        VecError::bad("this vector store does not export snapshots (pgvector: use pg_dump)")
    })?;
    let file = format!(
        "{name}-{}.snapshot",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let path = dir.join(&file);
    let size = blocking(move || {
        std::fs::create_dir_all(&dir)?;
        c.export_snapshot(&path)?;
        Ok::<_, vector::Error>(std::fs::metadata(&path)?.len())
    })
    .await?;
    ok(json!({"name": file, "size": size}), t)
}

/// The vector store: the embedded one, opened on first use (commands that build a server state
/// for other work never take its lock, and a server that never sees a vector request never reads
/// it), or a connected scale-out store (pgvector).
pub enum LazyVectors {
    Embedded {
        root: std::path::PathBuf,
        cell: std::sync::Mutex<Option<Arc<vector::Collections>>>,
    },
    Ready(Arc<dyn VectorStore>),
}

impl LazyVectors {
    pub fn embedded(root: std::path::PathBuf) -> LazyVectors {
        LazyVectors::Embedded {
            root,
            cell: std::sync::Mutex::new(None),
        }
    }

    pub fn get(&self) -> Result<Arc<dyn VectorStore>, vector::Error> {
        match self {
            LazyVectors::Ready(s) => Ok(s.clone()),
            LazyVectors::Embedded { root, cell } => {
                let mut cell = cell.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(c) = cell.as_ref() {
                    return Ok(c.clone());
                }
                let c = Arc::new(vector::Collections::open(root)?);
                *cell = Some(c.clone());
                Ok(c)
            }
        }
    }
}

async fn store(s: &AppState) -> Result<Arc<dyn VectorStore>, VecError> {
    let lazy = s.vectors.clone();
    blocking(move || lazy.get()).await
}

async fn collection(s: &AppState, name: &str) -> Result<Arc<dyn VectorCollection>, VecError> {
    let store = store(s).await?;
    let name = name.to_owned();
    blocking(move || store.get(&name)).await
}

/// The collection, created for texts (the default embedding model, cosine) when `create` and
/// it does not exist yet.
pub async fn collection_or_create(
    s: &AppState,
    name: &str,
    create: bool,
) -> Result<Arc<dyn VectorCollection>, VecError> {
    let store = store(s).await?;
    let lookup = {
        let (store, name) = (store.clone(), name.to_owned());
        blocking(move || Ok::<_, VecError>(store.get(&name))).await?
    };
    match lookup {
        Ok(c) => Ok(c),
        Err(vector::Error::NotFound(_)) if create => {
            let dim = s.embeddings.get(DEFAULT_MODEL).await?.dim();
            let config = CollectionConfig {
                dim,
                metric: Metric::Cosine,
                hnsw: HnswParams::default(),
                quantize: false,
                embedder: Some(DEFAULT_MODEL.to_owned()),
            };
            let name = name.to_owned();
            blocking(move || match store.create(&name, config) {
                Err(vector::Error::Conflict(_)) => store.get(&name),
                other => other,
            })
            .await
        }
        Err(e) => Err(e.into()),
    }
}
