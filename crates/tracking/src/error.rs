//! The tracking error type: every failure says which `ErrorCode` it is.

use base::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
    /// A failure of the backing store; its text is for logs, not for users.
    #[error("store error: {0}")]
    Store(String),
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::NotFound(_) => ErrorCode::ResourceDoesNotExist,
            Error::AlreadyExists(_) => ErrorCode::ResourceAlreadyExists,
            Error::Invalid(_) | Error::TooLarge(_) => ErrorCode::InvalidParameterValue,
            Error::Store(_) => ErrorCode::Internal,
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Error {
        Error::Invalid(msg.into())
    }
}

impl From<base::IdError> for Error {
    fn from(e: base::IdError) -> Error {
        Error::Invalid(e.to_string())
    }
}

impl From<base::PathError> for Error {
    fn from(e: base::PathError) -> Error {
        Error::Invalid(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
