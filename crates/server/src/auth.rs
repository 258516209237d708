//! Optional API tokens: when enabled, every route but `/health` needs `Authorization: Bearer <token>`
//! with a scope that covers the request (read < write < admin).

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base::{ContentHash, ErrorCode};
use tracking::Scope;

/// A fresh random token; only its hash is ever stored.
pub fn new_token() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("cap_{a}{b}")
}

pub fn hash_token(token: &str) -> ContentHash {
    ContentHash::of(token.as_bytes())
}

/// POST routes that only read.
fn is_read_only_post(path: &str) -> bool {
    path.ends_with("/runs/search")
        || path.ends_with("/experiments/search")
        || path.ends_with("/logged-models/search")
        || (path.starts_with("/rag/") && path.ends_with("/query"))
        || path == "/v1/embeddings"
        || path == "/v1/chat/completions"
        || path == "/v1/completions"
        || path == "/v1/messages"
        || (path.starts_with("/api/2.0/capstan/prompts/") && path.ends_with("/render"))
        || (path.starts_with("/collections/")
            && (path.ends_with("/points/search")
                || path.ends_with("/points/count")
                || path.ends_with("/points/scroll")
                || path.ends_with("/points")))
}

fn required_scope(method: &Method, path: &str) -> Scope {
    if path.starts_with(crate::admin::TOKENS) || path == "/api/2.0/capstan/traces/expire" {
        // Tokens, and deleting traces.
        Scope::Admin
    } else if path.starts_with("/deployments/") && path.ends_with("/infer") {
        // Predicting is a read, as it is on /v2.
        Scope::Read
    } else if method == Method::GET
        || method == Method::HEAD
        || (method == Method::POST && is_read_only_post(path))
    {
        Scope::Read
    } else {
        Scope::Write
    }
}

/// A refusal in the shape the caller's API speaks: OpenAI's error JSON on `/v1/*` (what the
/// `openai` client parses), MLflow's elsewhere.
fn deny(openai: bool, code: ErrorCode, message: String) -> Response {
    if !openai {
        return ApiError::new(code, message).into_response();
    }
    let (status, kind, c) = match code {
        ErrorCode::PermissionDenied => (403, "permission_error", "insufficient_scope"),
        _ => (401, "authentication_error", "invalid_api_key"),
    };
    let status =
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::UNAUTHORIZED);
    (
        status,
        axum::Json(serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": c}})),
    )
        .into_response()
}

pub async fn require_token(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if !s.config.auth || req.uri().path() == "/health" || crate::ui::is_asset(req.uri().path()) {
        return next.run(req).await;
    }
    let openai = req.uri().path().starts_with("/v1/") && req.uri().path() != "/v1/traces";
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    let Some(token) = header
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return deny(
            openai,
            ErrorCode::Unauthenticated,
            "Missing bearer token (Authorization: Bearer <token>)".into(),
        );
    };
    let info = match s.tokens.find_token(&hash_token(token)).await {
        Ok(Some(info)) => info,
        Ok(None) => {
            return deny(
                openai,
                ErrorCode::Unauthenticated,
                "Invalid or revoked token".into(),
            );
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let need = required_scope(req.method(), req.uri().path());
    if info.scope < need {
        return deny(
            openai,
            ErrorCode::PermissionDenied,
            format!(
                "Token '{}' has scope '{}'; this request needs '{}'",
                info.name,
                info.scope.as_str(),
                need.as_str()
            ),
        );
    }
    let mut req = req;
    // Handlers that account per caller (the LLM gateway) read who it is.
    req.extensions_mut().insert(info);
    next.run(req).await
}
