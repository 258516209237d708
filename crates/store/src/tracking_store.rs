//! `TrackingStore` for SQLite and PostgreSQL: experiments, runs and their data, and run search
//! compiled to one SQL query over indexed tables.

use crate::db::{Backend, Db, is_unique_violation, map_err};
use crate::sql::{Arg, Sql};
use base::{ExperimentId, RunId};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::HashMap;
use tracking::filter::{Attr, Comparison, DatasetField, StrOp, Subject};
use tracking::{
    Dataset, DatasetInput, Error, Experiment, Lifecycle, Metric, NewRun, Page, Param, Result, Run,
    RunInfo, RunStatus, RunUpdate, SearchRuns, Tag, TrackingStore, ViewType,
};

const RUN_NAME_TAG: &str = "mlflow.runName";
/// Sets an experiment tag, replacing its value.
const UPSERT_EXPERIMENT_TAG: &str = "INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3) \
     ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value";

fn experiment_not_found(id: impl std::fmt::Display) -> Error {
    Error::NotFound(format!("No Experiment with id={id} exists"))
}

fn run_not_found(id: &RunId) -> Error {
    Error::NotFound(format!("Run with id={id} not found"))
}

fn get<'r, T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>>(
    row: &'r AnyRow,
    i: usize,
) -> Result<T> {
    row.try_get::<T, _>(i).map_err(map_err)
}

fn view_clause(view: ViewType) -> &'static str {
    match view {
        ViewType::ActiveOnly => " AND r.lifecycle_stage = 'active'",
        ViewType::DeletedOnly => " AND r.lifecycle_stage = 'deleted'",
        ViewType::All => "",
    }
}

impl Db {
    async fn experiment_tags(&self, ids: &[i64]) -> Result<HashMap<i64, Vec<Tag>>> {
        let mut out: HashMap<i64, Vec<Tag>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let mut q = Sql::new(
            "SELECT experiment_id, key, value FROM experiment_tags WHERE experiment_id IN ",
        );
        q.bind_row(ids.iter().map(|i| Arg::I64(*i)).collect());
        q.push(" ORDER BY key");
        for row in q.build().fetch_all(&self.pool).await.map_err(map_err)? {
            out.entry(get(&row, 0)?)
                .or_default()
                .push(Tag::new(get::<String>(&row, 1)?, get::<String>(&row, 2)?));
        }
        Ok(out)
    }

    async fn experiments_where(&self, mut q: Sql) -> Result<Vec<Experiment>> {
        let rows = q.build().fetch_all(&self.pool).await.map_err(map_err)?;
        q = Sql::default();
        drop(q);
        let mut exps = Vec::with_capacity(rows.len());
        for row in &rows {
            let lifecycle: String = get(row, 3)?;
            exps.push(Experiment {
                id: ExperimentId::new(get(row, 0)?),
                name: get(row, 1)?,
                artifact_location: get(row, 2)?,
                lifecycle: Lifecycle::parse(&lifecycle).unwrap_or(Lifecycle::Active),
                creation_time: get(row, 4)?,
                last_update_time: get(row, 5)?,
                tags: Vec::new(),
            });
        }
        let mut tags = self
            .experiment_tags(&exps.iter().map(|e| e.id.get()).collect::<Vec<_>>())
            .await?;
        for e in &mut exps {
            e.tags = tags.remove(&e.id.get()).unwrap_or_default();
        }
        Ok(exps)
    }

