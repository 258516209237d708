//! Model monitoring: data, prediction and target drift between a reference and a current table,
//! with the statistical test per column chosen exactly as Evidently chooses it (so verdicts
//! match), a self-contained HTML report that shows each column's distributions side by side, and
//! the prediction log (Parquet segments written off the request path).

pub mod cbpe;
pub mod drift;
pub mod expect;
pub mod html;
pub mod modeltest;
pub mod monitors;
pub mod performance;
pub mod predlog;
pub mod profile;

pub use drift::{ColumnDrift, ColumnRole, DriftOptions, DriftReport, Kind, Method, drift};

/// Reads a YAML file (a suite) into `T`; errors name the file.
pub fn read_yaml<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> Result<T, MonitorError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| MonitorError::Invalid(format!("{}: {e}", path.display())))?;
    serde_yaml_ng::from_str(&text)
        .map_err(|e| MonitorError::Invalid(format!("{}: {e}", path.display())))
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Data(#[from] data::DataError),
}
