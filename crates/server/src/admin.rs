//! Capstan's own admin API: API tokens over HTTP (`/api/2.0/capstan/tokens`), admin scope only.

use crate::AppState;
use crate::auth::{hash_token, new_token};
use crate::error::ApiError;
use crate::wire::MlJson;
use axum::extract::{Path, State};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tracking::{Scope, TokenInfo};

pub const TOKENS: &str = "/api/2.0/capstan/tokens";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(TOKENS, get(list).post(create))
        .route(&format!("{TOKENS}/{{id}}"), delete(revoke))
}

fn token_json(t: &TokenInfo) -> Value {
    json!({"id": t.id, "name": t.name, "scope": t.scope.as_str(), "created": t.created})
}

#[derive(Deserialize)]
struct CreateToken {
    name: Option<String>,
    scope: Option<String>,
}

async fn create(
    State(s): State<AppState>,
    MlJson(req): MlJson<CreateToken>,
) -> Result<Json<Value>, ApiError> {
    let name = req
        .name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'name'"))?;
    let raw = req.scope.unwrap_or_default();
    let scope = Scope::parse(&raw).ok_or_else(|| {
        ApiError::invalid(format!(
            "Invalid scope '{raw}': expected read, write or admin"
        ))
    })?;
    let token = new_token();
    let info = s
        .tokens
        .create_token(&name, &hash_token(&token), scope)
        .await?;
    // The token itself is answered once and never stored.
    Ok(Json(json!({"token": token, "info": token_json(&info)})))
}

async fn list(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let tokens = s.tokens.list_tokens().await?;
    Ok(Json(
        json!({"tokens": tokens.iter().map(token_json).collect::<Vec<_>>()}),
    ))
}

async fn revoke(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::invalid(format!("Invalid token id '{id}'")))?;
    s.tokens.revoke_token(id).await?;
    Ok(Json(json!({})))
}
