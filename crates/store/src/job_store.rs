//! `JobQueue` for SQLite and PostgreSQL. Leasing is one `UPDATE … WHERE id = (SELECT … LIMIT 1)`:
//! on PostgreSQL the inner select takes `FOR UPDATE SKIP LOCKED`, so concurrent workers each get
//! a different job without waiting on each other; on SQLite the one-writer queue serialises it.

use crate::db::{Backend, Db, map_err};
use pipeline::jobs::{Job, JobQueue, JobState, LogLine, NewJob, backoff_ms, clip_log_line};
use serde_json::Value;
use sqlx::Row;

fn err(e: sqlx::Error) -> String {
    map_err(e).to_string()
}

const COLUMNS: &str = "id, kind, payload, state, attempts, max_attempts, run_after, lease_owner, \
                       lease_until, dedupe_key, last_error, result, created, updated";

fn job_of(r: &sqlx::any::AnyRow) -> Result<Job, String> {
    let text = |c: &str| r.try_get::<Option<String>, _>(c).map_err(err);
    let state: String = r.try_get("state").map_err(err)?;
    Ok(Job {
        id: r.try_get("id").map_err(err)?,
        kind: r.try_get("kind").map_err(err)?,
        payload: serde_json::from_str(&r.try_get::<String, _>("payload").map_err(err)?)
            .unwrap_or(Value::Null),
        state: JobState::parse(&state).ok_or_else(|| format!("job state `{state}` unknown"))?,
        attempts: r.try_get::<i64, _>("attempts").map_err(err)? as u32,
        max_attempts: r.try_get::<i64, _>("max_attempts").map_err(err)? as u32,
        run_after_ms: r.try_get("run_after").map_err(err)?,
        lease_owner: text("lease_owner")?,
        lease_until_ms: r.try_get::<Option<i64>, _>("lease_until").map_err(err)?,
        dedupe_key: text("dedupe_key")?,
        last_error: text("last_error")?,
        result: text("result")?.and_then(|s| serde_json::from_str(&s).ok()),
        created_ms: r.try_get("created").map_err(err)?,
        updated_ms: r.try_get("updated").map_err(err)?,
    })
}

impl Db {
    async fn job_by_id(&self, id: i64) -> Result<Option<Job>, String> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM jobs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.as_ref().map(job_of).transpose()
    }

    /// A lifecycle line in the job's log. Best effort: the state change it describes has already
    /// happened, and must not be reported as failed because its log line could not be written.
    async fn event(&self, id: i64, line: String, now_ms: i64) {
        let _ = self.append_log(id, &[line], now_ms).await;
    }

    async fn pending_with_key(&self, key: &str) -> Result<Option<Job>, String> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM jobs WHERE dedupe_key = $1 AND state IN ('queued', 'running')"
        )))
        .bind(key.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.as_ref().map(job_of).transpose()
    }
}

