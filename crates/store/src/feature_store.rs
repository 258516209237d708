//! `FeatureRegistry` for SQLite and PostgreSQL: the applied feature definitions, replaced as a
//! whole in one statement.

use crate::db::{Db, map_err};
use features::defs::{Applied, FeatureRegistry};
use sqlx::Row;

fn err(e: sqlx::Error) -> String {
    map_err(e).to_string()
}

#[async_trait::async_trait]
impl FeatureRegistry for Db {
    async fn apply(&self, applied: &Applied) -> Result<(), String> {
        let _g = self.write_guard().await;
        let json = serde_json::to_string(applied).map_err(|e| e.to_string())?;
        sqlx::query(
            "INSERT INTO feature_registry (name, spec, applied) VALUES ('default', $1, $2) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, applied = excluded.applied",
        )
        .bind(json)
        .bind(applied.applied_ms)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn materialized(&self, view: &str) -> Result<Option<i64>, String> {
        let row = sqlx::query("SELECT end_ts FROM feature_materializations WHERE view = $1")
            .bind(view.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.map(|r| r.try_get(0).map_err(err)).transpose()
    }

    async fn set_materialized(&self, view: &str, end_micros: i64) -> Result<(), String> {
        let _g = self.write_guard().await;
        sqlx::query(
            "INSERT INTO feature_materializations (view, end_ts) VALUES ($1, $2) \
             ON CONFLICT (view) DO UPDATE SET end_ts = excluded.end_ts",
        )
        .bind(view.to_owned())
        .bind(end_micros)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn applied(&self) -> Result<Option<Applied>, String> {
        let row = sqlx::query("SELECT spec FROM feature_registry WHERE name = 'default'")
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.map(|r| {
            let spec: String = r.try_get(0).map_err(err)?;
            serde_json::from_str(&spec).map_err(|e| e.to_string())
        })
        .transpose()
    }
}

/// The online store in the metadata database: one table, a view replaced in one transaction.
#[async_trait::async_trait]
impl features::online::OnlineStore for Db {
    async fn replace_view(
        &self,
        view: &str,
        rows: &[(String, features::online::OnlineRow)],
    ) -> Result<(), String> {
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query("DELETE FROM online_features WHERE view = $1")
            .bind(view.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        for (key, row) in rows {
            let values = serde_json::to_string(&row.values).map_err(|e| e.to_string())?;
            sqlx::query(
                "INSERT INTO online_features (view, entity_key, event_ts, row_values) VALUES ($1, $2, $3, $4)",
            )
            .bind(view.to_owned())
            .bind(key.clone())
            .bind(row.ts)
            .bind(values)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        sqlx::query(
            "INSERT INTO online_versions (view, version) VALUES ($1, 1) \
             ON CONFLICT (view) DO UPDATE SET version = online_versions.version + 1",
        )
        .bind(view.to_owned())
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn read_all(
        &self,
        view: &str,
    ) -> Result<Vec<(String, features::online::OnlineRow)>, String> {
        let rows = sqlx::query(
            "SELECT entity_key, event_ts, row_values FROM online_features WHERE view = $1 ORDER BY entity_key",
        )
        .bind(view.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                let values: String = r.try_get(2).map_err(err)?;
                Ok((
                    r.try_get(0).map_err(err)?,
                    features::online::OnlineRow {
                        ts: r.try_get(1).map_err(err)?,
                        values: serde_json::from_str(&values).map_err(|e| e.to_string())?,
                    },
                ))
            })
            .collect()
    }

    async fn version(&self, view: &str) -> Result<i64, String> {
        let row = sqlx::query("SELECT version FROM online_versions WHERE view = $1")
            .bind(view.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.map_or(Ok(0), |r| r.try_get(0).map_err(err))
    }

    async fn read(
        &self,
        view: &str,
        keys: &[String],
    ) -> Result<Vec<Option<features::online::OnlineRow>>, String> {
        let mut found = std::collections::HashMap::new();
        for chunk in keys.chunks(500) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT entity_key, event_ts, row_values FROM online_features WHERE view = $1 AND entity_key IN ({})",
                marks.join(", ")
            );
            // Only numbered placeholders are formatted in; every value is bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(view.to_owned());
            for k in chunk {
                q = q.bind(k.clone());
            }
            for r in q.fetch_all(&self.pool).await.map_err(err)? {
                let key: String = r.try_get(0).map_err(err)?;
                let values: String = r.try_get(2).map_err(err)?;
                found.insert(
                    key,
                    features::online::OnlineRow {
                        ts: r.try_get(1).map_err(err)?,
                        values: serde_json::from_str(&values).map_err(|e| e.to_string())?,
                    },
                );
            }
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }
}
