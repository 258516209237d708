//! Dataset and model versioning in DVC's own formats: `.dvc` pointer files, the content-addressed
//! cache `files/md5/<2 hex>/<30 hex>` with `.dir` manifests, a stat cache so unchanged files are
//! not re-hashed, checkout, garbage collection, and push/pull through a `Remote` (implemented for
//! local directories and S3 by the `store` crate). Existing DVC projects work; the real `dvc`
//! reads what Capstan writes. Tables are read as text rows for training ([`read_table`]) or as
//! typed columns for analysis ([`frame::read_frame`]).

pub mod frame;
mod hashing;
mod pipeline;
mod pointer;
mod repo;
mod table;

pub use hashing::{DirEntry, md5_bytes, md5_file};
pub use pipeline::{RunRecord, Stage, StageRun, dag, order, read_stages, run_record};
pub use pointer::{Out, Pointer};
pub use repo::{DataError, Remote, Repo, Status, TransferReport};
pub use table::{Table, parse_table, read_table};
