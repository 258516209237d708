//! Experiment tracking: experiments, runs, params, metrics, tags, dataset inputs and artifacts,
//! the MLflow search grammar, and the store traits the `store` crate implements.
//! No I/O here beyond calls through those traits; no wire format.

pub mod filter;
mod model;
mod service;
mod store;
pub mod validate;

pub use base::{Error, Result};
pub use model::*;
pub use service::{LIMITS, Tracking};
pub use store::{ArtifactEntry, ArtifactIndex, SearchRuns, TokenStore, TrackingStore};
