//! The error type of the domain crates (tracking, registry): every failure says which
//! `ErrorCode` it is, so each protocol maps it the same way.

use crate::ErrorCode;

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

impl From<crate::IdError> for Error {
    fn from(e: crate::IdError) -> Error {
        Error::Invalid(e.to_string())
    }
}

impl From<crate::PathError> for Error {
    fn from(e: crate::PathError) -> Error {
        Error::Invalid(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
