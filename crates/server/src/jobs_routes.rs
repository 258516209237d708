//! The job queue over HTTP (the same jobs `capstan jobs` and `capstan worker` see):
//! `GET /api/2.0/capstan/jobs?state=&limit=`, `GET /api/2.0/capstan/jobs/{id}`,
//! `POST /api/2.0/capstan/jobs` `{"kind", "payload", "max_attempts", "dedupe_key",
//! "delay_seconds"}`, `POST /api/2.0/capstan/jobs/{id}/cancel` and
//! `GET /api/2.0/capstan/jobs/{id}/logs?after=SEQ&limit=N` (lines oldest first; `next` is the
//! `after` that continues).

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use pipeline::{JobState, NewJob};
use serde_json::{Value, json};
use std::collections::HashMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/2.0/capstan/jobs", get(list).post(submit))
        .route("/api/2.0/capstan/jobs/{id}", get(show))
        .route("/api/2.0/capstan/jobs/{id}/cancel", post(cancel))
        .route("/api/2.0/capstan/jobs/{id}/logs", get(logs))
}

/// The query's `limit`: `default` when absent, refused outside 1..=`max`.
fn limit(q: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, ApiError> {
    match q.get("limit") {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::invalid(format!("limit must be between 1 and {max}"))),
        None => Ok(default),
    }
}

async fn list(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let state = match q.get("state") {
        Some(v) => Some(JobState::parse(v).ok_or_else(|| {
            ApiError::invalid(format!(
                "state `{v}` is not queued, running, succeeded, failed or cancelled"
            ))
        })?),
        None => None,
    };
    let limit = limit(&q, 100, 1000)?;
    let jobs = s
        .jobs
        .list(state, limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({"jobs": jobs})))
}

/// Job `id`, or a 404 naming it.
async fn job(s: &AppState, id: i64) -> Result<pipeline::Job, ApiError> {
    s.jobs
        .get(id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))
}

async fn show(State(s): State<AppState>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"job": job(&s, id).await?})))
}

async fn logs(
    State(s): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let state = job(&s, id).await?.state;
    let after = match q.get("after") {
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::invalid("after must be a non-negative integer"))?,
        None => 0,
    };
    let limit = limit(&q, 1000, 10_000)?;
    let lines = s
        .jobs
        .logs(id, after, limit)
        .await
        .map_err(ApiError::internal)?;
    let next = lines.last().map_or(after, |l| l.seq);
    Ok(Json(json!({"lines": lines, "next": next, "state": state})))
}

async fn submit(
    State(s): State<AppState>,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: Value = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::invalid(format!("request body is not JSON: {e}")))?;
    let kind = b["kind"]
        .as_str()
        .ok_or_else(|| ApiError::invalid("`kind` is required"))?;
    let mut job = NewJob::new(kind, b.get("payload").cloned().unwrap_or(json!({})));
    if let Some(n) = b.get("max_attempts") {
        job.max_attempts = n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| ApiError::invalid("`max_attempts` must be a positive integer"))?;
    }
    job.dedupe_key = b["dedupe_key"].as_str().map(str::to_owned);
    let now = base::now_millis();
    if let Some(d) = b.get("delay_seconds") {
        let d = d
            .as_u64()
            .ok_or_else(|| ApiError::invalid("`delay_seconds` must be a non-negative integer"))?;
        job.run_after_ms = now + (d as i64) * 1000;
    }
    job.validate().map_err(ApiError::invalid)?;
    let job = s.jobs.enqueue(job, now).await.map_err(ApiError::internal)?;
    Ok(Json(json!({"job": job})))
}

async fn cancel(State(s): State<AppState>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    job(&s, id).await?;
    let cancelled = s
        .jobs
        .cancel(id, base::now_millis())
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({"cancelled": cancelled})))
}
