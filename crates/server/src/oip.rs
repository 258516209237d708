//! The Open Inference Protocol v2 (`/v2/...`) and MLflow's scoring protocol (`/invocations`),
//! mapped to `serving::Serving`. Errors are `{"error": "..."}` with 400/404/503.

use crate::{AppState, monitoring};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use learn::{ModelPackage, Prediction, Task};
use serde_json::{Value, json};
use serving::{Selector, ServeError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2", get(server_meta))
        .route(
            "/v2/health/live",
            get(|| async { Json(json!({"live": true})) }),
        )
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_meta))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}", get(model_meta_v))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_ready_v),
        )
        .route("/v2/models/{name}/versions/{version}/infer", post(infer_v))
        .route("/v2/models/{name}/feedback", post(monitoring::feedback))
        .route("/invocations", post(invocations))
}

pub struct OipError(pub StatusCode, pub String);

impl IntoResponse for OipError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

pub fn bad(msg: impl Into<String>) -> OipError {
    OipError(StatusCode::BAD_REQUEST, msg.into())
}

impl From<ServeError> for OipError {
    fn from(e: ServeError) -> OipError {
        let status = match &e {
            ServeError::NotFound(_) => StatusCode::NOT_FOUND,
            ServeError::BadInput(_) => StatusCode::BAD_REQUEST,
            ServeError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ServeError::Load(_) | ServeError::Internal(_) => {
                tracing::error!(error = %e, "serving failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        OipError(status, e.to_string())
    }
}

fn default_selector(s: &AppState) -> Selector {
    Selector::Alias(s.config.serving_alias.clone())
}

fn parse_version(v: &str) -> Result<Selector, OipError> {
    v.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .map(Selector::Version)
        .ok_or_else(|| bad(format!("invalid model version '{v}'")))
}

async fn server_meta() -> Json<Value> {
    Json(json!({"name": "capstan", "version": env!("CARGO_PKG_VERSION"), "extensions": []}))
}

async fn ready(State(s): State<AppState>) -> Response {
    // A single-model process is ready once its model answers; a multi-model server always is.
    if let Some((name, sel)) = &s.config.default_model
        && s.serving.get(name, sel).await.is_err()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false})),
        )
            .into_response();
    }
    Json(json!({"ready": true})).into_response()
}

fn meta_json(name: &str, version: i64, p: &ModelPackage) -> Value {
    let outputs = match p.task {
        Task::Regression => {
            json!([{"name": p.output.name, "datatype": p.output.dtype.oip_name(), "shape": [-1]}])
        }
        Task::Classification => json!([
            {"name": p.output.name, "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, -1]}
        ]),
    };
    json!({
        "name": name,
        "versions": [version.to_string()],
        "platform": "capstan",
        "inputs": p.inputs.iter().map(|c| json!({"name": c.name, "datatype": c.dtype.oip_name(), "shape": [-1]})).collect::<Vec<_>>(),
        "outputs": outputs,
    })
}

async fn meta(s: &AppState, name: &str, sel: Selector) -> Result<Json<Value>, OipError> {
    let served = s.serving.get(name, &sel).await?;
    Ok(Json(meta_json(name, served.version, &served.package)))
}

async fn model_meta(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, OipError> {
    let sel = default_selector(&s);
    meta(&s, &name, sel).await
}

async fn model_meta_v(
    State(s): State<AppState>,
    Path((name, v)): Path<(String, String)>,
) -> Result<Json<Value>, OipError> {
    meta(&s, &name, parse_version(&v)?).await
}

async fn model_ready(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, OipError> {
    let served = s.serving.get(&name, &default_selector(&s)).await?;
    Ok(Json(
        json!({"name": name, "version": served.version.to_string(), "ready": true}),
    ))
}

async fn model_ready_v(
    State(s): State<AppState>,
    Path((name, v)): Path<(String, String)>,
) -> Result<Json<Value>, OipError> {
    let served = s.serving.get(&name, &parse_version(&v)?).await?;
    Ok(Json(
        json!({"name": name, "version": served.version.to_string(), "ready": true}),
    ))
}

/// Flattens nested arrays of numbers (OIP allows flat or nested row-major data).
fn flatten(v: &Value, out: &mut Vec<f64>, input: &str) -> Result<(), OipError> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|i| flatten(i, out, input)),
        Value::Number(n) => {
            out.push(
                n.as_f64()
                    .ok_or_else(|| bad(format!("input '{input}': {n} is not a number")))?,
            );
            Ok(())
        }
        Value::Bool(b) => {
            out.push(if *b { 1.0 } else { 0.0 });
            Ok(())
        }
        other => Err(bad(format!("input '{input}': {other} is not a number"))),
    }
}

