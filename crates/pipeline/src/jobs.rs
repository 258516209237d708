//! Jobs: a kind (what to run), a JSON payload, and a lifecycle
//! `queued → running → succeeded | failed | cancelled`. A worker *leases* a job for a while and
//! extends the lease with heartbeats; a job whose lease ran out (its worker died) is leased again
//! by the next worker that asks. A failure is retried after an exponential backoff with jitter
//! until `max_attempts`; a dedupe key makes enqueueing idempotent while an equal job is pending
//! (one incident → one job).

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    pub kind: String,
    pub payload: Value,
    pub max_attempts: u32,
    /// Not before this time (epoch ms); 0 = now.
    pub run_after_ms: i64,
    /// While a job with this key is queued or running, enqueueing another returns that one.
    pub dedupe_key: Option<String>,
}

impl NewJob {
    pub fn new(kind: &str, payload: Value) -> NewJob {
        NewJob {
            kind: kind.to_owned(),
            payload,
            max_attempts: 3,
            run_after_ms: 0,
            dedupe_key: None,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.kind.is_empty()
            || self.kind.len() > 64
            || !self
                .kind
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(format!(
                "job kind `{}` must be 1 to 64 letters, digits, `-`, `_` or `.`",
                self.kind
            ));
        }
        if !(1..=100).contains(&self.max_attempts) {
            return Err(format!(
                "max_attempts must be between 1 and 100, not {}",
                self.max_attempts
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub payload: Value,
    pub state: JobState,
    /// Leases taken so far (the current one included).
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_after_ms: i64,
    pub lease_owner: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub dedupe_key: Option<String>,
    pub last_error: Option<String>,
    pub result: Option<Value>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// One line of a job's log: what its worker (or the queue) said, under which attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Increases with every line written (across jobs); page with `after`.
    pub seq: i64,
    /// The attempt the job was on when the line was written (0 before its first lease).
    pub attempt: u32,
    pub time_ms: i64,
    pub line: String,
}

/// Longest log line kept (bytes); longer ones are cut at a character boundary and marked.
pub const MAX_LOG_LINE: usize = 4096;

/// `line` cut to [`MAX_LOG_LINE`] bytes.
pub fn clip_log_line(line: &str) -> String {
    if line.len() <= MAX_LOG_LINE {
        return line.to_owned();
    }
    let mut end = MAX_LOG_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes cut]", &line[..end], line.len() - end)
}

/// Delay before retry number `attempt` (1-based): 1 s, 2 s, 4 s … capped at 5 minutes, plus up to
/// 25 % jitter derived from the job id (so retries of many jobs spread out, reproducibly).
pub fn backoff_ms(id: i64, attempt: u32) -> i64 {
    let base = 1000i64
        .saturating_mul(1i64 << attempt.saturating_sub(1).min(20))
        .min(300_000);
    let mut z = (id as u64) ^ ((attempt as u64) << 32);
    z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    z ^= z >> 33;
    base + (z % (base as u64 / 4 + 1)) as i64
}

#[async_trait::async_trait]
pub trait JobQueue: Send + Sync {
    async fn enqueue(&self, job: NewJob, now_ms: i64) -> Result<Job, String>;
    /// The oldest runnable job of one of `kinds` (all kinds when empty), leased to `worker`
    /// until `now + lease_ms`: a queued job whose time has come, or a running one whose lease
    /// expired. Concurrent callers never get the same job.
    async fn lease(
        &self,
        worker: &str,
        kinds: &[String],
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Job>, String>;
    /// Extends the lease; false when `worker` no longer holds it.
    /// Leases job `id` itself (queued and due, or running with an expired lease): how a command
    /// that queues a job for the record runs it in its own process.
    async fn lease_id(
        &self,
        id: i64,
        worker: &str,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Job>, String>;
    async fn heartbeat(
        &self,
        id: i64,
        worker: &str,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<bool, String>;
    /// Records success; false (and nothing changes) when `worker` no longer holds the lease.
    async fn complete(
        &self,
        id: i64,
        worker: &str,
        result: Value,
        now_ms: i64,
    ) -> Result<bool, String>;
    /// Records a failure: queued again after [`backoff_ms`] while attempts remain, else failed.
    /// `None` when `worker` no longer holds the lease.
    async fn fail(
        &self,
        id: i64,
        worker: &str,
        error: &str,
        now_ms: i64,
    ) -> Result<Option<Job>, String>;
    /// Cancels a job that has not finished; false when it had.
    async fn cancel(&self, id: i64, now_ms: i64) -> Result<bool, String>;
    async fn get(&self, id: i64) -> Result<Option<Job>, String>;
    /// Newest first.
    async fn list(&self, state: Option<JobState>, limit: usize) -> Result<Vec<Job>, String>;
    /// Appends lines to job `id`'s log under its current attempt (each clipped to
    /// [`MAX_LOG_LINE`]); nothing when there is no such job.
    async fn append_log(&self, id: i64, lines: &[String], now_ms: i64) -> Result<(), String>;
    /// Job `id`'s log lines with `seq > after`, oldest first, at most `limit`.
    async fn logs(&self, id: i64, after: i64, limit: usize) -> Result<Vec<LogLine>, String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        for (attempt, base) in [
            (1, 1000),
            (2, 2000),
            (3, 4000),
            (10, 300_000),
            (60, 300_000),
        ] {
            let d = backoff_ms(42, attempt);
            assert!(d >= base && d <= base + base / 4, "attempt {attempt}: {d}");
        }
        assert_ne!(backoff_ms(1, 3), backoff_ms(2, 3), "jitter spreads jobs");
        assert_eq!(backoff_ms(7, 3), backoff_ms(7, 3), "and is reproducible");
    }

    #[test]
    fn kinds_and_attempts_are_validated() {
        assert!(NewJob::new("retrain", Value::Null).validate().is_ok());
        assert!(NewJob::new("", Value::Null).validate().is_err());
        assert!(NewJob::new("a b", Value::Null).validate().is_err());
        let mut j = NewJob::new("x", Value::Null);
        j.max_attempts = 0;
        assert!(j.validate().is_err());
    }
}
