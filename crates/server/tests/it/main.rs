//! The router served on a real loopback socket (port 0), driven over HTTP: MLflow wire shapes,
//! error codes and statuses, artifacts, limits and tokens, /metrics and the prediction log.

mod api;
mod artifacts;
mod auth;
mod deployments;
mod gateway;
mod labelled;
mod monitoring;
mod prompts;
mod registry;
mod serving;
mod support;
mod traces;
mod vectors;
