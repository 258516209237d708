//! Logging metrics, params and tags: the hot write path. Batches are applied in groups inside one
//! transaction. On SQLite one writer task drains a queue, so concurrent `log-batch` requests share
//! a commit (group commit); on PostgreSQL each request is its own group. Either way each request
//! is all-or-nothing and is acknowledged only after its group commits.

use crate::db::{Db, map_err};
use crate::sql::{Arg, Sql};
use base::RunId;
use sqlx::Row;
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};
use tracking::{Error, Lifecycle, Metric, Param, Result, Tag};

const RUN_NAME_TAG: &str = "mlflow.runName";
/// Sets a run tag, replacing its value.
pub(crate) const UPSERT_RUN_TAG: &str = "INSERT INTO tags (run_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value";
/// Most requests one group commit takes.
const MAX_GROUP: usize = 64;
/// Rows per multi-row INSERT: a fixed size keeps the statement text (and its cached prepared
/// statement) the same from one group to the next.
const ROWS_PER_INSERT: usize = 100;

pub(crate) struct BatchJob {
    pub run_id: RunId,
    pub metrics: Vec<Metric>,
    pub params: Vec<Param>,
    pub tags: Vec<Tag>,
    pub reply: oneshot::Sender<Result<()>>,
}

/// Starts the SQLite writer task; the returned sender feeds it.
pub(crate) fn spawn_writer(db: Db) -> mpsc::Sender<BatchJob> {
    let (tx, mut rx) = mpsc::channel::<BatchJob>(1024);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut jobs = vec![first];
            while jobs.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            let _g = db.write_guard().await;
            let results = apply_group(&db, &jobs).await;
            for (job, result) in jobs.into_iter().zip(results) {
                let _ = job.reply.send(result);
            }
        }
    });
    tx
}

/// Applies `jobs` in one transaction, as if one after the other: a job that fails validation
/// (unknown or deleted run, changed param) changes nothing and the others go on. Returns one
/// result per job.
pub(crate) async fn apply_group(db: &Db, jobs: &[BatchJob]) -> Vec<Result<()>> {
    // Jobs found to lose a param race (PostgreSQL: another server committed the same key first)
    // are answered with that error and the group is retried without them.
    let mut lost: Vec<Option<Error>> = jobs.iter().map(|_| None).collect();
    loop {
        match try_apply_group(db, jobs, &lost).await {
            Ok(Attempt::Done(results)) => {
                return results
                    .into_iter()
                    .zip(lost)
                    .map(|(r, l)| l.map_or(r, Err))
                    .collect();
            }
            Ok(Attempt::ParamRace(races)) => {
                for (i, e) in races {
                    lost[i] = Some(e);
                }
            }
            Err(e) => {
                return jobs
                    .iter()
                    .map(|_| Err(Error::Store(e.to_string())))
                    .collect();
            }
        }
    }
}

enum Attempt {
    Done(Vec<Result<()>>),
    /// Jobs whose params were changed by a concurrent writer; nothing was committed.
    ParamRace(Vec<(usize, Error)>),
}

fn changed_param(id: &str, key: &str, old: &str, new: &str) -> Error {
    Error::invalid(format!(
        "Changing param values is not allowed. Param with key='{key}' was already logged with value='{old}' for run ID='{id}'. Attempted logging new value '{new}'."
    ))
}