    /// Loads whole runs for `ids`, in the order given.
    async fn load_runs(&self, ids: &[String]) -> Result<Vec<Run>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = Sql::new(
            "SELECT run_id, experiment_id, name, user_id, status, start_time, end_time, artifact_uri, lifecycle_stage FROM runs WHERE run_id IN ",
        );
        q.bind_list(ids);
        let mut runs: HashMap<String, Run> = HashMap::with_capacity(ids.len());
        for row in q.build().fetch_all(&self.pool).await.map_err(map_err)? {
            let id: String = get(&row, 0)?;
            let status: String = get(&row, 4)?;
            let lifecycle: String = get(&row, 8)?;
            let info = RunInfo {
                run_id: RunId::parse(&id).map_err(|e| Error::Store(e.to_string()))?,
                experiment_id: ExperimentId::new(get(&row, 1)?),
                run_name: get(&row, 2)?,
                user_id: get(&row, 3)?,
                status: RunStatus::parse(&status).unwrap_or(RunStatus::Running),
                start_time: get(&row, 5)?,
                end_time: get(&row, 6)?,
                artifact_uri: get(&row, 7)?,
                lifecycle: Lifecycle::parse(&lifecycle).unwrap_or(Lifecycle::Active),
            };
            runs.insert(
                id,
                Run {
                    info,
                    metrics: Vec::new(),
                    params: Vec::new(),
                    tags: Vec::new(),
                    inputs: Vec::new(),
                },
            );
        }
        let mut q = Sql::new(
            "SELECT run_id, key, value, is_nan, timestamp, step FROM latest_metrics WHERE run_id IN ",
        );
        q.bind_list(ids).push(" ORDER BY key");
        for row in q.build().fetch_all(&self.pool).await.map_err(map_err)? {
            if let Some(run) = runs.get_mut(&get::<String>(&row, 0)?) {
                run.metrics.push(metric_from_row(&row, 1)?);
            }
        }
        for (table, is_param) in [("params", true), ("tags", false)] {
            let mut q = Sql::new(&format!(
                "SELECT run_id, key, value FROM {table} WHERE run_id IN "
            ));
            q.bind_list(ids).push(" ORDER BY key");
            for row in q.build().fetch_all(&self.pool).await.map_err(map_err)? {
                if let Some(run) = runs.get_mut(&get::<String>(&row, 0)?) {
                    let t = Tag::new(get::<String>(&row, 1)?, get::<String>(&row, 2)?);
                    if is_param {
                        run.params.push(t)
                    } else {
                        run.tags.push(t)
                    }
                }
            }
        }
        let mut q = Sql::new(
            "SELECT run_id, name, digest, source_type, source, schema_json, profile_json, tags_json FROM run_inputs WHERE run_id IN ",
        );
        q.bind_list(ids).push(" ORDER BY name, digest");
        for row in q.build().fetch_all(&self.pool).await.map_err(map_err)? {
            if let Some(run) = runs.get_mut(&get::<String>(&row, 0)?) {
                let tags_json: String = get(&row, 7)?;
                let tags: Vec<(String, String)> =
                    serde_json::from_str(&tags_json).unwrap_or_default();
                run.inputs.push(DatasetInput {
                    dataset: Dataset {
                        name: get(&row, 1)?,
                        digest: get(&row, 2)?,
                        source_type: get(&row, 3)?,
                        source: get(&row, 4)?,
                        schema: get(&row, 5)?,
                        profile: get(&row, 6)?,
                    },
                    tags: tags.into_iter().map(|(k, v)| Tag::new(k, v)).collect(),
                });
            }
        }
        Ok(ids.iter().filter_map(|id| runs.remove(id)).collect())
    }

    /// The run's lifecycle stage, or not-found.
    async fn run_lifecycle<'c, E: sqlx::Executor<'c, Database = sqlx::Any>>(
        &self,
        ex: E,
        id: &RunId,
    ) -> Result<Lifecycle> {
        let row = sqlx::query("SELECT lifecycle_stage FROM runs WHERE run_id = $1")
            .bind(id.as_str().to_owned())
            .fetch_optional(ex)
            .await
            .map_err(map_err)?
            .ok_or_else(|| run_not_found(id))?;
        Ok(Lifecycle::parse(&get::<String>(&row, 0)?).unwrap_or(Lifecycle::Active))
    }

    fn like(&self, q: &mut Sql, column: &str, op: StrOp, pattern: &str) {
        match (op, self.backend) {
            (StrOp::Eq, _) => {
                q.push(column).push(" = ").bind_text(pattern);
            }
            (StrOp::Ne, _) => {
                q.push(column).push(" <> ").bind_text(pattern);
            }
            (StrOp::Like, Backend::Postgres) => {
                q.push(column).push(" LIKE ").bind_text(pattern);
            }
            (StrOp::ILike, Backend::Postgres) => {
                q.push(column).push(" ILIKE ").bind_text(pattern);
            }
            // SQLite's LIKE ignores ASCII case; MLflow's LIKE is case-sensitive, so use GLOB.
            (StrOp::Like, Backend::Sqlite) => {
                q.push(column)
                    .push(" GLOB ")
                    .bind_text(&like_to_glob(pattern));
            }
            (StrOp::ILike, Backend::Sqlite) => {
                q.push("LOWER(")
                    .push(column)
                    .push(") LIKE LOWER(")
                    .bind_text(pattern)
                    .push(")");
            }
        }
    }
}

