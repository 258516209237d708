//! Retrieval-augmented generation, the parts that need no model: turning files into clean text
//! with their heading structure, sentence splitting, token-budgeted chunking, BM25 keyword
//! search, reciprocal rank fusion, and context assembly with citations.

pub mod csv;
pub mod text;
