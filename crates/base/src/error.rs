//! The one table of error codes every protocol maps from. Names follow MLflow's `ErrorCode`.

/// What kind of failure an operation had, independent of any wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidParameterValue,
    ResourceDoesNotExist,
    ResourceAlreadyExists,
    Unauthenticated,
    PermissionDenied,
    RequestLimitExceeded,
    Internal,
}

impl ErrorCode {
    /// The MLflow `error_code` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidParameterValue => "INVALID_PARAMETER_VALUE",
            ErrorCode::ResourceDoesNotExist => "RESOURCE_DOES_NOT_EXIST",
            ErrorCode::ResourceAlreadyExists => "RESOURCE_ALREADY_EXISTS",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::RequestLimitExceeded => "REQUEST_LIMIT_EXCEEDED",
            ErrorCode::Internal => "INTERNAL_ERROR",
        }
    }

    /// The HTTP status MLflow answers with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidParameterValue => 400,
            ErrorCode::ResourceDoesNotExist => 404,
            ErrorCode::ResourceAlreadyExists => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::RequestLimitExceeded => 429,
            ErrorCode::Internal => 500,
        }
    }
}
