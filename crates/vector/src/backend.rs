//! The vector store as the rest of Capstan sees it: a catalogue of collections and, per
//! collection, points with payloads. Two implementations pass the same conformance suite
//! ([`conformance`]): the embedded one in this crate (HNSW, a write-ahead log and snapshots on
//! local disk) and PostgreSQL with pgvector (`store::PgVectors`) for scale-out.
//!
//! Calls are synchronous and may block (disk, network): async callers run them in
//! `spawn_blocking`.

use crate::{
    Collection, CollectionConfig, CollectionInfo, Collections, Filter, Point, PointId, Result,
    ScoredPoint, SearchRequest,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub trait VectorStore: Send + Sync {
    /// Which implementation this is (`embedded`, `pgvector`).
    fn kind(&self) -> &'static str;
    fn list(&self) -> Result<Vec<String>>;
    fn get(&self, name: &str) -> Result<Arc<dyn VectorCollection>>;
    fn create(&self, name: &str, config: CollectionConfig) -> Result<Arc<dyn VectorCollection>>;
    fn delete(&self, name: &str) -> Result<()>;
    /// Where exported snapshots go, when this store can export them.
    fn snapshot_dir(&self) -> Option<PathBuf>;
}

pub trait VectorCollection: Send + Sync {
    fn name(&self) -> &str;
    fn config(&self) -> &CollectionConfig;
    fn info(&self) -> Result<CollectionInfo>;
    /// Sequence number of the last applied write (cheaper than `info`: no counting).
    fn sequence(&self) -> Result<u64>;
    /// Inserts or replaces points, all or none; returns the write's sequence number once it is
    /// durable.
    fn upsert(&self, points: Vec<Point>) -> Result<u64>;
    fn delete(&self, ids: Vec<PointId>) -> Result<u64>;
    fn delete_matching(&self, filter: &Filter) -> Result<usize>;
    fn count(&self, filter: Option<&Filter>) -> Result<usize>;
    fn get(&self, ids: &[PointId], with_vector: bool) -> Result<Vec<Point>>;
    /// Up to `limit` points in id order from `offset`, and the next offset.
    fn scroll(
        &self,
        filter: Option<&Filter>,
        offset: Option<&PointId>,
        limit: usize,
    ) -> Result<(Vec<Point>, Option<PointId>)>;
    fn search(&self, req: &SearchRequest) -> Result<Vec<ScoredPoint>>;
    fn export_snapshot(&self, path: &Path) -> Result<()>;
    /// Small named blobs kept with the collection (and dropped with it): e.g. a RAG ingestion
    /// manifest.
    fn read_meta(&self, key: &str) -> Result<Option<Vec<u8>>>;
    fn write_meta(&self, key: &str, value: &[u8]) -> Result<()>;
}

impl VectorStore for Collections {
    fn kind(&self) -> &'static str {
        "embedded"
    }
    fn list(&self) -> Result<Vec<String>> {
        Ok(Collections::list(self)
            .iter()
            .map(|c| c.name().to_owned())
            .collect())
    }
    fn get(&self, name: &str) -> Result<Arc<dyn VectorCollection>> {
        Ok(Collections::get(self, name)?)
    }
    fn create(&self, name: &str, config: CollectionConfig) -> Result<Arc<dyn VectorCollection>> {
        Ok(Collections::create(self, name, config)?)
    }
    fn delete(&self, name: &str) -> Result<()> {
        Collections::delete(self, name)
    }
    fn snapshot_dir(&self) -> Option<PathBuf> {
        Some(Collections::snapshot_dir(self))
    }
}

fn meta_path(dir: &Path, key: &str) -> Result<PathBuf> {
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(crate::Error::BadRequest(format!(
            "bad metadata key `{key}`"
        )));
    }
    Ok(dir.join(format!("meta-{key}")))
}

impl VectorCollection for Collection {
    fn name(&self) -> &str {
        Collection::name(self)
    }
    fn config(&self) -> &CollectionConfig {
        Collection::config(self)
    }
    fn info(&self) -> Result<CollectionInfo> {
        Ok(Collection::info(self))
    }
    fn sequence(&self) -> Result<u64> {
        Ok(Collection::sequence(self))
    }
    fn upsert(&self, points: Vec<Point>) -> Result<u64> {
        Collection::upsert(self, points)
    }
    fn delete(&self, ids: Vec<PointId>) -> Result<u64> {
        Collection::delete(self, ids)
    }
    fn delete_matching(&self, filter: &Filter) -> Result<usize> {
        Collection::delete_matching(self, filter)
    }
    fn count(&self, filter: Option<&Filter>) -> Result<usize> {
        Ok(Collection::count(self, filter))
    }
    fn get(&self, ids: &[PointId], with_vector: bool) -> Result<Vec<Point>> {
        Ok(Collection::get(self, ids, with_vector))
    }
    fn scroll(
        &self,
        filter: Option<&Filter>,
        offset: Option<&PointId>,
        limit: usize,
    ) -> Result<(Vec<Point>, Option<PointId>)> {
        Ok(Collection::scroll(self, filter, offset, limit))
    }
    fn search(&self, req: &SearchRequest) -> Result<Vec<ScoredPoint>> {
        Collection::search(self, req)
    }
    fn export_snapshot(&self, path: &Path) -> Result<()> {
        Collection::export_snapshot(self, path)
    }
    fn read_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match std::fs::read(meta_path(self.dir(), key)?) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
    fn write_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        let path = meta_path(self.dir(), key)?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, value)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }
}
