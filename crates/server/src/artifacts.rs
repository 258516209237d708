//! MLflow's proxied artifact API (`/api/2.0/mlflow-artifacts/artifacts/...`), on content-addressed
//! blobs. An upload becomes visible only once its blob is complete and indexed.

use crate::AppState;
use crate::error::ApiError;
use crate::wire::QueryPairs;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base::ArtifactPath;
use futures_util::TryStreamExt;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use store::BlobError;

const PREFIX: &str = "/api/2.0/mlflow-artifacts/artifacts";

pub fn routes() -> Router<AppState> {
    Router::new().route(PREFIX, get(list)).route(
        &format!("{PREFIX}/{{*path}}"),
        get(download).put(upload).delete(delete),
    )
}

fn parse(raw: &str) -> Result<ArtifactPath, ApiError> {
    ArtifactPath::parse(raw).map_err(|e| ApiError::invalid(e.to_string()))
}

fn blob_error(e: BlobError) -> ApiError {
    match e {
        BlobError::TooLarge(max) => ApiError {
            status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            ..ApiError::invalid(format!("Artifact exceeds the upload limit of {max} bytes"))
        },
        BlobError::Body(m) => ApiError::invalid(format!("Upload interrupted: {m}")),
        other => ApiError::internal(other),
    }
}

async fn upload(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let path = parse(&raw)?;
    if path.is_root() {
        return Err(ApiError::invalid("An artifact upload needs a file path"));
    }
    let (hash, size) = s
        .blobs
        .put_stream(body.into_data_stream(), s.config.max_artifact_bytes)
        .await
        .map_err(blob_error)?;
    s.artifacts
        .put_artifact(&tracking::ArtifactEntry { path, hash, size })
        .await?;
    Ok(Json(json!({})))
}

async fn download(
    State(s): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let path = parse(&raw)?;
    let entry = s
        .artifacts
        .get_artifact(&path)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Artifact '{path}' does not exist")))?;
    let stream = s.blobs.get(&entry.hash).await.map_err(blob_error)?;
    let body = Body::from_stream(stream.map_err(std::io::Error::other));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, entry.size.to_string()),
            (
                header::HeaderName::from_static("x-content-sha256"),
                entry.hash.to_string(),
            ),
        ],
        body,
    )
        .into_response())
}

async fn delete(
    State(s): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let path = parse(&raw)?;
    s.artifacts.delete_artifacts(&path).await?;
    Ok(Json(json!({})))
}

/// Lists the direct children of `?path=`: files with sizes, directories without. A file or a
/// missing directory lists as `{}`, as MLflow does.
async fn list(State(s): State<AppState>, q: QueryPairs) -> Result<Json<Value>, ApiError> {
    let dir = parse(q.get("path").unwrap_or(""))?;
    let entries = s.artifacts.list_artifacts(&dir).await?;
    let skip = if dir.is_root() {
        0
    } else {
        dir.as_str().len() + 1
    };
    let mut children: BTreeMap<String, Option<u64>> = BTreeMap::new();
    for e in &entries {
        let rel = &e.path.as_str()[skip..];
        match rel.split_once('/') {
            Some((d, _)) => {
                children.entry(d.to_owned()).or_insert(None);
            }
            None => {
                children.insert(rel.to_owned(), Some(e.size));
            }
        }
    }
    if children.is_empty() {
        return Ok(Json(json!({})));
    }
    let files: Vec<Value> = children
        .into_iter()
        .map(|(name, size)| match size {
            Some(n) => json!({"path": name, "is_dir": false, "file_size": n}),
            None => json!({"path": name, "is_dir": true}),
        })
        .collect();
    Ok(Json(json!({"files": files})))
}
