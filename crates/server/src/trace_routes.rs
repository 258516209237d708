//! Traces over HTTP: OTLP/HTTP ingestion at `POST /v1/traces` (protobuf or JSON, gzip, partial
//! success, OTLP's retryable statuses) and Capstan's own API to search traces, read one as a span
//! tree, aggregate GenAI spans and apply retention.

use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use traces::otlp::{self, Export};
use traces::{GroupBy, Span, Status, TraceFilter};

/// Largest OTLP body once decompressed (a gzip bomb stops here).
const MAX_DECODED_BYTES: u64 = 64 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/traces", post(ingest))
        .route("/api/2.0/capstan/traces", get(search))
        .route("/api/2.0/capstan/traces/stats", get(stats))
        .route("/api/2.0/capstan/traces/expire", post(expire))
        .route("/api/2.0/capstan/traces/{trace_id}", get(show))
        .route("/api/3.0/mlflow/traces", post(mlflow_start_trace))
        .route(
            "/api/3.0/mlflow/traces/{trace_id}/info",
            get(mlflow_trace_info),
        )
}

/// MLflow 3's `StartTraceV3` (called when a trace ends; its spans came over OTLP): keeps the
/// `TraceInfo` and answers it back with `mlflow.trace.spansLocation = TRACKING_STORE`, so the
/// client does not upload the spans a second time as an artifact.
async fn mlflow_start_trace(
    State(s): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "expected {{\"trace\": {{\"trace_info\": …}}}}: {e}"
        ))
    })?;
    let mut info = v["trace"]["trace_info"].clone();
    let id = info["trace_id"].as_str().unwrap_or_default().to_owned();
    let hex = id.strip_prefix("tr-").unwrap_or(&id).to_ascii_lowercase();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(format!(
            "trace_info.trace_id must be tr-<32 hex digits>, got '{id}'"
        )));
    }
    let experiment = info["trace_location"]["mlflow_experiment"]["experiment_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if !info["tags"].is_object() {
        info["tags"] = json!({});
    }
    info["tags"]["mlflow.trace.spansLocation"] = json!("TRACKING_STORE");
    s.traces
        .put_trace_info(&hex, &experiment, &info)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({"trace": {"trace_info": info}})))
}

