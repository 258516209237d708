//! Shared vocabulary of every Capstan crate: typed ids, content hashes, artifact paths,
//! error codes and time. No I/O here.

mod artifact_path;
mod domain_error;
mod error;
mod hash;
mod ids;

pub mod rng;
pub use artifact_path::{ArtifactPath, PathError};
pub use domain_error::{Error, Result};
pub use error::ErrorCode;
pub use hash::{ContentHash, Sha256Hasher};
pub use ids::{ExperimentId, IdError, RunId};

/// Milliseconds since the Unix epoch, the unit MLflow uses for every timestamp.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Lower-case hexadecimal encoding.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}
