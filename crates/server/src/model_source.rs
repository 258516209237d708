//! Where served model packages come from: a registry version's source, read from the artifact
//! store (`mlflow-artifacts:/…/model` or `runs:/<run_id>/model`, then `model.json` inside).

use base::{ArtifactPath, RunId};
use registry::Registry;
use serving::{PackageSource, Selector, ServeError};
use std::sync::Arc;
use store::Blobs;
use tracking::{ArtifactIndex, Tracking};

pub struct RegistrySource {
    pub registry: Registry,
    pub tracking: Tracking,
    pub artifacts: Arc<dyn ArtifactIndex>,
    pub blobs: Blobs,
}

fn not_found(e: tracking::Error) -> ServeError {
    match e {
        tracking::Error::NotFound(m) => ServeError::NotFound(m),
        tracking::Error::Store(m) => ServeError::Internal(m),
        other => ServeError::BadInput(other.to_string()),
    }
}

impl RegistrySource {
    /// The artifact path of a version's `model.json`.
    async fn package_path(&self, source: &str) -> Result<ArtifactPath, ServeError> {
        let dir = if let Some(rest) = source.strip_prefix("mlflow-artifacts:") {
            rest.trim_start_matches('/').to_owned()
        } else if let Some(rest) = source.strip_prefix("runs:/") {
            let (run, sub) = rest.split_once('/').unwrap_or((rest, ""));
            let run = RunId::parse(run).map_err(|e| ServeError::Load(e.to_string()))?;
            let info = self.tracking.get_run(&run).await.map_err(not_found)?.info;
            let root = info
                .artifact_uri
                .strip_prefix("mlflow-artifacts:")
                .unwrap_or(&info.artifact_uri)
                .trim_start_matches('/')
                .to_owned();
            format!("{root}/{sub}")
        } else {
            return Err(ServeError::Load(format!(
                "source '{source}' is not in Capstan's artifact store"
            )));
        };
        ArtifactPath::parse(&format!("{dir}/{}", learn::PACKAGE_FILE))
            .map_err(|e| ServeError::Load(e.to_string()))
    }
}

#[async_trait::async_trait]
impl PackageSource for RegistrySource {
    async fn resolve(&self, name: &str, selector: &Selector) -> Result<i64, ServeError> {
        match selector {
            Selector::Alias(a) => Ok(self
                .registry
                .version_by_alias(name, a)
                .await
                .map_err(not_found)?
                .version),
            Selector::Version(v) => Ok(self
                .registry
                .get_version(name, *v)
                .await
                .map_err(not_found)?
                .version),
        }
    }

    async fn load(&self, name: &str, version: i64) -> Result<learn::ModelPackage, ServeError> {
        let v = self
            .registry
            .get_version(name, version)
            .await
            .map_err(not_found)?;
        let path = self.package_path(&v.source).await?;
        let entry = self
            .artifacts
            .get_artifact(&path)
            .await
            .map_err(not_found)?
            .ok_or_else(|| ServeError::Load(format!("{name} version {version} has no {path}")))?;
        let bytes = self
            .blobs
            .get_bytes(&entry.hash)
            .await
            .map_err(|e| ServeError::Load(e.to_string()))?;
        Ok(learn::ModelPackage::from_json(&bytes)?)
    }
}
