//! The store trait of the registry; every method is one transaction.

use crate::{ModelVersion, NewVersion, RegisteredModel, Stage};
use tracking::{Result, Tag};

#[async_trait::async_trait]
pub trait RegistryStore: Send + Sync {
    async fn create_model(
        &self,
        name: &str,
        description: &str,
        tags: &[Tag],
    ) -> Result<RegisteredModel>;
    async fn get_model(&self, name: &str) -> Result<RegisteredModel>;
    async fn list_models(&self) -> Result<Vec<RegisteredModel>>;
    async fn rename_model(&self, name: &str, new_name: &str) -> Result<RegisteredModel>;
    async fn update_model(&self, name: &str, description: &str) -> Result<RegisteredModel>;
    /// Deletes the model with its versions, tags and aliases.
    async fn delete_model(&self, name: &str) -> Result<()>;
    async fn set_model_tag(&self, name: &str, tag: &Tag) -> Result<()>;
    async fn delete_model_tag(&self, name: &str, key: &str) -> Result<()>;

    /// Creates the next version (numbers are never reused, even after a delete).
    async fn create_version(&self, name: &str, new: &NewVersion) -> Result<ModelVersion>;
    async fn get_version(&self, name: &str, version: i64) -> Result<ModelVersion>;
    /// Every version of `name`, or of every model when `name` is `None`, newest first.
    async fn list_versions(&self, name: Option<&str>) -> Result<Vec<ModelVersion>>;
    async fn update_version(
        &self,
        name: &str,
        version: i64,
        description: &str,
    ) -> Result<ModelVersion>;
    /// Moves a version to `stage`; with `archive_existing`, other versions in that stage move to Archived.
    async fn set_stage(
        &self,
        name: &str,
        version: i64,
        stage: Stage,
        archive_existing: bool,
    ) -> Result<ModelVersion>;
    async fn delete_version(&self, name: &str, version: i64) -> Result<()>;
    async fn set_version_tag(&self, name: &str, version: i64, tag: &Tag) -> Result<()>;
    async fn delete_version_tag(&self, name: &str, version: i64, key: &str) -> Result<()>;

    /// Points `alias` at `version`, moving it if it pointed elsewhere.
    async fn set_alias(&self, name: &str, alias: &str, version: i64) -> Result<()>;
    async fn delete_alias(&self, name: &str, alias: &str) -> Result<()>;
    async fn get_alias(&self, name: &str, alias: &str) -> Result<Option<i64>>;
}
