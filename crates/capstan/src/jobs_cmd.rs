//! `capstan jobs list | show | logs | cancel`: the durable job queue (pipelines, retraining, ingestion)
//! in the metadata database.

use crate::config::Config;
use crate::platform::{Error, Platform};
use crate::report::table;
use pipeline::jobs::{JobQueue, JobState};
use pipeline::schedules::ScheduleStore;
use std::path::Path;

#[derive(clap::Subcommand, Debug)]
pub enum JobsCmd {
    /// Queue a job for `capstan worker` (kinds: rag-ingest, data-repro).
    Submit {
        kind: String,
        /// The job's input as JSON, e.g. '{"collection": "book", "path": "docs"}'.
        #[arg(long, default_value = "{}")]
        payload: String,
        /// While a job with this key is pending, submitting again returns that job.
        #[arg(long)]
        dedupe: Option<String>,
        #[arg(long, default_value_t = 3)]
        max_attempts: u32,
        /// Not before this many seconds from now.
        #[arg(long, default_value_t = 0)]
        delay_secs: u64,
    },
    /// Run a job on a cron schedule (UTC; fired by `capstan worker`).
    Schedule {
        name: String,
        /// Five fields: minute hour day month weekday, e.g. "0 3 * * mon".
        #[arg(long)]
        cron: String,
        kind: String,
        #[arg(long, default_value = "{}")]
        payload: String,
        #[arg(long, default_value_t = 3)]
        max_attempts: u32,
    },
    /// Schedules with their next fire times.
    Schedules,
    /// Remove a schedule.
    Unschedule { name: String },
    /// Jobs, newest first.
    List {
        /// queued, running, succeeded, failed or cancelled.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One job as JSON: payload, attempts, lease, last error, result.
    Show { id: i64 },
    /// A job's log: when it was queued, each attempt's lease, what its work said, how it ended.
    Logs {
        id: i64,
        /// Keep printing new lines until the job finishes.
        #[arg(long, short)]
        follow: bool,
    },
    /// Cancel a job that has not finished.
    Cancel { id: i64 },
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}

/// An epoch-ms time as `YYYY-MM-DD HH:MM` UTC.
pub fn iso(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let (y, m, d) = pipeline::cron::civil(days);
    let in_day = ms.rem_euclid(86_400_000) / 60_000;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", in_day / 60, in_day % 60)
}

/// An epoch-ms time as `YYYY-MM-DD HH:MM:SS` UTC.
fn iso_seconds(ms: i64) -> String {
    format!("{}:{:02}", iso(ms), ms.rem_euclid(60_000) / 1000)
}

fn ago(now: i64, t: i64) -> String {
    let s = (now - t).max(0) / 1000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        _ => format!("{}h ago", s / 3600),
    }
}

pub async fn run(home: &Path, config: &Config, cmd: JobsCmd) -> Result<(), Error> {
    let p = Platform::open(home, config).await?;
    let now = base::now_millis();
    match cmd {
        JobsCmd::List { state, limit } => {
            let state = match state {
                Some(s) => Some(JobState::parse(&s).ok_or_else(|| {
                    err(format!(
                        "unknown state `{s}` (queued, running, succeeded, failed, cancelled)"
                    ))
                })?),
                None => None,
            };
            let jobs = p.db.list(state, limit).await.map_err(err)?;
            let rows: Vec<Vec<String>> = jobs
                .iter()
                .map(|j| {
                    vec![
                        j.id.to_string(),
                        j.kind.clone(),
                        j.state.as_str().to_owned(),
                        format!("{}/{}", j.attempts, j.max_attempts),
                        j.lease_owner.clone().unwrap_or_default(),
                        ago(now, j.updated_ms),
                        j.last_error
                            .clone()
                            .unwrap_or_default()
                            .chars()
                            .take(60)
                            .collect(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "id",
                        "kind",
                        "state",
                        "attempts",
                        "worker",
                        "updated",
                        "last error"
                    ],
                    &rows
                )
            );
        }
        JobsCmd::Submit {
            kind,
            payload,
            dedupe,
            max_attempts,
            delay_secs,
        } => {
            if !crate::worker::KINDS.contains(&kind.as_str()) {
                return Err(err(format!(
                    "unknown job kind `{kind}` ({})",
                    crate::worker::KINDS.join(", ")
                )));
            }
            let payload: serde_json::Value = serde_json::from_str(&payload)
                .map_err(|e| err(format!("--payload is not JSON: {e}")))?;
            let job = pipeline::NewJob {
                kind,
                payload,
                max_attempts,
                run_after_ms: now + (delay_secs * 1000) as i64,
                dedupe_key: dedupe,
            };
            let j = p.db.enqueue(job, now).await.map_err(err)?;
            println!("job {} ({}) {}", j.id, j.kind, j.state.as_str());
        }
        JobsCmd::Schedule {
            name,
            cron,
            kind,
            payload,
            max_attempts,
        } => {
            if !crate::worker::KINDS.contains(&kind.as_str()) {
                return Err(err(format!(
                    "unknown job kind `{kind}` ({})",
                    crate::worker::KINDS.join(", ")
                )));
            }
            let payload: serde_json::Value = serde_json::from_str(&payload)
                .map_err(|e| err(format!("--payload is not JSON: {e}")))?;
            let mut job = pipeline::NewJob::new(&kind, payload);
            job.max_attempts = max_attempts;
            let s = pipeline::schedules::Schedule::new(&name, &cron, &job, now).map_err(err)?;
            p.db.put_schedule(&s).await.map_err(err)?;
            println!(
                "schedule {name}: {kind} at `{cron}`, next {}",
                iso(s.next_fire_ms)
            );
        }
        JobsCmd::Schedules => {
            let rows: Vec<Vec<String>> =
                p.db.list_schedules()
                    .await
                    .map_err(err)?
                    .into_iter()
                    .map(|s| vec![s.name, s.cron, s.kind, iso(s.next_fire_ms)])
                    .collect();
            print!(
                "{}",
                table(&["schedule", "cron", "kind", "next (UTC)"], &rows)
            );
        }
        JobsCmd::Unschedule { name } => {
            if !p.db.delete_schedule(&name).await.map_err(err)? {
                return Err(err(format!("no schedule named `{name}`")));
            }
            println!("removed schedule {name}");
        }
        JobsCmd::Show { id } => {
            let j =
                p.db.get(id)
                    .await
                    .map_err(err)?
                    .ok_or_else(|| err(format!("no job {id}")))?;
            println!("{}", serde_json::to_string_pretty(&j).map_err(err)?);
        }
        JobsCmd::Logs { id, follow } => {
            let mut after = 0;
            loop {
                let job =
                    p.db.get(id)
                        .await
                        .map_err(err)?
                        .ok_or_else(|| err(format!("no job {id}")))?;
                let lines = p.db.logs(id, after, 1000).await.map_err(err)?;
                for l in &lines {
                    println!("{}  #{}  {}", iso_seconds(l.time_ms), l.attempt, l.line);
                }
                after = lines.last().map_or(after, |l| l.seq);
                if lines.len() == 1000 {
                    continue;
                }
                if !follow || job.state.is_final() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
        JobsCmd::Cancel { id } => {
            if p.db.cancel(id, now).await.map_err(err)? {
                println!("cancelled job {id}");
            } else {
                return Err(err(format!(
                    "job {id} does not exist or has already finished"
                )));
            }
        }
    }
    Ok(())
}