/// Translates a SQL LIKE pattern to an equivalent GLOB pattern.
fn like_to_glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        match c {
            '%' => out.push('*'),
            '_' => out.push('?'),
            '*' => out.push_str("[*]"),
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            c => out.push(c),
        }
    }
    out
}

fn metric_from_row(row: &AnyRow, first: usize) -> Result<Metric> {
    let is_nan: i64 = get(row, first + 2)?;
    Ok(Metric {
        key: get(row, first)?,
        value: if is_nan != 0 {
            f64::NAN
        } else {
            get(row, first + 1)?
        },
        timestamp: get(row, first + 3)?,
        step: get(row, first + 4)?,
    })
}

#[async_trait::async_trait]
impl TrackingStore for Db {
    async fn create_experiment(
        &self,
        name: &str,
        artifact_location: &str,
        tags: &[Tag],
    ) -> Result<ExperimentId> {
        let _g = self.write_guard().await;
        let now = base::now_millis();
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let row = sqlx::query(
            "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
             VALUES ($1, '', 'active', $2, $2) RETURNING experiment_id",
        )
        .bind(name.to_owned())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::AlreadyExists(format!("Experiment '{name}' already exists."))
            } else {
                map_err(e)
            }
        })?;
        let id: i64 = get(&row, 0)?;
        sqlx::query("UPDATE experiments SET artifact_location = $1 WHERE experiment_id = $2")
            .bind(artifact_location.replace("{id}", &id.to_string()))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        for t in tags {
            sqlx::query(UPSERT_EXPERIMENT_TAG)
                .bind(id)
                .bind(t.key.clone())
                .bind(t.value.clone())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(ExperimentId::new(id))
    }

    async fn get_experiment(&self, id: ExperimentId) -> Result<Experiment> {
        let mut q = Sql::new(
            "SELECT experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time FROM experiments WHERE experiment_id = ",
        );
        q.bind(Arg::I64(id.get()));
        self.experiments_where(q)
            .await?
            .pop()
            .ok_or_else(|| experiment_not_found(id))
    }

    async fn get_experiment_by_name(&self, name: &str) -> Result<Experiment> {
        let mut q = Sql::new(
            "SELECT experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time FROM experiments WHERE name = ",
        );
        q.bind_text(name);
        self.experiments_where(q)
            .await?
            .pop()
            .ok_or_else(|| Error::NotFound(format!("Could not find experiment with name '{name}'")))
    }

    async fn list_experiments(
        &self,
        view: ViewType,
        max_results: u32,
        offset: u64,
    ) -> Result<Page<Experiment>> {
        let mut q = Sql::new(
            "SELECT experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time FROM experiments r WHERE 1 = 1",
        );
        q.push(view_clause(view));
        q.push(" ORDER BY creation_time DESC, experiment_id DESC LIMIT ")
            .bind(Arg::I64(max_results as i64 + 1))
            .push(" OFFSET ")
            .bind(Arg::I64(offset as i64));
        let mut items = self.experiments_where(q).await?;
        let next_offset = (items.len() > max_results as usize).then(|| offset + max_results as u64);
        items.truncate(max_results as usize);
        Ok(Page { items, next_offset })
    }

    async fn rename_experiment(&self, id: ExperimentId, new_name: &str) -> Result<()> {
        let _g = self.write_guard().await;
        let done = sqlx::query(
            "UPDATE experiments SET name = $1, last_update_time = $2 WHERE experiment_id = $3",
        )
        .bind(new_name.to_owned())
        .bind(base::now_millis())
        .bind(id.get())
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::AlreadyExists(format!("Experiment '{new_name}' already exists."))
            } else {
                map_err(e)
            }
        })?;
        if done.rows_affected() == 0 {
            return Err(experiment_not_found(id));
        }
        Ok(())
    }

    async fn set_experiment_lifecycle(&self, id: ExperimentId, lifecycle: Lifecycle) -> Result<()> {
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let done = sqlx::query("UPDATE experiments SET lifecycle_stage = $1, last_update_time = $2 WHERE experiment_id = $3")
            .bind(lifecycle.as_str())
            .bind(base::now_millis())
            .bind(id.get())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(experiment_not_found(id));
        }
        // MLflow deletes (and restores) an experiment's runs with it.
        sqlx::query("UPDATE runs SET lifecycle_stage = $1 WHERE experiment_id = $2")
            .bind(lifecycle.as_str())
            .bind(id.get())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn set_experiment_tag(&self, id: ExperimentId, tag: &Tag) -> Result<()> {
        self.get_experiment(id).await?;
        let _g = self.write_guard().await;
        sqlx::query(UPSERT_EXPERIMENT_TAG)
            .bind(id.get())
            .bind(tag.key.clone())
            .bind(tag.value.clone())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn create_run(
        &self,
        run_id: &RunId,
        new: &NewRun,
        run_name: &str,
        artifact_root: &str,
    ) -> Result<Run> {
        {
            let _g = self.write_guard().await;
            let mut tx = self.pool.begin().await.map_err(map_err)?;
            sqlx::query(
                "INSERT INTO runs (run_id, experiment_id, name, user_id, status, start_time, end_time, artifact_uri, lifecycle_stage) \
                 VALUES ($1, $2, $3, $4, 'RUNNING', $5, NULL, $6, 'active')",
            )
            .bind(run_id.as_str().to_owned())
            .bind(new.experiment_id.get())
            .bind(run_name.to_owned())
            .bind(new.user_id.clone())
            .bind(new.start_time)
            .bind(artifact_root.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            for t in &new.tags {
                sqlx::query(crate::batch::UPSERT_RUN_TAG)
                    .bind(run_id.as_str().to_owned())
                    .bind(t.key.clone())
                    .bind(t.value.clone())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
            }
            tx.commit().await.map_err(map_err)?;
        }
        self.get_run(run_id).await
    }

    async fn get_run(&self, id: &RunId) -> Result<Run> {
        self.load_runs(&[id.as_str().to_owned()])
            .await?
            .pop()
            .ok_or_else(|| run_not_found(id))
    }

    async fn update_run(&self, id: &RunId, update: &RunUpdate) -> Result<RunInfo> {
        {
            let _g = self.write_guard().await;
            let mut tx = self.pool.begin().await.map_err(map_err)?;
            self.run_lifecycle(&mut *tx, id).await?;
            let mut q = Sql::new("UPDATE runs SET run_id = run_id");
            if let Some(s) = update.status {
                q.push(", status = ").bind_text(s.as_str());
            }
            if let Some(t) = update.end_time {
                q.push(", end_time = ").bind(Arg::I64(t));
            }
            if let Some(n) = &update.run_name {
                q.push(", name = ").bind_text(n);
            }
            q.push(" WHERE run_id = ").bind_text(id.as_str());
            q.build().execute(&mut *tx).await.map_err(map_err)?;
            if let Some(n) = &update.run_name {
                sqlx::query(crate::batch::UPSERT_RUN_TAG)
                    .bind(id.as_str().to_owned())
                    .bind(RUN_NAME_TAG)
                    .bind(n.clone())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
            }
            tx.commit().await.map_err(map_err)?;
        }
        Ok(self.get_run(id).await?.info)
    }

    async fn set_run_lifecycle(&self, id: &RunId, lifecycle: Lifecycle) -> Result<()> {
        let _g = self.write_guard().await;
        let done = sqlx::query("UPDATE runs SET lifecycle_stage = $1 WHERE run_id = $2")
            .bind(lifecycle.as_str())
            .bind(id.as_str().to_owned())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(run_not_found(id));
        }
        Ok(())
    }

    async fn log_batch(
        &self,
        id: &RunId,
        metrics: &[Metric],
        params: &[Param],
        tags: &[Tag],
    ) -> Result<()> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = crate::batch::BatchJob {
            run_id: id.clone(),
            metrics: metrics.to_vec(),
            params: params.to_vec(),
            tags: tags.to_vec(),
            reply,
        };
        match &self.batcher {
            Some(queue) => {
                queue
                    .send(job)
                    .await
                    .map_err(|_| Error::Store("the batch writer has stopped".into()))?;
                answer
                    .await
                    .map_err(|_| Error::Store("the batch writer dropped a request".into()))?
            }
            None => {
                let jobs = [job];
                crate::batch::apply_group(self, &jobs)
                    .await
                    .pop()
                    .unwrap_or(Ok(()))
            }
        }
    }

    async fn delete_tag(&self, id: &RunId, key: &str) -> Result<()> {
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        self.run_lifecycle(&mut *tx, id).await?;
        let done = sqlx::query("DELETE FROM tags WHERE run_id = $1 AND key = $2")
            .bind(id.as_str().to_owned())
            .bind(key.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!(
                "No tag with name: {key} in run with id {id}"
            )));
        }
        tx.commit().await.map_err(map_err)
    }

    async fn log_inputs(&self, id: &RunId, inputs: &[DatasetInput]) -> Result<()> {
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        self.run_lifecycle(&mut *tx, id).await?;
        for i in inputs {
            let tags: Vec<(&str, &str)> = i
                .tags
                .iter()
                .map(|t| (t.key.as_str(), t.value.as_str()))
                .collect();
            let context = i
                .tags
                .iter()
                .find(|t| t.key == "mlflow.data.context")
                .map(|t| t.value.clone());
            let d = &i.dataset;
            sqlx::query(
                "INSERT INTO run_inputs (run_id, name, digest, source_type, source, schema_json, profile_json, context, tags_json) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (run_id, name, digest) DO UPDATE SET tags_json = excluded.tags_json, context = excluded.context",
            )
            .bind(id.as_str().to_owned())
            .bind(d.name.clone())
            .bind(d.digest.clone())
            .bind(d.source_type.clone())
            .bind(d.source.clone())
            .bind(d.schema.clone())
            .bind(d.profile.clone())
            .bind(context)
            .bind(serde_json::to_string(&tags).unwrap_or_else(|_| "[]".into()))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn metric_history(
        &self,
        id: &RunId,
        key: &str,
        max_results: u32,
        offset: u64,
    ) -> Result<Page<Metric>> {
        let rows = sqlx::query(
            "SELECT key, value, is_nan, timestamp, step FROM metrics WHERE run_id = $1 AND key = $2 \
             ORDER BY step, timestamp, is_nan, value LIMIT $3 OFFSET $4",
        )
        .bind(id.as_str().to_owned())
        .bind(key.to_owned())
        .bind(max_results as i64 + 1)
        .bind(offset as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let mut items = rows
            .iter()
            .map(|r| metric_from_row(r, 0))
            .collect::<Result<Vec<_>>>()?;
        let next_offset = (items.len() > max_results as usize).then(|| offset + max_results as u64);
        items.truncate(max_results as usize);
        Ok(Page { items, next_offset })
    }

    async fn search_runs(&self, s: &SearchRuns) -> Result<Page<Run>> {
        if s.experiment_ids.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_offset: None,
            });
        }
        // The result is a concatenation of segments, each one indexed query (see `Segment`).
        // Paging walks them: rows skipped by the offset are counted only in segments that
        // return nothing.
        let segments = segments(s)?;
        let mut need = s.max_results as u64 + 1;
        let mut skip = s.offset;
        let mut ids: Vec<String> = Vec::new();
        for seg in &segments {
            if need == 0 {
                break;
            }
            let mut q = self.segment_sql(s, seg, false)?;
            q.push(" LIMIT ").bind(Arg::I64(need as i64));
            q.push(" OFFSET ").bind(Arg::I64(skip as i64));
            let rows: Vec<String> = q
                .build()
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?
                .iter()
                .map(|r| get(r, 0))
                .collect::<Result<_>>()?;
            if rows.is_empty() && skip > 0 {
                let count = self
                    .segment_sql(s, seg, true)?
                    .build()
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_err)?;
                skip = skip.saturating_sub(get::<i64>(&count, 0)? as u64);
            } else {
                skip = 0;
            }
            need -= rows.len() as u64;
            ids.extend(rows);
        }
        let next_offset =
            (ids.len() > s.max_results as usize).then(|| s.offset + s.max_results as u64);
        let ids = &ids[..ids.len().min(s.max_results as usize)];
        Ok(Page {
            items: self.load_runs(ids).await?,
            next_offset,
        })
    }
}

