//! Neural models run in-process with candle on the CPU: the all-MiniLM-L6-v2 sentence
//! embedder (BERT, 384-d, mean pooling + L2 normalisation), the SmolLM2 chat model (LLaMA from
//! GGUF), and where their weights come from without a model hub. This is the only crate that builds candle.

pub mod bert;
pub mod decoder;
pub mod http;
pub mod llama;
pub mod lora;
pub mod ops;
pub mod resolve;
pub mod train;

pub use bert::MiniLm;
pub use decoder::{Decoder, LlamaConfig, MODULES};
pub use http::HttpEmbedder;
pub use llama::{ChatLm, ChatMessage, Finish, GenParams, Generation, SMOLLM2, SMOLLM2_FILE};
pub use lora::{Lora, LoraConfig};
pub use resolve::{MINILM, ModelSpec};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("model not found: {0}")]
    NotFound(String),
    #[error("model files in {dir} are unusable: {why}")]
    BadModel { dir: String, why: String },
    #[error("fetching the model: {0}")]
    Fetch(String),
    #[error("{0}")]
    BadInput(String),
    #[error(
        "this model's context is {limit} tokens; the request needs {requested} (prompt + max_tokens)"
    )]
    ContextLength { limit: usize, requested: usize },
    #[error("model I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("tensor computation: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where models run: GPU 0 when built with the `cuda` feature and one is present, else the CPU.
pub fn default_device() -> candle_core::Device {
    #[cfg(feature = "cuda")]
    if let Ok(d) = candle_core::Device::new_cuda(0) {
        return d;
    }
    candle_core::Device::Cpu
}

/// Anything that turns texts into vectors of one fixed dimension: the local MiniLM, or an
/// OpenAI-compatible embeddings endpoint behind the gateway.
pub trait Embedder: Send + Sync {
    /// A stable name for the model (recorded with every collection it fills).
    fn model_name(&self) -> &str;
    fn dim(&self) -> usize;
    /// One vector per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
    /// Tokens a text takes for this model (for budgets); an estimate by default.
    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count() * 4 / 3 + 1
    }
}
