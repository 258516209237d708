//! Prediction logging: every served prediction becomes a row in a Parquet segment, written off the
//! request path. Requests push events into a bounded queue under a short lock and never wait or
//! wake a task; when the queue is full the event is dropped and counted (never blocking, never
//! crashing). A writer task takes the queue on a tick, groups rows per (model, version), and
//! rotates a segment when it is older than `rotate` or holds `max_rows` rows; a [`SegmentSink`]
//! stores it (the server's sink puts it under the artifact store).
//!
//! Segment columns: `_ts_ms`, `_request_id`, `_row` (row within the request), `_model`,
//! `_version`, `_variant`, `_latency_us`, `_prediction` (numbers and class scores),
//! `_label` (classes), then one column per model input, named as the input.

use parquet::basic::{Compression, Repetition, Type as Physical};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// One model output for one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Value(f64),
    /// A class and the model's score for it.
    Class {
        label: String,
        score: Option<f64>,
    },
}

/// One served request.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionEvent {
    pub ts_ms: i64,
    pub request_id: String,
    pub model: String,
    pub version: i64,
    pub variant: String,
    pub latency_us: i64,
    pub input_names: Arc<Vec<String>>,
    pub rows: Vec<Vec<f64>>,
    pub outputs: Vec<Output>,
}

/// Where a finished segment goes.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentMeta {
    pub model: String,
    pub version: i64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub rows: usize,
}

impl SegmentMeta {
    /// `predictions/model=<m>/`: where every segment of `model` lies.
    pub fn model_prefix(model: &str) -> String {
        let model: String = model
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("predictions/model={model}/")
    }

    /// `predictions/model=<m>/version=<v>/<start>-<end>-<rows>.parquet`, the layout both sinks use.
    pub fn key(&self) -> String {
        format!(
            "{}version={}/{}-{}-{}.parquet",
            Self::model_prefix(&self.model),
            self.version,
            self.start_ms,
            self.end_ms,
            self.rows
        )
    }
}

#[async_trait::async_trait]
pub trait SegmentSink: Send + Sync {
    async fn put_segment(&self, meta: &SegmentMeta, bytes: Vec<u8>) -> Result<(), String>;
}

/// Segments as files under a directory (written to a temporary name, then renamed).
pub struct DirSink(pub std::path::PathBuf);

#[async_trait::async_trait]
impl SegmentSink for DirSink {
    async fn put_segment(&self, meta: &SegmentMeta, bytes: Vec<u8>) -> Result<(), String> {
        let path = self.0.join(meta.key());
        let dir = path
            .parent()
            .ok_or("segment path has no parent")?
            .to_owned();
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let tmp = path.with_extension("parquet.tmp");
            std::fs::write(&tmp, &bytes).map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, &path).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

#[derive(Debug, Clone, Copy)]
pub struct LogConfig {
    pub queue: usize,
    pub rotate: Duration,
    pub max_rows: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            queue: 65_536,
            rotate: Duration::from_secs(60),
            max_rows: 100_000,
        }
    }
}

/// Counters of the logger, for `/metrics`.
#[derive(Debug, Default)]
pub struct LogStats {
    pub enqueued: AtomicU64,
    pub dropped: AtomicU64,
    pub rows_written: AtomicU64,
    pub segments_written: AtomicU64,
    pub write_errors: AtomicU64,
}

/// The handle requests use; cheap to clone.
#[derive(Clone)]
pub struct PredictionLog {
    /// The bounded queue: requests push under a short lock and never wait or wake anyone; the
    /// writer takes the whole queue on its tick.
    queue: Arc<std::sync::Mutex<Vec<PredictionEvent>>>,
    flush_tx: mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
    pub stats: Arc<LogStats>,
    capacity: usize,
}

impl PredictionLog {
    /// Starts the writer task on the current tokio runtime.
    pub fn start(sink: Arc<dyn SegmentSink>, config: LogConfig) -> PredictionLog {
        let (flush_tx, flush_rx) = mpsc::channel(16);
        let stats = Arc::new(LogStats::default());
        let queue = Arc::new(std::sync::Mutex::new(Vec::new()));
        tokio::spawn(writer(queue.clone(), flush_rx, sink, config, stats.clone()));
        PredictionLog {
            queue,
            flush_tx,
            stats,
            capacity: config.queue.max(1),
        }
    }