const NUMERIC: &[&str] = &[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
    "FP32", "FP64", "BF16",
];

/// Turns OIP input tensors into rows: either one `[N, d]` tensor, or one `[N]` / `[N, 1]` tensor
/// per model input, by name.
fn rows_from_tensors(p: &ModelPackage, inputs: &[Value]) -> Result<Vec<Vec<f64>>, OipError> {
    let d = p.inputs.len();
    let mut tensors = Vec::with_capacity(inputs.len());
    for t in inputs {
        let name = t["name"]
            .as_str()
            .ok_or_else(|| bad("every input needs a 'name'"))?
            .to_owned();
        let datatype = t["datatype"]
            .as_str()
            .ok_or_else(|| bad(format!("input '{name}' needs a 'datatype'")))?;
        if !NUMERIC.contains(&datatype) {
            return Err(bad(format!(
                "input '{name}' has datatype {datatype}; this model takes numbers (FP64, FP32, INT64, …)"
            )));
        }
        let shape: Vec<i64> = t["shape"]
            .as_array()
            .ok_or_else(|| bad(format!("input '{name}' needs a 'shape'")))?
            .iter()
            .map(|x| {
                x.as_i64()
                    .filter(|v| *v >= 0)
                    .ok_or_else(|| bad(format!("input '{name}' has an invalid shape")))
            })
            .collect::<Result<_, _>>()?;
        let mut data = Vec::new();
        flatten(&t["data"], &mut data, &name)?;
        let expected: i64 = shape.iter().product();
        if data.len() as i64 != expected {
            return Err(bad(format!(
                "input '{name}' has {} values but shape {shape:?} needs {expected}",
                data.len()
            )));
        }
        tensors.push((name, shape, data));
    }
    if let [(name, shape, data)] = &tensors[..]
        && shape.len() == 2
        && shape[1] as usize == d
        && !(d == 1 && p.inputs[0].name == *name)
    {
        return Ok(data.chunks(d).map(<[f64]>::to_vec).collect());
    }
    for (name, shape, _) in &tensors {
        if !p.inputs.iter().any(|c| c.name == *name) {
            return Err(bad(format!(
                "unknown input '{name}'; the model takes {}",
                p.input_names().join(", ")
            )));
        }
        if !(shape.len() == 1 || (shape.len() == 2 && shape[1] == 1)) {
            return Err(bad(format!(
                "input '{name}' must have shape [N] or [N, 1], got {shape:?}"
            )));
        }
    }
    let mut columns = Vec::with_capacity(d);
    for c in &p.inputs {
        let (_, _, data) = tensors
            .iter()
            .find(|(n, _, _)| *n == c.name)
            .ok_or_else(|| {
                bad(format!(
                    "missing input '{}'; the model takes {}",
                    c.name,
                    p.input_names().join(", ")
                ))
            })?;
        columns.push(data);
    }
    let n = columns[0].len();
    if let Some(c) = p
        .inputs
        .iter()
        .zip(&columns)
        .find(|(_, col)| col.len() != n)
    {
        return Err(bad(format!(
            "input '{}' has {} rows, others have {n}",
            c.0.name,
            c.1.len()
        )));
    }
    Ok((0..n)
        .map(|r| columns.iter().map(|col| col[r]).collect())
        .collect())
}

fn outputs_json(p: &ModelPackage, preds: &[Prediction]) -> Value {
    let n = preds.len();
    match p.task {
        Task::Regression => {
            let data: Vec<f64> = preds
                .iter()
                .map(|x| {
                    if let Prediction::Value(v) = x {
                        *v
                    } else {
                        f64::NAN
                    }
                })
                .collect();
            json!([{"name": p.output.name, "shape": [n], "datatype": "FP64", "data": data}])
        }
        Task::Classification => {
            let labels: Vec<&str> = preds
                .iter()
                .map(|x| {
                    if let Prediction::Class { label, .. } = x {
                        label.as_str()
                    } else {
                        ""
                    }
                })
                .collect();
            let probs: Vec<f64> = preds
                .iter()
                .flat_map(|x| {
                    if let Prediction::Class { probabilities, .. } = x {
                        probabilities.clone()
                    } else {
                        vec![]
                    }
                })
                .collect();
            let k = probs.len().checked_div(n).unwrap_or(0);
            json!([
                {"name": p.output.name, "shape": [n], "datatype": "BYTES", "data": labels},
                {"name": "probabilities", "shape": [n, k], "datatype": "FP64", "data": probs}
            ])
        }
    }
}

