//! `/metrics` in Prometheus text and the prediction log: served predictions counted per model,
//! version and variant, and written to Parquet segments under the artifact store.

use crate::serving::{alias_to, package, register};
use crate::support::{check_error, start};
use data::frame::{ColumnData, read_frame};
use serde_json::json;

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
}

#[tokio::test]
async fn predictions_are_counted_and_logged() {
    let s = start(Default::default()).await;
    let v = register(&s, "lin", package(3.0).to_json()).await;
    alias_to(&s, "lin", "champion", &v).await;
    for i in 0..5 {
        let body = json!({"id": format!("req-{i}"), "inputs": [
            {"name": "a", "shape": [2], "datatype": "FP64", "data": [i as f64, 1.0]},
            {"name": "b", "shape": [2], "datatype": "FP64", "data": [2.0, 3.0]}
        ]});
        let (st, out) = s.post("/v2/models/lin/infer", body).await;
        assert_eq!(st, 200, "{out}");
    }
    // A bad request is counted as an error of the served version.
    let (st, _) = s
        .post(
            "/v2/models/lin/infer",
            json!({"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1.0]}]}),
        )
        .await;
    assert_eq!(st, 400);

    let r = s
        .http
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    let series = format!("{{model=\"lin\",version=\"{v}\",variant=\"default\"}}");
    assert_eq!(
        metric(&text, &format!("capstan_inference_requests_total{series}")),
        6.0
    );
    assert_eq!(
        metric(&text, &format!("capstan_inference_errors_total{series}")),
        1.0
    );
    assert_eq!(
        metric(&text, &format!("capstan_inference_rows_total{series}")),
        10.0
    );
    assert_eq!(
        metric(
            &text,
            &format!("capstan_inference_duration_seconds_count{series}")
        ),
        6.0
    );
    assert!(text.contains("# TYPE capstan_inference_duration_seconds histogram"));
    assert!(
        text.contains(&format!(
            "capstan_batch_size_rows_bucket{{model=\"lin\",version=\"{v}\",le=\"+Inf\"}} 5"
        )),
        "{text}"
    );
    assert_eq!(metric(&text, "capstan_prediction_log_dropped_total"), 0.0);

    // The log writes a segment within its rotation interval (100 ms in tests).
    let dir = s
        .dir
        .path()
        .join(format!("objects/predictions/model=lin/version={v}"));
    let mut files = Vec::new();
    for _ in 0..100 {
        files = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        if !files.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(files.len(), 1, "{dir:?}");
    let f = read_frame(&files[0]).unwrap();
    assert_eq!(f.rows(), 10);
    assert_eq!(
        f.column("a").unwrap().data,
        ColumnData::Numeric(vec![0.0, 1.0, 1.0, 1.0, 2.0, 1.0, 3.0, 1.0, 4.0, 1.0])
    );
    match &f.column("_request_id").unwrap().data {
        ColumnData::Categorical { codes, levels } => {
            assert_eq!(levels[codes[0] as usize], "req-0");
            assert_eq!(levels[codes[9] as usize], "req-4");
        }
        other => panic!("{other:?}"),
    }
    let ColumnData::Numeric(pred) = &f.column("_prediction").unwrap().data else {
        panic!("numeric predictions")
    };
    assert!(
        (pred[2] - (3.0 * 1.0 - 2.0 * 2.0 + 1.0)).abs() < 1e-3,
        "{pred:?}"
    );
    let text = s.metrics().await;
    assert_eq!(metric(&text, "capstan_prediction_log_rows_total"), 10.0);
}

#[tokio::test]
async fn feedback_joins_predictions_into_live_performance() {
    let s = start(Default::default()).await;
    let v = register(&s, "lin", package(3.0).to_json()).await;
    alias_to(&s, "lin", "champion", &v).await;
    let mut preds = Vec::new();
    for i in 0..4 {
        let body = json!({"id": format!("q{i}"), "inputs": [
            {"name": "a", "shape": [2], "datatype": "FP64", "data": [i as f64, 2.0]},
            {"name": "b", "shape": [2], "datatype": "FP64", "data": [1.0, 1.0]}
        ]});
        let (st, out) = s.post("/v2/models/lin/infer", body).await;
        assert_eq!(st, 200, "{out}");
        let data: Vec<f64> = out["outputs"][0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        preds.push(data);
    }
    // Labels for three of the four requests: each prediction off by exactly +1 / -1.
    for (i, p) in preds.iter().enumerate().take(3) {
        let (st, out) = s
            .post(
                "/v2/models/lin/feedback",
                json!({"id": format!("q{i}"), "labels": [p[0] + 1.0, p[1] - 1.0]}),
            )
            .await;
        assert_eq!(st, 200, "{out}");
        assert_eq!(out["accepted"], 2);
    }
    let (st, perf) = s
        .get(
            "/api/2.0/capstan/monitoring/performance",
            &[("model", "lin"), ("window_seconds", "86400")],
        )
        .await;
    assert_eq!(st, 200, "{perf}");
    let w = &perf["windows"][0];
    assert_eq!(perf["windows"].as_array().unwrap().len(), 1, "{perf}");
    assert_eq!(w["version"], v.parse::<i64>().unwrap());
    assert_eq!(w["predictions"], 8);
    assert_eq!(w["labeled"], 6);
    assert!((w["rmse"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{perf}");
    assert!((w["mae"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{perf}");

    // Bad feedback is refused with a reason; nothing is stored.
    for (body, needle) in [
        (json!({"labels": [1.0]}), "'id'"),
        (json!({"id": "q0"}), "'label'"),
        (json!({"id": "q0", "labels": []}), "'label'"),
        (json!({"id": "q0", "label": {"x": 1}}), "number or a string"),
    ] {
        let (st, out) = s.post("/v2/models/lin/feedback", body).await;
        assert_eq!(st, 400, "{out}");
        assert!(out["error"].as_str().unwrap().contains(needle), "{out}");
    }
    let (st, _) = s
        .get(
            "/api/2.0/capstan/monitoring/performance",
            &[("model", "lin"), ("window_seconds", "0")],
        )
        .await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn monitors_detect_drift_raise_one_alert_and_call_the_webhook() {
    // Evaluations only when asked: the scheduler has its own test.
    let s = start(server::ServerConfig {
        monitor_scheduler: false,
        ..Default::default()
    })
    .await;
    let v = register(&s, "lin", package(3.0).to_json()).await;
    alias_to(&s, "lin", "champion", &v).await;
    // Reference: a in [0, 10), b in [0, 5).
    let reference = s.dir.path().join("reference.csv");
    let rows: String = (0..400)
        .map(|i| {
            format!(
                "{},{}\n",
                (i * 7 % 100) as f64 / 10.0,
                (i * 3 % 50) as f64 / 10.0
            )
        })
        .collect();
    std::fs::write(&reference, format!("a,b\n{rows}")).unwrap();
    // A webhook receiver on loopback.
    let (hook_tx, mut hook_rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let tx = hook_tx.clone();
            async move {
                let _ = tx.send(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await });

    let spec = json!({
        "name": "lin-health",
        "model": "lin",
        "window_seconds": 3600,
        "interval_seconds": 3600,
        "reference": reference.to_str().unwrap(),
        "checks": [
            {"check": "drift"},
            {"check": "latency_p99_above_ms", "value": 10000.0},
            {"check": "rmse_above", "value": 100.0, "min_labeled": 1}
        ],
        "webhook": hook_url,
        "on_alert": {"kind": "retrain", "payload": {"model": "lin"}},
    });
    let (st, out) = s.post("/api/2.0/capstan/monitors", spec.clone()).await;
    assert_eq!(st, 200, "{out}");
    // Invalid specs are refused with the reason.
    let mut bad = spec.clone();
    bad["checks"] = json!([]);
    let (st, out) = s.post("/api/2.0/capstan/monitors", bad).await;
    assert_eq!(st, 400, "{out}");
    assert!(
        out["message"]
            .as_str()
            .unwrap()
            .contains("at least one check"),
        "{out}"
    );
    let mut bad = spec.clone();
    bad["reference"] = json!("/nonexistent/ref.csv");
    assert_eq!(s.post("/api/2.0/capstan/monitors", bad).await.0, 400);

    // Current traffic: a shifted far outside the reference (drift), b similar.
    for i in 0..40 {
        let body = json!({"id": format!("m{i}"), "inputs": [
            {"name": "a", "shape": [1], "datatype": "FP64", "data": [50.0 + i as f64]},
            {"name": "b", "shape": [1], "datatype": "FP64", "data": [(i % 50) as f64 / 10.0]}
        ]});
        assert_eq!(s.post("/v2/models/lin/infer", body).await.0, 200);
    }
    let (st, out) = s
        .post("/api/2.0/capstan/monitors/lin-health/evaluate", json!({}))
        .await;
    assert_eq!(st, 200, "{out}");
    let results = out["evaluation"]["results"].as_array().unwrap();
    assert_eq!(results[0]["check"], "drift");
    assert_eq!(results[0]["failing"], true, "{out}");
    assert!(
        results[0]["message"].as_str().unwrap().contains(": a"),
        "{out}"
    );
    assert_eq!(results[1]["failing"], false, "{out}");
    assert_eq!(
        results[2]["failing"],
        serde_json::Value::Null,
        "no labels yet: no verdict"
    );
    assert_eq!(out["alerts"].as_array().unwrap().len(), 1);
    let hooked = tokio::time::timeout(std::time::Duration::from_secs(5), hook_rx.recv())
        .await
        .expect("webhook called")
        .unwrap();
    assert_eq!(hooked["alerts"][0]["check"], "drift");
    assert_eq!(hooked["alerts"][0]["monitor"], "lin-health");
    // The alert queued its job, with the alerts in the payload.
    use pipeline::JobQueue;
    let jobs = s.db.list(None, 10).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(
        (jobs[0].kind.as_str(), jobs[0].dedupe_key.as_deref()),
        ("retrain", Some("alert:lin-health"))
    );
    assert_eq!(jobs[0].payload["model"], "lin");
    assert_eq!(jobs[0].payload["alerts"][0]["check"], "drift");

    // Still drifting: evaluated again, no second alert for the same incident.
    let (_, again) = s
        .post("/api/2.0/capstan/monitors/lin-health/evaluate", json!({}))
        .await;
    assert_eq!(again["alerts"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(
        s.db.list(None, 10).await.unwrap().len(),
        1,
        "one incident, one job"
    );
    let (_, list) = s
        .get("/api/2.0/capstan/alerts", &[("monitor", "lin-health")])
        .await;
    assert_eq!(list["alerts"].as_array().unwrap().len(), 1);
    let (_, shown) = s.get("/api/2.0/capstan/monitors/lin-health", &[]).await;
    assert_eq!(shown["last_evaluation"]["predictions"], 40);

    let text = s.metrics().await;
    assert!(
        text.contains("capstan_alerts_total{monitor=\"lin-health\",check=\"drift\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("capstan_monitor_check_failing{monitor=\"lin-health\",check=\"drift\"} 1")
    );
    assert!(
        text.contains("capstan_drift_score{monitor=\"lin-health\",column=\"a\",method=\"ks\"}"),
        "{text}"
    );
    assert_eq!(s.get("/api/2.0/capstan/monitors/nope", &[]).await.0, 404);
}

#[tokio::test]
async fn the_scheduler_evaluates_monitors_on_their_interval() {
    let s = start(Default::default()).await;
    let spec = json!({
        "name": "tick",
        "model": "lin",
        "interval_seconds": 1,
        "checks": [{"check": "latency_p99_above_ms", "value": 5.0}],
    });
    assert_eq!(s.post("/api/2.0/capstan/monitors", spec).await.0, 200);
    let mut seen = Vec::new();
    for _ in 0..100 {
        let (_, m) = s.get("/api/2.0/capstan/monitors/tick", &[]).await;
        if let Some(at) = m["last_evaluation"]["at_ms"].as_i64()
            && seen.last() != Some(&at)
        {
            seen.push(at);
        }
        if seen.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        seen.len() >= 2,
        "evaluated twice by the scheduler: {seen:?}"
    );
    assert!(seen[1] - seen[0] >= 1000, "{seen:?}");
}

#[tokio::test]
async fn the_job_queue_over_http() {
    let s = start(Default::default()).await;
    let (st, v) = s
        .post("/api/2.0/capstan/jobs", json!({"kind": "rag-ingest", "payload": {"collection": "c", "path": "docs"}, "dedupe_key": "k"}))
        .await;
    assert_eq!(st, 200, "{v}");
    let id = v["job"]["id"].as_i64().unwrap();
    assert_eq!(v["job"]["state"], "queued");
    let (_, again) = s
        .post(
            "/api/2.0/capstan/jobs",
            json!({"kind": "rag-ingest", "dedupe_key": "k"}),
        )
        .await;
    assert_eq!(again["job"]["id"], id, "deduplicated");
    let (_, listed) = s.get("/api/2.0/capstan/jobs", &[("state", "queued")]).await;
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 1);
    let (_, shown) = s.get(&format!("/api/2.0/capstan/jobs/{id}"), &[]).await;
    assert_eq!(shown["job"]["payload"]["collection"], "c");
    let (_, c) = s
        .post(&format!("/api/2.0/capstan/jobs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(c["cancelled"], true);
    let (_, c) = s
        .post(&format!("/api/2.0/capstan/jobs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(c["cancelled"], false, "already finished");
    // Its log: queued, cancelled; paged by `after`.
    let (st, log) = s
        .get(&format!("/api/2.0/capstan/jobs/{id}/logs"), &[])
        .await;
    assert_eq!(st, 200, "{log}");
    let lines: Vec<&str> = log["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap())
        .collect();
    assert_eq!(lines, vec!["queued (rag-ingest)", "cancelled"]);
    assert_eq!(log["state"], "cancelled");
    let first = log["lines"][0]["seq"].as_i64().unwrap().to_string();
    let (_, rest) = s
        .get(
            &format!("/api/2.0/capstan/jobs/{id}/logs"),
            &[("after", first.as_str()), ("limit", "5")],
        )
        .await;
    assert_eq!(rest["lines"].as_array().unwrap().len(), 1);
    assert_eq!(rest["lines"][0]["line"], "cancelled");
    assert_eq!(rest["next"], log["lines"][1]["seq"]);
    check_error(
        s.get("/api/2.0/capstan/jobs/999/logs", &[]).await,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "no job 999",
    );
    check_error(
        s.get(
            &format!("/api/2.0/capstan/jobs/{id}/logs"),
            &[("limit", "0")],
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "limit",
    );
    check_error(
        s.get("/api/2.0/capstan/jobs/999", &[]).await,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "no job 999",
    );
    check_error(
        s.post("/api/2.0/capstan/jobs/999/cancel", json!({})).await,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "no job 999",
    );
    check_error(
        s.post("/api/2.0/capstan/jobs", json!({"kind": "bad kind"}))
            .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "job kind",
    );
    check_error(
        s.post(
            "/api/2.0/capstan/jobs",
            json!({"kind": "x", "max_attempts": 0}),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "max_attempts",
    );
    check_error(
        s.get("/api/2.0/capstan/jobs", &[("state", "asleep")]).await,
        400,
        "INVALID_PARAMETER_VALUE",
        "state",
    );
}