    /// Queues an event without waiting; a full queue drops it and counts the drop.
    pub fn log(&self, event: PredictionEvent) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.capacity {
            drop(q);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            q.push(event);
            drop(q);
            self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Writes every queued and buffered row now (on shutdown, or before reading the log).
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.flush_tx.send(tx).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Rows of one (model, version) since the last rotation.
struct Buffer {
    opened: Instant,
    input_names: Arc<Vec<String>>,
    events: Vec<PredictionEvent>,
    rows: usize,
}

async fn writer(
    queue: Arc<std::sync::Mutex<Vec<PredictionEvent>>>,
    mut flush_rx: mpsc::Receiver<tokio::sync::oneshot::Sender<()>>,
    sink: Arc<dyn SegmentSink>,
    config: LogConfig,
    stats: Arc<LogStats>,
) {
    let mut buffers: HashMap<(String, i64), Buffer> = HashMap::new();
    let tick = (config.rotate / 4).clamp(Duration::from_millis(10), Duration::from_millis(200));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let flush = tokio::select! {
            _ = interval.tick() => None,
            f = flush_rx.recv() => match f {
                Some(done) => Some(done),
                None => {
                    // Every handle is gone: write what is left and stop.
                    take_queue(&queue, &mut buffers, &stats);
                    write_due(&mut buffers, &sink, &stats, None).await;
                    return;
                }
            },
        };
        take_queue(&queue, &mut buffers, &stats);
        let all = flush.is_some();
        write_due(&mut buffers, &sink, &stats, (!all).then_some(&config)).await;
        if let Some(done) = flush {
            let _ = done.send(());
        }
    }
}

/// Moves every queued event into its (model, version) buffer.
fn take_queue(
    queue: &std::sync::Mutex<Vec<PredictionEvent>>,
    buffers: &mut HashMap<(String, i64), Buffer>,
    stats: &LogStats,
) {
    let events = std::mem::take(&mut *queue.lock().unwrap_or_else(|e| e.into_inner()));
    for e in events {
        let key = (e.model.clone(), e.version);
        let b = buffers.entry(key).or_insert_with(|| Buffer {
            opened: Instant::now(),
            input_names: e.input_names.clone(),
            events: Vec::new(),
            rows: 0,
        });
        if b.input_names != e.input_names {
            // Same version, other inputs: impossible for a registered version; skip.
            stats.write_errors.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        b.rows += e.rows.len();
        b.events.push(e);
    }
}

/// Writes the buffers that are due (all of them when `config` is `None`).
async fn write_due(
    buffers: &mut HashMap<(String, i64), Buffer>,
    sink: &Arc<dyn SegmentSink>,
    stats: &LogStats,
    config: Option<&LogConfig>,
) {
    let due: Vec<(String, i64)> = buffers
        .iter()
        .filter(|(_, b)| {
            !b.events.is_empty()
                && config.is_none_or(|c| b.opened.elapsed() >= c.rotate || b.rows >= c.max_rows)
        })
        .map(|(k, _)| k.clone())
        .collect();
    for key in due {
        let Some(b) = buffers.remove(&key) else {
            continue;
        };
        let meta = SegmentMeta {
            model: key.0.clone(),
            version: key.1,
            start_ms: b.events.iter().map(|e| e.ts_ms).min().unwrap_or(0),
            end_ms: b.events.iter().map(|e| e.ts_ms).max().unwrap_or(0),
            rows: b.rows,
        };
        let rows = b.rows;
        let encoded = tokio::task::spawn_blocking(move || encode(&b.input_names, &b.events)).await;
        let result = match encoded {
            Ok(Ok(bytes)) => sink.put_segment(&meta, bytes).await,
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => {
                stats.rows_written.fetch_add(rows as u64, Ordering::Relaxed);
                stats.segments_written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                stats.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, model = %meta.model, "could not write a prediction segment");
            }
        }
    }
}

fn field(name: &str, t: Physical, rep: Repetition, utf8: bool) -> Result<Arc<Type>, String> {
    let mut b = Type::primitive_type_builder(name, t).with_repetition(rep);
    if utf8 {
        b = b.with_converted_type(parquet::basic::ConvertedType::UTF8);
    }
    b.build().map(Arc::new).map_err(|e| e.to_string())
}

/// One Parquet file (one row group) holding every row of `events`.
pub fn encode(input_names: &[String], events: &[PredictionEvent]) -> Result<Vec<u8>, String> {
    const REQUIRED: Repetition = Repetition::REQUIRED;
    const OPTIONAL: Repetition = Repetition::OPTIONAL;
    let err = |e: parquet::errors::ParquetError| e.to_string();
    let mut fields = vec![
        field("_ts_ms", Physical::INT64, REQUIRED, false)?,
        field("_request_id", Physical::BYTE_ARRAY, REQUIRED, true)?,
        field("_row", Physical::INT32, REQUIRED, false)?,
        field("_model", Physical::BYTE_ARRAY, REQUIRED, true)?,
        field("_version", Physical::INT64, REQUIRED, false)?,
        field("_variant", Physical::BYTE_ARRAY, REQUIRED, true)?,
        field("_latency_us", Physical::INT64, REQUIRED, false)?,
        field("_prediction", Physical::DOUBLE, OPTIONAL, false)?,
        field("_label", Physical::BYTE_ARRAY, OPTIONAL, true)?,
    ];
    for n in input_names {
        fields.push(field(n, Physical::DOUBLE, REQUIRED, false)?);
    }
    let schema = Arc::new(
        Type::group_type_builder("prediction")
            .with_fields(fields)
            .build()
            .map_err(err)?,
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let mut w = SerializedFileWriter::new(Vec::new(), schema, props).map_err(err)?;
    let rows: Vec<(&PredictionEvent, usize)> = events
        .iter()
        .flat_map(|e| (0..e.rows.len()).map(move |i| (e, i)))
        .collect();
    let text = |f: &dyn Fn(&PredictionEvent, usize) -> String| -> Vec<ByteArray> {
        rows.iter()
            .map(|(e, i)| ByteArray::from(f(e, *i).as_str()))
            .collect()
    };
    let mut rg = w.next_row_group().map_err(err)?;
    let mut col = 0usize;
    while let Some(mut c) = rg.next_column().map_err(err)? {
        match col {
            0 => {
                let v: Vec<i64> = rows.iter().map(|(e, _)| e.ts_ms).collect();
                c.typed::<Int64Type>().write_batch(&v, None, None)
            }
            1 => c.typed::<ByteArrayType>().write_batch(
                &text(&|e, _| e.request_id.clone()),
                None,
                None,
            ),
            2 => {
                let v: Vec<i32> = rows.iter().map(|(_, i)| *i as i32).collect();
                c.typed::<Int32Type>().write_batch(&v, None, None)
            }
            3 => c
                .typed::<ByteArrayType>()
                .write_batch(&text(&|e, _| e.model.clone()), None, None),
            4 => {
                let v: Vec<i64> = rows.iter().map(|(e, _)| e.version).collect();
                c.typed::<Int64Type>().write_batch(&v, None, None)
            }
            5 => {
                c.typed::<ByteArrayType>()
                    .write_batch(&text(&|e, _| e.variant.clone()), None, None)
            }
            6 => {
                let v: Vec<i64> = rows.iter().map(|(e, _)| e.latency_us).collect();
                c.typed::<Int64Type>().write_batch(&v, None, None)
            }
            7 => {
                let (mut vals, mut defs) = (Vec::new(), Vec::new());
                for (e, i) in &rows {
                    match e.outputs.get(*i) {
                        Some(Output::Value(v)) | Some(Output::Class { score: Some(v), .. }) => {
                            vals.push(*v);
                            defs.push(1);
                        }
                        _ => defs.push(0),
                    }
                }
                c.typed::<DoubleType>()
                    .write_batch(&vals, Some(&defs), None)
            }
            8 => {
                let (mut vals, mut defs) = (Vec::new(), Vec::new());
                for (e, i) in &rows {
                    match e.outputs.get(*i) {
                        Some(Output::Class { label, .. }) => {
                            vals.push(ByteArray::from(label.as_str()));
                            defs.push(1);
                        }
                        _ => defs.push(0),
                    }
                }
                c.typed::<ByteArrayType>()
                    .write_batch(&vals, Some(&defs), None)
            }
            k => {
                let j = k - 9;
                let v: Vec<f64> = rows
                    .iter()
                    .map(|(e, i)| e.rows[*i].get(j).copied().unwrap_or(f64::NAN))
                    .collect();
                c.typed::<DoubleType>().write_batch(&v, None, None)
            }
        }
        .map_err(err)?;
        c.close().map_err(err)?;
        col += 1;
    }
    rg.close().map_err(err)?;
    w.into_inner().map_err(err)
}
