//! `MonitorStore` for SQLite and PostgreSQL: monitor specs with their last evaluation, and the
//! alerts evaluations raise (stored in the same transaction as the evaluation that raised them).

use crate::db::{Db, map_err};
use monitor::monitors::{Alert, Evaluation, MonitorSpec, MonitorStore};
use sqlx::Row;

fn err(e: sqlx::Error) -> String {
    map_err(e).to_string()
}

fn parse(spec: &str, eval: Option<String>) -> Result<(MonitorSpec, Option<Evaluation>), String> {
    let spec: MonitorSpec = serde_json::from_str(spec).map_err(|e| e.to_string())?;
    let eval = eval
        .map(|e| serde_json::from_str(&e))
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok((spec, eval))
}

#[async_trait::async_trait]
impl MonitorStore for Db {
    async fn put_monitor(&self, spec: &MonitorSpec) -> Result<(), String> {
        let _g = self.write_guard().await;
        let json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
        sqlx::query(
            "INSERT INTO monitors (name, spec, created) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec",
        )
        .bind(spec.name.clone())
        .bind(json)
        .bind(base::now_millis())
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn get_monitor(
        &self,
        name: &str,
    ) -> Result<Option<(MonitorSpec, Option<Evaluation>)>, String> {
        let row = sqlx::query("SELECT spec, last_evaluation FROM monitors WHERE name = $1")
            .bind(name.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.map(|r| {
            let spec: String = r.try_get(0).map_err(err)?;
            parse(&spec, r.try_get(1).map_err(err)?)
        })
        .transpose()
    }

    async fn list_monitors(&self) -> Result<Vec<(MonitorSpec, Option<Evaluation>)>, String> {
        let rows = sqlx::query("SELECT spec, last_evaluation FROM monitors ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter()
            .map(|r| {
                let spec: String = r.try_get(0).map_err(err)?;
                parse(&spec, r.try_get(1).map_err(err)?)
            })
            .collect()
    }

    async fn delete_monitor(&self, name: &str) -> Result<bool, String> {
        let _g = self.write_guard().await;
        let r = sqlx::query("DELETE FROM monitors WHERE name = $1")
            .bind(name.to_owned())
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn record_evaluation(
        &self,
        eval: &Evaluation,
        alerts: &[Alert],
        previous_at: Option<i64>,
    ) -> Result<Option<Vec<Alert>>, String> {
        let _g = self.write_guard().await;
        let json = serde_json::to_string(eval).map_err(|e| e.to_string())?;
        let mut tx = self.pool.begin().await.map_err(err)?;
        // Compare-and-set on the evaluation the caller judged against (-1: never evaluated).
        let updated = sqlx::query(
            "UPDATE monitors SET last_evaluation = $1, last_at = $2 \
             WHERE name = $3 AND COALESCE(last_at, -1) = $4",
        )
        .bind(json)
        .bind(eval.at_ms)
        .bind(eval.monitor.clone())
        .bind(previous_at.unwrap_or(-1))
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        let mut out = Vec::new();
        for a in alerts {
            // The value is NULL-free here: an alert only fires on a measured value.
            let row = sqlx::query(
                "INSERT INTO alerts (monitor, model, check_name, message, value, threshold, created) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(a.monitor.clone())
            .bind(a.model.clone())
            .bind(a.check.clone())
            .bind(a.message.clone())
            .bind(a.value.unwrap_or(f64::NAN))
            .bind(a.threshold)
            .bind(a.created_ms)
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
            out.push(Alert {
                id: row.try_get(0).map_err(err)?,
                ..a.clone()
            });
        }
        tx.commit().await.map_err(err)?;
        Ok(Some(out))
    }

    async fn list_alerts(&self, monitor: Option<&str>, limit: i64) -> Result<Vec<Alert>, String> {
        let sql = "SELECT id, monitor, model, check_name, message, value, threshold, created FROM alerts \
                   WHERE ($1 = '' OR monitor = $1) ORDER BY created DESC, id DESC LIMIT $2";
        let rows = sqlx::query(sql)
            .bind(monitor.unwrap_or("").to_owned())
            .bind(limit.clamp(1, 10_000))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter()
            .map(|r| {
                let value: Option<f64> = r.try_get(5).map_err(err)?;
                Ok(Alert {
                    id: r.try_get(0).map_err(err)?,
                    monitor: r.try_get(1).map_err(err)?,
                    model: r.try_get(2).map_err(err)?,
                    check: r.try_get(3).map_err(err)?,
                    message: r.try_get(4).map_err(err)?,
                    value: value.filter(|v| !v.is_nan()),
                    threshold: r.try_get(6).map_err(err)?,
                    created_ms: r.try_get(7).map_err(err)?,
                })
            })
            .collect()
    }
}
