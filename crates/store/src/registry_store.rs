//! `RegistryStore` for SQLite and PostgreSQL.

use crate::db::{Db, is_unique_violation, map_err};
use crate::sql::{Arg, Sql};
use registry::{ModelVersion, NewVersion, RegisteredModel, RegistryStore, Stage};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use std::collections::HashMap;
use tracking::{Error, Result, Tag};

fn model_not_found(name: &str) -> Error {
    Error::NotFound(format!("Registered Model with name={name} not found"))
}

fn version_not_found(name: &str, version: i64) -> Error {
    Error::NotFound(format!(
        "Model Version (name={name}, version={version}) not found"
    ))
}

fn get<'r, T: sqlx::Decode<'r, Any> + sqlx::Type<Any>>(row: &'r AnyRow, i: usize) -> Result<T> {
    row.try_get::<T, _>(i).map_err(map_err)
}

const VERSION_COLUMNS: &str =
    "name, version, description, source, run_id, run_link, stage, creation_time, last_updated_time";

impl Db {
    async fn model_exists(&self, tx: &mut Transaction<'_, Any>, name: &str) -> Result<()> {
        let found = sqlx::query("SELECT 1 FROM registered_models WHERE name = $1")
            .bind(name.to_owned())
            .fetch_optional(&mut **tx)
            .await
            .map_err(map_err)?;
        found.map(|_| ()).ok_or_else(|| model_not_found(name))
    }

    async fn touch_model(&self, tx: &mut Transaction<'_, Any>, name: &str) -> Result<()> {
        sqlx::query("UPDATE registered_models SET last_updated_time = $1 WHERE name = $2")
            .bind(base::now_millis())
            .bind(name.to_owned())
            .execute(&mut **tx)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// Versions matching `q` (a SELECT of VERSION_COLUMNS), with their tags and aliases.
    async fn versions_where(&self, q: Sql) -> Result<Vec<ModelVersion>> {
        let rows = q.build().fetch_all(&self.pool).await.map_err(map_err)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut names: Vec<String> = Vec::new();
        for r in &rows {
            let stage: String = get(r, 6)?;
            let v = ModelVersion {
                name: get(r, 0)?,
                version: get(r, 1)?,
                description: get(r, 2)?,
                source: get(r, 3)?,
                run_id: get(r, 4)?,
                run_link: get(r, 5)?,
                stage: Stage::parse(&stage).unwrap_or(Stage::None),
                creation_time: get(r, 7)?,
                last_updated_time: get(r, 8)?,
                tags: Vec::new(),
                aliases: Vec::new(),
            };
            if !names.contains(&v.name) {
                names.push(v.name.clone());
            }
            out.push(v);
        }
        if names.is_empty() {
            return Ok(out);
        }
        let mut tags: HashMap<(String, i64), Vec<Tag>> = HashMap::new();
        let mut q =
            Sql::new("SELECT name, version, key, value FROM model_version_tags WHERE name IN ");
        q.bind_list(&names).push(" ORDER BY key");
        for r in q.build().fetch_all(&self.pool).await.map_err(map_err)? {
            tags.entry((get(&r, 0)?, get(&r, 1)?))
                .or_default()
                .push(Tag::new(get::<String>(&r, 2)?, get::<String>(&r, 3)?));
        }
        let mut aliases: HashMap<(String, i64), Vec<String>> = HashMap::new();
        let mut q =
            Sql::new("SELECT name, version, alias FROM registered_model_aliases WHERE name IN ");
        q.bind_list(&names).push(" ORDER BY alias");
        for r in q.build().fetch_all(&self.pool).await.map_err(map_err)? {
            aliases
                .entry((get(&r, 0)?, get(&r, 1)?))
                .or_default()
                .push(get(&r, 2)?);
        }
        for v in &mut out {
            let k = (v.name.clone(), v.version);
            v.tags = tags.remove(&k).unwrap_or_default();
            v.aliases = aliases.remove(&k).unwrap_or_default();
        }
        Ok(out)
    }

    async fn models_where(&self, q: Sql) -> Result<Vec<RegisteredModel>> {
        let rows = q.build().fetch_all(&self.pool).await.map_err(map_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(RegisteredModel {
                name: get(r, 0)?,
                description: get(r, 1)?,
                creation_time: get(r, 2)?,
                last_updated_time: get(r, 3)?,
                tags: Vec::new(),
                aliases: Vec::new(),
                latest_versions: Vec::new(),
            });
        }
        if out.is_empty() {
            return Ok(out);
        }
        let names: Vec<String> = out.iter().map(|m| m.name.clone()).collect();
        let mut tags: HashMap<String, Vec<Tag>> = HashMap::new();
        let mut q = Sql::new("SELECT name, key, value FROM registered_model_tags WHERE name IN ");
        q.bind_list(&names).push(" ORDER BY key");
        for r in q.build().fetch_all(&self.pool).await.map_err(map_err)? {
            tags.entry(get(&r, 0)?)
                .or_default()
                .push(Tag::new(get::<String>(&r, 1)?, get::<String>(&r, 2)?));
        }
        let mut aliases: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        let mut q =
            Sql::new("SELECT name, alias, version FROM registered_model_aliases WHERE name IN ");
        q.bind_list(&names).push(" ORDER BY alias");
        for r in q.build().fetch_all(&self.pool).await.map_err(map_err)? {
            aliases
                .entry(get(&r, 0)?)
                .or_default()
                .push((get(&r, 1)?, get(&r, 2)?));
        }
        let mut q = Sql::new(&format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions WHERE name IN "
        ));
        q.bind_list(&names).push(" ORDER BY version DESC");
        let mut latest: HashMap<String, Vec<ModelVersion>> = HashMap::new();
        for v in self.versions_where(q).await? {
            let per_stage = latest.entry(v.name.clone()).or_default();
            if !per_stage.iter().any(|l| l.stage == v.stage) {
                per_stage.push(v);
            }
        }
        for m in &mut out {
            m.tags = tags.remove(&m.name).unwrap_or_default();
            m.aliases = aliases.remove(&m.name).unwrap_or_default();
            m.latest_versions = latest.remove(&m.name).unwrap_or_default();
        }
        Ok(out)
    }

