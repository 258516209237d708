//! `ArtifactIndex` on the metadata database: the path → blob table that makes uploads visible.

use crate::db::{Db, map_err};
use base::{ArtifactPath, ContentHash};
use sqlx::Row;
use tracking::{ArtifactEntry, ArtifactIndex, Error, Result};

fn entry(path: String, hash: String, size: i64) -> Result<ArtifactEntry> {
    Ok(ArtifactEntry {
        path: ArtifactPath::parse(&path).map_err(|e| Error::Store(e.to_string()))?,
        hash: ContentHash::parse(&hash)
            .ok_or_else(|| Error::Store(format!("bad hash '{hash}' in the artifact index")))?,
        size: size as u64,
    })
}

/// Paths below `dir/` sort between `dir/` and `dir0` ('0' follows '/'), so a range scan on the
/// primary key lists a directory without LIKE and without escaping.
fn range(dir: &ArtifactPath) -> (String, String) {
    if dir.is_root() {
        (String::new(), "\u{10FFFF}".to_owned())
    } else {
        (format!("{dir}/"), format!("{dir}0"))
    }
}

#[async_trait::async_trait]
impl ArtifactIndex for Db {
    async fn put_artifact(&self, e: &ArtifactEntry) -> Result<()> {
        if e.path.is_root() {
            return Err(Error::invalid("An artifact needs a file name"));
        }
        let _g = self.write_guard().await;
        sqlx::query(
            "INSERT INTO artifacts (path, hash, size, created) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (path) DO UPDATE SET hash = excluded.hash, size = excluded.size, created = excluded.created",
        )
        .bind(e.path.as_str().to_owned())
        .bind(e.hash.as_str().to_owned())
        .bind(e.size as i64)
        .bind(base::now_millis())
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn get_artifact(&self, path: &ArtifactPath) -> Result<Option<ArtifactEntry>> {
        let row = sqlx::query("SELECT path, hash, size FROM artifacts WHERE path = $1")
            .bind(path.as_str().to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        match row {
            Some(r) => Ok(Some(entry(
                r.try_get(0).map_err(map_err)?,
                r.try_get(1).map_err(map_err)?,
                r.try_get(2).map_err(map_err)?,
            )?)),
            None => Ok(None),
        }
    }

    async fn list_artifacts(&self, dir: &ArtifactPath) -> Result<Vec<ArtifactEntry>> {
        let (lo, hi) = range(dir);
        let rows = sqlx::query(
            "SELECT path, hash, size FROM artifacts WHERE path > $1 AND path < $2 ORDER BY path",
        )
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                entry(
                    r.try_get(0).map_err(map_err)?,
                    r.try_get(1).map_err(map_err)?,
                    r.try_get(2).map_err(map_err)?,
                )
            })
            .collect()
    }

    async fn delete_artifacts(&self, path: &ArtifactPath) -> Result<u64> {
        let _g = self.write_guard().await;
        let (lo, hi) = range(path);
        let done =
            sqlx::query("DELETE FROM artifacts WHERE path = $1 OR (path > $2 AND path < $3)")
                .bind(path.as_str().to_owned())
                .bind(lo)
                .bind(hi)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
        Ok(done.rows_affected())
    }
}
