//! MLflow-shaped errors: `{"error_code", "message"}` with MLflow's HTTP statuses. Internal errors
//! are logged once and answered without their details.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base::ErrorCode;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: code.as_str(),
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidParameterValue, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::ResourceDoesNotExist, message)
    }

    pub fn internal(what: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %what, "internal error");
        ApiError::new(ErrorCode::Internal, "Internal server error")
    }
}

impl From<tracking::Error> for ApiError {
    fn from(e: tracking::Error) -> ApiError {
        let code = e.code();
        match e {
            tracking::Error::Store(_) => ApiError::internal(e),
            tracking::Error::TooLarge(m) => ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                ..ApiError::new(code, m)
            },
            tracking::Error::NotFound(m)
            | tracking::Error::AlreadyExists(m)
            | tracking::Error::Invalid(m) => ApiError::new(code, m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error_code": self.code, "message": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "ENDPOINT_NOT_FOUND",
        message: format!("No endpoint {}", uri.path()),
    }
}