/// One part of a search's result order. When the first `order_by` key is a metric, param or tag,
/// the runs that have it are read in the order of its `(key, value)` index and stop at the page's
/// end — no sort of every matching run — then (metrics) the runs where it is NaN, then the runs
/// without it, which MLflow puts last in both directions.
enum Segment<'a> {
    /// Runs, ordered by the remaining keys (used when the first key is an attribute or absent).
    All,
    /// Runs that have `key` in `table` (`nan` selects NaN or numeric metric rows).
    Has {
        table: &'static str,
        key: &'a str,
        nan: Option<bool>,
        ascending: bool,
    },
    /// Runs that lack `key` in `table`.
    Lacks { table: &'static str, key: &'a str },
}

fn order_table(subject: &Subject) -> Result<Option<(&'static str, &str)>> {
    Ok(match subject {
        Subject::Metric(k) => Some(("latest_metrics", k)),
        Subject::Param(k) => Some(("params", k)),
        Subject::Tag(k) => Some(("tags", k)),
        Subject::Attr(_) => None,
        Subject::Dataset(_) => return Err(Error::invalid("Ordering by datasets is not supported")),
    })
}

fn segments(s: &SearchRuns) -> Result<Vec<Segment<'_>>> {
    let Some(first) = s.order_by.first() else {
        return Ok(vec![Segment::All]);
    };
    Ok(match order_table(&first.subject)? {
        None => vec![Segment::All],
        Some(("latest_metrics", key)) => vec![
            Segment::Has {
                table: "latest_metrics",
                key,
                nan: Some(false),
                ascending: first.ascending,
            },
            Segment::Has {
                table: "latest_metrics",
                key,
                nan: Some(true),
                ascending: first.ascending,
            },
            Segment::Lacks {
                table: "latest_metrics",
                key,
            },
        ],
        Some((table, key)) => vec![
            Segment::Has {
                table,
                key,
                nan: None,
                ascending: first.ascending,
            },
            Segment::Lacks { table, key },
        ],
    })
}

