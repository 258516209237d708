//! Online features over HTTP: Feast's own `POST /get-online-features` and the same at
//! `POST /features/online`: `{"features": ["view:feature", …] | "feature_service": NAME,
//! "entities": {KEY: [values]}, "full_feature_names": false}` → `metadata.feature_names` and
//! `results[].values / statuses / event_timestamps`.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/get-online-features", post(online))
        .route("/features/online", post(online))
}

async fn online(
    State(s): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("request body is not JSON: {e}")))?;
    let applied = s
        .features
        .applied()
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::not_found("no feature definitions applied (capstan features apply)")
        })?;
    let defs = &applied.definitions;
    let refs: Vec<String> = match (req.get("features"), req.get("feature_service")) {
        (Some(Value::Array(f)), None) => f
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::invalid("features must be strings view:feature"))
            })
            .collect::<Result<_, _>>()?,
        (None, Some(Value::String(svc))) => defs
            .feature_list(Some(svc), &[])
            .map_err(ApiError::not_found)?,
        _ => {
            return Err(ApiError::invalid(
                "give either features (a list of view:feature) or feature_service (a name)",
            ));
        }
    };
    let entities = req["entities"]
        .as_object()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::invalid("entities must map join keys to lists of values"))?;
    let full = req["full_feature_names"].as_bool().unwrap_or(false);
    let out = features::online::get_online_features(
        defs,
        s.online.as_ref(),
        &refs,
        entities,
        base::now_millis() * 1000,
        full,
    )
    .await
    .map_err(|e| {
        if e.starts_with("redis") {
            ApiError::internal(e)
        } else {
            ApiError::invalid(e)
        }
    })?;
    Ok(Json(out))
}
