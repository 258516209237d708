//! Operational visibility of serving: every prediction is counted (requests, errors, rows,
//! latency per model/version/variant) and logged to the prediction log; `/metrics` renders the
//! counters, batch sizes, queue depths and the log's own health as Prometheus text.

use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use learn::Prediction;
use monitor::predlog::{Output, PredictionEvent, SegmentMeta, SegmentSink};
use serving::Served;
use serving::metrics::label_value;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Prediction segments under the artifact store (`predictions/…` beside `sha256/…`).
pub struct BlobSink(pub store::Blobs);

#[async_trait::async_trait]
impl SegmentSink for BlobSink {
    async fn put_segment(&self, meta: &SegmentMeta, bytes: Vec<u8>) -> Result<(), String> {
        self.0
            .put_named(&meta.key(), bytes.into())
            .await
            .map_err(|e| e.to_string())
    }
}

/// Counts one inference and, when it succeeded, logs it.
#[allow(clippy::too_many_arguments)]
pub fn observe(
    s: &AppState,
    model: &str,
    served: Option<&Arc<Served>>,
    variant: &str,
    request_id: &str,
    rows: Option<Vec<Vec<f64>>>,
    predictions: Option<&[Prediction]>,
    start: Instant,
) {
    let latency = start.elapsed();
    let version = served.map_or("unknown".to_owned(), |v| v.version.to_string());
    let n = predictions.map_or(0, <[Prediction]>::len);
    s.metrics
        .observe(model, &version, variant, n, latency, predictions.is_some());
    let (Some(log), Some(served), Some(rows), Some(preds)) =
        (&s.predictions, served, rows, predictions)
    else {
        return;
    };
    let outputs = preds
        .iter()
        .map(|p| match p {
            Prediction::Value(v) => Output::Value(*v),
            Prediction::Class {
                label,
                probabilities,
            } => Output::Class {
                label: label.clone(),
                score: probabilities.iter().copied().reduce(f64::max),
            },
        })
        .collect();
    log.log(PredictionEvent {
        ts_ms: base::now_millis(),
        request_id: request_id.to_owned(),
        model: model.to_owned(),
        version: served.version,
        variant: variant.to_owned(),
        latency_us: latency.as_micros() as i64,
        input_names: served.input_names.clone(),
        rows,
        outputs,
    });
}

fn help(out: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
}

