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