#[async_trait::async_trait]
impl JobQueue for Db {
    async fn enqueue(&self, job: NewJob, now_ms: i64) -> Result<Job, String> {
        job.validate()?;
        if let Some(key) = &job.dedupe_key
            && let Some(existing) = self.pending_with_key(key).await?
        {
            return Ok(existing);
        }
        let inserted = {
            let _g = self.write_guard().await;
            // A NULL dedupe key is written as a literal: sqlx's `Any` driver cannot bind an
            // untyped NULL to PostgreSQL.
            let key_sql = if job.dedupe_key.is_some() {
                "$6"
            } else {
                "NULL"
            };
            let sql = format!(
                "INSERT INTO jobs (kind, payload, state, attempts, max_attempts, run_after, dedupe_key, created, updated) \
                 VALUES ($1, $2, 'queued', 0, $3, $4, {key_sql}, $5, $5) RETURNING id"
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(job.kind.clone())
                .bind(job.payload.to_string())
                .bind(job.max_attempts as i64)
                .bind(job.run_after_ms.max(0))
                .bind(now_ms);
            if let Some(k) = &job.dedupe_key {
                q = q.bind(k.clone());
            }
            q.fetch_one(&self.pool).await
        };
        match inserted {
            Ok(row) => {
                let id: i64 = row.try_get(0).map_err(err)?;
                self.event(id, format!("queued ({})", job.kind), now_ms)
                    .await;
                self.job_by_id(id)
                    .await?
                    .ok_or_else(|| "job vanished after insert".to_owned())
            }
            // Another enqueuer won the race for the same dedupe key: theirs is the job.
            Err(e) => match &job.dedupe_key {
                Some(key) => self.pending_with_key(key).await?.ok_or_else(|| err(e)),
                None => Err(err(e)),
            },
        }
    }

    async fn lease(
        &self,
        worker: &str,
        kinds: &[String],
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Job>, String> {
        loop {
            let kind_marks: Vec<String> = (0..kinds.len()).map(|i| format!("${}", i + 4)).collect();
            let kind_clause = if kinds.is_empty() {
                String::new()
            } else {
                format!(" AND kind IN ({})", kind_marks.join(", "))
            };
            let lock = if self.backend() == Backend::Postgres {
                " FOR UPDATE SKIP LOCKED"
            } else {
                ""
            };
            let sql = format!(
                "UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated = $3 \
                 WHERE id = (SELECT id FROM jobs WHERE ((state = 'queued' AND run_after <= $3) \
                 OR (state = 'running' AND lease_until < $3)){kind_clause} ORDER BY run_after, id LIMIT 1{lock}) \
                 RETURNING id"
            );
            let row = {
                let _g = self.write_guard().await;
                // Only numbered placeholders are formatted in; every value is bound.
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(worker.to_owned())
                    .bind(now_ms + lease_ms)
                    .bind(now_ms);
                for k in kinds {
                    q = q.bind(k.clone());
                }
                q.fetch_optional(&self.pool).await.map_err(err)?
            };
            let Some(row) = row else {
                return Ok(None);
            };
            let id: i64 = row.try_get(0).map_err(err)?;
            let job = self
                .job_by_id(id)
                .await?
                .ok_or_else(|| "leased job vanished".to_owned())?;
            if job.attempts <= job.max_attempts {
                self.event(id, leased_line(&job, worker), now_ms).await;
                return Ok(Some(job));
            }
            // A job whose workers kept dying: out of attempts, so it fails instead of running.
            {
                let _g = self.write_guard().await;
                sqlx::query(
                    "UPDATE jobs SET state = 'failed', lease_until = NULL, updated = $1, \
                     last_error = 'lease expired: the worker stopped responding, and no attempts remain' WHERE id = $2",
                )
                .bind(now_ms)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(err)?;
            }
            let line = "failed: lease expired (the worker stopped responding); no attempts left";
            self.event(id, line.into(), now_ms).await;
        }
    }

    async fn lease_id(
        &self,
        id: i64,
        worker: &str,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Job>, String> {
        let row = {
            let _g = self.write_guard().await;
            sqlx::query(
                "UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated = $3 \
                 WHERE id = $4 AND attempts < max_attempts \
                 AND ((state = 'queued' AND run_after <= $3) OR (state = 'running' AND lease_until < $3)) \
                 RETURNING id",
            )
            .bind(worker.to_owned())
            .bind(now_ms + lease_ms)
            .bind(now_ms)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
        };
        let Some(_) = row else {
            return Ok(None);
        };
        let job = self.job_by_id(id).await?;
        if let Some(j) = &job {
            self.event(id, leased_line(j, worker), now_ms).await;
        }
        Ok(job)
    }

    async fn heartbeat(
        &self,
        id: i64,
        worker: &str,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<bool, String> {
        let _g = self.write_guard().await;
        let r = sqlx::query(
            "UPDATE jobs SET lease_until = $1, updated = $2 WHERE id = $3 AND state = 'running' AND lease_owner = $4",
        )
        .bind(now_ms + lease_ms)
        .bind(now_ms)
        .bind(id)
        .bind(worker.to_owned())
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn complete(
        &self,
        id: i64,
        worker: &str,
        result: Value,
        now_ms: i64,
    ) -> Result<bool, String> {
        let done = {
            let _g = self.write_guard().await;
            sqlx::query(
                "UPDATE jobs SET state = 'succeeded', result = $1, lease_until = NULL, updated = $2 \
                 WHERE id = $3 AND state = 'running' AND lease_owner = $4",
            )
            .bind(result.to_string())
            .bind(now_ms)
            .bind(id)
            .bind(worker.to_owned())
            .execute(&self.pool)
            .await
            .map_err(err)?
            .rows_affected()
                == 1
        };
        if done {
            self.event(id, "succeeded".into(), now_ms).await;
        }
        Ok(done)
    }

    async fn fail(
        &self,
        id: i64,
        worker: &str,
        error: &str,
        now_ms: i64,
    ) -> Result<Option<Job>, String> {
        let Some(job) = self.job_by_id(id).await? else {
            return Ok(None);
        };
        if job.state != JobState::Running || job.lease_owner.as_deref() != Some(worker) {
            return Ok(None);
        }
        let retry = job.attempts < job.max_attempts;
        let changed = {
            let _g = self.write_guard().await;
            let r = sqlx::query(
                "UPDATE jobs SET state = $1, run_after = $2, last_error = $3, lease_until = NULL, updated = $4 \
                 WHERE id = $5 AND state = 'running' AND lease_owner = $6 AND attempts = $7",
            )
            .bind(if retry { "queued" } else { "failed" })
            .bind(if retry { now_ms + backoff_ms(id, job.attempts) } else { job.run_after_ms })
            .bind(error.chars().take(4000).collect::<String>())
            .bind(now_ms)
            .bind(id)
            .bind(worker.to_owned())
            .bind(job.attempts as i64)
            .execute(&self.pool)
            .await
            .map_err(err)?;
            r.rows_affected() == 1
        };
        if !changed {
            return Ok(None);
        }
        let line = if retry {
            format!(
                "failed: {error}; retry in {:.1} s",
                backoff_ms(id, job.attempts) as f64 / 1000.0
            )
        } else {
            format!("failed: {error}; no attempts left")
        };
        self.event(id, line, now_ms).await;
        self.job_by_id(id).await
    }

    async fn cancel(&self, id: i64, now_ms: i64) -> Result<bool, String> {
        let cancelled = {
            let _g = self.write_guard().await;
            sqlx::query(
                "UPDATE jobs SET state = 'cancelled', lease_until = NULL, updated = $1 \
                 WHERE id = $2 AND state IN ('queued', 'running')",
            )
            .bind(now_ms)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err)?
            .rows_affected()
                == 1
        };
        if cancelled {
            self.event(id, "cancelled".into(), now_ms).await;
        }
        Ok(cancelled)
    }

    async fn get(&self, id: i64) -> Result<Option<Job>, String> {
        self.job_by_id(id).await
    }

    async fn list(&self, state: Option<JobState>, limit: usize) -> Result<Vec<Job>, String> {
        let rows = match state {
            Some(s) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM jobs WHERE state = $1 ORDER BY id DESC LIMIT $2"
                )))
                .bind(s.as_str())
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM jobs ORDER BY id DESC LIMIT $1"
                )))
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(err)?;
        rows.iter().map(job_of).collect()
    }

    async fn append_log(&self, id: i64, lines: &[String], now_ms: i64) -> Result<(), String> {
        if lines.is_empty() {
            return Ok(());
        }
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(err)?;
        for line in lines {
            // The attempt is read from the job itself: no row for a job that does not exist.
            sqlx::query(
                "INSERT INTO job_logs (job_id, attempt, time_ms, line) \
                 SELECT id, attempts, $2, $3 FROM jobs WHERE id = $1",
            )
            .bind(id)
            .bind(now_ms)
            .bind(clip_log_line(line))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    async fn logs(&self, id: i64, after: i64, limit: usize) -> Result<Vec<LogLine>, String> {
        let rows = sqlx::query(
            "SELECT seq, attempt, time_ms, line FROM job_logs WHERE job_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3",
        )
        .bind(id)
        .bind(after)
        .bind(limit.min(100_000) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok(LogLine {
                    seq: r.try_get("seq").map_err(err)?,
                    attempt: r.try_get::<i64, _>("attempt").map_err(err)? as u32,
                    time_ms: r.try_get("time_ms").map_err(err)?,
                    line: r.try_get("line").map_err(err)?,
                })
            })
            .collect()
    }
}