    async fn one_model(&self, name: &str) -> Result<RegisteredModel> {
        let mut q = Sql::new(
            "SELECT name, description, creation_time, last_updated_time FROM registered_models WHERE name = ",
        );
        q.bind_text(name);
        self.models_where(q)
            .await?
            .pop()
            .ok_or_else(|| model_not_found(name))
    }

    /// Not found unless the version exists.
    async fn version_exists(
        &self,
        tx: &mut Transaction<'_, Any>,
        name: &str,
        version: i64,
    ) -> Result<()> {
        let found = sqlx::query("SELECT 1 FROM model_versions WHERE name = $1 AND version = $2")
            .bind(name.to_owned())
            .bind(version)
            .fetch_optional(&mut **tx)
            .await
            .map_err(map_err)?;
        found
            .map(|_| ())
            .ok_or_else(|| version_not_found(name, version))
    }
}

#[async_trait::async_trait]
impl RegistryStore for Db {
    async fn create_model(
        &self,
        name: &str,
        description: &str,
        tags: &[Tag],
    ) -> Result<RegisteredModel> {
        {
            let _g = self.write_guard().await;
            let mut tx = self.pool.begin().await.map_err(map_err)?;
            let now = base::now_millis();
            sqlx::query("INSERT INTO registered_models (name, description, creation_time, last_updated_time, next_version) VALUES ($1, $2, $3, $3, 1)")
                .bind(name.to_owned())
                .bind(description.to_owned())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        Error::AlreadyExists(format!("Registered Model (name={name}) already exists."))
                    } else {
                        map_err(e)
                    }
                })?;
            for t in tags {
                sqlx::query("INSERT INTO registered_model_tags (name, key, value) VALUES ($1, $2, $3) ON CONFLICT (name, key) DO UPDATE SET value = excluded.value")
                    .bind(name.to_owned())
                    .bind(t.key.clone())
                    .bind(t.value.clone())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
            }
            tx.commit().await.map_err(map_err)?;
        }
        self.one_model(name).await
    }

    async fn get_model(&self, name: &str) -> Result<RegisteredModel> {
        self.one_model(name).await
    }

    async fn list_models(&self) -> Result<Vec<RegisteredModel>> {
        self.models_where(Sql::new("SELECT name, description, creation_time, last_updated_time FROM registered_models ORDER BY name")).await
    }

    async fn rename_model(&self, name: &str, new_name: &str) -> Result<RegisteredModel> {
        {
            let _g = self.write_guard().await;
            let mut tx = self.pool.begin().await.map_err(map_err)?;
            self.model_exists(&mut tx, name).await?;
            for table in [
                "registered_models",
                "registered_model_tags",
                "model_versions",
                "model_version_tags",
                "registered_model_aliases",
            ] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET name = $1 WHERE name = $2"
                )))
                .bind(new_name.to_owned())
                .bind(name.to_owned())
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        Error::AlreadyExists(format!(
                            "Registered Model (name={new_name}) already exists."
                        ))
                    } else {
                        map_err(e)
                    }
                })?;
            }
            self.touch_model(&mut tx, new_name).await?;
            tx.commit().await.map_err(map_err)?;
        }
        self.one_model(new_name).await
    }

    async fn update_model(&self, name: &str, description: &str) -> Result<RegisteredModel> {
        {
            let _g = self.write_guard().await;
            let mut tx = self.pool.begin().await.map_err(map_err)?;
            self.model_exists(&mut tx, name).await?;
            sqlx::query("UPDATE registered_models SET description = $1, last_updated_time = $2 WHERE name = $3")
                .bind(description.to_owned())
                .bind(base::now_millis())
                .bind(name.to_owned())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
        }
        self.one_model(name).await
    }

    async fn delete_model(&self, name: &str) -> Result<()> {
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        self.model_exists(&mut tx, name).await?;
        for table in [
            "registered_model_aliases",
            "model_version_tags",
            "model_versions",
            "registered_model_tags",
            "registered_models",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE name = $1"
            )))
            .bind(name.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn set_model_tag(&self, name: &str, tag: &Tag) -> Result<()> {
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        self.model_exists(&mut tx, name).await?;
        sqlx::query("INSERT INTO registered_model_tags (name, key, value) VALUES ($1, $2, $3) ON CONFLICT (name, key) DO UPDATE SET value = excluded.value")
            .bind(name.to_owned())
            .bind(tag.key.clone())
            .bind(tag.value.clone())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        self.touch_model(&mut tx, name).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn delete_model_tag(&self, name: &str, key: &str) -> Result<()> {
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        self.model_exists(&mut tx, name).await?;
        sqlx::query("DELETE FROM registered_model_tags WHERE name = $1 AND key = $2")
            .bind(name.to_owned())
            .bind(key.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn create_version(&self, name: &str, new: &NewVersion) -> Result<ModelVersion> {
        let version = {
            let _g = self.write_guard().await;
            let mut tx = self.pool.begin().await.map_err(map_err)?;
            // Taking the number and bumping the counter in one statement serialises concurrent
            // creates on PostgreSQL (row lock) and on SQLite (one writer).
            let row = sqlx::query("UPDATE registered_models SET next_version = next_version + 1, last_updated_time = $1 WHERE name = $2 RETURNING next_version - 1")
                .bind(base::now_millis())
                .bind(name.to_owned())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?
                .ok_or_else(|| model_not_found(name))?;
            let version: i64 = get(&row, 0)?;
            let now = base::now_millis();
            sqlx::query(
                "INSERT INTO model_versions (name, version, description, source, run_id, run_link, stage, creation_time, last_updated_time) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'None', $7, $7)",
            )
            .bind(name.to_owned())
            .bind(version)
            .bind(new.description.clone())
            .bind(new.source.clone())
            .bind(new.run_id.clone())
            .bind(new.run_link.clone())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            for t in &new.tags {
                sqlx::query("INSERT INTO model_version_tags (name, version, key, value) VALUES ($1, $2, $3, $4) ON CONFLICT (name, version, key) DO UPDATE SET value = excluded.value")
                    .bind(name.to_owned())
                    .bind(version)
                    .bind(t.key.clone())
                    .bind(t.value.clone())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
            }
            tx.commit().await.map_err(map_err)?;
            version
        };
        self.get_version(name, version).await
    }

    async fn get_version(&self, name: &str, version: i64) -> Result<ModelVersion> {
        let mut q = Sql::new(&format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions WHERE name = "
        ));
        q.bind_text(name)
            .push(" AND version = ")
            .bind(Arg::I64(version));
        self.versions_where(q)
            .await?
            .pop()
            .ok_or_else(|| version_not_found(name, version))
    }

    async fn list_versions(&self, name: Option<&str>) -> Result<Vec<ModelVersion>> {
        let mut q = Sql::new(&format!("SELECT {VERSION_COLUMNS} FROM model_versions"));
        if let Some(n) = name {
            q.push(" WHERE name = ").bind_text(n);
        }
        q.push(" ORDER BY name, version DESC");
        self.versions_where(q).await
    }

    async fn update_version(
        &self,
        name: &str,
        version: i64,
        description: &str,
    ) -> Result<ModelVersion> {
        {
            let _g = self.write_guard().await;
            let mut tx = self.pool.begin().await.map_err(map_err)?;
            self.version_exists(&mut tx, name, version).await?;
            sqlx::query("UPDATE model_versions SET description = $1, last_updated_time = $2 WHERE name = $3 AND version = $4")
                .bind(description.to_owned())
                .bind(base::now_millis())
                .bind(name.to_owned())
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
        }
        self.get_version(name, version).await
    }

    async fn set_stage(
        &self,
        name: &str,
        version: i64,
        stage: Stage,
        archive_existing: bool,
    ) -> Result<ModelVersion> {
        {
            let _g = self.write_guard().await;
            let mut tx = self.pool.begin().await.map_err(map_err)?;
            self.version_exists(&mut tx, name, version).await?;
            let now = base::now_millis();
            if archive_existing && matches!(stage, Stage::Staging | Stage::Production) {
                sqlx::query("UPDATE model_versions SET stage = 'Archived', last_updated_time = $1 WHERE name = $2 AND stage = $3 AND version <> $4")
                    .bind(now)
                    .bind(name.to_owned())
                    .bind(stage.as_str())
                    .bind(version)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
            }
            sqlx::query("UPDATE model_versions SET stage = $1, last_updated_time = $2 WHERE name = $3 AND version = $4")
                .bind(stage.as_str())
                .bind(now)
                .bind(name.to_owned())
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            self.touch_model(&mut tx, name).await?;
            tx.commit().await.map_err(map_err)?;
        }
        self.get_version(name, version).await
    }

    async fn delete_version(&self, name: &str, version: i64) -> Result<()> {
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        self.version_exists(&mut tx, name, version).await?;
        for table in [
            "registered_model_aliases",
            "model_version_tags",
            "model_versions",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE name = $1 AND version = $2"
            )))
            .bind(name.to_owned())
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        self.touch_model(&mut tx, name).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn set_version_tag(&self, name: &str, version: i64, tag: &Tag) -> Result<()> {
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        self.version_exists(&mut tx, name, version).await?;
        sqlx::query("INSERT INTO model_version_tags (name, version, key, value) VALUES ($1, $2, $3, $4) ON CONFLICT (name, version, key) DO UPDATE SET value = excluded.value")
            .bind(name.to_owned())
            .bind(version)
            .bind(tag.key.clone())
            .bind(tag.value.clone())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn delete_version_tag(&self, name: &str, version: i64, key: &str) -> Result<()> {
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        self.version_exists(&mut tx, name, version).await?;
        sqlx::query("DELETE FROM model_version_tags WHERE name = $1 AND version = $2 AND key = $3")
            .bind(name.to_owned())
            .bind(version)
            .bind(key.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn set_alias(&self, name: &str, alias: &str, version: i64) -> Result<()> {
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        self.version_exists(&mut tx, name, version).await?;
        sqlx::query("INSERT INTO registered_model_aliases (name, alias, version) VALUES ($1, $2, $3) ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version")
            .bind(name.to_owned())
            .bind(alias.to_owned())
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        self.touch_model(&mut tx, name).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        self.model_exists(&mut tx, name).await?;
        sqlx::query("DELETE FROM registered_model_aliases WHERE name = $1 AND alias = $2")
            .bind(name.to_owned())
            .bind(alias.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        self.touch_model(&mut tx, name).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn get_alias(&self, name: &str, alias: &str) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT version FROM registered_model_aliases WHERE name = $1 AND alias = $2",
        )
        .bind(name.to_owned())
        .bind(alias.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.map(|r| get::<i64>(&r, 0)).transpose()
    }
}
