//! Labelled events for continuous training: `POST /api/2.0/capstan/models/{name}/labelled`
//! `{"rows": [{column: value, …}, …]}` appends rows to the labelled data the model's retraining
//! policy names (`capstan.retrain.policy`), in the file's own column order — the HTTP form of a
//! file drop. Every row must carry exactly the file's columns; a batch is checked whole before
//! any of it is written, then appended and synced under one lock, so a batch is all in or all
//! out and concurrent batches never interleave. With the policy's `retrain_after_rows`, a batch
//! that brings the rows since the last retraining to that many queues one (`retrain:<model>`,
//! one pending per model); the answer names the job.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::io::{BufRead, Write};

/// One writer at a time per process (appends from several servers to one file need a shared
/// filesystem's own locking; the embedded default is one server).
static APPEND: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/2.0/capstan/models/{name}/labelled", post(append))
}

/// A CSV cell: quoted when it holds a comma, a quote or a line break.
fn cell(v: &Value) -> Result<String, String> {
    let text = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => return Err(format!("{other} is not a number, a string or null")),
    };
    Ok(if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    })
}

async fn append(
    State(s): State<AppState>,
    Path(name): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: Value = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::invalid(format!("request body is not JSON: {e}")))?;
    let rows = body["rows"]
        .as_array()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::invalid("`rows` must be a non-empty list of objects"))?;
    let model = s.registry.get_model(&name).await?;
    let tag = model
        .tags
        .iter()
        .find(|t| t.key == pipeline::retrain::POLICY_TAG)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "model `{name}` has no retraining policy, so no labelled data to append to (capstan retrain policy {name} FILE)"
            ))
        })?;
    let policy = pipeline::retrain::Policy::parse(&tag.value).map_err(ApiError::invalid)?;
    let path = std::path::PathBuf::from(&policy.data);
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
    {
        return Err(ApiError::invalid(format!(
            "{} is Parquet; labelled rows are appended to CSV data only",
            policy.data
        )));
    }
    let _guard = APPEND.lock().await;
    let (header, lines) = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<String>, usize)> {
            let f = std::io::BufReader::new(std::fs::File::open(&path)?);
            let mut lines = f.lines();
            let header = lines
                .next()
                .transpose()?
                .unwrap_or_default()
                .split(',')
                .map(|c| c.trim().to_owned())
                .collect();
            Ok((header, lines.count()))
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::internal(format!("{}: {e}", policy.data)))?
    };
    let mut text = String::new();
    for (i, row) in rows.iter().enumerate() {
        let obj = row
            .as_object()
            .ok_or_else(|| ApiError::invalid(format!("rows[{i}] is not an object")))?;
        if let Some(extra) = obj.keys().find(|k| !header.contains(k)) {
            return Err(ApiError::invalid(format!(
                "rows[{i}] has `{extra}`, which is not a column of {} ({})",
                policy.data,
                header.join(", ")
            )));
        }
        let cells = header
            .iter()
            .map(|c| {
                let v = obj
                    .get(c)
                    .ok_or_else(|| ApiError::invalid(format!("rows[{i}] lacks column `{c}`")))?;
                cell(v).map_err(|e| ApiError::invalid(format!("rows[{i}].{c}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        text.push_str(&cells.join(","));
        text.push('\n');
    }
    let n = rows.len();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)?;
        // A file whose last line has no line break gets one first.
        if f.metadata()?.len() > 0 {
            f.seek(SeekFrom::End(-1))?;
            let mut last = [0u8];
            f.read_exact(&mut last)?;
            if last[0] != b'\n' {
                text.insert(0, '\n');
            }
        }
        f.write_all(text.as_bytes())?;
        f.sync_data()
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    // Enough new rows since the last retraining: queue one (one pending per model).
    let mut job = Value::Null;
    if let Some(after) = policy.retrain_after_rows {
        let since = model
            .tags
            .iter()
            .find(|t| t.key == pipeline::retrain::ROWS_TAG)
            .and_then(|t| t.value.parse::<usize>().ok())
            .unwrap_or(0);
        let new = (lines + n).saturating_sub(since);
        if new >= after {
            let mut j = pipeline::NewJob::new(
                "retrain",
                json!({"model": name, "reason": format!("{new} labelled rows since the last retraining (the policy asks for {after})")}),
            );
            j.dedupe_key = Some(format!("retrain:{name}"));
            let queued = s
                .jobs
                .enqueue(j, base::now_millis())
                .await
                .map_err(ApiError::internal)?;
            job = json!({"id": queued.id, "state": queued.state});
        }
    }
    Ok(Json(
        json!({"appended": n, "rows": lines + n, "data": policy.data, "retrain_job": job}),
    ))
}
