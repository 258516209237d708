//! The prompt registry over HTTP, under `/api/2.0/capstan/prompts`: create versions, list, read
//! a version (immutable: cached forever, with an ETag) or a label (short cache with
//! stale-while-revalidate), move labels (`production` only with an admin token when tokens are
//! on), render with variables, diff two versions. The gateway resolves `prompt: "name@label"`
//! (or `name@3`) with `variables` in a chat request through [`resolve`].

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use base::ErrorCode;
use gateway::prompts::{self, NewPromptVersion, PromptVersion, Rendered};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/2.0/capstan/prompts", post(create).get(list))
        .route("/api/2.0/capstan/prompts/{name}", get(show))
        .route(
            "/api/2.0/capstan/prompts/{name}/versions/{version}",
            get(version),
        )
        .route(
            "/api/2.0/capstan/prompts/{name}/labels/{label}",
            put(set_label).get(label),
        )
        .route(
            "/api/2.0/capstan/prompts/{name}/splits/{label}",
            put(set_split).get(get_split).delete(delete_split),
        )
        .route("/api/2.0/capstan/prompts/{name}/render", post(render))
        .route("/api/2.0/capstan/prompts/{name}/diff", get(diff))
}

/// Labels only an admin token may move.
const PROTECTED: [&str; 1] = ["production"];

fn store_err(e: String) -> ApiError {
    ApiError::new(ErrorCode::Internal, e)
}

fn bad(e: gateway::GatewayError) -> ApiError {
    ApiError::new(ErrorCode::InvalidParameterValue, e.message)
}

fn missing(what: String) -> ApiError {
    ApiError::new(ErrorCode::ResourceDoesNotExist, what)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(flatten)]
    version: NewPromptVersion,
}

async fn create(
    State(s): State<AppState>,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: CreateBody = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::new(ErrorCode::InvalidParameterValue, format!("prompt: {e}")))?;
    prompts::valid_name(&b.name).map_err(bad)?;
    let variables = prompts::check(&b.version).map_err(bad)?;
    let v = s
        .prompts
        .create_prompt_version(&b.name, &b.version, &variables)
        .await
        .map_err(store_err)?;
    Ok(Json(json!({"prompt_version": v})))
}

async fn list(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let mut out = Vec::new();
    for (name, latest) in s.prompts.prompts().await.map_err(store_err)? {
        let labels = s.prompts.prompt_labels(&name).await.map_err(store_err)?;
        out.push(json!({"name": name, "latest_version": latest, "labels": labels}));
    }
    Ok(Json(json!({"prompts": out})))
}

async fn show(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let versions = s.prompts.prompt_versions(&name).await.map_err(store_err)?;
    if versions.is_empty() {
        return Err(missing(format!("prompt `{name}` does not exist")));
    }
    let labels = s.prompts.prompt_labels(&name).await.map_err(store_err)?;
    Ok(Json(
        json!({"name": name, "versions": versions, "labels": labels}),
    ))
}

async fn get_version(s: &AppState, name: &str, version: i64) -> Result<PromptVersion, ApiError> {
    s.prompts
        .prompt_version(name, version)
        .await
        .map_err(store_err)?
        .ok_or_else(|| missing(format!("prompt `{name}` has no version {version}")))
}

/// A version with its ETag; `304` when the client already has it.
fn cached(v: &PromptVersion, headers: &HeaderMap, cache_control: &'static str) -> Response {
    let etag = format!("\"{}@{}\"", v.name, v.version);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.split(',').any(|t| t.trim() == etag))
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let mut r = Json(json!({"prompt_version": v})).into_response();
    if let Ok(e) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert(header::ETAG, e);
    }
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    r
}

async fn version(
    State(s): State<AppState>,
    Path((name, version)): Path<(String, i64)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let v = get_version(&s, &name, version).await?;
    // A version never changes.
    Ok(cached(&v, &headers, "public, max-age=31536000, immutable"))
}

