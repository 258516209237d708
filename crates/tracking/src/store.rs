//! The store traits experiment tracking needs. The `store` crate implements them for SQLite,
//! PostgreSQL, the local filesystem and S3; every implementation passes one conformance suite.

use crate::filter::{Filter, OrderBy};
use crate::{
    DatasetInput, Experiment, Lifecycle, Metric, NewRun, Page, Param, Result, Run, RunInfo,
    RunUpdate, Scope, Tag, TokenInfo, ViewType,
};
use base::{ArtifactPath, ContentHash, ExperimentId, RunId};

/// A run search, already parsed and validated.
#[derive(Debug, Clone)]
pub struct SearchRuns {
    pub experiment_ids: Vec<ExperimentId>,
    pub filter: Filter,
    pub order_by: Vec<OrderBy>,
    pub view: ViewType,
    pub max_results: u32,
    pub offset: u64,
}

/// Metadata of tracking: experiments and runs. Every method is one atomic transaction.
#[async_trait::async_trait]
pub trait TrackingStore: Send + Sync {
    /// Creates the experiment; `artifact_location` may contain `{id}`, replaced by the new id.
    async fn create_experiment(
        &self,
        name: &str,
        artifact_location: &str,
        tags: &[Tag],
    ) -> Result<ExperimentId>;
    async fn get_experiment(&self, id: ExperimentId) -> Result<Experiment>;
    async fn get_experiment_by_name(&self, name: &str) -> Result<Experiment>;
    async fn list_experiments(
        &self,
        view: ViewType,
        max_results: u32,
        offset: u64,
    ) -> Result<Page<Experiment>>;
    async fn rename_experiment(&self, id: ExperimentId, new_name: &str) -> Result<()>;
    async fn set_experiment_lifecycle(&self, id: ExperimentId, lifecycle: Lifecycle) -> Result<()>;
    async fn set_experiment_tag(&self, id: ExperimentId, tag: &Tag) -> Result<()>;

    /// Creates the run; `artifact_root` may contain `{run_id}`.
    async fn create_run(
        &self,
        run_id: &RunId,
        new: &NewRun,
        run_name: &str,
        artifact_root: &str,
    ) -> Result<Run>;
    async fn get_run(&self, id: &RunId) -> Result<Run>;
    async fn update_run(&self, id: &RunId, update: &RunUpdate) -> Result<RunInfo>;
    async fn set_run_lifecycle(&self, id: &RunId, lifecycle: Lifecycle) -> Result<()>;
    /// Logs everything or nothing. A param logged again with another value is refused.
    async fn log_batch(
        &self,
        id: &RunId,
        metrics: &[Metric],
        params: &[Param],
        tags: &[Tag],
    ) -> Result<()>;
    async fn delete_tag(&self, id: &RunId, key: &str) -> Result<()>;
    async fn log_inputs(&self, id: &RunId, inputs: &[DatasetInput]) -> Result<()>;
    async fn metric_history(
        &self,
        id: &RunId,
        key: &str,
        max_results: u32,
        offset: u64,
    ) -> Result<Page<Metric>>;
    async fn search_runs(&self, q: &SearchRuns) -> Result<Page<Run>>;
}

/// The index from artifact paths to blobs: what makes an uploaded file visible.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactEntry {
    pub path: ArtifactPath,
    pub hash: ContentHash,
    pub size: u64,
}

#[async_trait::async_trait]
pub trait ArtifactIndex: Send + Sync {
    /// Points `path` at a blob, replacing what it pointed at before.
    async fn put_artifact(&self, entry: &ArtifactEntry) -> Result<()>;
    async fn get_artifact(&self, path: &ArtifactPath) -> Result<Option<ArtifactEntry>>;
    /// Every file below `dir` (recursively), in path order.
    async fn list_artifacts(&self, dir: &ArtifactPath) -> Result<Vec<ArtifactEntry>>;
    async fn delete_artifacts(&self, path: &ArtifactPath) -> Result<u64>;
}

/// API tokens; only their SHA-256 is stored.
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync {
    async fn create_token(
        &self,
        name: &str,
        token_hash: &ContentHash,
        scope: Scope,
    ) -> Result<TokenInfo>;
    async fn find_token(&self, token_hash: &ContentHash) -> Result<Option<TokenInfo>>;
    async fn list_tokens(&self) -> Result<Vec<TokenInfo>>;
    async fn revoke_token(&self, id: i64) -> Result<()>;
    async fn count_tokens(&self) -> Result<u64>;
}
