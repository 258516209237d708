//! The OpenAI HTTP API, as far as this server serves models itself: `POST /v1/embeddings`
//! (string or list of strings; `encoding_format` `float` or `base64` — the `openai` Python client
//! asks for base64) and `GET /v1/models`, answered by the in-process MiniLM. Errors use OpenAI's
//! shape: `{"error": {"message", "type", "param", "code"}}`. Chat and completions are the LLM
//! gateway's (`gateway_routes`).

use crate::AppState;
use crate::embedding::{DEFAULT_MODEL, ModelError};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
}

pub struct OpenAiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

impl OpenAiError {
    fn invalid(message: impl Into<String>, param: Option<&'static str>) -> OpenAiError {
        OpenAiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
            param,
            code: None,
        }
    }
}

impl From<ModelError> for OpenAiError {
    fn from(e: ModelError) -> OpenAiError {
        match e {
            ModelError::Unknown(m) => OpenAiError {
                status: StatusCode::NOT_FOUND,
                kind: "invalid_request_error",
                message: m,
                param: Some("model"),
                code: Some("model_not_found"),
            },
            ModelError::BadInput(m) => OpenAiError::invalid(m, Some("input")),
            ModelError::Unavailable(m) => OpenAiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                kind: "server_error",
                message: m,
                param: None,
                code: None,
            },
        }
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"message": self.message, "type": self.kind,
                                  "param": self.param, "code": self.code}})),
        )
            .into_response()
    }
}

/// Most texts one embeddings request may carry (OpenAI's limit).
const MAX_INPUTS: usize = 2048;

async fn embeddings(
    State(s): State<AppState>,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, OpenAiError> {
    let b: Value = serde_json::from_slice(&raw)
        .map_err(|e| OpenAiError::invalid(format!("request body is not JSON: {e}"), None))?;
    let model = b["model"]
        .as_str()
        .ok_or_else(|| OpenAiError::invalid("`model` is required", Some("model")))?
        .to_owned();
    let texts: Vec<String> = match &b["input"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        Value::Array(_) => {
            return Err(OpenAiError::invalid(
                "`input` must be a string or a list of strings (token arrays are not supported by this model)",
                Some("input"),
            ));
        }
        _ => return Err(OpenAiError::invalid("`input` is required", Some("input"))),
    };
    if texts.is_empty() || texts.iter().any(|t| t.is_empty()) {
        return Err(OpenAiError::invalid(
            "`input` must not be empty",
            Some("input"),
        ));
    }
    if texts.len() > MAX_INPUTS {
        return Err(OpenAiError::invalid(
            format!("at most {MAX_INPUTS} inputs per request"),
            Some("input"),
        ));
    }
    let base64 = match b["encoding_format"].as_str() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(OpenAiError::invalid(
                format!("encoding_format `{other}` is not float or base64"),
                Some("encoding_format"),
            ));
        }
    };
    let embedder = s.embeddings.get(&model).await?;
    if let Some(d) = b["dimensions"].as_u64()
        && d as usize != embedder.dim()
    {
        return Err(OpenAiError::invalid(
            format!(
                "{model} has {} dimensions; `dimensions` cannot change it",
                embedder.dim()
            ),
            Some("dimensions"),
        ));
    }
    let tokens: usize = texts.iter().map(|t| embedder.count_tokens(t)).sum();
    let vectors = s.embeddings.embed(&model, texts).await?;
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": if model == "sentence-transformers/all-MiniLM-L6-v2" { DEFAULT_MODEL.to_owned() } else { model },
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}

/// The embedding model and every model group the gateway routes.
async fn models(State(s): State<AppState>) -> Json<Value> {
    let mut data =
        vec![json!({"id": DEFAULT_MODEL, "object": "model", "created": 0, "owned_by": "capstan"})];
    data.extend(
        s.gateway
            .models()
            .into_iter()
            .map(|m| json!({"id": m, "object": "model", "created": 0, "owned_by": "capstan"})),
    );
    Json(json!({"object": "list", "data": data}))
}
