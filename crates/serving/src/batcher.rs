//! Adaptive micro-batching: requests queue per model; a worker takes every request that queued
//! while it was busy (up to `max_batch` rows), optionally waits at most `max_wait` for more, predicts them together and answers each request. A request
//! whose expected wait (queued rows × the measured cost of a row) exceeds the latency budget is
//! refused at once instead of queued.

use crate::ServeError;
use learn::{ModelPackage, Prediction};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

pub(crate) struct Job {
    rows: Vec<Vec<f64>>,
    reply: oneshot::Sender<Result<Vec<Prediction>, ServeError>>,
}

pub(crate) struct Batcher {
    queue: mpsc::Sender<Job>,
    queued_rows: Arc<AtomicUsize>,
    /// Exponentially weighted cost of one row, in nanoseconds.
    ns_per_row: Arc<AtomicU64>,
    budget: Duration,
    max_wait: Duration,
    /// Rows per predicted batch.
    pub(crate) batch_sizes: Arc<crate::metrics::Histogram>,
}

impl Batcher {
    pub(crate) fn start(
        package: Arc<ModelPackage>,
        max_batch: usize,
        max_wait: Duration,
        budget: Duration,
    ) -> Batcher {
        let (tx, mut rx) = mpsc::channel::<Job>(4096);
        let queued_rows = Arc::new(AtomicUsize::new(0));
        let ns_per_row = Arc::new(AtomicU64::new(1_000));
        let batch_sizes = Arc::new(crate::metrics::Histogram::new(
            crate::metrics::BATCH_BOUNDS,
            1.0,
        ));
        let (q, cost, sizes) = (queued_rows.clone(), ns_per_row.clone(), batch_sizes.clone());
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                let mut rows: usize = jobs[0].rows.len();
                // Take what queued while the last batch ran (no added latency); then, only if
                // configured, wait up to `max_wait` for more.
                while rows < max_batch {
                    match rx.try_recv() {
                        Ok(j) => {
                            rows += j.rows.len();
                            jobs.push(j);
                        }
                        Err(_) => break,
                    }
                }
                let deadline = tokio::time::Instant::now() + max_wait;
                while rows < max_batch && !max_wait.is_zero() {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(j)) => {
                            rows += j.rows.len();
                            jobs.push(j);
                        }
                        _ => break,
                    }
                }
                sizes.observe(rows as f64);
                let start = Instant::now();
                let all: Vec<Vec<f64>> = jobs.iter().flat_map(|j| j.rows.iter().cloned()).collect();
                let result = package.predict(&all);
                let spent = start.elapsed().as_nanos() as u64 / rows.max(1) as u64;
                let old = cost.load(Ordering::Relaxed);
                cost.store((old * 7 + spent.max(1)) / 8, Ordering::Relaxed);
                q.fetch_sub(rows, Ordering::Relaxed);
                match result {
                    Ok(preds) => {
                        let mut it = preds.into_iter();
                        for j in jobs {
                            let n = j.rows.len();
                            let _ = j.reply.send(Ok(it.by_ref().take(n).collect()));
                        }
                    }
                    // Rows are validated before they queue, so this is one request's bad row:
                    // answer each request on its own.
                    Err(_) => {
                        for j in jobs {
                            let _ = j
                                .reply
                                .send(package.predict(&j.rows).map_err(ServeError::from));
                        }
                    }
                }
            }
        });
        Batcher {
            queue: tx,
            queued_rows,
            ns_per_row,
            budget,
            max_wait,
            batch_sizes,
        }
    }

    pub(crate) fn queue_depth(&self) -> usize {
        self.queued_rows.load(Ordering::Relaxed)
    }

    pub(crate) async fn predict(&self, rows: Vec<Vec<f64>>) -> Result<Vec<Prediction>, ServeError> {
        let ahead = self.queued_rows.load(Ordering::Relaxed) + rows.len();
        let expected = Duration::from_nanos(
            self.ns_per_row
                .load(Ordering::Relaxed)
                .saturating_mul(ahead as u64),
        ) + self.max_wait;
        if expected > self.budget {
            return Err(ServeError::Overloaded {
                expected_ms: expected.as_millis() as u64,
                budget_ms: self.budget.as_millis() as u64,
            });
        }
        self.queued_rows.fetch_add(rows.len(), Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let n = rows.len();
        if self.queue.send(Job { rows, reply }).await.is_err() {
            self.queued_rows.fetch_sub(n, Ordering::Relaxed);
            return Err(ServeError::Internal("the batcher stopped".into()));
        }
        answer
            .await
            .map_err(|_| ServeError::Internal("the batcher dropped a request".into()))?
    }
}
