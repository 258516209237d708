//! Every backend Capstan persists to: SQLite and PostgreSQL for metadata (through one SQL dialect
//! and versioned migrations), the local filesystem and S3-compatible storage for blobs. It implements
//! the store traits the domain crates declare; no other crate writes SQL or talks to S3.

mod artifacts;
mod batch;
mod blobs;
mod db;
mod deploy_store;
mod feature_store;
mod job_store;
mod label_store;
mod ledger_store;
mod migrations;
mod monitor_store;
mod pgvector;
mod prompt_store;
mod redis;
mod registry_store;
mod remote;
mod sql;
mod tokens;
mod trace_store;
mod tracking_store;
mod usage_store;

pub use blobs::{BlobConfig, BlobError, Blobs, S3Config};
pub use db::{Backend, Db, DbError};
pub use pgvector::PgVectors;
pub use redis::{Redis, Reply};
pub use remote::ObjectRemote;