/// `GET /metrics`: Prometheus text exposition format 0.0.4.
pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let mut out = String::new();
    let series = s.metrics.snapshot();
    let labels = |k: &serving::metrics::SeriesKey| {
        format!(
            "model=\"{}\",version=\"{}\",variant=\"{}\"",
            label_value(&k.model),
            label_value(&k.version),
            label_value(&k.variant)
        )
    };
    help(
        &mut out,
        "capstan_inference_requests_total",
        "counter",
        "Inference requests, by model, version and variant.",
    );
    for (k, v) in &series {
        let _ = writeln!(
            out,
            "capstan_inference_requests_total{{{}}} {}",
            labels(k),
            v.requests.load(Ordering::Relaxed)
        );
    }
    help(
        &mut out,
        "capstan_inference_errors_total",
        "counter",
        "Inference requests that failed.",
    );
    for (k, v) in &series {
        let _ = writeln!(
            out,
            "capstan_inference_errors_total{{{}}} {}",
            labels(k),
            v.errors.load(Ordering::Relaxed)
        );
    }
    help(
        &mut out,
        "capstan_inference_rows_total",
        "counter",
        "Rows predicted.",
    );
    for (k, v) in &series {
        let _ = writeln!(
            out,
            "capstan_inference_rows_total{{{}}} {}",
            labels(k),
            v.rows.load(Ordering::Relaxed)
        );
    }
    help(
        &mut out,
        "capstan_inference_duration_seconds",
        "histogram",
        "Inference latency, request received to predictions ready.",
    );
    for (k, v) in &series {
        v.latency
            .render(&mut out, "capstan_inference_duration_seconds", &labels(k));
    }
    let loaded = s.serving.loaded();
    help(
        &mut out,
        "capstan_batch_size_rows",
        "histogram",
        "Rows per micro-batch, by served model version.",
    );
    for m in &loaded {
        let l = format!(
            "model=\"{}\",version=\"{}\"",
            label_value(&m.name),
            m.version
        );
        m.batch_sizes()
            .render(&mut out, "capstan_batch_size_rows", &l);
    }
    help(
        &mut out,
        "capstan_batch_queue_rows",
        "gauge",
        "Rows waiting in a model version's batch queue.",
    );
    for m in &loaded {
        let _ = writeln!(
            out,
            "capstan_batch_queue_rows{{model=\"{}\",version=\"{}\"}} {}",
            label_value(&m.name),
            m.version,
            m.queue_depth()
        );
    }
    help(
        &mut out,
        "capstan_models_loaded",
        "gauge",
        "Model versions loaded for serving.",
    );
    let _ = writeln!(out, "capstan_models_loaded {}", loaded.len());
    if let Some(log) = &s.predictions {
        let st = &log.stats;
        for (name, kind, text, value) in [
            (
                "capstan_prediction_log_queue_depth",
                "gauge",
                "Predictions waiting to be written to the prediction log.",
                log.queue_depth() as u64,
            ),
            (
                "capstan_prediction_log_dropped_total",
                "counter",
                "Predictions not logged because the log's queue was full.",
                st.dropped.load(Ordering::Relaxed),
            ),
            (
                "capstan_prediction_log_rows_total",
                "counter",
                "Prediction rows written to Parquet segments.",
                st.rows_written.load(Ordering::Relaxed),
            ),
            (
                "capstan_prediction_log_segments_total",
                "counter",
                "Parquet segments written.",
                st.segments_written.load(Ordering::Relaxed),
            ),
            (
                "capstan_prediction_log_write_errors_total",
                "counter",
                "Segments that could not be written.",
                st.write_errors.load(Ordering::Relaxed),
            ),
        ] {
            help(&mut out, name, kind, text);
            let _ = writeln!(out, "{name} {value}");
        }
    }
    crate::monitors::render_metrics(&s, &mut out);
    s.gateway.metrics.render(&mut out);
    s.trace_metrics.render(&mut out);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}

