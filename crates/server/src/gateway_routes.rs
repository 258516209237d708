//! The LLM gateway over HTTP: OpenAI's `POST /v1/chat/completions` and `POST /v1/completions`
//! (whole answers as JSON, `stream: true` as server-sent events ending in `data: [DONE]`), with
//! OpenAI's error JSON; Anthropic's `POST /v1/messages` (its JSON, events and errors); and the gateway's admin API under `/api/2.0/capstan/gateway`: the live
//! configuration (read, or replace without a restart) and recent usage records.
//!
//! Who is calling comes from the API token (its name; `anonymous` without authentication) and
//! the optional headers `x-capstan-user`, `x-capstan-team`, `x-capstan-tags` (comma-separated)
//! and `x-capstan-tier` (for routing rules).

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base::ErrorCode;
use futures_util::StreamExt;
use gateway::{Answer, Caller, Endpoint, GatewayConfig, GatewayError, LlmRequest, Reply};
use serde_json::{Value, json};

pub const ADMIN: &str = "/api/2.0/capstan/gateway";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/messages", post(messages))
        .route(
            "/api/2.0/capstan/gateway/config",
            get(get_config).put(put_config),
        )
        .route("/api/2.0/capstan/gateway/usage", get(usage))
        .route("/api/2.0/capstan/gateway/usage/summary", get(usage_summary))
}

