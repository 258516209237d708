//! Schedules: a cron expression that enqueues a job. Every worker checks for due schedules
//! before it leases; a tick is claimed with a compare-and-set on the schedule's next fire time,
//! so however many workers run, each tick enqueues one job (its dedupe key names the tick too).
//! Ticks missed while nothing ran fire once, not once per missed tick.

use crate::cron::Cron;
use crate::jobs::{JobQueue, NewJob};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub name: String,
    pub cron: String,
    pub kind: String,
    pub payload: Value,
    pub max_attempts: u32,
    /// Epoch ms of the next tick.
    pub next_fire_ms: i64,
    pub created_ms: i64,
}

impl Schedule {
    /// A schedule whose first tick is the first match after `now_ms`.
    pub fn new(name: &str, cron: &str, job: &NewJob, now_ms: i64) -> Result<Schedule, String> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "schedule name `{name}` must be 1 to 64 letters, digits, `-` or `_`"
            ));
        }
        job.validate()?;
        let c = Cron::parse(cron)?;
        let next = c
            .next_after(now_ms)
            .ok_or_else(|| format!("cron `{cron}` never fires"))?;
        Ok(Schedule {
            name: name.to_owned(),
            cron: cron.to_owned(),
            kind: job.kind.clone(),
            payload: job.payload.clone(),
            max_attempts: job.max_attempts,
            next_fire_ms: next,
            created_ms: now_ms,
        })
    }
}

#[async_trait::async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Creates or replaces a schedule.
    async fn put_schedule(&self, s: &Schedule) -> Result<(), String>;
    async fn list_schedules(&self) -> Result<Vec<Schedule>, String>;
    /// False when there was none.
    async fn delete_schedule(&self, name: &str) -> Result<bool, String>;
    /// Moves `name`'s next fire time from `expected` to `next`; true only for the caller that
    /// moved it (the one that fires this tick).
    async fn advance_schedule(&self, name: &str, expected: i64, next: i64) -> Result<bool, String>;
}

/// Enqueues one job for every schedule that is due and whose tick this caller claims; returns
/// the jobs' ids.
pub async fn fire_due<S: ScheduleStore + JobQueue + ?Sized>(
    store: &S,
    now_ms: i64,
) -> Result<Vec<i64>, String> {
    let mut fired = Vec::new();
    for s in store.list_schedules().await? {
        if s.next_fire_ms > now_ms {
            continue;
        }
        let cron = Cron::parse(&s.cron)?;
        // Missed ticks collapse into this one.
        let next = cron.next_after(now_ms).unwrap_or(i64::MAX);
        if !store
            .advance_schedule(&s.name, s.next_fire_ms, next)
            .await?
        {
            continue;
        }
        let job = NewJob {
            kind: s.kind.clone(),
            payload: s.payload.clone(),
            max_attempts: s.max_attempts,
            run_after_ms: 0,
            dedupe_key: Some(format!("schedule:{}:{}", s.name, s.next_fire_ms)),
        };
        fired.push(store.enqueue(job, now_ms).await?.id);
    }
    Ok(fired)
}
