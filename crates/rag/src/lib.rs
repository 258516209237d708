//! Retrieval-augmented generation, the parts that need no model: turning files into clean text
//! with their heading structure, sentence splitting, token-budgeted chunking, BM25 keyword
//! search, reciprocal rank fusion, and context assembly with citations.

pub mod bm25;
pub mod chunk;
pub mod csv;
pub mod pipeline;
pub mod text;

pub use pipeline::{Answer, Fusion, Hit, IngestReport, Mode, QueryOptions, Rag, SourceDoc};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Corrupt(String),
    #[error(transparent)]
    Vector(#[from] vector::Error),
    #[error("embedding: {0}")]
    Embedding(#[from] neural::Error),
    #[error("rag I/O: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
