//! The MLflow model-registry REST API (`/api/2.0/mlflow/registered-models/*`,
//! `/model-versions/*`), mapped to `registry::Registry` calls.

use crate::AppState;
use crate::error::ApiError;
use crate::wire::{MlJson, QueryPairs, de_opt_stringish, decode_page_token, encode_page_token};
use axum::extract::State;
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use registry::{ModelVersion, NewVersion, RegisteredModel};
use serde::Deserialize;
use serde_json::{Value, json};
use tracking::{Page, Tag};

type ApiResult = Result<Json<Value>, ApiError>;

pub fn routes() -> Router<AppState> {
    let p = |s: &str| format!("/api/2.0/mlflow/{s}");
    Router::new()
        .route(&p("registered-models/create"), post(create_model))
        .route(&p("registered-models/get"), get(get_model))
        .route(&p("registered-models/rename"), post(rename_model))
        .route(&p("registered-models/update"), patch(update_model))
        .route(&p("registered-models/delete"), delete(delete_model))
        .route(&p("registered-models/search"), get(search_models))
        .route(&p("registered-models/set-tag"), post(set_model_tag))
        .route(&p("registered-models/delete-tag"), delete(delete_model_tag))
        .route(
            &p("registered-models/alias"),
            post(set_alias).get(get_by_alias).delete(delete_alias),
        )
        .route(
            &p("registered-models/get-latest-versions"),
            post(latest_versions_post).get(latest_versions_get),
        )
        .route(&p("model-versions/create"), post(create_version))
        .route(&p("model-versions/get"), get(get_version))
        .route(&p("model-versions/update"), patch(update_version))
        .route(&p("model-versions/delete"), delete(delete_version))
        .route(&p("model-versions/search"), get(search_versions))
        .route(&p("model-versions/set-tag"), post(set_version_tag))
        .route(&p("model-versions/delete-tag"), delete(delete_version_tag))
        .route(
            &p("model-versions/transition-stage"),
            post(transition_stage),
        )
        .route(&p("model-versions/get-download-uri"), get(download_uri))
}

fn tags_json(tags: &[Tag]) -> Value {
    Value::Array(
        tags.iter()
            .map(|t| json!({"key": t.key, "value": t.value}))
            .collect(),
    )
}

fn version_json(v: &ModelVersion) -> Value {
    json!({
        "name": v.name,
        "version": v.version.to_string(),
        "creation_timestamp": v.creation_time,
        "last_updated_timestamp": v.last_updated_time,
        "current_stage": v.stage.as_str(),
        "description": v.description,
        "source": v.source,
        "run_id": v.run_id.clone().unwrap_or_default(),
        "run_link": v.run_link,
        // Capstan registers synchronously: a version is usable as soon as it exists.
        "status": "READY",
        "tags": tags_json(&v.tags),
        "aliases": v.aliases,
    })
}

fn model_json(m: &RegisteredModel) -> Value {
    json!({
        "name": m.name,
        "creation_timestamp": m.creation_time,
        "last_updated_timestamp": m.last_updated_time,
        "description": m.description,
        "latest_versions": m.latest_versions.iter().map(version_json).collect::<Vec<_>>(),
        "tags": tags_json(&m.tags),
        "aliases": m.aliases.iter().map(|(a, v)| json!({"alias": a, "version": v.to_string()})).collect::<Vec<_>>(),
    })
}

fn with_token<T>(mut body: Value, page: &Page<T>) -> Value {
    if let Some(off) = page.next_offset {
        body["next_page_token"] = encode_page_token(off).into();
    }
    body
}

fn required<T>(v: Option<T>, name: &str) -> Result<T, ApiError> {
    v.ok_or_else(|| ApiError::invalid(format!("Missing value for required parameter '{name}'")))
}

/// Versions travel as strings ("3") or numbers.
fn version_number(v: Option<&Value>) -> Result<i64, ApiError> {
    let bad = |v: &Value| {
        ApiError::invalid(format!(
            "Invalid model version {v}: expected a positive integer"
        ))
    };
    match v {
        None | Some(Value::Null) => Err(ApiError::invalid(
            "Missing value for required parameter 'version'",
        )),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|v| *v > 0)
            .ok_or_else(|| bad(&Value::Number(n.clone()))),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| bad(&Value::String(s.clone()))),
        Some(other) => Err(bad(other)),
    }
}

fn query_version(q: &QueryPairs) -> Result<i64, ApiError> {
    version_number(
        q.get("version")
            .map(|s| Value::String(s.to_owned()))
            .as_ref(),
    )
}

