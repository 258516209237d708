//! Online features over HTTP: Feast's own `POST /get-online-features` and the same at
//! `POST /features/online`: `{"features": ["view:feature", …] | "feature_service": NAME,
//! "entities": {KEY: [values]}, "full_feature_names": false}` → `metadata.feature_names` and
//! `results[].values / statuses / event_timestamps`. Inference requests may carry entity keys
//! instead of inputs (`parameters.entities`): the model's inputs are then read from the online
//! store by feature name.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

/// The applied definitions as last read, and when.
pub type AppliedCache = std::sync::Arc<
    std::sync::Mutex<
        Option<(
            std::time::Instant,
            Option<std::sync::Arc<features::defs::Applied>>,
        )>,
    >,
>;

/// The applied definitions, from memory when read less than a second ago.
pub async fn applied(
    s: &AppState,
) -> Result<Option<std::sync::Arc<features::defs::Applied>>, String> {
    if let Some((at, a)) = s
        .applied_features
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        && at.elapsed() < std::time::Duration::from_secs(1)
    {
        return Ok(a.clone());
    }
    let a = s.features.applied().await?.map(std::sync::Arc::new);
    *s.applied_features.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((std::time::Instant::now(), a.clone()));
    Ok(a)
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/get-online-features", post(online))
        .route("/features/online", post(online))
        .route("/api/2.0/capstan/features", axum::routing::get(definitions))
}

/// `GET /api/2.0/capstan/features`: the applied definitions, each feature view with the end of
/// its last materialisation (`materialized_until_ms`, null when never materialised).
async fn definitions(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let Some(applied) = s.features.applied().await.map_err(ApiError::internal)? else {
        return Ok(Json(
            serde_json::json!({"applied_ms": null, "entities": [], "sources": [],
            "feature_views": [], "feature_services": [], "on_demand_views": []}),
        ));
    };
    let mut out = serde_json::to_value(&applied.definitions).map_err(ApiError::internal)?;
    if let Some(views) = out["feature_views"].as_array_mut() {
        for v in views {
            let name = v["name"].as_str().unwrap_or_default().to_owned();
            let until = s
                .features
                .materialized(&name)
                .await
                .map_err(ApiError::internal)?;
            v["materialized_until_ms"] = serde_json::json!(until.map(|micros| micros / 1000));
        }
    }
    out["applied_ms"] = serde_json::json!(applied.applied_ms);
    Ok(Json(out))
}

async fn online(
    State(s): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("request body is not JSON: {e}")))?;
    let applied = applied(&s)
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

/// A model's input rows from entity keys: each input the request does not give as a named
/// column tensor is the online feature of that name, from a view keyed by the given entities.
pub async fn rows_from_entities(
    s: &AppState,
    package: &learn::ModelPackage,
    inputs: &[Value],
    entities: &serde_json::Map<String, Value>,
) -> Result<Vec<Vec<f64>>, crate::oip::OipError> {
    use crate::oip::{OipError, bad};
    let applied = applied(s)
        .await
        .map_err(|e| OipError(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e))?
        .ok_or_else(|| {
            bad("parameters.entities needs feature definitions (capstan features apply)")
        })?;
    let defs = &applied.definitions;
    let n = entities
        .values()
        .next()
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if n == 0 {
        return Err(bad(
            "parameters.entities must map join keys to non-empty lists",
        ));
    }
    let given: std::collections::HashMap<&str, Vec<f64>> = inputs
        .iter()
        .filter_map(|t| {
            let name = t["name"].as_str()?;
            let data: Vec<f64> = t["data"]
                .as_array()?
                .iter()
                .filter_map(Value::as_f64)
                .collect();
            Some((name, data))
        })
        .collect();
    let mut refs = Vec::new();
    for input in package.input_names() {
        if given.contains_key(input) {
            continue;
        }
        let stored = defs.feature_views.iter().find(|v| {
            v.features.iter().any(|f| f.name == input)
                && defs.join_keys(v).iter().all(|k| entities.contains_key(k))
        });
        // Or an on-demand feature whose request fields and sources the request covers.
        let on_demand = || {
            defs.on_demand_views.iter().find(|o| {
                o.features.iter().any(|f| f.name == input)
                    && o.request.iter().all(|r| entities.contains_key(r))
                    && o.sources.iter().all(|src| {
                        defs.view(src).is_some_and(|v| {
                            defs.join_keys(v).iter().all(|k| entities.contains_key(k))
                        })
                    })
            })
        };
        let view = match (stored, on_demand()) {
            (Some(v), _) => v.name.clone(),
            (None, Some(o)) => o.name.clone(),
            (None, None) => {
                return Err(bad(format!(
                    "input {input} is neither in the request nor a feature of a view keyed by {}",
                    entities.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        };
        refs.push(format!("{view}:{input}"));
    }
    let answer = features::online::get_online_features(
        defs,
        s.online.as_ref(),
        &refs,
        entities,
        base::now_millis() * 1000,
        false,
    )
    .await
    .map_err(bad)?;
    let skip = entities.len();
    let mut columns: std::collections::HashMap<&str, Vec<f64>> = std::collections::HashMap::new();
    for (i, r) in refs.iter().enumerate() {
        let result = &answer["results"][skip + i];
        let feature = r.split_once(':').map_or(r.as_str(), |x| x.1);
        let mut col = Vec::with_capacity(n);
        for row in 0..n {
            match result["values"][row].as_f64() {
                Some(v) => col.push(v),
                None => {
                    return Err(bad(format!(
                        "feature {r} for entity row {row}: {}",
                        result["statuses"][row].as_str().unwrap_or("no value")
                    )));
                }
            }
        }
        columns.insert(feature, col);
    }
    let mut rows = vec![Vec::with_capacity(package.inputs.len()); n];
    for input in package.input_names() {
        let col = given
            .get(input)
            .or_else(|| columns.get(input))
            .ok_or_else(|| bad(format!("no value for input {input}")))?;
        if col.len() != n {
            return Err(bad(format!(
                "input {input} has {} values for {n} entity rows",
                col.len()
            )));
        }
        for (row, v) in rows.iter_mut().zip(col) {
            row.push(*v);
        }
    }
    Ok(rows)
}
