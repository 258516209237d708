//! The gateway's usage records in SQLite or PostgreSQL: the columns budgets and reports filter
//! on, and the whole record as JSON (optional fields stay optional without binding NULLs).
//! A batch is one transaction; a record already written (same id) is not written twice.

use crate::db::{Db, map_err};
use gateway::{UsageRecord, UsageSink};
use sqlx::Row;

fn err(e: sqlx::Error) -> String {
    map_err(e).to_string()
}

#[async_trait::async_trait]
impl UsageSink for Db {
    async fn write(&self, records: &[UsageRecord]) -> Result<(), String> {
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(err)?;
        for r in records {
            let json = serde_json::to_string(r).map_err(|e| e.to_string())?;
            sqlx::query(
                "INSERT INTO gateway_usage (id, ts, api_key, user_name, team, model, deployment, \
                 prompt_tokens, completion_tokens, cost_usd, status, record) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING",
            )
            .bind(r.id.clone())
            .bind(r.ts_ms)
            .bind(r.key.clone())
            .bind(r.user.clone().unwrap_or_default())
            .bind(r.team.clone().unwrap_or_default())
            .bind(r.model.clone())
            .bind(r.deployment.clone())
            .bind(r.usage.prompt_tokens as i64)
            .bind(r.usage.completion_tokens as i64)
            .bind(r.cost_usd.unwrap_or(0.0))
            .bind(r.status as i64)
            .bind(json)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    async fn list(&self, since_ms: i64, limit: usize) -> Result<Vec<UsageRecord>, String> {
        let rows = sqlx::query(
            "SELECT record FROM gateway_usage WHERE ts >= $1 ORDER BY ts DESC, id DESC LIMIT $2",
        )
        .bind(since_ms)
        .bind(limit.min(100_000) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                let text: String = r.try_get("record").map_err(err)?;
                serde_json::from_str(&text).map_err(|e| format!("usage record: {e}"))
            })
            .collect()
    }
}
