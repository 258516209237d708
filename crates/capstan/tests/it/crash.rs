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

/// kill -9 while several clients bulk-upsert vectors: after a restart every acknowledged point
/// is there with its payload, and the collection answers searches.
#[tokio::test]
async fn kill_9_during_bulk_vector_upserts_loses_no_acknowledged_point() {
    let home = tempfile::tempdir().expect("tempdir");
    let mut s = start(home.path(), &[]);
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{}/collections/crash", s.url))
        .json(&json!({"vectors": {"size": 16, "distance": "Cosine"}}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status().as_u16(), 200);
    let acked: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for client in 0..3u64 {
        let (http, url, acked, stop) = (
            http.clone(),
            format!("{}/collections/crash/points", s.url),
            acked.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut batch = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let ids: Vec<u64> = (0..200).map(|j| (client << 32) | (batch * 200 + j)).collect();
                let points: Vec<_> = ids
                    .iter()
                    .map(|&id| {
                        let v = vector_of(id);
                        json!({"id": id, "vector": v, "payload": {"client": client, "batch": batch}})
                    })
                    .collect();
                match http.put(&url).json(&json!({"points": points})).send().await {
                    Ok(r) if r.status().is_success() => acked.lock().await.extend(ids),
                    _ => break,
                }
                batch += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.child.kill().expect("kill -9");
    s.child.wait().expect("wait");
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().await.clone();
    assert!(
        acked.len() >= 600,
        "the clients should have stored something ({})",
        acked.len()
    );

    let s2 = start(home.path(), &[]);
    for chunk in acked.chunks(1000) {
        let v: serde_json::Value = http
            .post(format!("{}/collections/crash/points", s2.url))
            .json(&json!({"ids": chunk}))
            .send()
            .await
            .expect("retrieve")
            .json()
            .await
            .expect("json");
        let found = v["result"].as_array().expect("points");
        assert_eq!(found.len(), chunk.len(), "acknowledged points lost");
        assert!(found.iter().all(|p| p["payload"]["batch"].is_u64()));
    }
    let v: serde_json::Value = http
        .post(format!("{}/collections/crash/points/search", s2.url))
        .json(&json!({"vector": vector_of(acked[0]), "limit": 1}))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    assert_eq!(v["result"][0]["id"], acked[0], "{v}");
}

/// A reproducible pseudo-random vector per id.
fn vector_of(id: u64) -> Vec<f32> {
    (0..16u64)
        .map(|d| {
            let mut z = (id * 16 + d).wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// kill -9 a worker in the middle of a job: once its lease runs out another worker takes the job
/// over and finishes it; the dead worker's attempt is counted.
#[test]
fn a_job_whose_worker_dies_is_finished_by_another() {
    use crate::binary::{capstan, cli_ok};
    let home = tempfile::tempdir().expect("home");
    let proj = tempfile::tempdir().expect("project");
    let (h, p) = (home.path(), proj.path());
    std::fs::write(p.join("dvc.yaml"), "stages:\n  slow:\n    cmd: sleep 3 && echo done > out.txt\n    deps:\n    - in.txt\n    outs:\n    - out.txt\n").expect("yaml");
    std::fs::write(p.join("in.txt"), "x\n").expect("input");
    cli_ok(h, &["data", "-C", p.to_str().unwrap(), "init"]);
    let payload = format!(r#"{{"repo": "{}"}}"#, p.display());
    cli_ok(h, &["jobs", "submit", "data-repro", "--payload", &payload]);
    let mut a = capstan(h)
        .args([
            "worker",
            "--name",
            "doomed",
            "--lease-secs",
            "2",
            "--poll-ms",
            "100",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("worker a");
    // Wait until it holds the job, then kill it without warning.
    let start = std::time::Instant::now();
    loop {
        let v: serde_json::Value =
            serde_json::from_str(&cli_ok(h, &["jobs", "show", "1"])).expect("json");
        if v["state"] == "running" {
            assert_eq!(v["lease_owner"], "doomed");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "worker never leased the job"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    a.kill().expect("kill -9");
    a.wait().expect("reap");
    // The lease (2 s) has to run out before anyone may take the job over.
    let out = cli_ok(
        h,
        &["worker", "--once", "--name", "early", "--lease-secs", "2"],
    );
    assert!(!out.contains("started"), "{out}");
    std::thread::sleep(Duration::from_millis(2500));
    let out = cli_ok(
        h,
        &[
            "worker",
            "--once",
            "--name",
            "rescuer",
            "--lease-secs",
            "10",
        ],
    );
    assert!(
        out.contains("job 1 (data-repro) started, attempt 2/3"),
        "{out}"
    );
    assert!(out.contains("job 1 (data-repro) succeeded"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&cli_ok(h, &["jobs", "show", "1"])).expect("json");
    assert_eq!(
        (
            v["state"].as_str(),
            v["lease_owner"].as_str(),
            v["attempts"].as_u64()
        ),
        (Some("succeeded"), Some("rescuer"), Some(2)),
        "{v}"
    );
    assert_eq!(
        std::fs::read_to_string(p.join("out.txt"))
            .expect("output")
            .trim(),
        "done"
    );
}

/// kill -9 a `capstan features materialize` at several moments while it replaces a view of
/// 40,000 entities: after each, the online store holds one whole snapshot — every entity's
/// previous value, or every entity's new one — never a mix, never a partial view.
#[tokio::test]
async fn kill_9_during_materialisation_leaves_one_whole_snapshot() {
    use features::online::OnlineStore;
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let n = 40_000;
    let source = |v: f64| {
        let mut s = String::from("id,ts,v\n");
        for i in 0..n {
            s += &format!("{i},2024-01-01T00:00:00Z,{v}\n");
        }
        s
    };
    std::fs::write(h.join("s.csv"), source(1.0)).expect("source");
    std::fs::write(
        h.join("defs.yaml"),
        "entities:\n  - {name: e, join_keys: [id]}\nsources:\n  - {name: s, path: s.csv, timestamp: ts}\nfeature_views:\n  - {name: x, entities: [e], source: s, features: [{name: v, type: float}]}\n",
    )
    .expect("defs");
    let defs = h.join("defs.yaml");
    crate::binary::cli_ok(h, &["features", "apply", defs.to_str().expect("utf8")]);
    let end = "2025-01-01T00:00:00Z";
    crate::binary::cli_ok(h, &["features", "materialize", "--end", end]);
    std::fs::write(h.join("s.csv"), source(2.0)).expect("new values");

    let url = format!("sqlite://{}", h.join("capstan.db").display());
    let snapshot = || async {
        let db = store::Db::open(&url).await.expect("db");
        let rows = db.read_all("x").await.expect("read");
        db.close().await;
        let mut values: Vec<f64> = rows
            .iter()
            .map(|(_, r)| r.values[0].as_f64().expect("number"))
            .collect();
        values.dedup();
        (rows.len(), values)
    };
    let mut interrupted = 0;
    for delay_ms in [30u64, 120, 250, 400, 600, 900] {
        let mut child = crate::binary::capstan(h)
            .args(["features", "materialize", "--end", end])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        if child.try_wait().expect("wait").is_none() {
            interrupted += 1;
        }
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        let (count, values) = snapshot().await;
        assert_eq!(count, n, "a whole view after a kill at {delay_ms} ms");
        assert!(
            values == [1.0] || values == [2.0],
            "one snapshot, not a mix, after a kill at {delay_ms} ms: {values:?}"
        );
    }
    assert!(
        interrupted > 0,
        "at least one materialisation was cut short"
    );
    crate::binary::cli_ok(h, &["features", "materialize", "--end", end]);
    assert_eq!(snapshot().await, (n, vec![2.0]));
}
