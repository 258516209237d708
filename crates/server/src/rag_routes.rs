//! RAG over HTTP, on the collections of the vector store:
//!
//! - `POST /rag/{collection}/ingest` `{"documents": [{"source", "content", "format":
//!   "markdown"|"html"|"text"}], "complete": false, "chunk_tokens": 200, "overlap_tokens": 40}`
//!   → the ingestion report (unchanged documents are not re-embedded; with `complete`, sources
//!   not in the request are removed). The collection is created (MiniLM, cosine) when missing.
//! - `POST /rag/{collection}/query` `{"query", "mode": "hybrid"|"vector"|"keyword", "top_k": 5,
//!   "filter", "context_tokens": 1500}` → `{"answer", "citations", "context", "hits"}`.
//!
//! Errors use the collections API's shape (`{"status": {"error": …}}`).

use crate::AppState;
use crate::embedding::DEFAULT_MODEL;
use crate::vector_routes::{VecError, blocking, collection_or_create, usize_field};
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use rag::text::Format;
use rag::{Mode, QueryOptions, Rag, SourceDoc};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/rag/{name}/ingest", post(ingest))
        .route("/rag/{name}/query", post(query))
}

/// One pipeline per collection (it caches the keyword index), replaced when the collection is.
#[derive(Default, Clone)]
pub struct RagCache(Arc<Mutex<HashMap<String, Arc<Rag>>>>);

async fn pipeline(s: &AppState, name: &str, create: bool) -> Result<Arc<Rag>, VecError> {
    let c = collection_or_create(s, name, create).await?;
    if let Some(r) = s.rag.0.lock().unwrap_or_else(|e| e.into_inner()).get(name)
        && Arc::ptr_eq(r.collection(), &c)
    {
        return Ok(r.clone());
    }
    let model = c
        .config()
        .embedder
        .clone()
        .unwrap_or_else(|| DEFAULT_MODEL.to_owned());
    let embedder = s.embeddings.get(&model).await?;
    let r = Arc::new(Rag::new(c, embedder).map_err(VecError::from)?);
    s.rag
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.to_owned(), r.clone());
    Ok(r)
}

fn json_body(raw: &[u8]) -> Result<Value, VecError> {
    serde_json::from_slice(raw).map_err(|e| VecError::bad(format!("request body is not JSON: {e}")))
}

async fn ingest(
    State(s): State<AppState>,
    Path(name): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, VecError> {
    let t = Instant::now();
    let b = json_body(&raw)?;
    let items = b["documents"]
        .as_array()
        .ok_or_else(|| VecError::bad("`documents` must be a list"))?;
    let mut docs = Vec::with_capacity(items.len());
    for (i, d) in items.iter().enumerate() {
        let field = |k: &str| {
            d[k].as_str()
                .map(str::to_owned)
                .ok_or_else(|| VecError::bad(format!("documents[{i}].{k} must be a string")))
        };
        let format = match d["format"].as_str().unwrap_or("text") {
            "markdown" | "md" => Format::Markdown,
            "html" => Format::Html,
            "text" | "txt" => Format::Text,
            other => {
                return Err(VecError::bad(format!(
                    "documents[{i}].format `{other}` is not markdown, html or text"
                )));
            }
        };
        docs.push(SourceDoc {
            source: field("source")?,
            content: field("content")?,
            format,
        });
    }
    let opts = rag::chunk::ChunkOptions {
        max_tokens: usize_field(&b, "chunk_tokens", 200)?.clamp(16, 512),
        overlap_tokens: usize_field(&b, "overlap_tokens", 40)?,
    };
    let complete = b["complete"].as_bool().unwrap_or(false);
    let r = pipeline(&s, &name, true).await?;
    let report = blocking(move || r.ingest(docs, opts, complete, &mut |_, _| {})).await?;
    Ok(Json(
        json!({"result": report, "status": "ok", "time": t.elapsed().as_secs_f64()}),
    ))
}

async fn query(
    State(s): State<AppState>,
    Path(name): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, VecError> {
    let t = Instant::now();
    let b = json_body(&raw)?;
    let q = b["query"]
        .as_str()
        .ok_or_else(|| VecError::bad("`query` must be a string"))?
        .to_owned();
    let mode = match b["mode"].as_str() {
        None => Mode::Hybrid,
        Some(m) => Mode::parse(m)
            .ok_or_else(|| VecError::bad(format!("mode `{m}` is not hybrid, vector or keyword")))?,
    };
    let opts = QueryOptions {
        mode,
        top_k: usize_field(&b, "top_k", 5)?,
        candidates: usize_field(&b, "candidates", 50)?.clamp(1, 1000),
        filter: match &b["filter"] {
            Value::Null => None,
            f => Some(vector::Filter::parse(f)?),
        },
        context_tokens: usize_field(&b, "context_tokens", 1500)?,
        rerank: usize_field(&b, "rerank", 0)?.min(100),
        fusion: match &b["fusion"] {
            Value::Null => rag::Fusion::default(),
            f => serde_json::from_value(f.clone()).map_err(|e| {
                VecError::bad(format!(
                    "fusion: {e} (use {{\"method\": \"rrf\", \"k\": 60}} or {{\"method\": \"relative\", \"vector_weight\": 0.5}})"
                ))
            })?,
        },
    };
    let r = pipeline(&s, &name, false).await?;
    let answer = blocking(move || r.answer(&q, &opts)).await?;
    Ok(Json(
        json!({"result": answer, "status": "ok", "time": t.elapsed().as_secs_f64()}),
    ))
}