#[derive(Deserialize, Default)]
struct KeyValue {
    key: Option<String>,
    #[serde(default, deserialize_with = "de_opt_stringish")]
    value: Option<String>,
}

fn to_tags(kvs: Vec<KeyValue>) -> Result<Vec<Tag>, ApiError> {
    kvs.into_iter()
        .map(|kv| {
            Ok(Tag::new(
                required(kv.key, "tags.key")?,
                required(kv.value, "tags.value")?,
            ))
        })
        .collect()
}

#[derive(Deserialize)]
struct ModelReq {
    name: Option<String>,
    new_name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
    key: Option<String>,
    #[serde(default, deserialize_with = "de_opt_stringish")]
    value: Option<String>,
    alias: Option<String>,
    version: Option<Value>,
    #[serde(default)]
    stages: Vec<String>,
}

async fn create_model(State(s): State<AppState>, MlJson(r): MlJson<ModelReq>) -> ApiResult {
    let m = s
        .registry
        .create_model(
            &required(r.name, "name")?,
            &r.description.unwrap_or_default(),
            &to_tags(r.tags)?,
        )
        .await?;
    Ok(Json(json!({"registered_model": model_json(&m)})))
}

async fn get_model(State(s): State<AppState>, q: QueryPairs) -> ApiResult {
    let m = s.registry.get_model(q.require("name")?).await?;
    Ok(Json(json!({"registered_model": model_json(&m)})))
}

async fn rename_model(State(s): State<AppState>, MlJson(r): MlJson<ModelReq>) -> ApiResult {
    let m = s
        .registry
        .rename_model(
            &required(r.name, "name")?,
            &required(r.new_name, "new_name")?,
        )
        .await?;
    Ok(Json(json!({"registered_model": model_json(&m)})))
}

async fn update_model(State(s): State<AppState>, MlJson(r): MlJson<ModelReq>) -> ApiResult {
    let m = s
        .registry
        .update_model(
            &required(r.name, "name")?,
            &r.description.unwrap_or_default(),
        )
        .await?;
    Ok(Json(json!({"registered_model": model_json(&m)})))
}

async fn delete_model(State(s): State<AppState>, MlJson(r): MlJson<ModelReq>) -> ApiResult {
    s.registry.delete_model(&required(r.name, "name")?).await?;
    Ok(Json(json!({})))
}

async fn search_models(State(s): State<AppState>, q: QueryPairs) -> ApiResult {
    let max = q.u32("max_results")?.unwrap_or(100);
    let offset = decode_page_token(q.get("page_token"))?;
    let page = s
        .registry
        .search_models(
            q.get("filter").unwrap_or(""),
            &q.all("order_by"),
            max,
            offset,
        )
        .await?;
    let body = json!({"registered_models": page.items.iter().map(model_json).collect::<Vec<_>>()});
    Ok(Json(with_token(body, &page)))
}

async fn set_model_tag(State(s): State<AppState>, MlJson(r): MlJson<ModelReq>) -> ApiResult {
    let tag = Tag::new(required(r.key, "key")?, required(r.value, "value")?);
    s.registry
        .set_model_tag(&required(r.name, "name")?, &tag)
        .await?;
    Ok(Json(json!({})))
}

async fn delete_model_tag(State(s): State<AppState>, MlJson(r): MlJson<ModelReq>) -> ApiResult {
    s.registry
        .delete_model_tag(&required(r.name, "name")?, &required(r.key, "key")?)
        .await?;
    Ok(Json(json!({})))
}

async fn set_alias(State(s): State<AppState>, MlJson(r): MlJson<ModelReq>) -> ApiResult {
    let version = version_number(r.version.as_ref())?;
    s.registry
        .set_alias(
            &required(r.name, "name")?,
            &required(r.alias, "alias")?,
            version,
        )
        .await?;
    Ok(Json(json!({})))
}

async fn get_by_alias(State(s): State<AppState>, q: QueryPairs) -> ApiResult {
    let v = s
        .registry
        .version_by_alias(q.require("name")?, q.require("alias")?)
        .await?;
    Ok(Json(json!({"model_version": version_json(&v)})))
}

async fn delete_alias(State(s): State<AppState>, MlJson(r): MlJson<ModelReq>) -> ApiResult {
    s.registry
        .delete_alias(&required(r.name, "name")?, &required(r.alias, "alias")?)
        .await?;
    Ok(Json(json!({})))
}

