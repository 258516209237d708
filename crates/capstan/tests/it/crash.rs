//! kill -9 in the middle of a log-batch storm loses no acknowledged write and leaves no
//! half-written artifact visible.

use crate::binary::start;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

#[tokio::test]
async fn kill_9_during_log_batch_storm_loses_nothing_acknowledged() {
    let home = tempfile::tempdir().expect("tempdir");
    let mut s = start(home.path(), &[]);
    let http = reqwest::Client::new();
    let api = |p: &str| format!("{}/api/2.0/mlflow/{p}", s.url);
    let mut runs = Vec::new();
    for _ in 0..4 {
        let v: serde_json::Value = http
            .post(api("runs/create"))
            .json(&json!({"experiment_id": "0"}))
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("json");
        runs.push(v["run"]["info"]["run_id"].as_str().expect("id").to_owned());
    }
    // Acknowledged steps per run.
    let acked: Arc<Mutex<Vec<Vec<i64>>>> = Arc::new(Mutex::new(vec![Vec::new(); runs.len()]));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let (http, url, run, acked, stop) = (
            http.clone(),
            api("runs/log-batch"),
            run.clone(),
            acked.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut batch = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let metrics: Vec<_> = (0..100).map(|j| json!({"key": "m", "value": j, "timestamp": 1, "step": batch * 100 + j})).collect();
                match http.post(&url).json(&json!({"run_id": run, "metrics": metrics})).send().await {
                    Ok(r) if r.status().is_success() => acked.lock().await[i].push(batch),
                    _ => break,
                }
                batch += 1;
            }
        }));
    }
    // A large upload in flight at the moment of the kill.
    let upload = {
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/0/x/artifacts/partial.bin",
            s.url
        );
        let body = reqwest::Body::wrap_stream(futures_stream());
        tokio::spawn(async move {
            reqwest::Client::new()
                .put(url)
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // SIGKILL: no chance to flush or clean up.
    s.child.kill().expect("kill -9");
    s.child.wait().expect("wait");
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let upload_status = upload.await.expect("join");
    let acked = acked.lock().await.clone();
    assert!(
        acked.iter().map(Vec::len).sum::<usize>() > 4,
        "the storm should have logged something"
    );

    let s2 = start(home.path(), &[]);
    for (run, batches) in runs.iter().zip(&acked) {
        let mut steps = std::collections::HashSet::new();
        let mut token = String::new();
        loop {
            let mut q = vec![("run_id", run.as_str()), ("metric_key", "m")];
            if !token.is_empty() {
                q.push(("page_token", token.as_str()));
            }
            let v: serde_json::Value = http
                .get(format!("{}/api/2.0/mlflow/metrics/get-history", s2.url))
                .query(&q)
                .send()
                .await
                .expect("history")
                .json()
                .await
                .expect("json");
            steps.extend(
                v["metrics"]
                    .as_array()
                    .expect("metrics")
                    .iter()
                    .map(|m| m["step"].as_i64().unwrap_or(-1)),
            );
            match v["next_page_token"].as_str() {
                Some(t) => token = t.to_owned(),
                None => break,
            }
        }
        for b in batches {
            for j in 0..100 {
                assert!(
                    steps.contains(&(b * 100 + j)),
                    "acknowledged step {} of run {run} lost",
                    b * 100 + j
                );
            }
        }
        // Batches are atomic: every stored batch is whole.
        assert_eq!(steps.len() % 100, 0, "a half-written batch is visible");
    }
    let listing: serde_json::Value = http
        .get(format!("{}/api/2.0/mlflow-artifacts/artifacts", s2.url))
        .query(&[("path", "0/x/artifacts")])
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert!(
        matches!(upload_status, Err(_) | Ok(200..=299)),
        "{upload_status:?}"
    );
    if upload_status.is_err() {
        assert_eq!(
            listing,
            json!({}),
            "an unacknowledged upload must not be visible"
        );
    }
}

/// An endless-ish upload body (64 MiB, slowly), so the kill lands mid-transfer.
fn futures_stream() -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::unfold(0u32, |i| async move {
        if i >= 256 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        Some((Ok(vec![(i % 256) as u8; 256 * 1024]), i + 1))
    })
}