/// `POST /v2/models/{name}/feedback`: `{"id": REQUEST_ID, "label": L}` for a one-row request, or
/// `{"id": …, "labels": [L, …]}` with one label per row (a label is a number or a class).
pub async fn feedback(
    State(s): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Result<axum::Json<serde_json::Value>, crate::oip::OipError> {
    use crate::oip::bad;
    use monitor::performance::{Label, LabelValue};
    let req = crate::oip::parse_body(&body)?;
    let id = req["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("'id' must be the request id of the prediction (x-request-id)"))?;
    let values: Vec<&serde_json::Value> = match (req.get("label"), req.get("labels")) {
        (Some(l), None) => vec![l],
        (None, Some(serde_json::Value::Array(ls))) if !ls.is_empty() => ls.iter().collect(),
        _ => {
            return Err(bad(
                "give 'label' (one row) or 'labels' (a non-empty list, one per row)",
            ));
        }
    };
    let now = base::now_millis();
    let labels = values
        .iter()
        .enumerate()
        .map(|(row, v)| {
            let value = match v {
                serde_json::Value::Number(n) => {
                    n.as_f64().filter(|x| x.is_finite()).map(LabelValue::Number)
                }
                serde_json::Value::String(s) => Some(LabelValue::Class(s.clone())),
                serde_json::Value::Bool(b) => Some(LabelValue::Class(b.to_string())),
                _ => None,
            }
            .ok_or_else(|| bad(format!("label {row} must be a number or a string, got {v}")))?;
            Ok(Label {
                request_id: id.to_owned(),
                row: row as i64,
                value,
                ts_ms: now,
            })
        })
        .collect::<Result<Vec<_>, crate::oip::OipError>>()?;
    s.labels.put_labels(&name, &labels).await.map_err(|e| {
        tracing::error!(error = %e, "could not store labels");
        crate::oip::OipError(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "could not store labels".into(),
        )
    })?;
    Ok(axum::Json(serde_json::json!({"accepted": labels.len()})))
}

#[derive(serde::Deserialize)]
pub struct PerformanceQuery {
    model: String,
    /// Window length in seconds (default one hour).
    window_seconds: Option<i64>,
    /// Only predictions at or after this time (epoch ms).
    since_ms: Option<i64>,
}

/// `GET /api/2.0/capstan/monitoring/performance?model=M&window_seconds=3600`: live accuracy or
/// RMSE / MAE per version and window, from the prediction log joined with feedback labels.
pub async fn performance(
    State(s): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<PerformanceQuery>,
) -> Result<axum::Json<serde_json::Value>, crate::error::ApiError> {
    use crate::error::ApiError;
    let window_ms = q.window_seconds.unwrap_or(3600).saturating_mul(1000);
    if window_ms <= 0 {
        return Err(ApiError::invalid("window_seconds must be positive"));
    }
    let since = q.since_ms.unwrap_or(0);
    if s.predictions.is_none() {
        return Err(ApiError::invalid(
            "the prediction log is off (serving.prediction_log = false)",
        ));
    }
    let (_, predictions) = load_window(&s, &q.model, since).await?;
    let mut ids: Vec<String> = predictions.iter().map(|p| p.request_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let labels = s
        .labels
        .labels_for(&q.model, &ids)
        .await
        .map_err(ApiError::internal)?;
    let windows = monitor::performance::live_performance(&predictions, &labels, window_ms);
    Ok(axum::Json(serde_json::json!({
        "model": q.model,
        "window_seconds": window_ms / 1000,
        "windows": windows,
    })))
}

/// The model's logged predictions at or after `since_ms`: their inputs as one table (the window
/// a drift check reads) and the prediction rows (what labels join to).
pub async fn load_window(
    s: &AppState,
    model: &str,
    since_ms: i64,
) -> Result<
    (
        data::frame::Frame,
        Vec<monitor::performance::LoggedPrediction>,
    ),
    crate::error::ApiError,
> {
    if let Some(log) = &s.predictions {
        log.flush().await;
    }
    logged_since(&s.blobs, model, since_ms)
        .await
        .map_err(crate::error::ApiError::internal)
}

/// What the prediction log holds of `model` at or after `since_ms` (the segments written so
/// far, by any server sharing the artifact store): the inputs as one table and the predictions.
pub async fn logged_since(
    blobs: &store::Blobs,
    model: &str,
    since_ms: i64,
) -> Result<
    (
        data::frame::Frame,
        Vec<monitor::performance::LoggedPrediction>,
    ),
    String,
> {
    let prefix = SegmentMeta::model_prefix(model);
    let objects = blobs.list_named(&prefix).await.map_err(|e| e.to_string())?;
    let (mut frames, mut predictions) = (Vec::new(), Vec::new());
    for (key, _) in objects {
        // …/<start>-<end>-<rows>.parquet: skip segments that ended before `since`.
        let end = key
            .rsplit('/')
            .next()
            .and_then(|f| f.split('-').nth(1))
            .and_then(|e| e.parse::<i64>().ok())
            .unwrap_or(i64::MAX);
        if end < since_ms {
            continue;
        }
        let bytes = blobs.get_named(&key).await.map_err(|e| e.to_string())?;
        let frame = data::frame::read_parquet_frame(std::path::Path::new(&key), bytes.to_vec())
            .map_err(|e| e.to_string())?;
        let rows = monitor::performance::logged_predictions(&frame)?;
        let keep: Vec<bool> = rows.iter().map(|p| p.ts_ms >= since_ms).collect();
        predictions.extend(rows.into_iter().filter(|p| p.ts_ms >= since_ms));
        frames.push(frame.filter_rows(&keep));
    }
    Ok((data::frame::Frame::concat(&frames), predictions))
}