async fn latest_versions_post(State(s): State<AppState>, MlJson(r): MlJson<ModelReq>) -> ApiResult {
    let vs = s
        .registry
        .latest_versions(&required(r.name, "name")?, &r.stages)
        .await?;
    Ok(Json(
        json!({"model_versions": vs.iter().map(version_json).collect::<Vec<_>>()}),
    ))
}

async fn latest_versions_get(State(s): State<AppState>, q: QueryPairs) -> ApiResult {
    let vs = s
        .registry
        .latest_versions(q.require("name")?, &q.all("stages"))
        .await?;
    Ok(Json(
        json!({"model_versions": vs.iter().map(version_json).collect::<Vec<_>>()}),
    ))
}

#[derive(Deserialize)]
struct VersionReq {
    name: Option<String>,
    version: Option<Value>,
    source: Option<String>,
    run_id: Option<String>,
    run_link: Option<String>,
    description: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
    key: Option<String>,
    #[serde(default, deserialize_with = "de_opt_stringish")]
    value: Option<String>,
    stage: Option<String>,
    #[serde(default)]
    archive_existing_versions: Option<bool>,
}

async fn create_version(State(s): State<AppState>, MlJson(r): MlJson<VersionReq>) -> ApiResult {
    let new = NewVersion {
        source: required(r.source, "source")?,
        run_id: r.run_id.filter(|id| !id.is_empty()),
        run_link: r.run_link.unwrap_or_default(),
        description: r.description.unwrap_or_default(),
        tags: to_tags(r.tags)?,
    };
    let v = s
        .registry
        .create_version(&required(r.name, "name")?, new)
        .await?;
    Ok(Json(json!({"model_version": version_json(&v)})))
}

async fn get_version(State(s): State<AppState>, q: QueryPairs) -> ApiResult {
    let v = s
        .registry
        .get_version(q.require("name")?, query_version(&q)?)
        .await?;
    Ok(Json(json!({"model_version": version_json(&v)})))
}

async fn update_version(State(s): State<AppState>, MlJson(r): MlJson<VersionReq>) -> ApiResult {
    let version = version_number(r.version.as_ref())?;
    let v = s
        .registry
        .update_version(
            &required(r.name, "name")?,
            version,
            &r.description.unwrap_or_default(),
        )
        .await?;
    Ok(Json(json!({"model_version": version_json(&v)})))
}

async fn delete_version(State(s): State<AppState>, MlJson(r): MlJson<VersionReq>) -> ApiResult {
    let version = version_number(r.version.as_ref())?;
    s.registry
        .delete_version(&required(r.name, "name")?, version)
        .await?;
    Ok(Json(json!({})))
}

async fn search_versions(State(s): State<AppState>, q: QueryPairs) -> ApiResult {
    let max = q.u32("max_results")?.unwrap_or(10_000);
    let offset = decode_page_token(q.get("page_token"))?;
    let page = s
        .registry
        .search_versions(q.get("filter").unwrap_or(""), max, offset)
        .await?;
    let body = json!({"model_versions": page.items.iter().map(version_json).collect::<Vec<_>>()});
    Ok(Json(with_token(body, &page)))
}

async fn set_version_tag(State(s): State<AppState>, MlJson(r): MlJson<VersionReq>) -> ApiResult {
    let version = version_number(r.version.as_ref())?;
    let tag = Tag::new(required(r.key, "key")?, required(r.value, "value")?);
    s.registry
        .set_version_tag(&required(r.name, "name")?, version, &tag)
        .await?;
    Ok(Json(json!({})))
}

async fn delete_version_tag(State(s): State<AppState>, MlJson(r): MlJson<VersionReq>) -> ApiResult {
    let version = version_number(r.version.as_ref())?;
    s.registry
        .delete_version_tag(
            &required(r.name, "name")?,
            version,
            &required(r.key, "key")?,
        )
        .await?;
    Ok(Json(json!({})))
}

async fn transition_stage(State(s): State<AppState>, MlJson(r): MlJson<VersionReq>) -> ApiResult {
    let version = version_number(r.version.as_ref())?;
    let v = s
        .registry
        .transition_stage(
            &required(r.name, "name")?,
            version,
            &required(r.stage, "stage")?,
            r.archive_existing_versions.unwrap_or(false),
        )
        .await?;
    Ok(Json(json!({"model_version": version_json(&v)})))
}

async fn download_uri(State(s): State<AppState>, q: QueryPairs) -> ApiResult {
    let v = s
        .registry
        .get_version(q.require("name")?, query_version(&q)?)
        .await?;
    Ok(Json(json!({"artifact_uri": v.source})))
}
