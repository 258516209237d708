//! The MLflow tracking REST API 2.0 (`/api/2.0/mlflow/...`), mapped to tracking domain calls.
//! Field names, enum spellings and error codes are MLflow's, so the real `mlflow` client works.

use crate::AppState;
use crate::error::ApiError;
use crate::wire::{
    MlJson, QueryPairs, de_opt_f64, de_opt_i64, de_opt_stringish, decode_page_token, double,
    encode_page_token,
};
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use base::{ExperimentId, RunId};
use serde::Deserialize;
use serde_json::{Value, json};
use tracking::{
    Dataset, DatasetInput, Experiment, Metric, NewRun, Page, Run, RunInfo, RunStatus, RunUpdate,
    Tag, ViewType,
};

/// The MLflow version whose API we match; `GET /version` answers it so clients enable their features.
pub const COMPATIBLE_VERSION: &str = "3.17.2";

type ApiResult = Result<Json<Value>, ApiError>;

pub fn routes() -> Router<AppState> {
    let p = |s: &str| format!("/api/2.0/mlflow/{s}");
    Router::new()
        .route("/api/3.0/mlflow/server-info", get(server_info))
        .route(&p("server-info"), get(server_info))
        .route(&p("experiments/create"), post(create_experiment))
        .route(&p("experiments/get"), get(get_experiment))
        .route(&p("experiments/get-by-name"), get(get_experiment_by_name))
        .route(
            &p("experiments/search"),
            post(search_experiments_post).get(search_experiments_get),
        )
        .route(&p("experiments/list"), get(search_experiments_get))
        .route(&p("experiments/update"), post(update_experiment))
        .route(&p("experiments/delete"), post(delete_experiment))
        .route(&p("experiments/restore"), post(restore_experiment))
        .route(
            &p("experiments/set-experiment-tag"),
            post(set_experiment_tag),
        )
        .route(&p("runs/create"), post(create_run))
        .route(&p("runs/get"), get(get_run))
        .route(&p("runs/update"), post(update_run))
        .route(&p("runs/delete"), post(delete_run))
        .route(&p("runs/restore"), post(restore_run))
        .route(&p("runs/log-parameter"), post(log_param))
        .route(&p("runs/log-metric"), post(log_metric))
        .route(&p("runs/log-batch"), post(log_batch))
        .route(&p("runs/set-tag"), post(set_tag))
        .route(&p("runs/delete-tag"), post(delete_tag))
        .route(&p("runs/log-inputs"), post(log_inputs))
        .route(&p("runs/search"), post(search_runs))
        .route(&p("metrics/get-history"), get(metric_history))
        .route(&p("logged-models/search"), post(logged_models_search))
}

async fn server_info() -> Json<Value> {
    Json(json!({
        "server_name": "capstan",
        "multipart_uploads_enabled": false,
        "multipart_downloads_enabled": false,
        "store_type": "SqlStore"
    }))
}

// ---- wire shapes ---------------------------------------------------------------------------

fn tags_json(tags: &[Tag]) -> Value {
    Value::Array(
        tags.iter()
            .map(|t| json!({"key": t.key, "value": t.value}))
            .collect(),
    )
}

fn experiment_json(e: &Experiment) -> Value {
    json!({
        "experiment_id": e.id.to_string(),
        "name": e.name,
        "artifact_location": e.artifact_location,
        "lifecycle_stage": e.lifecycle.as_str(),
        "creation_time": e.creation_time,
        "last_update_time": e.last_update_time,
        "tags": tags_json(&e.tags),
    })
}

fn run_info_json(i: &RunInfo) -> Value {
    let mut v = json!({
        "run_id": i.run_id.as_str(),
        "run_uuid": i.run_id.as_str(),
        "run_name": i.run_name,
        "experiment_id": i.experiment_id.to_string(),
        "user_id": i.user_id,
        "status": i.status.as_str(),
        "start_time": i.start_time,
        "artifact_uri": i.artifact_uri,
        "lifecycle_stage": i.lifecycle.as_str(),
    });
    if let Some(t) = i.end_time {
        v["end_time"] = t.into();
    }
    v
}

fn metric_json(m: &Metric) -> Value {
    json!({"key": m.key, "value": double(m.value), "timestamp": m.timestamp, "step": m.step})
}

