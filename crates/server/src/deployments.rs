//! Deployments over HTTP: manage them (`/api/2.0/capstan/deployments`), predict through them
//! (`/deployments/{name}/infer`, OIP body; the answer names its variant), send feedback
//! (`/deployments/{name}/feedback`) and read their statistics (`/deployments/{name}/stats`).

use crate::AppState;
use crate::oip::{OipError, bad, parse_body, predict_request};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use serving::deploy::{DeploymentSpec, RequestRecord, assign, report};
use std::time::Instant;

pub const ADMIN: &str = "/api/2.0/capstan/deployments";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(ADMIN, get(list).post(put))
        .route(&format!("{ADMIN}/{{name}}"), get(show).delete(remove))
        .route("/deployments/{name}/infer", post(infer))
        .route("/deployments/{name}/feedback", post(feedback))
        .route("/deployments/{name}/stats", get(stats))
}

async fn load(s: &AppState, name: &str) -> Result<(DeploymentSpec, i64), OipError> {
    let (json, created) = s.deployments.get_deployment(name).await?.ok_or_else(|| {
        OipError(
            StatusCode::NOT_FOUND,
            format!("no deployment named '{name}'"),
        )
    })?;
    let spec: DeploymentSpec = serde_json::from_str(&json).map_err(|e| {
        OipError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stored deployment is unreadable: {e}"),
        )
    })?;
    Ok((spec, created))
}

fn spec_json(spec: &DeploymentSpec, created: i64) -> Value {
    let weights = spec.weights_at(created, base::now_millis());
    json!({"deployment": spec, "created": created, "current_weights": weights})
}

async fn put(State(s): State<AppState>, body: axum::body::Bytes) -> Result<Json<Value>, OipError> {
    let spec: DeploymentSpec =
        serde_json::from_slice(&body).map_err(|e| bad(format!("invalid deployment: {e}")))?;
    spec.validate()?;
    // Every variant must be servable before traffic is routed to it.
    for v in &spec.variants {
        s.serving
            .get(&v.model, &v.selector())
            .await
            .map_err(|e| bad(format!("variant '{}': {e}", v.name)))?;
    }
    let text = serde_json::to_string(&spec).map_err(|e| bad(e.to_string()))?;
    let created = s.deployments.put_deployment(&spec.name, &text).await?;
    Ok(Json(spec_json(&spec, created)))
}

async fn list(State(s): State<AppState>) -> Result<Json<Value>, OipError> {
    let all = s.deployments.list_deployments().await?;
    let items: Vec<Value> = all
        .iter()
        .filter_map(|(json, created)| {
            serde_json::from_str::<DeploymentSpec>(json)
                .ok()
                .map(|spec| spec_json(&spec, *created))
        })
        .collect();
    Ok(Json(json!({"deployments": items})))
}

async fn show(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, OipError> {
    let (spec, created) = load(&s, &name).await?;
    Ok(Json(spec_json(&spec, created)))
}

async fn remove(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, OipError> {
    if !s.deployments.delete_deployment(&name).await? {
        return Err(OipError(
            StatusCode::NOT_FOUND,
            format!("no deployment named '{name}'"),
        ));
    }
    Ok(Json(json!({})))
}

fn record(s: &AppState, r: RequestRecord) {
    let store = s.deployments.clone();
    // Logged off the request path; a failed log line never fails a prediction.
    tokio::spawn(async move {
        if let Err(e) = store.record_request(&r).await {
            tracing::warn!(error = %e, "could not record a deployment request");
        }
    });
}

async fn infer(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, OipError> {
    let (spec, created) = load(&s, &name).await?;
    let req = parse_body(&body)?;
    let request_id = req["id"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    // Sticky by the caller's key (a user or session id); otherwise by request.
    let key = headers
        .get("x-capstan-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req["parameters"]["key"].as_str().map(str::to_owned))
        .unwrap_or_else(|| request_id.clone());
    let weights = spec.weights_at(created, base::now_millis());
    let chosen = assign(&spec.name, &key, &weights);
    let variant = &spec.variants[chosen];
    let start = Instant::now();
    let result = predict_request(
        &s,
        &variant.model,
        &variant.selector(),
        &req,
        &variant.name,
        &request_id,
    )
    .await;
    // Written before the answer, so feedback on this request id always finds it.
    let logged = s
        .deployments
        .record_request(&RequestRecord {
            deployment: name.clone(),
            request_id: request_id.clone(),
            variant: variant.name.clone(),
            latency_us: start.elapsed().as_micros() as i64,
            error: result.is_err(),
            shadow: false,
            outcome: None,
        })
        .await;
    if let Err(e) = logged {
        tracing::warn!(error = %e, "could not record a deployment request");
    }
    if spec.mode == serving::deploy::Mode::Shadow {
        let (s2, req2, shadow, name2, rid) = (
            s.clone(),
            req.clone(),
            spec.variants[1].clone(),
            name.clone(),
            request_id.clone(),
        );
        tokio::spawn(async move {
            let start = Instant::now();
            let r = predict_request(
                &s2,
                &shadow.model,
                &shadow.selector(),
                &req2,
                &shadow.name,
                &rid,
            )
            .await;
            record(
                &s2,
                RequestRecord {
                    deployment: name2,
                    request_id: rid,
                    variant: shadow.name,
                    latency_us: start.elapsed().as_micros() as i64,
                    error: r.is_err(),
                    shadow: true,
                    outcome: None,
                },
            );
        });
    }
    let (served, outputs) = result?;
    let body = json!({
        "model_name": variant.model,
        "model_version": served.version.to_string(),
        "id": request_id,
        "parameters": {"deployment": name, "variant": variant.name},
        "outputs": outputs,
    });
    Ok((
        [
            ("x-capstan-variant", variant.name.clone()),
            ("x-request-id", request_id),
        ],
        Json(body),
    )
        .into_response())
}

async fn feedback(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, OipError> {
    load(&s, &name).await?;
    let req = parse_body(&body)?;
    let request_id = req["request_id"]
        .as_str()
        .ok_or_else(|| bad("feedback needs 'request_id'"))?;
    let outcome = match &req["outcome"] {
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => n
            .as_f64()
            .filter(|v| v.is_finite())
            .ok_or_else(|| bad("'outcome' must be a finite number"))?,
        _ => {
            return Err(bad(
                "feedback needs 'outcome': a number, or true/false for a conversion",
            ));
        }
    };
    if !s
        .deployments
        .record_feedback(&name, request_id, outcome)
        .await?
    {
        return Err(OipError(
            StatusCode::NOT_FOUND,
            format!("no request '{request_id}' in deployment '{name}'"),
        ));
    }
    Ok(Json(json!({})))
}

async fn stats(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, OipError> {
    let (spec, created) = load(&s, &name).await?;
    let records = s.deployments.requests(&name).await?;
    let weights = spec.weights_at(created, base::now_millis());
    let r = report(&spec, &weights, &records);
    Ok(Json(serde_json::to_value(&r).map_err(|e| {
        OipError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    })?))
}
