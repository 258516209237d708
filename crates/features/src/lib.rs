//! The feature store (Feast's job): definitions of entities, sources, feature views and feature
//! services; point-in-time correct historical retrieval for training sets; timestamps parsed
//! without ambiguity.

pub mod defs;
pub mod expr;
pub mod offline;
pub mod online;
pub mod time;

pub use defs::Definitions;
pub use offline::{Request, historical_features};