fn run_json(r: &Run) -> Value {
    let inputs: Vec<Value> = r
        .inputs
        .iter()
        .map(|i| {
            let mut d = json!({
                "name": i.dataset.name,
                "digest": i.dataset.digest,
                "source_type": i.dataset.source_type,
                "source": i.dataset.source,
            });
            if let Some(s) = &i.dataset.schema {
                d["schema"] = s.clone().into();
            }
            if let Some(p) = &i.dataset.profile {
                d["profile"] = p.clone().into();
            }
            json!({"tags": tags_json(&i.tags), "dataset": d})
        })
        .collect();
    json!({
        "info": run_info_json(&r.info),
        "data": {
            "metrics": r.metrics.iter().map(metric_json).collect::<Vec<_>>(),
            "params": tags_json(&r.params),
            "tags": tags_json(&r.tags),
        },
        "inputs": {"dataset_inputs": inputs},
        "outputs": {},
    })
}

fn with_token<T>(mut body: Value, page: &Page<T>) -> Value {
    if let Some(off) = page.next_offset {
        body["next_page_token"] = encode_page_token(off).into();
    }
    body
}

#[derive(Deserialize, Default)]
struct KeyValue {
    #[serde(default)]
    key: Option<String>,
    #[serde(default, deserialize_with = "de_opt_stringish")]
    value: Option<String>,
}

fn to_tags(kvs: Vec<KeyValue>, what: &str) -> Result<Vec<Tag>, ApiError> {
    kvs.into_iter()
        .map(|kv| match (kv.key, kv.value) {
            (Some(k), Some(v)) => Ok(Tag::new(k, v)),
            (None, _) => Err(ApiError::invalid(format!(
                "Missing value for required parameter '{what}.key'"
            ))),
            (Some(k), None) => Err(ApiError::invalid(format!(
                "Missing value for required parameter 'value' of {what} '{k}'"
            ))),
        })
        .collect()
}

fn required<T>(v: Option<T>, name: &str) -> Result<T, ApiError> {
    v.ok_or_else(|| ApiError::invalid(format!("Missing value for required parameter '{name}'")))
}

fn experiment_id(raw: &str) -> Result<ExperimentId, ApiError> {
    ExperimentId::parse(raw).map_err(|e| ApiError::invalid(e.to_string()))
}

/// MLflow clients send `run_id` and `run_uuid`; either will do.
fn run_id(run_id: Option<&str>, run_uuid: Option<&str>) -> Result<RunId, ApiError> {
    let raw = run_id
        .filter(|s| !s.is_empty())
        .or(run_uuid.filter(|s| !s.is_empty()));
    let raw = required(raw, "run_id")?;
    // An id that cannot exist is reported like an unknown one.
    RunId::parse(raw).map_err(|_| ApiError::not_found(format!("Run with id={raw} not found")))
}

fn view_type(raw: Option<&Value>) -> Result<ViewType, ApiError> {
    match raw {
        None | Some(Value::Null) => Ok(ViewType::ActiveOnly),
        Some(Value::String(s)) => {
            ViewType::parse(s).ok_or_else(|| ApiError::invalid(format!("Invalid view type '{s}'")))
        }
        Some(Value::Number(n)) => ViewType::parse(&n.to_string())
            .ok_or_else(|| ApiError::invalid(format!("Invalid view type {n}"))),
        Some(other) => Err(ApiError::invalid(format!("Invalid view type {other}"))),
    }
}

// ---- experiments ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct CreateExperiment {
    name: Option<String>,
    artifact_location: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn create_experiment(
    State(s): State<AppState>,
    MlJson(req): MlJson<CreateExperiment>,
) -> ApiResult {
    let name = required(req.name, "name")?;
    let tags = to_tags(req.tags, "tags")?;
    let id = s
        .tracking
        .create_experiment(&name, req.artifact_location.as_deref(), &tags)
        .await?;
    Ok(Json(json!({"experiment_id": id.to_string()})))
}

async fn get_experiment(State(s): State<AppState>, q: QueryPairs) -> ApiResult {
    let id = experiment_id(q.require("experiment_id")?)?;
    let e = s.tracking.get_experiment(id).await?;
    Ok(Json(json!({"experiment": experiment_json(&e)})))
}

async fn get_experiment_by_name(State(s): State<AppState>, q: QueryPairs) -> ApiResult {
    let e = s
        .tracking
        .get_experiment_by_name(q.require("experiment_name")?)
        .await?;
    Ok(Json(json!({"experiment": experiment_json(&e)})))
}