/// The `TraceInfo` an MLflow client stored.
async fn mlflow_trace_info(
    State(s): State<AppState>,
    Path(trace_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let hex = trace_id
        .strip_prefix("tr-")
        .unwrap_or(&trace_id)
        .to_ascii_lowercase();
    match s.traces.trace_info(&hex).await.map_err(store_error)? {
        Some(info) => Ok(Json(json!({"trace": {"trace_info": info}}))),
        None => Err(ApiError::not_found(format!("trace {trace_id} not found"))),
    }
}

/// Ingestion counters and per-model GenAI totals of the spans received over OTLP (`/metrics`).
#[derive(Default)]
pub struct TraceMetrics {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    /// Requests refused whole: undecodable (400), too large (413), store unavailable (503).
    pub refused: AtomicU64,
    models: Mutex<BTreeMap<String, ModelTotals>>,
}

/// A metric's name, help text and value.
type Series = (&'static str, &'static str, fn(&ModelTotals) -> f64);

#[derive(Default, Clone, Copy)]
struct ModelTotals {
    spans: u64,
    errors: u64,
    input_tokens: u64,
    output_tokens: u64,
    cost_usd: f64,
}

impl TraceMetrics {
    fn count(&self, spans: &[Span]) {
        let Ok(mut models) = self.models.lock() else {
            return;
        };
        for s in spans {
            let g = s.genai();
            let Some(model) = g.model else { continue };
            let t = models.entry(model).or_default();
            t.spans += 1;
            t.errors += u64::from(s.status == Status::Error);
            t.input_tokens += g.input_tokens.unwrap_or(0).max(0) as u64;
            t.output_tokens += g.output_tokens.unwrap_or(0).max(0) as u64;
            t.cost_usd += g.cost_usd.unwrap_or(0.0);
        }
    }

    /// Prometheus text.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP capstan_otlp_spans_total Spans received over OTLP/HTTP, by outcome.\n\
             # TYPE capstan_otlp_spans_total counter\n\
             capstan_otlp_spans_total{{outcome=\"accepted\"}} {}\n\
             capstan_otlp_spans_total{{outcome=\"rejected\"}} {}\n\
             # HELP capstan_otlp_requests_refused_total OTLP requests refused whole.\n\
             # TYPE capstan_otlp_requests_refused_total counter\n\
             capstan_otlp_requests_refused_total {}",
            c(&self.accepted),
            c(&self.rejected),
            c(&self.refused)
        );
        let Ok(models) = self.models.lock() else {
            return;
        };
        let series: [Series; 5] = [
            (
                "capstan_genai_spans_total",
                "GenAI spans received, by model.",
                |t| t.spans as f64,
            ),
            (
                "capstan_genai_span_errors_total",
                "GenAI spans with an error status, by model.",
                |t| t.errors as f64,
            ),
            (
                "capstan_genai_input_tokens_total",
                "Input tokens of GenAI spans, by model.",
                |t| t.input_tokens as f64,
            ),
            (
                "capstan_genai_output_tokens_total",
                "Output tokens of GenAI spans, by model.",
                |t| t.output_tokens as f64,
            ),
            (
                "capstan_genai_cost_usd_total",
                "Cost of GenAI spans in dollars, by model.",
                |t| t.cost_usd,
            ),
        ];
        for (name, help, value) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (model, t) in models.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{model=\"{}\"}} {}",
                    serving::metrics::label_value(model),
                    value(t)
                );
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Protobuf,
    Json,
}

/// An OTLP error answer: a `google.rpc.Status` in the request's encoding.
fn otlp_error(enc: Encoding, status: StatusCode, message: &str) -> Response {
    // gRPC codes: INVALID_ARGUMENT 3, RESOURCE_EXHAUSTED 8, UNAVAILABLE 14.
    let code = match status {
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => 3,
        StatusCode::PAYLOAD_TOO_LARGE => 8,
        _ => 14,
    };
    let mut res = match enc {
        Encoding::Protobuf => (
            status,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            otlp::encode_status(code, message),
        )
            .into_response(),
        Encoding::Json => (status, Json(json!({"code": code, "message": message}))).into_response(),
    };
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // OTLP clients retry 503 and honour Retry-After.
        res.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    res
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// `POST /v1/traces`.
async fn ingest(State(s): State<AppState>, h: HeaderMap, body: Bytes) -> Response {
    let content_type = header_str(&h, "content-type").to_ascii_lowercase();
    let enc = if content_type.starts_with("application/x-protobuf")
        || content_type.starts_with("application/protobuf")
    {
        Encoding::Protobuf
    } else if content_type.starts_with("application/json") {
        Encoding::Json
    } else {
        s.trace_metrics.refused.fetch_add(1, Ordering::Relaxed);
        return otlp_error(
            Encoding::Json,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!(
                "Content-Type must be application/x-protobuf or application/json, not '{content_type}'"
            ),
        );
    };
    let refuse = |status: StatusCode, message: &str| {
        s.trace_metrics.refused.fetch_add(1, Ordering::Relaxed);
        otlp_error(enc, status, message)
    };
    let raw: Vec<u8> = match header_str(&h, "content-encoding")
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "identity" => body.to_vec(),
        "gzip" => {
            let mut out = Vec::new();
            let mut d = flate2::read::GzDecoder::new(&body[..]).take(MAX_DECODED_BYTES + 1);
            if let Err(e) = d.read_to_end(&mut out) {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    &format!("body is not valid gzip: {e}"),
                );
            }
            if out.len() as u64 > MAX_DECODED_BYTES {
                return refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the decompressed body is larger than {MAX_DECODED_BYTES} bytes"),
                );
            }
            out
        }
        other => {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("Content-Encoding '{other}' is not supported (gzip is)"),
            );
        }
    };
    let experiment = header_str(&h, "x-mlflow-experiment-id").trim().to_owned();
    let decoded = match enc {
        Encoding::Protobuf => otlp::decode_protobuf(&raw, &experiment),
        Encoding::Json => otlp::decode_json(&raw, &experiment),
    };
    let export = match decoded {
        Ok(e) => e,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let message = export.rejection_message();
    let Export { spans, rejected } = export;
    if let Err(e) = s.traces.write_spans(&spans).await {
        tracing::warn!(error = %e, "storing spans failed; the exporter will retry");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the trace store is unavailable; retry",
        );
    }
    s.trace_metrics
        .accepted
        .fetch_add(spans.len() as u64, Ordering::Relaxed);
    s.trace_metrics
        .rejected
        .fetch_add(rejected.len() as u64, Ordering::Relaxed);
    s.trace_metrics.count(&spans);
    match enc {
        Encoding::Protobuf => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            otlp::encode_response(rejected.len(), &message),
        )
            .into_response(),
        Encoding::Json => {
            let body = if rejected.is_empty() {
                json!({})
            } else {
                json!({"partialSuccess": {"rejectedSpans": rejected.len().to_string(), "errorMessage": message}})
            };
            Json(body).into_response()
        }
    }
}