pub fn parse_body(body: &[u8]) -> Result<Value, OipError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("request body is not JSON: {e}")))
}

/// Predicts an OIP request body with `name`/`sel`; returns the served version and the outputs.
/// The request is counted under `variant` and, when it succeeds, logged under `request_id`.
pub async fn predict_request(
    s: &AppState,
    name: &str,
    sel: &Selector,
    req: &Value,
    variant: &str,
    request_id: &str,
) -> Result<(std::sync::Arc<serving::Served>, Value), OipError> {
    let start = std::time::Instant::now();
    let mut served = None;
    let result = predict_inner(s, name, sel, req, &mut served).await;
    match result {
        Ok((rows, preds)) => {
            let outputs = served
                .as_ref()
                .map(|v: &std::sync::Arc<serving::Served>| outputs_json(&v.package, &preds))
                .unwrap_or(Value::Null);
            monitoring::observe(
                s,
                name,
                served.as_ref(),
                variant,
                request_id,
                rows,
                Some(&preds),
                start,
            );
            let served = served.ok_or_else(|| bad("no model served"))?;
            Ok((served, outputs))
        }
        Err(e) => {
            monitoring::observe(
                s,
                name,
                served.as_ref(),
                variant,
                request_id,
                None,
                None,
                start,
            );
            Err(e)
        }
    }
}

/// The rows (kept only when the prediction log wants them) and the predictions.
async fn predict_inner(
    s: &AppState,
    name: &str,
    sel: &Selector,
    req: &Value,
    served_out: &mut Option<std::sync::Arc<serving::Served>>,
) -> Result<(Option<Vec<Vec<f64>>>, Vec<Prediction>), OipError> {
    let entities = req["parameters"]["entities"].as_object();
    let inputs = match req["inputs"].as_array() {
        Some(a) if !a.is_empty() => a.as_slice(),
        _ if entities.is_some() => &[],
        _ => {
            return Err(bad(
                "'inputs' must be a non-empty list of tensors (or give parameters.entities to read features from the online store)",
            ));
        }
    };
    let served = s.serving.get(name, sel).await?;
    *served_out = Some(served.clone());
    let rows = match entities {
        Some(e) => crate::feature_routes::rows_from_entities(s, &served.package, inputs, e).await?,
        None => rows_from_tensors(&served.package, inputs)?,
    };
    if rows.len() > s.config.max_infer_rows {
        return Err(OipError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} rows exceed the limit of {} per request",
                rows.len(),
                s.config.max_infer_rows
            ),
        ));
    }
    let kept = s.predictions.as_ref().map(|_| rows.clone());
    let preds = served.predict(rows).await?;
    Ok((kept, preds))
}