#[derive(Deserialize, Default)]
struct SearchExperiments {
    #[serde(default, deserialize_with = "de_opt_i64")]
    max_results: Option<i64>,
    filter: Option<String>,
    #[serde(default)]
    order_by: Vec<String>,
    view_type: Option<Value>,
    page_token: Option<String>,
}

async fn search_experiments(s: AppState, req: SearchExperiments) -> ApiResult {
    let max = u32::try_from(req.max_results.unwrap_or(1000))
        .map_err(|_| ApiError::invalid("Invalid max_results"))?;
    let offset = decode_page_token(req.page_token.as_deref())?;
    let view = view_type(req.view_type.as_ref())?;
    let page = s
        .tracking
        .search_experiments(
            view,
            req.filter.as_deref().unwrap_or(""),
            &req.order_by,
            max,
            offset,
        )
        .await?;
    let body = json!({"experiments": page.items.iter().map(experiment_json).collect::<Vec<_>>()});
    Ok(Json(with_token(body, &page)))
}

async fn search_experiments_post(
    State(s): State<AppState>,
    MlJson(req): MlJson<SearchExperiments>,
) -> ApiResult {
    search_experiments(s, req).await
}

async fn search_experiments_get(State(s): State<AppState>, q: QueryPairs) -> ApiResult {
    let max_results = q
        .get("max_results")
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| ApiError::invalid("Invalid max_results"))
        })
        .transpose()?;
    let req = SearchExperiments {
        max_results,
        filter: q.get("filter").map(str::to_owned),
        order_by: q.all("order_by"),
        view_type: q.get("view_type").map(|v| Value::String(v.to_owned())),
        page_token: q.get("page_token").map(str::to_owned),
    };
    search_experiments(s, req).await
}

#[derive(Deserialize)]
struct ExperimentRef {
    experiment_id: Option<Value>,
    new_name: Option<String>,
    key: Option<String>,
    #[serde(default, deserialize_with = "de_opt_stringish")]
    value: Option<String>,
}

fn experiment_ref(v: Option<Value>) -> Result<ExperimentId, ApiError> {
    match required(v, "experiment_id")? {
        Value::String(s) => experiment_id(&s),
        Value::Number(n) => experiment_id(&n.to_string()),
        other => Err(ApiError::invalid(format!("Invalid experiment_id {other}"))),
    }
}

async fn update_experiment(
    State(s): State<AppState>,
    MlJson(req): MlJson<ExperimentRef>,
) -> ApiResult {
    let id = experiment_ref(req.experiment_id)?;
    if let Some(name) = req.new_name {
        s.tracking.rename_experiment(id, &name).await?;
    } else {
        s.tracking.get_experiment(id).await?;
    }
    Ok(Json(json!({})))
}

async fn delete_experiment(
    State(s): State<AppState>,
    MlJson(req): MlJson<ExperimentRef>,
) -> ApiResult {
    s.tracking
        .delete_experiment(experiment_ref(req.experiment_id)?)
        .await?;
    Ok(Json(json!({})))
}

async fn restore_experiment(
    State(s): State<AppState>,
    MlJson(req): MlJson<ExperimentRef>,
) -> ApiResult {
    s.tracking
        .restore_experiment(experiment_ref(req.experiment_id)?)
        .await?;
    Ok(Json(json!({})))
}

async fn set_experiment_tag(
    State(s): State<AppState>,
    MlJson(req): MlJson<ExperimentRef>,
) -> ApiResult {
    let id = experiment_ref(req.experiment_id)?;
    let tag = Tag::new(required(req.key, "key")?, required(req.value, "value")?);
    s.tracking.set_experiment_tag(id, &tag).await?;
    Ok(Json(json!({})))
}

// ---- runs ----------------------------------------------------------------------------------