fn store_error(e: traces::Error) -> ApiError {
    match e {
        traces::Error::NotFound(id) => ApiError::not_found(format!("trace {id} not found")),
        traces::Error::Invalid(m) | traces::Error::Json(m) | traces::Error::Protobuf(m) => {
            ApiError::invalid(m)
        }
        traces::Error::Store(m) => ApiError::internal(m),
    }
}

fn num<T: std::str::FromStr>(
    q: &HashMap<String, String>,
    key: &str,
) -> Result<Option<T>, ApiError> {
    match q.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::invalid(format!("{key} must be a number, got '{v}'"))),
    }
}

fn ms_to_ns(ms: Option<i64>) -> Option<i64> {
    ms.map(|m| m.saturating_mul(1_000_000))
}

const PARAMS: &[&str] = &[
    "since_ms",
    "until_ms",
    "model",
    "user",
    "service",
    "prompt",
    "experiment_id",
    "status",
    "min_cost_usd",
    "min_duration_ms",
    "max_duration_ms",
    "q",
    "limit",
    "page_token",
];

/// `GET /api/2.0/capstan/traces`: traces newest first, filtered, a page at a time.
async fn search(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    if let Some(k) = q.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err(ApiError::invalid(format!(
            "unknown parameter '{k}'; expected one of {}",
            PARAMS.join(", ")
        )));
    }
    let text = |k: &str| {
        q.get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let status = match text("status").as_deref() {
        None => None,
        Some("ok") => Some(Status::Ok),
        Some("error") => Some(Status::Error),
        Some(o) => {
            return Err(ApiError::invalid(format!(
                "status must be ok or error, not '{o}'"
            )));
        }
    };
    let limit: usize = num(&q, "limit")?.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 1000"));
    }
    let before = match text("page_token") {
        None => None,
        Some(t) => {
            let parsed = t
                .split_once(':')
                .and_then(|(a, b)| Some((a.parse::<i64>().ok()?, b.to_owned())));
            Some(
                parsed
                    .ok_or_else(|| ApiError::invalid("page_token is not one this server gave"))?,
            )
        }
    };
    let filter = TraceFilter {
        since_ns: ms_to_ns(num(&q, "since_ms")?),
        until_ns: ms_to_ns(num(&q, "until_ms")?),
        model: text("model"),
        user: text("user"),
        service: text("service"),
        prompt: text("prompt"),
        experiment_id: text("experiment_id"),
        status,
        min_cost_usd: num(&q, "min_cost_usd")?,
        min_duration_ms: num(&q, "min_duration_ms")?,
        max_duration_ms: num(&q, "max_duration_ms")?,
        text: text("q"),
        limit,
        before,
    };
    let found = s.traces.search_traces(&filter).await.map_err(store_error)?;
    let next = (found.len() == limit)
        .then(|| {
            found
                .last()
                .map(|t| format!("{}:{}", t.start_ns, t.trace_id))
        })
        .flatten();
    Ok(Json(json!({"traces": found, "next_page_token": next})))
}