impl Db {
    /// The SQL of one segment: its run ids in order, or (`count`) how many there are.
    fn segment_sql(&self, s: &SearchRuns, seg: &Segment<'_>, count: bool) -> Result<Sql> {
        let select = if count {
            "SELECT COUNT(*)"
        } else {
            "SELECT r.run_id"
        };
        let mut q = match seg {
            Segment::Has { table, key, .. } => {
                let mut q = Sql::new(&format!(
                    "{select} FROM {table} f JOIN runs r ON r.run_id = f.run_id"
                ));
                q.push(" AND f.key = ").bind_text(key);
                q
            }
            _ => Sql::new(&format!("{select} FROM runs r")),
        };
        // The remaining order keys: one LEFT JOIN each; rows without the key sort last.
        let rest = match seg {
            Segment::All => &s.order_by[..],
            _ => &s.order_by[1..],
        };
        let mut order_sql = Vec::new();
        if let Segment::Has { ascending, .. } = seg {
            order_sql.push(format!(
                "f.value {}",
                if *ascending { "ASC" } else { "DESC" }
            ));
        }
        for (i, o) in rest.iter().enumerate() {
            let dir = if o.ascending { "ASC" } else { "DESC" };
            match (order_table(&o.subject)?, &o.subject) {
                (Some((table, key)), _) => {
                    let alias = format!("o{i}");
                    if !count {
                        q.push(&format!(" LEFT JOIN {table} {alias} ON {alias}.run_id = r.run_id AND {alias}.key = "))
                            .bind_text(key);
                    }
                    order_sql.push(format!("({alias}.run_id IS NULL)"));
                    if table == "latest_metrics" {
                        order_sql.push(format!("{alias}.is_nan"));
                    }
                    order_sql.push(format!("{alias}.value {dir}"));
                }
                (None, Subject::Attr(a)) => order_sql.push(format!("{} {dir}", attr_column(*a))),
                (None, _) => {}
            }
        }
        q.push(" WHERE r.experiment_id IN ");
        q.bind_row(s.experiment_ids.iter().map(|e| Arg::I64(e.get())).collect());
        q.push(view_clause(s.view));
        match seg {
            Segment::Has { nan: Some(nan), .. } => {
                q.push(if *nan {
                    " AND f.is_nan = 1"
                } else {
                    " AND f.is_nan = 0"
                });
            }
            Segment::Lacks { table, key } => {
                q.push(&format!(" AND NOT EXISTS (SELECT 1 FROM {table} x WHERE x.run_id = r.run_id AND x.key = "))
                    .bind_text(key)
                    .push(")");
            }
            _ => {}
        }
        for c in &s.filter.clauses {
            q.push(" AND ");
            self.clause(&mut q, &c.subject, &c.cmp)?;
        }
        if !count {
            order_sql.push("r.start_time DESC".into());
            order_sql.push("r.run_id ASC".into());
            q.push(" ORDER BY ").push(&order_sql.join(", "));
        }
        Ok(q)
    }
}

