//! Usage records leave the request path through a channel; one task writes them to the sink in
//! batches (every 50 ms or 500 records). `flush` waits until everything queued is written — the
//! server calls it on shutdown, so a restart loses no record. Without a sink the newest records
//! stay in memory.

use crate::usage::{UsageRecord, UsageSink};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

enum Msg {
    Record(Box<UsageRecord>),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct UsageLog {
    tx: mpsc::UnboundedSender<Msg>,
    sink: Option<Arc<dyn UsageSink>>,
    /// The newest records, when there is no sink.
    memory: Arc<Mutex<VecDeque<UsageRecord>>>,
}

const MEMORY: usize = 10_000;
const BATCH: usize = 500;

impl UsageLog {
    pub fn start(sink: Option<Arc<dyn UsageSink>>) -> UsageLog {
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
        let memory: Arc<Mutex<VecDeque<UsageRecord>>> = Arc::default();
        let (writer_sink, mem) = (sink.clone(), memory.clone());
        tokio::spawn(async move {
            let mut batch: Vec<UsageRecord> = Vec::new();
            let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
            loop {
                // Wait for the next message; with a batch pending, at most 50 ms.
                let (msg, tick) = if batch.is_empty() {
                    (rx.recv().await, false)
                } else {
                    match tokio::time::timeout(std::time::Duration::from_millis(50), rx.recv())
                        .await
                    {
                        Ok(m) => (m, false),
                        Err(_) => (None, true),
                    }
                };
                let closed = msg.is_none() && !tick;
                match msg {
                    Some(Msg::Record(r)) => batch.push(*r),
                    Some(Msg::Flush(done)) => waiting.push(done),
                    None => {}
                }
                if batch.len() >= BATCH || !waiting.is_empty() || closed || tick {
                    if !batch.is_empty() {
                        match &writer_sink {
                            Some(s) => {
                                // Retry a failing database a few times before giving up loudly.
                                let mut tries = 0;
                                while let Err(e) = s.write(&batch).await {
                                    tries += 1;
                                    if tries >= 5 {
                                        tracing::error!(
                                            "dropping {} usage records: {e}",
                                            batch.len()
                                        );
                                        break;
                                    }
                                    tokio::time::sleep(std::time::Duration::from_millis(
                                        100 * tries,
                                    ))
                                    .await;
                                }
                            }
                            None => {
                                let mut m = mem.lock().unwrap_or_else(|p| p.into_inner());
                                m.extend(batch.iter().cloned());
                                while m.len() > MEMORY {
                                    m.pop_front();
                                }
                            }
                        }
                        batch.clear();
                    }
                    for w in waiting.drain(..) {
                        let _ = w.send(());
                    }
                }
                if closed {
                    break;
                }
            }
        });
        UsageLog { tx, sink, memory }
    }

    pub fn push(&self, r: UsageRecord) {
        let _ = self.tx.send(Msg::Record(Box::new(r)));
    }

    /// Returns once every record pushed before the call is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    pub async fn list(&self, since_ms: i64, limit: usize) -> Result<Vec<UsageRecord>, String> {
        self.flush().await;
        match &self.sink {
            Some(s) => s.list(since_ms, limit).await,
            None => {
                let m = self.memory.lock().unwrap_or_else(|p| p.into_inner());
                Ok(m.iter()
                    .rev()
                    .filter(|r| r.ts_ms >= since_ms)
                    .take(limit)
                    .cloned()
                    .collect())
            }
        }
    }
}
