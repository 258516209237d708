//! `capstan worker`: leases jobs from the queue in the metadata database and runs them — any
//! number of workers, on any machines sharing the database. A lease is extended by heartbeats
//! while the job runs; if this process dies, the lease runs out and another worker takes the job.
//! Failures are retried by the queue's backoff policy. Before each lease it fires the schedules
//! that are due (each tick once, whichever worker claims it). Ctrl-C / SIGTERM stop leasing and let the
//! running job finish.
//!
//! Kinds this worker runs:
//! - `rag-ingest` `{"collection", "path", "complete": false}`: ingest files into a collection.
//! - `data-repro` `{"repo", "stage": null}`: reproduce a DVC-format pipeline, tracked as a run.
//! - `retrain` `{"model", "reason"?, "monitor"?, "alerts"?}`: retrain a model by its policy, judge
//!   it against the champion and promote or reject it (`crate::retrain`).
//! - `rollout-check` `{"model", "deployment", "candidate", "round"}`: judge a canary by its
//!   deployment's statistics; promote, roll back, or look again later.

use crate::config::Config;
use crate::platform::{Error, Platform};
use pipeline::jobs::{Job, JobQueue};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub const KINDS: &[&str] = &["rag-ingest", "data-repro", "retrain", "rollout-check"];

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// Only these kinds (comma-separated); default every kind this worker knows.
    #[arg(long, value_delimiter = ',')]
    pub kinds: Vec<String>,
    /// How long a lease lasts; heartbeats renew it every third of that.
    #[arg(long, default_value_t = 60)]
    pub lease_secs: u64,
    /// How often an idle worker asks for work (`capstan bench jobs` measures what it costs).
    #[arg(long, default_value_t = 50)]
    pub poll_ms: u64,
    /// Exit when no job is runnable instead of waiting for more.
    #[arg(long)]
    pub once: bool,
    /// The name leases are taken under (default host-pid).
    #[arg(long)]
    pub name: Option<String>,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn execute(job: &Job, home: &Path, config: &Config) -> Result<Value, String> {
    let p = &job.payload;
    let field = |k: &str| {
        p[k].as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("payload needs a string `{k}`"))
    };
    match job.kind.as_str() {
        "rag-ingest" => {
            let (collection, path) = (field("collection")?, field("path")?);
            let complete = p["complete"].as_bool().unwrap_or(false);
            let store = crate::vectors_cmd::open_store(home, config)
                .await
                .map_err(err)?;
            let model = Arc::new(
                crate::vectors_cmd::embedder(home, config, "all-MiniLM-L6-v2")
                    .await
                    .map_err(err)?,
            );
            let (report, total) = tokio::task::spawn_blocking(move || {
                crate::rag_cmd::ingest(
                    store.as_ref(),
                    model,
                    Path::new(&path),
                    &collection,
                    rag::chunk::ChunkOptions::default(),
                    complete,
                    false,
                )
            })
            .await
            .map_err(err)?
            .map_err(err)?;
            Ok(json!({"report": report, "points": total}))
        }
        "data-repro" => {
            let repo = field("repo")?;
            let stage = p["stage"].as_str().map(str::to_owned);
            let (runs, repo_dir) = tokio::task::spawn_blocking(move || {
                let mut r = data::Repo::open(Path::new(&repo)).map_err(err)?;
                r.repro(stage.as_deref())
                    .map_err(err)
                    .map(|runs| (runs, repo))
            })
            .await
            .map_err(err)??;
            let stages: Vec<Value> = runs
                .iter()
                .map(|r| match r {
                    data::StageRun::Unchanged(s) => json!({"stage": s, "outcome": "unchanged"}),
                    data::StageRun::Restored(s) => json!({"stage": s, "outcome": "restored"}),
                    data::StageRun::Ran(s) => json!({"stage": s, "outcome": "ran"}),
                })
                .collect();
            let run_id = crate::data_cmd::track_repro(Path::new(&repo_dir), home, config)
                .await
                .map_err(err)?;
            Ok(json!({"stages": stages, "run_id": run_id}))
        }
        "retrain" => {
            let model = field("model")?;
            let p = Platform::open(home, config).await.map_err(err)?;
            crate::retrain::retrain(
                &p,
                &model,
                job.id,
                &crate::retrain::trigger_of(&job.payload),
                job.payload["if_new_rows"].as_bool().unwrap_or(false),
            )
            .await
            .map_err(err)
        }
        "rollout-check" => {
            let p = Platform::open(home, config).await.map_err(err)?;
            crate::retrain::rollout_check(&p, &job.payload)
                .await
                .map_err(err)
        }
        other => Err(format!("this worker has no executor for kind `{other}`")),
    }
}

/// A job's result in one log line: its outcome and reason when it has them, else its JSON.
fn summary(result: &Value) -> String {
    match (result["outcome"].as_str(), result["reason"].as_str()) {
        (Some(outcome), Some(reason)) => format!("{outcome} — {reason}"),
        _ => result.to_string(),
    }
}