fn attr_column(a: Attr) -> &'static str {
    match a {
        Attr::RunId => "r.run_id",
        Attr::RunName => "r.name",
        Attr::Status => "r.status",
        Attr::UserId => "r.user_id",
        Attr::ArtifactUri => "r.artifact_uri",
        Attr::StartTime => "r.start_time",
        Attr::EndTime => "r.end_time",
    }
}

impl Db {
    /// Appends one filter clause as a boolean SQL expression over `r`.
    fn clause(&self, q: &mut Sql, subject: &Subject, cmp: &Comparison) -> Result<()> {
        match (subject, cmp) {
            (Subject::Metric(k), Comparison::Num(op, v)) => {
                q.push(
                    "EXISTS (SELECT 1 FROM latest_metrics m WHERE m.run_id = r.run_id AND m.key = ",
                )
                .bind_text(k)
                .push(" AND m.is_nan = 0 AND m.value ")
                .push(op.sql())
                .push(" ")
                .bind(Arg::F64(*v))
                .push(")");
            }
            (Subject::Param(k) | Subject::Tag(k), Comparison::Null { negated }) => {
                let table = if matches!(subject, Subject::Param(_)) {
                    "params"
                } else {
                    "tags"
                };
                q.push(if *negated { "EXISTS" } else { "NOT EXISTS" })
                    .push(&format!(
                        " (SELECT 1 FROM {table} p WHERE p.run_id = r.run_id AND p.key = "
                    ))
                    .bind_text(k)
                    .push(")");
            }
            (Subject::Param(k) | Subject::Tag(k), Comparison::Str(op, v)) => {
                let table = if matches!(subject, Subject::Param(_)) {
                    "params"
                } else {
                    "tags"
                };
                q.push(&format!(
                    "EXISTS (SELECT 1 FROM {table} p WHERE p.run_id = r.run_id AND p.key = "
                ))
                .bind_text(k)
                .push(" AND ");
                self.like(q, "p.value", *op, v);
                q.push(")");
            }
            (Subject::Attr(a), Comparison::Num(op, v)) if a.is_numeric() => {
                q.push(attr_column(*a)).push(" ").push(op.sql()).push(" ");
                if v.fract() == 0.0 && v.abs() < 9.0e15 {
                    q.bind(Arg::I64(*v as i64));
                } else {
                    q.bind(Arg::F64(*v));
                }
            }
            (Subject::Attr(a), Comparison::Str(op, v)) if !a.is_numeric() => {
                self.like(q, attr_column(*a), *op, v);
            }
            (Subject::Attr(Attr::RunId), Comparison::In { negated, values }) => {
                q.push("r.run_id")
                    .push(if *negated { " NOT IN " } else { " IN " })
                    .bind_list(values);
            }
            (Subject::Dataset(f), cmp) => {
                let col = match f {
                    DatasetField::Name => "d.name",
                    DatasetField::Digest => "d.digest",
                    DatasetField::Context => "d.context",
                };
                q.push("EXISTS (SELECT 1 FROM run_inputs d WHERE d.run_id = r.run_id AND ");
                match cmp {
                    Comparison::Str(op, v) => self.like(q, col, *op, v),
                    Comparison::In { negated, values } => {
                        q.push(col)
                            .push(if *negated { " NOT IN " } else { " IN " })
                            .bind_list(values);
                    }
                    _ => return Err(Error::invalid("Invalid comparison on a dataset field")),
                }
                q.push(")");
            }
            (s, c) => {
                return Err(Error::invalid(format!(
                    "Invalid comparison {c:?} for {s:?}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_becomes_glob() {
        assert_eq!(super::like_to_glob("a%b_c*[?"), "a*b?c[*][[][?]");
    }
}
