//! Orchestration: the durable job queue that pipelines, retraining and ingestion run through.
//! `jobs` holds the domain (jobs, states, retry policy) and the `JobQueue` trait; the store crate
//! implements it on SQLite and PostgreSQL (`FOR UPDATE SKIP LOCKED`), so any number of workers on
//! any machines sharing the database can lease work.

pub mod cron;
pub mod jobs;
pub mod retrain;
pub mod schedules;

pub use jobs::{Job, JobQueue, JobState, NewJob};
