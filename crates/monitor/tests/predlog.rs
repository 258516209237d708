//! The prediction log end to end: events in, Parquet segments out (read back with the typed
//! frame reader), per-version segments, and drops counted when the queue is full.

use data::frame::{ColumnData, read_frame};
use monitor::predlog::{DirSink, LogConfig, Output, PredictionEvent, PredictionLog};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn event(id: &str, version: i64, rows: Vec<Vec<f64>>, outputs: Vec<Output>) -> PredictionEvent {
    PredictionEvent {
        ts_ms: 1_700_000_000_000,
        request_id: id.into(),
        model: "churn model".into(),
        version,
        variant: "default".into(),
        latency_us: 120,
        input_names: Arc::new(vec!["age".into(), "income".into()]),
        rows,
        outputs,
    }
}

fn segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn events_become_parquet_segments_per_version() {
    let dir = tempfile::tempdir().unwrap();
    let log = PredictionLog::start(
        Arc::new(DirSink(dir.path().to_path_buf())),
        LogConfig {
            queue: 1024,
            rotate: Duration::from_secs(3600),
            max_rows: 1_000_000,
        },
    );
    log.log(event(
        "r1",
        1,
        vec![vec![31.0, 52_000.0], vec![45.0, 61_000.5]],
        vec![
            Output::Class {
                label: "stay".into(),
                score: Some(0.8),
            },
            Output::Class {
                label: "churn".into(),
                score: Some(0.6),
            },
        ],
    ));
    log.log(event(
        "r2",
        2,
        vec![vec![22.0, 18_000.0]],
        vec![Output::Value(3.5)],
    ));
    log.flush().await;
    let files = segments(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    let v1 = files
        .iter()
        .find(|p| p.to_string_lossy().contains("version=1"))
        .unwrap();
    assert!(v1.to_string_lossy().contains("model=churn_model"), "{v1:?}");
    let f = read_frame(v1).unwrap();
    assert_eq!(f.rows(), 2);
    assert_eq!(
        f.column("age").unwrap().data,
        ColumnData::Numeric(vec![31.0, 45.0])
    );
    assert_eq!(
        f.column("income").unwrap().data,
        ColumnData::Numeric(vec![52_000.0, 61_000.5])
    );
    assert_eq!(
        f.column("_row").unwrap().data,
        ColumnData::Numeric(vec![0.0, 1.0])
    );
    match &f.column("_label").unwrap().data {
        ColumnData::Categorical { codes, levels } => {
            let labels: Vec<&str> = codes.iter().map(|&c| levels[c as usize].as_str()).collect();
            assert_eq!(labels, ["stay", "churn"]);
        }
        other => panic!("{other:?}"),
    }
    let v2 = read_frame(
        files
            .iter()
            .find(|p| p.to_string_lossy().contains("version=2"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        v2.column("_prediction").unwrap().data,
        ColumnData::Numeric(vec![3.5])
    );
    assert_eq!(log.stats.rows_written.load(Ordering::Relaxed), 3);
    assert_eq!(log.stats.segments_written.load(Ordering::Relaxed), 2);
    assert_eq!(log.stats.dropped.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let log = PredictionLog::start(
        Arc::new(DirSink(dir.path().to_path_buf())),
        LogConfig {
            queue: 8,
            rotate: Duration::from_secs(3600),
            max_rows: 1_000_000,
        },
    );
    // The writer cannot run while this loop holds the only thread: the queue fills at 8.
    for i in 0..100 {
        log.log(event(
            &format!("r{i}"),
            1,
            vec![vec![1.0, 2.0]],
            vec![Output::Value(0.0)],
        ));
    }
    assert_eq!(log.stats.enqueued.load(Ordering::Relaxed), 8);
    assert_eq!(log.stats.dropped.load(Ordering::Relaxed), 92);
    assert_eq!(log.queue_depth(), 8);
    log.flush().await;
    assert_eq!(log.stats.rows_written.load(Ordering::Relaxed), 8);
    assert_eq!(log.queue_depth(), 0);
}

#[tokio::test]
async fn segments_rotate_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = PredictionLog::start(
        Arc::new(DirSink(dir.path().to_path_buf())),
        LogConfig {
            queue: 64,
            rotate: Duration::from_millis(50),
            max_rows: 1_000_000,
        },
    );
    log.log(event(
        "a",
        1,
        vec![vec![1.0, 2.0]],
        vec![Output::Value(0.0)],
    ));
    for _ in 0..100 {
        if !segments(dir.path()).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(segments(dir.path()).len(), 1, "written without a flush");
}