/// The caller's request id (`id` in the body), or a fresh one.
pub fn request_id_of(req: &Value) -> String {
    req["id"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

async fn infer_with(
    s: &AppState,
    name: &str,
    sel: Selector,
    body: axum::body::Bytes,
) -> Result<Response, OipError> {
    let req = parse_body(&body)?;
    let request_id = request_id_of(&req);
    let (served, outputs) = predict_request(s, name, &sel, &req, "default", &request_id).await?;
    let mut out = json!({"model_name": name, "model_version": served.version.to_string(), "outputs": outputs});
    if let Some(id) = req.get("id") {
        out["id"] = id.clone();
    }
    Ok((
        [
            (
                axum::http::header::HeaderName::from_static("x-model-version"),
                served.version.to_string(),
            ),
            (
                axum::http::header::HeaderName::from_static("x-request-id"),
                request_id,
            ),
        ],
        Json(out),
    )
        .into_response())
}

async fn infer(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, OipError> {
    let sel = default_selector(&s);
    infer_with(&s, &name, sel, body).await
}

async fn infer_v(
    State(s): State<AppState>,
    Path((name, v)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, OipError> {
    let sel = parse_version(&v)?;
    infer_with(&s, &name, sel, body).await
}

/// Rows from MLflow's scoring JSON: `dataframe_split`, `dataframe_records`, `instances`, `inputs`.
fn rows_from_scoring(p: &ModelPackage, req: &Value) -> Result<Vec<Vec<f64>>, OipError> {
    let names = p.input_names();
    let num = |v: &Value, col: &str| {
        v.as_f64()
            .ok_or_else(|| bad(format!("column '{col}': {v} is not a number")))
    };
    // An input `column=value` (one-hot, as training encoded a text column) also reads from the
    // raw text column: clients send `{"season": "spring"}` as they have it.
    let cell = |o: &serde_json::Map<String, Value>, n: &str| -> Result<f64, OipError> {
        if let Some(v) = o.get(n) {
            return num(v, n);
        }
        if let Some((col, value)) = n.split_once('=')
            && let Some(v) = o.get(col)
        {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            return Ok(f64::from(u8::from(text == value)));
        }
        Err(bad(format!("missing column '{n}'")))
    };
    let from_records = |records: &[Value]| -> Result<Vec<Vec<f64>>, OipError> {
        records
            .iter()
            .map(|r| match r {
                Value::Object(o) => names.iter().map(|n| cell(o, n)).collect(),
                Value::Array(a) => a
                    .iter()
                    .zip(names.iter().chain(std::iter::repeat(&"?")))
                    .map(|(v, n)| num(v, n))
                    .collect(),
                other => Err(bad(format!(
                    "a row must be an object or a list, got {other}"
                ))),
            })
            .collect()
    };
    if let Some(split) = req.get("dataframe_split") {
        let columns: Vec<&str> = split["columns"]
            .as_array()
            .ok_or_else(|| bad("dataframe_split needs 'columns'"))?
            .iter()
            .map(|c| c.as_str().unwrap_or(""))
            .collect();
        let data = split["data"]
            .as_array()
            .ok_or_else(|| bad("dataframe_split needs 'data'"))?;
        let idx: Vec<usize> = names
            .iter()
            .map(|n| {
                columns
                    .iter()
                    .position(|c| c == n)
                    .ok_or_else(|| bad(format!("missing column '{n}'")))
            })
            .collect::<Result<_, _>>()?;
        return data
            .iter()
            .map(|row| {
                let row = row
                    .as_array()
                    .ok_or_else(|| bad("dataframe_split rows must be lists"))?;
                idx.iter()
                    .zip(&names)
                    .map(|(i, n)| {
                        row.get(*i)
                            .ok_or_else(|| bad(format!("a row lacks column '{n}'")))
                            .and_then(|v| num(v, n))
                    })
                    .collect()
            })
            .collect();
    }
    for key in ["dataframe_records", "instances", "inputs"] {
        if let Some(v) = req.get(key) {
            let records = v
                .as_array()
                .ok_or_else(|| bad(format!("'{key}' must be a list")))?;
            return from_records(records);
        }
    }
    Err(bad(
        "expected one of dataframe_split, dataframe_records, instances, inputs",
    ))
}

async fn invocations(
    State(s): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, OipError> {
    let (name, sel) = s.config.default_model.clone().ok_or_else(|| {
        OipError(
            StatusCode::NOT_FOUND,
            "/invocations needs a single-model server: capstan serve MODEL@ALIAS".into(),
        )
    })?;
    let req: Value =
        serde_json::from_slice(&body).map_err(|e| bad(format!("request body is not JSON: {e}")))?;
    let start = std::time::Instant::now();
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let served = match s.serving.get(&name, &sel).await {
        Ok(v) => v,
        Err(e) => {
            monitoring::observe(&s, &name, None, "default", &request_id, None, None, start);
            return Err(e.into());
        }
    };
    let result = score(&s, &served, &req).await;
    let (rows, preds) = match result {
        Ok(v) => v,
        Err(e) => {
            monitoring::observe(
                &s,
                &name,
                Some(&served),
                "default",
                &request_id,
                None,
                None,
                start,
            );
            return Err(e);
        }
    };
    monitoring::observe(
        &s,
        &name,
        Some(&served),
        "default",
        &request_id,
        rows,
        Some(&preds),
        start,
    );
    let predictions: Vec<Value> = preds
        .iter()
        .map(|p| match p {
            Prediction::Value(v) => json!(v),
            Prediction::Class { label, .. } => json!(label),
        })
        .collect();
    Ok((
        [
            (
                axum::http::header::HeaderName::from_static("x-model-version"),
                served.version.to_string(),
            ),
            (
                axum::http::header::HeaderName::from_static("x-request-id"),
                request_id,
            ),
        ],
        Json(json!({"predictions": predictions})),
    )
        .into_response())
}

/// MLflow scoring body → rows → predictions (rows kept for the prediction log).
async fn score(
    s: &AppState,
    served: &std::sync::Arc<serving::Served>,
    req: &Value,
) -> Result<(Option<Vec<Vec<f64>>>, Vec<Prediction>), OipError> {
    let rows = rows_from_scoring(&served.package, req)?;
    if rows.len() > s.config.max_infer_rows {
        return Err(OipError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} rows exceed the limit of {}",
                rows.len(),
                s.config.max_infer_rows
            ),
        ));
    }
    let kept = s.predictions.as_ref().map(|_| rows.clone());
    let preds = served.predict(rows).await?;
    Ok((kept, preds))
}
