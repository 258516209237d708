//! The vector database: an HNSW graph index and exact search over f32 vectors (cosine, dot, L2),
//! payload filters applied inside the graph search, optional int8 scalar quantization with
//! rescoring, and collections persisted as a snapshot plus a write-ahead log so an acknowledged
//! write survives a crash.
//!
//! Pure Rust and synchronous: the server wraps calls in `spawn_blocking`.

pub mod backend;
pub mod collection;
pub mod conformance;
pub mod distance;
pub mod filter;
pub mod hnsw;
pub mod quant;
mod wal;

pub use backend::{VectorCollection, VectorStore};
pub use collection::{
    Collection, CollectionConfig, CollectionInfo, Collections, Point, PointId, ScoredPoint,
    SearchRequest,
};
pub use distance::Metric;
pub use filter::Filter;
pub use hnsw::{Hnsw, HnswParams};

/// Everything that can go wrong in this crate. `BadRequest`/`NotFound`/`Conflict` are the
/// caller's mistakes; `Io`/`Corrupt` are ours or the disk's.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("vector store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("vector store file {path} is corrupt: {why}")]
    Corrupt { path: String, why: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