async fn label_version(s: &AppState, name: &str, label: &str) -> Result<PromptVersion, ApiError> {
    let labels = s.prompts.prompt_labels(name).await.map_err(store_err)?;
    let v = labels
        .get(label)
        .copied()
        .ok_or_else(|| missing(format!("prompt `{name}` has no label `{label}`")))?;
    get_version(s, name, v).await
}

async fn label(
    State(s): State<AppState>,
    Path((name, label)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let v = label_version(&s, &name, &label).await?;
    // A label moves: clients may use a copy for 5 s and a stale one for a minute while they
    // revalidate.
    Ok(cached(&v, &headers, "max-age=5, stale-while-revalidate=60"))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelBody {
    version: i64,
}

async fn set_label(
    State(s): State<AppState>,
    Path((name, label)): Path<(String, String)>,
    token: Option<Extension<tracking::TokenInfo>>,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: LabelBody = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::new(ErrorCode::InvalidParameterValue, format!("label: {e}")))?;
    prompts::valid_name(&label).map_err(bad)?;
    may_move(&label, &token)?;
    get_version(&s, &name, b.version).await?;
    s.prompts
        .set_prompt_label(&name, &label, b.version)
        .await
        .map_err(store_err)?;
    Ok(Json(
        json!({"name": name, "label": label, "version": b.version}),
    ))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitBody {
    /// version → weight.
    weights: BTreeMap<i64, f64>,
}

fn may_move(label: &str, token: &Option<Extension<tracking::TokenInfo>>) -> Result<(), ApiError> {
    if PROTECTED.contains(&label)
        && let Some(Extension(t)) = token
        && t.scope < tracking::Scope::Admin
    {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "moving `{label}` needs an admin token; '{}' has scope '{}'",
                t.name,
                t.scope.as_str()
            ),
        ));
    }
    Ok(())
}

/// Splits `name@label` across versions (an A/B test of prompts): each caller (by
/// `x-capstan-key`, else the request's `user`) sticks to one version.
async fn set_split(
    State(s): State<AppState>,
    Path((name, label)): Path<(String, String)>,
    token: Option<Extension<tracking::TokenInfo>>,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: SplitBody = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::new(ErrorCode::InvalidParameterValue, format!("split: {e}")))?;
    prompts::valid_name(&label).map_err(bad)?;
    may_move(&label, &token)?;
    if b.weights.is_empty()
        || b.weights.values().any(|w| !(w.is_finite() && *w >= 0.0))
        || b.weights.values().sum::<f64>() <= 0.0
    {
        return Err(ApiError::new(
            ErrorCode::InvalidParameterValue,
            "weights must be ≥ 0 with a positive sum",
        ));
    }
    for v in b.weights.keys() {
        get_version(&s, &name, *v).await?;
    }
    s.prompts
        .set_prompt_split(&name, &label, Some(&b.weights))
        .await
        .map_err(store_err)?;
    Ok(Json(
        json!({"name": name, "label": label, "weights": b.weights}),
    ))
}

async fn get_split(
    State(s): State<AppState>,
    Path((name, label)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let w = s
        .prompts
        .prompt_split(&name, &label)
        .await
        .map_err(store_err)?
        .ok_or_else(|| missing(format!("`{name}@{label}` is not split")))?;
    Ok(Json(json!({"name": name, "label": label, "weights": w})))
}

async fn delete_split(
    State(s): State<AppState>,
    Path((name, label)): Path<(String, String)>,
    token: Option<Extension<tracking::TokenInfo>>,
) -> Result<Json<Value>, ApiError> {
    may_move(&label, &token)?;
    s.prompts
        .set_prompt_split(&name, &label, None)
        .await
        .map_err(store_err)?;
    Ok(Json(json!({"name": name, "label": label})))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RenderBody {
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    variables: Map<String, Value>,
}

async fn render(
    State(s): State<AppState>,
    Path(name): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: RenderBody = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::new(ErrorCode::InvalidParameterValue, format!("render: {e}")))?;
    let v = match (b.version, &b.label) {
        (Some(n), None) => get_version(&s, &name, n).await?,
        (None, Some(l)) => label_version(&s, &name, l).await?,
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidParameterValue,
                "give `version` or `label`",
            ));
        }
    };
    let rendered = prompts::render(&v, &b.variables).map_err(bad)?;
    Ok(Json(
        json!({"name": name, "version": v.version, "rendered": rendered, "params": v.params}),
    ))
}