/// Records a job's end, retrying while the database is unreachable (restarting, say) for as long
/// as the lease would have lasted; `None` if it never came back — the lease then runs out and the
/// job is leased again, and resumes.
async fn persist<T, F, Fut>(worker: &str, id: i64, lease_ms: i64, mut write: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = std::time::Instant::now() + Duration::from_millis(lease_ms.max(1000) as u64);
    let mut wait = Duration::from_millis(100);
    loop {
        match write().await {
            Ok(v) => return Some(v),
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("worker {worker}: job {id}: could not record its end ({e}); retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                eprintln!("worker {worker}: job {id}: gave up recording its end: {e}");
                return None;
            }
        }
    }
}

pub async fn run(home: &Path, config: &Config, args: WorkerArgs) -> Result<(), Error> {
    let p = Platform::open(home, config).await?;
    let name = args.name.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let kinds: Vec<String> = if args.kinds.is_empty() {
        KINDS.iter().map(|k| k.to_string()).collect()
    } else {
        for k in &args.kinds {
            if !KINDS.contains(&k.as_str()) {
                return Err(Error::Other(format!(
                    "unknown job kind `{k}` (this worker runs {})",
                    KINDS.join(", ")
                )));
            }
        }
        args.kinds
    };
    let lease_ms = (args.lease_secs.max(1) * 1000) as i64;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.store(true, Ordering::Relaxed);
        });
    }
    eprintln!("worker {name}: running {}", kinds.join(", "));
    while !stop.load(Ordering::Relaxed) {
        let leased = async {
            for id in pipeline::schedules::fire_due(&p.db, base::now_millis()).await? {
                println!("schedule fired: job {id} queued");
            }
            p.db.lease(&name, &kinds, lease_ms, base::now_millis())
                .await
        }
        .await;
        // The database may be restarting: a worker waits for it rather than exiting.
        let leased = match leased {
            Ok(leased) => leased,
            Err(e) if args.once => return Err(Error::Other(e)),
            Err(e) => {
                eprintln!("worker {name}: the database is unreachable ({e}); retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(job) = leased else {
            if args.once {
                break;
            }
            tokio::time::sleep(Duration::from_millis(args.poll_ms)).await;
            continue;
        };
        println!(
            "job {} ({}) started, attempt {}/{}",
            job.id, job.kind, job.attempts, job.max_attempts
        );
        // Heartbeats while it runs; a lost lease is reported (the result will then be refused).
        let beat = {
            let (db, name, id) = (p.db.clone(), name.clone(), job.id);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis((lease_ms / 3).max(100) as u64)).await;
                    match db.heartbeat(id, &name, lease_ms, base::now_millis()).await {
                        Ok(true) => {}
                        Ok(false) => {
                            eprintln!(
                                "job {id}: lease lost (cancelled, or taken over after expiry)"
                            );
                            break;
                        }
                        Err(e) => eprintln!("job {id}: heartbeat failed: {e}"),
                    }
                }
            })
        };
        let started = std::time::Instant::now();
        let outcome = execute(&job, home, config).await;
        beat.abort();
        let now = base::now_millis();
        match outcome {
            Ok(result) => {
                let line = format!(
                    "finished in {:.1} s: {}",
                    started.elapsed().as_secs_f64(),
                    summary(&result)
                );
                let _ = p.db.append_log(job.id, &[line], now).await;
                let done = persist(&name, job.id, lease_ms, || {
                    p.db.complete(job.id, &name, result.clone(), base::now_millis())
                })
                .await;
                if done == Some(true) {
                    println!("job {} ({}) succeeded", job.id, job.kind);
                } else if done.is_none() {
                    println!(
                        "job {} ({}) finished, but the database stayed unreachable: its lease will run out and the job run again",
                        job.id, job.kind
                    );
                } else {
                    let line = "its lease was lost (cancelled, or taken over): result discarded";
                    let _ = p.db.append_log(job.id, &[line.into()], now).await;
                    println!("job {} ({}) finished, but {line}", job.id, job.kind);
                }
            }
            Err(e) => match persist(&name, job.id, lease_ms, || {
                p.db.fail(job.id, &name, &e, base::now_millis())
            })
            .await
            .flatten()
            {
                Some(j) if j.state == pipeline::JobState::Queued => println!(
                    "job {} ({}) failed: {e}; retry in {:.1}s",
                    job.id,
                    job.kind,
                    (j.run_after_ms - now) as f64 / 1000.0
                ),
                Some(_) => println!(
                    "job {} ({}) failed: {e}; no attempts left",
                    job.id, job.kind
                ),
                None => println!(
                    "job {} ({}) failed: {e}; its lease was already lost, or the database stayed unreachable",
                    job.id, job.kind
                ),
            },
        }
    }
    Ok(())
}
