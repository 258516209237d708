//! The model registry: registered models, numbered versions with a source artifact and a run,
//! movable aliases (`champion`), MLflow's legacy stages, lineage, and promotion gates. Declares
//! the `RegistryStore` trait the `store` crate implements. No I/O and no wire format here.

mod model;
mod service;
mod store;

pub use model::*;
pub use service::{CHECK_TAG_PREFIX, Registry};
pub use store::RegistryStore;