async fn chat(
    State(s): State<AppState>,
    token: Option<Extension<tracking::TokenInfo>>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> Response {
    llm(s, Endpoint::Chat, token, headers, raw).await
}

async fn completions(
    State(s): State<AppState>,
    token: Option<Extension<tracking::TokenInfo>>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> Response {
    llm(s, Endpoint::Completions, token, headers, raw).await
}

/// Anthropic's error JSON for the `/v1/messages` front.
fn anthropic_error(e: &GatewayError) -> Response {
    let kind = match e.status {
        400 | 413 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    };
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_GATEWAY);
    (
        status,
        Json(json!({"type": "error", "error": {"type": kind, "message": e.message}})),
    )
        .into_response()
}

/// Anthropic's Messages API in front of the gateway: any model group answers, whole or streamed
/// as Anthropic's events.
async fn messages(
    State(s): State<AppState>,
    token: Option<Extension<tracking::TokenInfo>>,
    h: HeaderMap,
    raw: axum::body::Bytes,
) -> Response {
    let req = match gateway::anthropic::to_request(&raw) {
        Ok(r) => r,
        Err(e) => return anthropic_error(&e),
    };
    let caller = caller(token, &h, &req);
    match s.gateway.handle(req, caller).await {
        Ok(Answer {
            reply: Reply::Whole(body),
            headers,
        }) => with_headers(
            Json(gateway::anthropic::to_message(&body)).into_response(),
            headers,
        ),
        Ok(Answer {
            reply: Reply::Stream(stream),
            headers,
        }) => {
            let mut t = gateway::anthropic::StreamTranslator::default();
            let events = stream
                .map(Some)
                .chain(futures_util::stream::once(async { None }))
                .flat_map(move |item| {
                    let evs: Vec<(&'static str, Value)> = match item {
                        Some(Ok(chunk)) => t.chunk(&chunk),
                        Some(Err(e)) => vec![("error", json!({"type": "error", "error": {"type": "api_error", "message": e.message}}))],
                        None => t.end(None),
                    };
                    futures_util::stream::iter(evs.into_iter().map(|(name, data)| {
                        Ok::<_, std::convert::Infallible>(Event::default().event(name).data(data.to_string()))
                    }))
                });
            with_headers(Sse::new(events).into_response(), headers)
        }
        Err((e, headers)) => with_headers(anthropic_error(&e), headers),
    }
}

fn caller(
    token: Option<Extension<tracking::TokenInfo>>,
    h: &HeaderMap,
    req: &LlmRequest,
) -> Caller {
    let mut tags: Vec<String> = header(h, "x-capstan-tags")
        .map(|t| {
            t.split(',')
                .map(|x| x.trim().to_owned())
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(t) = req.metadata.get("tags").and_then(Value::as_str) {
        tags.extend(
            t.split(',')
                .map(|x| x.trim().to_owned())
                .filter(|x| !x.is_empty()),
        );
    }
    Caller {
        key: token
            .map(|t| t.0.name.clone())
            .unwrap_or_else(|| "anonymous".into()),
        user: header(h, "x-capstan-user"),
        team: header(h, "x-capstan-team"),
        tags,
        tier: header(h, "x-capstan-tier"),
        prompt: None,
        trace: header(h, "traceparent").and_then(|t| traces::parse_traceparent(&t)),
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Header values must be visible ASCII.
fn with_headers(mut resp: Response, headers: Vec<(&'static str, String)>) -> Response {
    for (k, v) in headers {
        let clean: String = v
            .chars()
            .map(|c| {
                if c.is_ascii() && !c.is_ascii_control() {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&clean) {
            resp.headers_mut().insert(HeaderName::from_static(k), v);
        }
    }
    resp
}

pub fn error_response(e: &GatewayError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, Json(e.body())).into_response()
}

async fn llm(
    s: AppState,
    endpoint: Endpoint,
    token: Option<Extension<tracking::TokenInfo>>,
    h: HeaderMap,
    raw: axum::body::Bytes,
) -> Response {
    // A chat body may name a registered prompt instead of carrying messages.
    let (resolved, prompt) = match endpoint {
        Endpoint::Chat => {
            match crate::prompt_routes::resolve(&s, &raw, header(&h, "x-capstan-key").as_deref())
                .await
            {
                Ok(x) => x,
                Err(e) => return error_response(&e),
            }
        }
        Endpoint::Completions => (None, None),
    };
    let raw = resolved.map(axum::body::Bytes::from).unwrap_or(raw);
    let req = match LlmRequest::parse(endpoint, &raw) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let mut caller = caller(token, &h, &req);
    caller.prompt = prompt;
    match s.gateway.handle(req, caller).await {
        Ok(Answer {
            reply: Reply::Whole(body),
            headers,
        }) => with_headers(Json(body).into_response(), headers),
        Ok(Answer {
            reply: Reply::Stream(stream),
            headers,
        }) => {
            let events = stream
                .map(|item| {
                    let data = match item {
                        Ok(chunk) => chunk.to_string(),
                        Err(e) => e.body().to_string(),
                    };
                    Ok::<_, std::convert::Infallible>(Event::default().data(data))
                })
                .chain(futures_util::stream::once(async {
                    Ok(Event::default().data("[DONE]"))
                }));
            with_headers(
                Sse::new(events)
                    .keep_alive(KeepAlive::default())
                    .into_response(),
                headers,
            )
        }
        Err((e, headers)) => with_headers(error_response(&e), headers),
    }
}

async fn get_config(State(s): State<AppState>) -> Json<Value> {
    Json(
        json!({"config": s.gateway.config(), "price_version": s.gateway.price_version(),
                "models": s.gateway.models()}),
    )
}

/// Replaces the routing configuration (groups, retries, breakers, cache, prices) at once.
async fn put_config(
    State(s): State<AppState>,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let config: GatewayConfig = serde_json::from_slice(&raw).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidParameterValue,
            format!("gateway config: {e}"),
        )
    })?;
    s.gateway
        .reload(config)
        .map_err(|e| ApiError::new(ErrorCode::InvalidParameterValue, e.message))?;
    Ok(Json(
        json!({"models": s.gateway.models(), "price_version": s.gateway.price_version()}),
    ))
}

#[derive(serde::Deserialize)]
struct UsageQuery {
    since_ms: Option<i64>,
    limit: Option<usize>,
}

async fn usage(
    State(s): State<AppState>,
    Query(q): Query<UsageQuery>,
) -> Result<Json<Value>, ApiError> {
    let records = s
        .gateway
        .recent_usage(q.since_ms.unwrap_or(0), q.limit.unwrap_or(100).min(10_000))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e))?;
    let cost: f64 = records.iter().filter_map(|r| r.cost_usd).sum();
    Ok(Json(json!({"records": records, "total_cost_usd": cost})))
}

#[derive(serde::Deserialize)]
struct SummaryQuery {
    /// `key`, `user`, `team`, `tag`, `model` or `deployment`.
    by: String,
    since_ms: Option<i64>,
}

/// Spend and tokens grouped by key, user, team, tag, model group or deployment (a call with
/// several tags counts under each).
async fn usage_summary(
    State(s): State<AppState>,
    Query(q): Query<SummaryQuery>,
) -> Result<Json<Value>, ApiError> {
    let pick = |r: &gateway::UsageRecord| -> Vec<String> {
        match q.by.as_str() {
            "key" => vec![r.key.clone()],
            "user" => vec![r.user.clone().unwrap_or_default()],
            "team" => vec![r.team.clone().unwrap_or_default()],
            "tag" => r.tags.clone(),
            "model" => vec![r.model.clone()],
            _ => vec![r.deployment.clone()],
        }
    };
    if !["key", "user", "team", "tag", "model", "deployment"].contains(&q.by.as_str()) {
        return Err(ApiError::new(
            ErrorCode::InvalidParameterValue,
            format!(
                "by must be key, user, team, tag, model or deployment, not `{}`",
                q.by
            ),
        ));
    }
    let records = s
        .gateway
        .recent_usage(q.since_ms.unwrap_or(0), 1_000_000)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e))?;
    let mut groups: std::collections::BTreeMap<String, (u64, u64, u64, u64, f64)> =
        Default::default();
    for r in &records {
        for k in pick(r) {
            let g = groups.entry(k).or_default();
            g.0 += 1;
            g.1 += u64::from(r.cache != "hit" && r.cache != "semantic-hit" && r.status == 200);
            g.2 += r.usage.prompt_tokens;
            g.3 += r.usage.completion_tokens;
            g.4 += r.cost_usd.unwrap_or(0.0);
        }
    }
    let rows: Vec<Value> = groups
        .into_iter()
        .map(|(k, (n, upstream, p, c, cost))| {
            json!({"value": k, "requests": n, "upstream_calls": upstream, "prompt_tokens": p,
                   "completion_tokens": c, "cost_usd": cost})
        })
        .collect();
    Ok(Json(json!({"by": q.by, "groups": rows})))
}