/// `GET /api/2.0/capstan/traces/{trace_id}`: the spans as a tree (depth-first, children by start
/// time), each with its depth, and the trace's totals.
async fn show(
    State(s): State<AppState>,
    Path(trace_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if trace_id.len() != 32 || !trace_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(format!(
            "trace id must be 32 hex digits, got '{trace_id}'"
        )));
    }
    let spans = s
        .traces
        .trace(&trace_id.to_ascii_lowercase())
        .await
        .map_err(store_error)?;
    let mut out = Vec::with_capacity(spans.len());
    for (i, depth) in traces::tree_order(&spans) {
        let sp = &spans[i];
        let mut v = serde_json::to_value(sp).map_err(ApiError::internal)?;
        v["depth"] = json!(depth);
        v["duration_ms"] = json!(sp.duration_ms());
        v["genai"] = serde_json::to_value(sp.genai()).map_err(ApiError::internal)?;
        out.push(v);
    }
    let start = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end_ns).max().unwrap_or(0);
    let (mut input, mut output, mut cost) = (0i64, 0i64, 0f64);
    for sp in &spans {
        let g = sp.genai();
        input += g.input_tokens.unwrap_or(0);
        output += g.output_tokens.unwrap_or(0);
        cost += g.cost_usd.unwrap_or(0.0);
    }
    let errors = spans.iter().filter(|s| s.status == Status::Error).count();
    Ok(Json(json!({
        "trace_id": trace_id.to_ascii_lowercase(),
        "start_ns": start, "end_ns": end, "duration_ms": (end - start) as f64 / 1e6,
        "span_count": spans.len(), "errors": errors,
        "input_tokens": input, "output_tokens": output, "cost_usd": cost,
        "spans": out,
    })))
}

/// `GET /api/2.0/capstan/traces/stats?by=model|prompt|user|service|operation&since_ms=&until_ms=`
async fn stats(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let by_name = q.get("by").map(String::as_str).unwrap_or("model");
    let by = GroupBy::parse(by_name).ok_or_else(|| {
        ApiError::invalid(format!(
            "by must be model, prompt, user, service or operation, not '{by_name}'"
        ))
    })?;
    let now_ns = base::now_millis().saturating_mul(1_000_000);
    let since = ms_to_ns(num(&q, "since_ms")?).unwrap_or(now_ns - 24 * 3_600_000_000_000);
    let until = ms_to_ns(num(&q, "until_ms")?).unwrap_or(now_ns + 60_000_000_000);
    if until <= since {
        return Err(ApiError::invalid("until_ms must be after since_ms"));
    }
    let groups = s
        .traces
        .trace_stats(by, since, until)
        .await
        .map_err(store_error)?;
    Ok(Json(
        json!({"by": by_name, "since_ns": since, "until_ns": until, "groups": groups}),
    ))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpireRequest {
    /// Traces that ended more than this many days ago go.
    older_than_days: f64,
}

/// `POST /api/2.0/capstan/traces/expire {"older_than_days": N}`.
async fn expire(State(s): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let r: ExpireRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("expected {{\"older_than_days\": N}}: {e}")))?;
    if !(r.older_than_days.is_finite() && r.older_than_days >= 0.0) {
        return Err(ApiError::invalid("older_than_days must be a number ≥ 0"));
    }
    let before =
        base::now_millis().saturating_mul(1_000_000) - (r.older_than_days * 86_400e9) as i64;
    let done = s.traces.expire(before).await.map_err(store_error)?;
    Ok(Json(
        json!({"expired_spans": done.spans, "expired_traces": done.traces, "before_ns": before}),
    ))
}

/// Deletes traces older than `days` once an hour while the server runs.
pub async fn retention(state: AppState, days: f64) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let before = base::now_millis().saturating_mul(1_000_000) - (days * 86_400e9) as i64;
        match state.traces.expire(before).await {
            Ok(e) if e.spans > 0 => {
                tracing::info!(spans = e.spans, traces = e.traces, "trace retention");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "trace retention failed"),
        }
    }
}
