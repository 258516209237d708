//! The prompt registry in SQLite and PostgreSQL: immutable versions (numbered per prompt in one
//! transaction, so two writers never take the same number) and labels pointing at them.

use crate::db::{Db, map_err};
use gateway::prompts::{NewPromptVersion, PromptStore, PromptVersion, VarType};
use sqlx::Row;
use std::collections::BTreeMap;

fn err(e: sqlx::Error) -> String {
    map_err(e).to_string()
}

fn version_of(r: &sqlx::any::AnyRow) -> Result<PromptVersion, String> {
    let json = |c: &str| -> Result<String, String> { r.try_get::<String, _>(c).map_err(err) };
    let parse = |c: &str| -> Result<serde_json::Value, String> {
        serde_json::from_str(&json(c)?).map_err(|e| format!("prompt {c}: {e}"))
    };
    Ok(PromptVersion {
        name: r.try_get("name").map_err(err)?,
        version: r.try_get("version").map_err(err)?,
        template: serde_json::from_value(parse("template")?).map_err(|e| e.to_string())?,
        variables: serde_json::from_value(parse("variables")?).map_err(|e| e.to_string())?,
        params: serde_json::from_value(parse("params")?).map_err(|e| e.to_string())?,
        commit_message: r.try_get("commit_message").map_err(err)?,
        created_ms: r.try_get("created").map_err(err)?,
    })
}

const COLUMNS: &str = "name, version, template, variables, params, commit_message, created";

#[async_trait::async_trait]
impl PromptStore for Db {
    async fn create_prompt_version(
        &self,
        name: &str,
        new: &NewPromptVersion,
        variables: &BTreeMap<String, VarType>,
    ) -> Result<PromptVersion, String> {
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(err)?;
        if self.backend == crate::Backend::Postgres {
            // Serialise numbering per prompt across processes.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("prompt:{name}"))
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        let next: i64 = sqlx::query(
            "SELECT COALESCE(MAX(version), 0) + 1 AS next FROM prompt_versions WHERE name = $1",
        )
        .bind(name.to_owned())
        .fetch_one(&mut *tx)
        .await
        .map_err(err)?
        .try_get("next")
        .map_err(err)?;
        let v = PromptVersion {
            name: name.to_owned(),
            version: next,
            template: new.template.clone(),
            variables: variables.clone(),
            params: new.params.clone(),
            commit_message: new.commit_message.clone(),
            created_ms: base::now_millis(),
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO prompt_versions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )))
        .bind(v.name.clone())
        .bind(v.version)
        .bind(serde_json::to_string(&v.template).map_err(|e| e.to_string())?)
        .bind(serde_json::to_string(&v.variables).map_err(|e| e.to_string())?)
        .bind(serde_json::to_string(&v.params).map_err(|e| e.to_string())?)
        .bind(v.commit_message.clone())
        .bind(v.created_ms)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(v)
    }

    async fn prompt_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<PromptVersion>, String> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM prompt_versions WHERE name = $1 AND version = $2"
        )))
        .bind(name.to_owned())
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.as_ref().map(version_of).transpose()
    }

    async fn prompt_versions(&self, name: &str) -> Result<Vec<PromptVersion>, String> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM prompt_versions WHERE name = $1 ORDER BY version"
        )))
        .bind(name.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(version_of).collect()
    }

    async fn prompts(&self) -> Result<Vec<(String, i64)>, String> {
        let rows = sqlx::query(
            "SELECT name, MAX(version) AS latest FROM prompt_versions GROUP BY name ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("name").map_err(err)?,
                    r.try_get("latest").map_err(err)?,
                ))
            })
            .collect()
    }

    async fn set_prompt_label(&self, name: &str, label: &str, version: i64) -> Result<(), String> {
        let _g = self.write_guard().await;
        sqlx::query(
            "INSERT INTO prompt_labels (name, label, version, updated) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name, label) DO UPDATE SET version = excluded.version, updated = excluded.updated",
        )
        .bind(name.to_owned())
        .bind(label.to_owned())
        .bind(version)
        .bind(base::now_millis())
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn prompt_labels(&self, name: &str) -> Result<BTreeMap<String, i64>, String> {
        let rows = sqlx::query("SELECT label, version FROM prompt_labels WHERE name = $1")
            .bind(name.to_owned())
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("label").map_err(err)?,
                    r.try_get("version").map_err(err)?,
                ))
            })
            .collect()
    }

    async fn set_prompt_split(
        &self,
        name: &str,
        label: &str,
        weights: Option<&BTreeMap<i64, f64>>,
    ) -> Result<(), String> {
        let _g = self.write_guard().await;
        match weights {
            Some(w) => {
                sqlx::query(
                    "INSERT INTO prompt_splits (name, label, weights, updated) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (name, label) DO UPDATE SET weights = excluded.weights, updated = excluded.updated",
                )
                .bind(name.to_owned())
                .bind(label.to_owned())
                .bind(serde_json::to_string(w).map_err(|e| e.to_string())?)
                .bind(base::now_millis())
                .execute(&self.pool)
                .await
                .map_err(err)?;
            }
            None => {
                sqlx::query("DELETE FROM prompt_splits WHERE name = $1 AND label = $2")
                    .bind(name.to_owned())
                    .bind(label.to_owned())
                    .execute(&self.pool)
                    .await
                    .map_err(err)?;
            }
        }
        Ok(())
    }

    async fn prompt_split(
        &self,
        name: &str,
        label: &str,
    ) -> Result<Option<BTreeMap<i64, f64>>, String> {
        let row = sqlx::query("SELECT weights FROM prompt_splits WHERE name = $1 AND label = $2")
            .bind(name.to_owned())
            .bind(label.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        match row {
            Some(r) => {
                let text: String = r.try_get("weights").map_err(err)?;
                Ok(Some(
                    serde_json::from_str(&text).map_err(|e| format!("prompt split: {e}"))?,
                ))
            }
            None => Ok(None),
        }
    }
}