fn leased_line(job: &Job, worker: &str) -> String {
    format!(
        "attempt {}/{} leased by {worker}",
        job.attempts, job.max_attempts
    )
}

#[async_trait::async_trait]
impl pipeline::schedules::ScheduleStore for Db {
    async fn put_schedule(&self, s: &pipeline::schedules::Schedule) -> Result<(), String> {
        let _g = self.write_guard().await;
        sqlx::query(
            "INSERT INTO schedules (name, cron, kind, payload, max_attempts, next_fire, created) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO UPDATE SET cron = excluded.cron, \
             kind = excluded.kind, payload = excluded.payload, max_attempts = excluded.max_attempts, \
             next_fire = excluded.next_fire",
        )
        .bind(s.name.clone())
        .bind(s.cron.clone())
        .bind(s.kind.clone())
        .bind(s.payload.to_string())
        .bind(s.max_attempts as i64)
        .bind(s.next_fire_ms)
        .bind(s.created_ms)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn list_schedules(&self) -> Result<Vec<pipeline::schedules::Schedule>, String> {
        let rows = sqlx::query(
            "SELECT name, cron, kind, payload, max_attempts, next_fire, created FROM schedules ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok(pipeline::schedules::Schedule {
                    name: r.try_get("name").map_err(err)?,
                    cron: r.try_get("cron").map_err(err)?,
                    kind: r.try_get("kind").map_err(err)?,
                    payload: serde_json::from_str(&r.try_get::<String, _>("payload").map_err(err)?)
                        .unwrap_or(Value::Null),
                    max_attempts: r.try_get::<i64, _>("max_attempts").map_err(err)? as u32,
                    next_fire_ms: r.try_get("next_fire").map_err(err)?,
                    created_ms: r.try_get("created").map_err(err)?,
                })
            })
            .collect()
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, String> {
        let _g = self.write_guard().await;
        let r = sqlx::query("DELETE FROM schedules WHERE name = $1")
            .bind(name.to_owned())
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn advance_schedule(&self, name: &str, expected: i64, next: i64) -> Result<bool, String> {
        let _g = self.write_guard().await;
        let r =
            sqlx::query("UPDATE schedules SET next_fire = $1 WHERE name = $2 AND next_fire = $3")
                .bind(next)
                .bind(name.to_owned())
                .bind(expected)
                .execute(&self.pool)
                .await
                .map_err(err)?;
        Ok(r.rows_affected() == 1)
    }
}
