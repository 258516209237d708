//! Where served model packages come from: a registry version's source, read from the artifact
//! store (`mlflow-artifacts:/…/model` or `runs:/<run_id>/model`, then `model.json` inside).

use base::{ArtifactPath, RunId};
use registry::Registry;
use serving::{PackageSource, Selector, ServeError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::Blobs;
use tracking::{ArtifactIndex, Tracking};

pub struct RegistrySource {
    pub registry: Registry,
    pub tracking: Tracking,
    pub artifacts: Arc<dyn ArtifactIndex>,
    pub blobs: Blobs,
}

/// PEFT's adapter config file: a source holding it is a LoRA adapter.
const ADAPTER_CONFIG: &str = "adapter_config.json";

/// A short stable hash that keeps two model names differing only in punctuation apart.
fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
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
        let dir = self.source_dir(source).await?;
        ArtifactPath::parse(&format!("{dir}/{}", learn::PACKAGE_FILE))
            .map_err(|e| ServeError::Load(e.to_string()))
    }

    /// The LoRA adapter (PEFT layout) a registered `NAME@ALIAS` or `NAME/VERSION` names,
    /// fetched once per version into `cache`. Returns `NAME/VERSION` and the directory.
    pub async fn adapter_dir(
        &self,
        reference: &str,
        cache: &Path,
    ) -> Result<(String, PathBuf), ServeError> {
        let (name, version) = match reference.split_once('@') {
            Some((n, alias)) => (
                n,
                self.registry
                    .version_by_alias(n, alias)
                    .await
                    .map_err(not_found)?
                    .version,
            ),
            None => match reference
                .rsplit_once('/')
                .map(|(n, v)| (n, v.parse::<i64>()))
            {
                Some((n, Ok(v))) => (n, v),
                _ => {
                    return Err(ServeError::BadInput(format!(
                        "`{reference}` is neither NAME@ALIAS nor NAME/VERSION"
                    )));
                }
            },
        };
        let v = self
            .registry
            .get_version(name, version)
            .await
            .map_err(not_found)?;
        let key = format!("{name}/{version}");
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let local = cache
            .join(format!("{safe}-{:08x}", fnv(name)))
            .join(version.to_string());
        if local.join(ADAPTER_CONFIG).is_file() {
            return Ok((key, local));
        }
        let dir = self.source_dir(&v.source).await?;
        let root = ArtifactPath::parse(&dir).map_err(|e| ServeError::Load(e.to_string()))?;
        let entries = self
            .artifacts
            .list_artifacts(&root)
            .await
            .map_err(not_found)?;
        let prefix = format!("{}/", root.as_str());
        let files: Vec<_> = entries
            .iter()
            .filter_map(|e| {
                let rel = e.path.as_str().strip_prefix(&prefix)?;
                (!rel.contains('/')).then(|| (rel.to_owned(), e.hash.clone()))
            })
            .collect();
        if !files.iter().any(|(n, _)| n == ADAPTER_CONFIG) {
            return Err(ServeError::NotFound(format!(
                "{name} version {version} is not a LoRA adapter (its source has no {ADAPTER_CONFIG})"
            )));
        }
        let io = |e: std::io::Error| ServeError::Internal(format!("adapter cache: {e}"));
        let tmp = cache.join(format!(".fetch-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&tmp).map_err(io)?;
        for (file, hash) in &files {
            let bytes = self
                .blobs
                .get_bytes(hash)
                .await
                .map_err(|e| ServeError::Load(e.to_string()))?;
            std::fs::write(tmp.join(file), &bytes).map_err(io)?;
        }
        if let Some(parent) = local.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        // Another request may have fetched the same version meanwhile: either copy will do.
        if std::fs::rename(&tmp, &local).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Ok((key, local))
    }

    /// The artifact directory a version's source names.
    async fn source_dir(&self, source: &str) -> Result<String, ServeError> {
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
        Ok(dir.trim_end_matches('/').to_owned())
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

/// Registered LoRA adapters for the gateway's local model (`model: "NAME@ALIAS"`), fetched
/// from the artifact store into `cache`.
pub struct RegistryAdapters {
    pub source: RegistrySource,
    pub cache: PathBuf,
}

#[async_trait::async_trait]
impl gateway::provider::AdapterSource for RegistryAdapters {
    async fn adapter(&self, reference: &str) -> gateway::error::Result<(String, PathBuf)> {
        use gateway::error::{ErrorClass, GatewayError};
        self.source
            .adapter_dir(reference, &self.cache)
            .await
            .map_err(|e| match e {
                ServeError::NotFound(m) => GatewayError {
                    param: Some("model".into()),
                    ..GatewayError::new(
                        ErrorClass::NotFound,
                        404,
                        format!("The model `{reference}` does not exist: {m}"),
                    )
                }
                .with_code("model_not_found"),
                ServeError::BadInput(m) => GatewayError::invalid("model", m),
                other => GatewayError::new(ErrorClass::Upstream, 500, other.to_string()),
            })
    }
}
