//! Model serving: loads model packages through a `PackageSource` (the registry), keeps the served
//! version of each `name@alias` current (a failed load never replaces a working model), and
//! predicts through an adaptive micro-batcher with a latency budget. No wire format here.

mod batcher;
pub mod deploy;
pub mod metrics;
mod service;

pub use service::{PackageSource, Selector, ServeError, Served, Serving, ServingConfig};