#[derive(serde::Deserialize)]
struct DiffQuery {
    from: i64,
    to: i64,
}

async fn diff(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<DiffQuery>,
) -> Result<Json<Value>, ApiError> {
    let a = get_version(&s, &name, q.from).await?;
    let b = get_version(&s, &name, q.to).await?;
    Ok(Json(
        json!({"name": name, "from": q.from, "to": q.to, "lines": prompts::diff(&a, &b)}),
    ))
}

/// Turns a chat body that names `prompt: "name@label"` (or `name@3`) and `variables` into a
/// plain one: the rendered messages, the prompt's parameters where the body gives none. Returns
/// the new body and `name@version` for the usage record; bodies without `prompt` pass through.
pub async fn resolve(
    s: &AppState,
    raw: &[u8],
    sticky: Option<&str>,
) -> Result<(Option<Vec<u8>>, Option<String>), gateway::GatewayError> {
    let invalid = |field: &str, m: String| gateway::GatewayError::invalid(field, m);
    // Cheap check first: most requests carry no prompt reference.
    if !raw.windows(8).any(|w| w == b"\"prompt\"") {
        return Ok((None, None));
    }
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(raw) else {
        return Ok((None, None));
    };
    let Some(reference) = body.remove("prompt") else {
        return Ok((None, None));
    };
    let reference = reference
        .as_str()
        .ok_or_else(|| {
            invalid(
                "prompt",
                "`prompt` must be \"name@label\" or \"name@version\"".into(),
            )
        })?
        .to_owned();
    let (name, at) = reference
        .split_once('@')
        .unwrap_or((reference.as_str(), "production"));
    let not_found = |m: String| gateway::GatewayError {
        param: Some("prompt".into()),
        ..gateway::GatewayError::new(gateway::ErrorClass::NotFound, 404, m)
    };
    // A split label sends each caller to one of its versions, the same one every time.
    let split = match at.parse::<i64>() {
        Ok(_) => None,
        Err(_) => s
            .prompts
            .prompt_split(name, at)
            .await
            .map_err(|e| invalid("prompt", e))?,
    };
    let key = sticky
        .map(str::to_owned)
        .or_else(|| body.get("user").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let version = match at.parse::<i64>() {
        Ok(n) => n,
        Err(_) if split.is_some() => split
            .as_ref()
            .and_then(|w| prompts::assign(w, &key, &reference))
            .ok_or_else(|| not_found(format!("`{reference}` is split over no version")))?,
        Err(_) => *s
            .prompts
            .prompt_labels(name)
            .await
            .map_err(|e| invalid("prompt", e))?
            .get(at)
            .ok_or_else(|| not_found(format!("prompt `{name}` has no label `{at}`")))?,
    };
    let v = s
        .prompts
        .prompt_version(name, version)
        .await
        .map_err(|e| invalid("prompt", e))?
        .ok_or_else(|| not_found(format!("prompt `{name}` has no version {version}")))?;
    let vars = match body.remove("variables") {
        None => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(invalid("variables", "`variables` must be an object".into())),
    };
    if body.contains_key("messages") {
        return Err(invalid(
            "messages",
            "give `prompt` or `messages`, not both".into(),
        ));
    }
    let messages = match prompts::render(&v, &vars)? {
        Rendered::Chat { messages } => json!(messages),
        Rendered::Text { text } => json!([{"role": "user", "content": text}]),
    };
    body.insert("messages".into(), messages);
    for (k, val) in &v.params {
        body.entry(k.clone()).or_insert_with(|| val.clone());
    }
    let bytes =
        serde_json::to_vec(&Value::Object(body)).map_err(|e| invalid("prompt", e.to_string()))?;
    Ok((Some(bytes), Some(format!("{}@{}", v.name, v.version))))
}