async fn try_apply_group(db: &Db, jobs: &[BatchJob], lost: &[Option<Error>]) -> Result<Attempt> {
    let mut tx = db.pool.begin().await.map_err(map_err)?;
    let mut ids: Vec<String> = jobs.iter().map(|j| j.run_id.as_str().to_owned()).collect();
    ids.sort();
    ids.dedup();
    let mut q = Sql::new("SELECT run_id, lifecycle_stage FROM runs WHERE run_id IN ");
    q.bind_list(&ids);
    let mut lifecycle: HashMap<String, Lifecycle> = HashMap::new();
    for row in q.build().fetch_all(&mut *tx).await.map_err(map_err)? {
        let stage: String = row.try_get(1).map_err(map_err)?;
        lifecycle.insert(
            row.try_get(0).map_err(map_err)?,
            Lifecycle::parse(&stage).unwrap_or(Lifecycle::Active),
        );
    }
    // Params already stored for these runs, plus those accepted earlier in this group.
    let mut params: HashMap<(String, String), String> = HashMap::new();
    if jobs.iter().any(|j| !j.params.is_empty()) {
        let mut q = Sql::new("SELECT run_id, key, value FROM params WHERE run_id IN ");
        q.bind_list(&ids);
        for row in q.build().fetch_all(&mut *tx).await.map_err(map_err)? {
            params.insert(
                (
                    row.try_get(0).map_err(map_err)?,
                    row.try_get(1).map_err(map_err)?,
                ),
                row.try_get(2).map_err(map_err)?,
            );
        }
    }
    let mut results = Vec::with_capacity(jobs.len());
    let mut new_params: Vec<(&str, &Param)> = Vec::new();
    let mut tags: Vec<(&str, &Tag)> = Vec::new();
    let mut metrics: Vec<(&str, &Metric)> = Vec::new();
    let mut accepted = Vec::new();
    for (n, job) in jobs.iter().enumerate() {
        let id = job.run_id.as_str();
        if lost[n].is_some() {
            results.push(Ok(()));
            continue;
        }
        let verdict = match lifecycle.get(id) {
            None => Err(Error::NotFound(format!("Run with id={id} not found"))),
            Some(Lifecycle::Deleted) => Err(Error::invalid(format!(
                "The run {id} must be in the 'active' state. Current state is deleted."
            ))),
            Some(Lifecycle::Active) => job
                .params
                .iter()
                .find_map(|p| match params.get(&(id.to_owned(), p.key.clone())) {
                    Some(old) if *old != p.value => Some(changed_param(id, &p.key, old, &p.value)),
                    _ => None,
                })
                .map_or(Ok(()), Err),
        };
        if verdict.is_ok() {
            accepted.push(n);
            for p in &job.params {
                if params
                    .insert((id.to_owned(), p.key.clone()), p.value.clone())
                    .is_none()
                {
                    new_params.push((id, p));
                }
            }
            tags.extend(job.tags.iter().map(|t| (id, t)));
            metrics.extend(job.metrics.iter().map(|m| (id, m)));
        }
        results.push(verdict);
    }
    for chunk in new_params.chunks(ROWS_PER_INSERT) {
        let mut q = Sql::new("INSERT INTO params (run_id, key, value) VALUES ");
        for (i, (id, p)) in chunk.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.bind_row(vec![
                Arg::Text((*id).to_owned()),
                Arg::Text(p.key.clone()),
                Arg::Text(p.value.clone()),
            ]);
        }
        // A concurrent transaction may have committed the same key meanwhile (PostgreSQL):
        // keep its value and check below.
        q.push(" ON CONFLICT (run_id, key) DO NOTHING");
        q.build().execute(&mut *tx).await.map_err(map_err)?;
    }
    if !new_params.is_empty() {
        let mut q = Sql::new("SELECT run_id, key, value FROM params WHERE run_id IN ");
        q.bind_list(&ids);
        let mut stored: HashMap<(String, String), String> = HashMap::new();
        for row in q.build().fetch_all(&mut *tx).await.map_err(map_err)? {
            stored.insert(
                (
                    row.try_get(0).map_err(map_err)?,
                    row.try_get(1).map_err(map_err)?,
                ),
                row.try_get(2).map_err(map_err)?,
            );
        }
        let races: Vec<(usize, Error)> = accepted
            .iter()
            .filter_map(|&n| {
                let id = jobs[n].run_id.as_str();
                jobs[n].params.iter().find_map(|p| {
                    match stored.get(&(id.to_owned(), p.key.clone())) {
                        Some(old) if *old != p.value => {
                            Some((n, changed_param(id, &p.key, old, &p.value)))
                        }
                        _ => None,
                    }
                })
            })
            .collect();
        if !races.is_empty() {
            tx.rollback().await.map_err(map_err)?;
            return Ok(Attempt::ParamRace(races));
        }
    }
    for (id, t) in tags {
        sqlx::query(UPSERT_RUN_TAG)
            .bind(id.to_owned())
            .bind(t.key.clone())
            .bind(t.value.clone())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if t.key == RUN_NAME_TAG {
            sqlx::query("UPDATE runs SET name = $1 WHERE run_id = $2")
                .bind(t.value.clone())
                .bind(id.to_owned())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
    }
    for chunk in metrics.chunks(ROWS_PER_INSERT) {
        metric_rows("metrics", chunk, " ON CONFLICT DO NOTHING")
            .build()
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
    }
    // The latest point per (run, key) among the new ones, then one conditional upsert each.
    let mut latest: HashMap<(&str, &str), &Metric> = HashMap::new();
    for (id, m) in &metrics {
        latest
            .entry((id, m.key.as_str()))
            .and_modify(|l| {
                if m.is_later_than(l) {
                    *l = m
                }
            })
            .or_insert(m);
    }
    let mut latest: Vec<(&str, &Metric)> = latest.into_iter().map(|((id, _), m)| (id, m)).collect();
    latest.sort_by(|a, b| (a.0, &a.1.key).cmp(&(b.0, &b.1.key)));
    // Later = higher (step, timestamp), then a number over NaN, then the larger value.
    const UPSERT_IF_LATER: &str = " ON CONFLICT (run_id, key) DO UPDATE SET step = excluded.step, timestamp = excluded.timestamp, \
         value = excluded.value, is_nan = excluded.is_nan \
         WHERE (excluded.step, excluded.timestamp, -excluded.is_nan, excluded.value) > \
         (latest_metrics.step, latest_metrics.timestamp, -latest_metrics.is_nan, latest_metrics.value)";
    for chunk in latest.chunks(ROWS_PER_INSERT) {
        metric_rows("latest_metrics", chunk, UPSERT_IF_LATER)
            .build()
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
    }
    tx.commit().await.map_err(map_err)?;
    Ok(Attempt::Done(results))
}

/// NaN cannot be stored as a number in SQLite; it is kept as 0 with a flag.
pub(crate) fn metric_value(m: &Metric) -> (f64, i64) {
    if m.value.is_nan() {
        (0.0, 1)
    } else {
        (m.value, 0)
    }
}

/// One multi-row INSERT of metric points into `table` (`metrics` or `latest_metrics`).
fn metric_rows(table: &str, rows: &[(&str, &Metric)], conflict: &str) -> Sql {
    let mut q = Sql::new(&format!(
        "INSERT INTO {table} (run_id, key, step, timestamp, value, is_nan) VALUES "
    ));
    for (i, (id, m)) in rows.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        let (v, nan) = metric_value(m);
        q.bind_row(vec![
            Arg::Text((*id).to_owned()),
            Arg::Text(m.key.clone()),
            Arg::I64(m.step),
            Arg::I64(m.timestamp),
            Arg::F64(v),
            Arg::I64(nan),
        ]);
    }
    q.push(conflict);
    q
}
