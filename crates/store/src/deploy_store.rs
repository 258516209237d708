//! `DeploymentStore` for SQLite and PostgreSQL: deployment specs and the per-request log that
//! feedback joins onto.

use crate::db::{Db, map_err};
use serving::ServeError;
use serving::deploy::{DeploymentStore, RequestRecord};
use sqlx::Row;

fn internal(e: sqlx::Error) -> ServeError {
    ServeError::Internal(map_err(e).to_string())
}

#[async_trait::async_trait]
impl DeploymentStore for Db {
    async fn put_deployment(&self, name: &str, spec_json: &str) -> Result<i64, ServeError> {
        let _g = self.write_guard().await;
        let now = base::now_millis();
        sqlx::query("INSERT INTO deployments (name, spec, created) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, created = excluded.created")
            .bind(name.to_owned())
            .bind(spec_json.to_owned())
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(internal)?;
        Ok(now)
    }

    async fn get_deployment(&self, name: &str) -> Result<Option<(String, i64)>, ServeError> {
        let row = sqlx::query("SELECT spec, created FROM deployments WHERE name = $1")
            .bind(name.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(internal)?;
        row.map(|r| {
            Ok((
                r.try_get(0).map_err(internal)?,
                r.try_get(1).map_err(internal)?,
            ))
        })
        .transpose()
    }

    async fn list_deployments(&self) -> Result<Vec<(String, i64)>, ServeError> {
        let rows = sqlx::query("SELECT spec, created FROM deployments ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(internal)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(internal)?,
                    r.try_get(1).map_err(internal)?,
                ))
            })
            .collect()
    }

    async fn delete_deployment(&self, name: &str) -> Result<bool, ServeError> {
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(internal)?;
        let done = sqlx::query("DELETE FROM deployments WHERE name = $1")
            .bind(name.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        sqlx::query("DELETE FROM deployment_requests WHERE deployment = $1")
            .bind(name.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_request(&self, r: &RequestRecord) -> Result<(), ServeError> {
        let _g = self.write_guard().await;
        sqlx::query(
            "INSERT INTO deployment_requests (deployment, request_id, variant, latency_us, error, shadow, outcome, created) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7) ON CONFLICT DO NOTHING",
        )
        .bind(r.deployment.clone())
        .bind(r.request_id.clone())
        .bind(r.variant.clone())
        .bind(r.latency_us)
        .bind(i64::from(r.error))
        .bind(i64::from(r.shadow))
        .bind(base::now_millis())
        .execute(&self.pool)
        .await
        .map_err(internal)?;
        Ok(())
    }

    async fn record_feedback(
        &self,
        deployment: &str,
        request_id: &str,
        outcome: f64,
    ) -> Result<bool, ServeError> {
        let _g = self.write_guard().await;
        let done = sqlx::query(
            "UPDATE deployment_requests SET outcome = $1 WHERE deployment = $2 AND request_id = $3",
        )
        .bind(outcome)
        .bind(deployment.to_owned())
        .bind(request_id.to_owned())
        .execute(&self.pool)
        .await
        .map_err(internal)?;
        Ok(done.rows_affected() > 0)
    }

    async fn requests(&self, deployment: &str) -> Result<Vec<RequestRecord>, ServeError> {
        let rows = sqlx::query(
            "SELECT request_id, variant, latency_us, error, shadow, outcome FROM deployment_requests WHERE deployment = $1 ORDER BY created, request_id",
        )
        .bind(deployment.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(internal)?;
        rows.iter()
            .map(|r| {
                Ok(RequestRecord {
                    deployment: deployment.to_owned(),
                    request_id: r.try_get(0).map_err(internal)?,
                    variant: r.try_get(1).map_err(internal)?,
                    latency_us: r.try_get(2).map_err(internal)?,
                    error: r.try_get::<i64, _>(3).map_err(internal)? != 0,
                    shadow: r.try_get::<i64, _>(4).map_err(internal)? != 0,
                    outcome: r.try_get(5).map_err(internal)?,
                })
            })
            .collect()
    }
}