#[derive(Deserialize)]
struct CreateRun {
    experiment_id: Option<Value>,
    user_id: Option<String>,
    run_name: Option<String>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    start_time: Option<i64>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn create_run(State(s): State<AppState>, MlJson(req): MlJson<CreateRun>) -> ApiResult {
    let experiment_id = match req.experiment_id {
        None | Some(Value::Null) => ExperimentId::DEFAULT,
        v => experiment_ref(v)?,
    };
    let run = s
        .tracking
        .create_run(NewRun {
            experiment_id,
            run_name: req.run_name,
            user_id: req.user_id.unwrap_or_default(),
            start_time: req.start_time.unwrap_or_else(base::now_millis),
            tags: to_tags(req.tags, "tags")?,
        })
        .await?;
    Ok(Json(json!({"run": run_json(&run)})))
}

async fn get_run(State(s): State<AppState>, q: QueryPairs) -> ApiResult {
    let id = run_id(q.get("run_id"), q.get("run_uuid"))?;
    let run = s.tracking.get_run(&id).await?;
    Ok(Json(json!({"run": run_json(&run)})))
}

#[derive(Deserialize)]
struct RunRef {
    run_id: Option<String>,
    run_uuid: Option<String>,
}

#[derive(Deserialize)]
struct UpdateRun {
    run_id: Option<String>,
    run_uuid: Option<String>,
    status: Option<Value>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    end_time: Option<i64>,
    run_name: Option<String>,
}

async fn update_run(State(s): State<AppState>, MlJson(req): MlJson<UpdateRun>) -> ApiResult {
    let id = run_id(req.run_id.as_deref(), req.run_uuid.as_deref())?;
    let status = match req.status {
        None | Some(Value::Null) => None,
        Some(Value::String(st)) => Some(
            RunStatus::parse(&st)
                .ok_or_else(|| ApiError::invalid(format!("Invalid run status '{st}'")))?,
        ),
        Some(Value::Number(n)) => Some(
            RunStatus::parse(&n.to_string())
                .ok_or_else(|| ApiError::invalid(format!("Invalid run status {n}")))?,
        ),
        Some(other) => return Err(ApiError::invalid(format!("Invalid run status {other}"))),
    };
    let info = s
        .tracking
        .update_run(
            &id,
            RunUpdate {
                status,
                end_time: req.end_time,
                run_name: req.run_name,
            },
        )
        .await?;
    Ok(Json(json!({"run_info": run_info_json(&info)})))
}

async fn delete_run(State(s): State<AppState>, MlJson(req): MlJson<RunRef>) -> ApiResult {
    s.tracking
        .delete_run(&run_id(req.run_id.as_deref(), req.run_uuid.as_deref())?)
        .await?;
    Ok(Json(json!({})))
}

async fn restore_run(State(s): State<AppState>, MlJson(req): MlJson<RunRef>) -> ApiResult {
    s.tracking
        .restore_run(&run_id(req.run_id.as_deref(), req.run_uuid.as_deref())?)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct LogKv {
    run_id: Option<String>,
    run_uuid: Option<String>,
    key: Option<String>,
    #[serde(default, deserialize_with = "de_opt_stringish")]
    value: Option<String>,
}

async fn log_param(State(s): State<AppState>, MlJson(req): MlJson<LogKv>) -> ApiResult {
    let id = run_id(req.run_id.as_deref(), req.run_uuid.as_deref())?;
    let p = Tag::new(required(req.key, "key")?, required(req.value, "value")?);
    s.tracking.log_batch(&id, &[], &[p], &[]).await?;
    Ok(Json(json!({})))
}

async fn set_tag(State(s): State<AppState>, MlJson(req): MlJson<LogKv>) -> ApiResult {
    let id = run_id(req.run_id.as_deref(), req.run_uuid.as_deref())?;
    let t = Tag::new(required(req.key, "key")?, required(req.value, "value")?);
    s.tracking.log_batch(&id, &[], &[], &[t]).await?;
    Ok(Json(json!({})))
}

async fn delete_tag(State(s): State<AppState>, MlJson(req): MlJson<LogKv>) -> ApiResult {
    let id = run_id(req.run_id.as_deref(), req.run_uuid.as_deref())?;
    s.tracking
        .delete_tag(&id, &required(req.key, "key")?)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct WireMetric {
    key: Option<String>,
    #[serde(default, deserialize_with = "de_opt_f64")]
    value: Option<f64>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    timestamp: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    step: Option<i64>,
}

fn to_metric(m: WireMetric) -> Result<Metric, ApiError> {
    Ok(Metric {
        key: required(m.key, "metrics.key")?,
        value: required(m.value, "metrics.value")?,
        timestamp: required(m.timestamp, "metrics.timestamp")?,
        step: m.step.unwrap_or(0),
    })
}

#[derive(Deserialize)]
struct LogMetric {
    run_id: Option<String>,
    run_uuid: Option<String>,
    #[serde(flatten)]
    metric: WireMetric,
}

async fn log_metric(State(s): State<AppState>, MlJson(req): MlJson<LogMetric>) -> ApiResult {
    let id = run_id(req.run_id.as_deref(), req.run_uuid.as_deref())?;
    s.tracking
        .log_batch(&id, &[to_metric(req.metric)?], &[], &[])
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct LogBatch {
    run_id: Option<String>,
    run_uuid: Option<String>,
    #[serde(default)]
    metrics: Vec<WireMetric>,
    #[serde(default)]
    params: Vec<KeyValue>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn log_batch(State(s): State<AppState>, MlJson(req): MlJson<LogBatch>) -> ApiResult {
    let id = run_id(req.run_id.as_deref(), req.run_uuid.as_deref())?;
    let metrics = req
        .metrics
        .into_iter()
        .map(to_metric)
        .collect::<Result<Vec<_>, _>>()?;
    let params = to_tags(req.params, "params")?;
    let tags = to_tags(req.tags, "tags")?;
    s.tracking.log_batch(&id, &metrics, &params, &tags).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct WireDataset {
    name: Option<String>,
    digest: Option<String>,
    source_type: Option<String>,
    source: Option<String>,
    schema: Option<String>,
    profile: Option<String>,
}

#[derive(Deserialize)]
struct WireDatasetInput {
    #[serde(default)]
    tags: Vec<KeyValue>,
    dataset: Option<WireDataset>,
}

#[derive(Deserialize)]
struct LogInputs {
    run_id: Option<String>,
    #[serde(default)]
    datasets: Vec<WireDatasetInput>,
}

async fn log_inputs(State(s): State<AppState>, MlJson(req): MlJson<LogInputs>) -> ApiResult {
    let id = run_id(req.run_id.as_deref(), None)?;
    let mut inputs = Vec::with_capacity(req.datasets.len());
    for d in req.datasets {
        let ds = required(d.dataset, "datasets.dataset")?;
        inputs.push(DatasetInput {
            dataset: Dataset {
                name: required(ds.name, "dataset.name")?,
                digest: required(ds.digest, "dataset.digest")?,
                source_type: ds.source_type.unwrap_or_default(),
                source: ds.source.unwrap_or_default(),
                schema: ds.schema,
                profile: ds.profile,
            },
            tags: to_tags(d.tags, "tags")?,
        });
    }
    s.tracking.log_inputs(&id, &inputs).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct SearchRuns {
    #[serde(default)]
    experiment_ids: Vec<Value>,
    filter: Option<String>,
    run_view_type: Option<Value>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    max_results: Option<i64>,
    #[serde(default)]
    order_by: Vec<String>,
    page_token: Option<String>,
}

async fn search_runs(State(s): State<AppState>, MlJson(req): MlJson<SearchRuns>) -> ApiResult {
    let ids = req
        .experiment_ids
        .into_iter()
        .map(|v| experiment_ref(Some(v)))
        .collect::<Result<Vec<_>, _>>()?;
    let max = req.max_results.unwrap_or(1000);
    let max = u32::try_from(max).map_err(|_| {
        ApiError::invalid(format!("Invalid value {max} for parameter 'max_results'"))
    })?;
    let offset = decode_page_token(req.page_token.as_deref())?;
    let view = view_type(req.run_view_type.as_ref())?;
    let page = s
        .tracking
        .search_runs(
            ids,
            req.filter.as_deref().unwrap_or(""),
            &req.order_by,
            view,
            max,
            offset,
        )
        .await?;
    let body = json!({"runs": page.items.iter().map(run_json).collect::<Vec<_>>()});
    Ok(Json(with_token(body, &page)))
}

async fn metric_history(State(s): State<AppState>, q: QueryPairs) -> ApiResult {
    let id = run_id(q.get("run_id"), q.get("run_uuid"))?;
    let key = q.require("metric_key")?;
    let offset = decode_page_token(q.get("page_token"))?;
    let page = s
        .tracking
        .metric_history(&id, key, q.u32("max_results")?, offset)
        .await?;
    let body = json!({"metrics": page.items.iter().map(metric_json).collect::<Vec<_>>()});
    Ok(Json(with_token(body, &page)))
}

/// Capstan has no MLflow "logged models"; the 3.x client asks before listing artifacts.
async fn logged_models_search() -> Json<Value> {
    Json(json!({"models": []}))
}
