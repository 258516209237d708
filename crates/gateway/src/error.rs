//! One error type for the gateway, classed so the router knows what to do with it: a user's
//! mistake goes back at once; rate limits, timeouts, 5xx and unreachable upstreams are retried
//! and fall back; a context-window overflow falls back to a larger-context group.

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The request is wrong (400): never retried.
    BadRequest,
    /// No such model group (404).
    NotFound,
    /// The prompt plus `max_tokens` does not fit the model.
    ContextWindow,
    /// The upstream refused the content.
    ContentPolicy,
    /// 429 from an upstream.
    RateLimit,
    /// No answer in time (total or time to first token).
    Timeout,
    /// 5xx from an upstream, or a broken response.
    Upstream,
    /// Connection refused, DNS, TLS …
    Unreachable,
    /// 401/403 from an upstream (a wrong key in our config).
    Auth,
    /// A budget or rate limit of ours.
    Budget,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::BadRequest => "bad_request",
            ErrorClass::NotFound => "not_found",
            ErrorClass::ContextWindow => "context_window",
            ErrorClass::ContentPolicy => "content_policy",
            ErrorClass::RateLimit => "rate_limit",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Upstream => "upstream",
            ErrorClass::Unreachable => "unreachable",
            ErrorClass::Auth => "auth",
            ErrorClass::Budget => "budget",
        }
    }

    /// Worth trying again (on the same or another deployment).
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::RateLimit
                | ErrorClass::Timeout
                | ErrorClass::Upstream
                | ErrorClass::Unreachable
        )
    }

    /// Counts against a deployment's health.
    pub fn is_fault(self) -> bool {
        matches!(
            self,
            ErrorClass::Timeout | ErrorClass::Upstream | ErrorClass::Unreachable | ErrorClass::Auth
        )
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct GatewayError {
    pub class: ErrorClass,
    /// The HTTP status the client gets.
    pub status: u16,
    pub message: String,
    /// The request field at fault.
    pub param: Option<String>,
    /// OpenAI's `code` (`model_not_found`, `context_length_exceeded` …).
    pub code: Option<String>,
}

impl GatewayError {
    pub fn new(class: ErrorClass, status: u16, message: impl Into<String>) -> GatewayError {
        GatewayError {
            class,
            status,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    pub fn invalid(param: &str, message: impl Into<String>) -> GatewayError {
        GatewayError {
            param: Some(param.to_owned()),
            ..GatewayError::new(ErrorClass::BadRequest, 400, message)
        }
    }

    pub fn with_code(mut self, code: &str) -> GatewayError {
        self.code = Some(code.to_owned());
        self
    }

    /// OpenAI's `type` for this error.
    pub fn kind(&self) -> &'static str {
        match self.class {
            ErrorClass::BadRequest | ErrorClass::NotFound | ErrorClass::ContextWindow => {
                "invalid_request_error"
            }
            ErrorClass::ContentPolicy => "invalid_request_error",
            ErrorClass::RateLimit | ErrorClass::Budget => "rate_limit_error",
            ErrorClass::Auth => "authentication_error",
            ErrorClass::Timeout | ErrorClass::Upstream | ErrorClass::Unreachable => "api_error",
        }
    }

    /// OpenAI's error body.
    pub fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind(),
                         "param": self.param, "code": self.code}})
    }
}

pub type Result<T, E = GatewayError> = std::result::Result<T, E>;
