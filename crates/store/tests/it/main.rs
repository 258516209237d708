//! The store conformance suite: every test runs against SQLite and PostgreSQL (each PostgreSQL
//! test in a database of its own), and the blob tests against the local filesystem and S3 (moto).

mod blobs;
mod deploy;
mod jobs;
mod ledger;
mod prompts;
mod registry;
mod remote;
mod support;
mod trace_spans;
mod tracking;
mod vectors;
