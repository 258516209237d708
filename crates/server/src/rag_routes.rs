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
    headers: axum::http::HeaderMap,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, VecError> {
    let t = Instant::now();
    let started_ns = base::now_millis().saturating_mul(1_000_000);
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
    let parent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(traces::parse_traceparent);
    let (mode_name, top_k, rerank) = (
        format!("{:?}", opts.mode).to_lowercase(),
        opts.top_k,
        opts.rerank,
    );
    let question = q.clone();
    let answer = blocking(move || r.answer(&q, &opts)).await?;
    let spans = query_spans(
        &name,
        &question,
        parent,
        started_ns,
        t.elapsed().as_nanos() as i64,
        &answer,
        (&mode_name, top_k, rerank),
    );
    let trace_id = spans[0].trace_id.clone();
    let store = s.traces.clone();
    // The trace is written off the request path; a failure is logged, the answer stands.
    tokio::spawn(async move {
        if let Err(e) = store.write_spans(&spans).await {
            tracing::warn!(error = %e, "storing a RAG query's spans failed");
        }
    });
    Ok(Json(
        json!({"result": answer, "status": "ok", "time": t.elapsed().as_secs_f64(), "trace_id": trace_id}),
    ))
}

/// The spans of one query: `rag.query` and a child per step (embed, retrieve, context, answer).
fn query_spans(
    collection: &str,
    question: &str,
    parent: Option<(String, String)>,
    start_ns: i64,
    total_ns: i64,
    answer: &rag::Answer,
    (mode, top_k, rerank): (&str, usize, usize),
) -> Vec<traces::Span> {
    let (trace_id, parent_span_id) =
        parent.unwrap_or_else(|| (traces::random_id(16), String::new()));
    let root_id = traces::random_id(8);
    let span = |name: String, id: String, parent: String, start: i64, end: i64, attrs: Value| {
        traces::Span {
            trace_id: trace_id.clone(),
            span_id: id,
            parent_span_id: parent,
            name,
            kind: 1,
            start_ns: start,
            end_ns: end.max(start),
            status: traces::Status::Ok,
            service: "capstan-rag".into(),
            scope: "capstan.rag".into(),
            attributes: attrs.as_object().cloned().unwrap_or_default(),
            ..Default::default()
        }
    };
    let mut out = vec![span(
        format!("rag.query {collection}"),
        root_id.clone(),
        parent_span_id,
        start_ns,
        start_ns + total_ns,
        json!({"rag.collection": collection, "rag.query": question, "rag.mode": mode,
               "rag.top_k": top_k, "rag.rerank": rerank, "rag.hits": answer.hits.len(),
               "rag.answer": answer.answer}),
    )];
    for step in &answer.steps {
        let at = start_ns + (step.offset_ms * 1e6) as i64;
        let attrs = match step.name {
            "embed" => json!({"gen_ai.operation.name": "embeddings",
                              "gen_ai.request.model": crate::embedding::DEFAULT_MODEL}),
            "retrieve" => json!({"rag.hits": answer.hits.len(),
                                 "rag.sources": answer.hits.iter().map(|h| h.source.as_str()).collect::<Vec<_>>()}),
            "context" => json!({"rag.citations": answer.citations.len()}),
            _ => json!({}),
        };
        out.push(span(
            format!("rag.{}", step.name),
            traces::random_id(8),
            root_id.clone(),
            at,
            at + (step.duration_ms * 1e6) as i64,
            attrs,
        ));
    }
    out
}
