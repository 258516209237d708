//! Serving over the Open Inference Protocol v2 and /invocations: a package registered through the
//! registry, hot swaps that fail no request, refusals with OIP errors.

use crate::support::{TestServer, start, start_with};
use learn::{Dataset, ModelPackage, Prediction, TrainOptions};
use serde_json::{Value, json};
use serving::Selector;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// y = k·a - 2b + 1 on a small grid: packages with different `k` give different answers.
pub fn package(k: f64) -> ModelPackage {
    let x: Vec<Vec<f64>> = (0..60)
        .map(|i| vec![i as f64 % 7.0, (i * 3) as f64 % 11.0])
        .collect();
    let y = x
        .iter()
        .map(|r| (k * r[0] - 2.0 * r[1] + 1.0).to_string())
        .collect();
    let d = Dataset {
        features: vec!["a".into(), "b".into()],
        target: "y".into(),
        x,
        y,
    };
    learn::train_linear_regression(
        &d,
        &TrainOptions {
            learning_rate: 0.1,
            epochs: 2000,
            ..Default::default()
        },
        |_| {},
    )
    .expect("fit")
    .package
}

/// Logs `bytes` as a run's `model/model.json` and registers it as a new version of `name`.
pub async fn register(s: &TestServer, name: &str, bytes: Vec<u8>) -> String {
    let (_, v) = s
        .post("/api/2.0/mlflow/runs/create", json!({"experiment_id": "0"}))
        .await;
    let run = v["run"]["info"]["run_id"].as_str().expect("run").to_owned();
    let root = v["run"]["info"]["artifact_uri"]
        .as_str()
        .expect("uri")
        .trim_start_matches("mlflow-artifacts:/")
        .to_owned();
    let put = s
        .http
        .put(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{root}/model/model.json",
            s.url
        ))
        .body(bytes)
        .send()
        .await
        .expect("put");
    assert_eq!(put.status().as_u16(), 200);
    s.post(
        "/api/2.0/mlflow/registered-models/create",
        json!({"name": name}),
    )
    .await;
    let (_, v) = s
        .post(
            "/api/2.0/mlflow/model-versions/create",
            json!({"name": name, "source": format!("runs:/{run}/model"), "run_id": run}),
        )
        .await;
    v["model_version"]["version"]
        .as_str()
        .expect("version")
        .to_owned()
}

async fn alias(s: &TestServer, name: &str, version: &str) {
    alias_to(s, name, "champion", version).await
}

pub async fn alias_to(s: &TestServer, name: &str, alias: &str, version: &str) {
    let (st, v) = s
        .post(
            "/api/2.0/mlflow/registered-models/alias",
            json!({"name": name, "alias": alias, "version": version}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
}

fn value_of(p: &ModelPackage, row: Vec<f64>) -> f64 {
    match p.predict(&[row]).expect("predict").pop() {
        Some(Prediction::Value(v)) => v,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn infer_over_oip_with_column_or_matrix_tensors() {
    let s = start(Default::default()).await;
    let p = package(3.0);
    let v = register(&s, "lin", p.to_json()).await;
    alias(&s, "lin", &v).await;

    let (st, meta) = s.get("/v2/models/lin", &[]).await;
    assert_eq!(st, 200, "{meta}");
    assert_eq!(
        meta["inputs"],
        json!([{"name": "a", "datatype": "FP64", "shape": [-1]}, {"name": "b", "datatype": "FP64", "shape": [-1]}])
    );
    assert_eq!(s.get("/v2/models/lin/ready", &[]).await.1["ready"], true);
    assert_eq!(s.get("/v2/health/live", &[]).await.0, 200);
    let (_, doc) = s.get("/openapi.json", &[]).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(
        doc["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"].is_object(),
        "{doc}"
    );

    let by_column = json!({"id": "req-1", "inputs": [
        {"name": "a", "shape": [2], "datatype": "FP64", "data": [2.0, 4.0]},
        {"name": "b", "shape": [2, 1], "datatype": "INT64", "data": [[5], [1]]}
    ]});
    let (st, out) = s.post("/v2/models/lin/infer", by_column).await;
    assert_eq!(st, 200, "{out}");
    assert_eq!(out["id"], "req-1");
    assert_eq!(out["model_version"], v);
    let got: Vec<f64> = out["outputs"][0]["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect();
    assert_eq!(
        got,
        vec![value_of(&p, vec![2.0, 5.0]), value_of(&p, vec![4.0, 1.0])]
    );
    assert!(
        (got[0] - -3.0).abs() < 1e-3,
        "3·2 - 2·5 + 1 = -3, got {}",
        got[0]
    );

    let matrix = json!({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [2.0, 5.0, 4.0, 1.0]}]});
    let (_, out2) = s.post("/v2/models/lin/versions/1/infer", matrix).await;
    assert_eq!(out2["outputs"][0]["data"], out["outputs"][0]["data"]);
}

#[tokio::test]
async fn bad_requests_get_oip_errors() {
    let s = start(Default::default()).await;
    let v = register(&s, "lin", package(3.0).to_json()).await;
    alias(&s, "lin", &v).await;
    let check = |(st, body): (u16, Value), want: u16, needle: &str| {
        assert_eq!(st, want, "{body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    };
    check(
        s.post(
            "/v2/models/lin/infer",
            json!({"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1.0]}]}),
        )
        .await,
        400,
        "missing input 'b'",
    );
    check(
        s.post(
            "/v2/models/lin/infer",
            json!({"inputs": [{"name": "a", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}),
        )
        .await,
        400,
        "BYTES",
    );
    check(
        s.post(
            "/v2/models/lin/infer",
            json!({"inputs": [{"name": "a", "shape": [3], "datatype": "FP64", "data": [1.0]}]}),
        )
        .await,
        400,
        "shape",
    );
    check(s.post("/v2/models/lin/infer", json!({"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1.0]}, {"name": "b", "shape": [1], "datatype": "FP64", "data": [null]}]})).await, 400, "'b'");
    check(
        s.post("/v2/models/lin/infer", json!({"inputs": []})).await,
        400,
        "inputs",
    );
    check(
        s.post(
            "/v2/models/ghost/infer",
            json!({"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1.0]}]}),
        )
        .await,
        404,
        "ghost",
    );
    check(
        s.get("/v2/models/lin/versions/9", &[]).await,
        404,
        "version=9",
    );
    let r = s
        .http
        .post(format!("{}/v2/models/lin/infer", s.url))
        .body("{nope")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn alias_moves_hot_swap_without_failed_requests() {
    let s = Arc::new(start(Default::default()).await);
    let v1 = register(&s, "swap", package(3.0).to_json()).await;
    alias(&s, "swap", &v1).await;
    let body =
        json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [2.0, 5.0]}]});
    assert_eq!(s.post("/v2/models/swap/infer", body.clone()).await.0, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let seen_v2 = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (s, stop, failures, seen_v2, body) = (
            s.clone(),
            stop.clone(),
            failures.clone(),
            seen_v2.clone(),
            body.clone(),
        );
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (st, out) = s.post("/v2/models/swap/infer", body.clone()).await;
                if st != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                } else if out["model_version"] == "2" {
                    seen_v2.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let v2 = register(&s, "swap", package(5.0).to_json()).await;
    alias(&s, "swap", &v2).await;
    for _ in 0..100 {
        if seen_v2.load(Ordering::Relaxed) > 10 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A broken package moved under the alias never replaces the working one.
    let v3 = register(&s, "swap", b"{\"format\": \"capstan.model/1\"}".to_vec()).await;
    alias(&s, "swap", &v3).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.expect("join");
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no request failed during the swaps"
    );
    assert!(
        seen_v2.load(Ordering::Relaxed) > 10,
        "the new version took over"
    );
    let (_, out) = s.post("/v2/models/swap/infer", body).await;
    assert_eq!(
        out["model_version"], "2",
        "still serving v2 after the broken v3"
    );
}

#[tokio::test]
async fn latency_budget_refuses_with_503_and_invocations_score() {
    let cfg = server::ServerConfig {
        default_model: Some(("lin".into(), Selector::Alias("champion".into()))),
        ..Default::default()
    };
    let s = start(cfg).await;
    let p = package(3.0);
    let v = register(&s, "lin", p.to_json()).await;
    alias(&s, "lin", &v).await;
    let want = vec![value_of(&p, vec![2.0, 5.0]), value_of(&p, vec![4.0, 1.0])];
    for body in [
        json!({"dataframe_split": {"columns": ["b", "a"], "data": [[5.0, 2.0], [1.0, 4.0]]}}),
        json!({"dataframe_records": [{"a": 2.0, "b": 5.0}, {"a": 4.0, "b": 1.0}]}),
        json!({"instances": [[2.0, 5.0], [4.0, 1.0]]}),
        json!({"inputs": [{"a": 2.0, "b": 5.0}, {"a": 4.0, "b": 1.0}]}),
    ] {
        let (st, out) = s.post("/invocations", body.clone()).await;
        assert_eq!(st, 200, "{body} → {out}");
        let got: Vec<f64> = out["predictions"]
            .as_array()
            .expect("predictions")
            .iter()
            .map(|x| x.as_f64().unwrap_or(f64::NAN))
            .collect();
        assert_eq!(got, want, "{body}");
    }
    let (st, out) = s
        .post("/invocations", json!({"dataframe_records": [{"a": 2.0}]}))
        .await;
    assert_eq!(
        (st, out["error"].as_str().map(|m| m.contains("'b'"))),
        (400, Some(true)),
        "{out}"
    );

    // A budget nothing can meet: refused at once with 503, not queued.
    let strict = start_with(
        server::ServerConfig::default(),
        serving::ServingConfig {
            latency_budget: std::time::Duration::ZERO,
            ..Default::default()
        },
    )
    .await;
    let v = register(&strict, "lin", p.to_json()).await;
    alias(&strict, "lin", &v).await;
    let (st, out) = strict.post("/v2/models/lin/infer", json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 1.0]}]})).await;
    assert_eq!(st, 503, "{out}");
    assert!(
        out["error"]
            .as_str()
            .unwrap_or_default()
            .contains("latency budget")
    );
}

#[tokio::test]
async fn oversized_batches_are_refused() {
    let s = start(server::ServerConfig {
        max_infer_rows: 3,
        ..Default::default()
    })
    .await;
    let v = register(&s, "lin", package(3.0).to_json()).await;
    alias(&s, "lin", &v).await;
    let data: Vec<f64> = (0..8).map(f64::from).collect();
    let (st, out) = s
        .post(
            "/v2/models/lin/infer",
            json!({"inputs": [{"name": "x", "shape": [4, 2], "datatype": "FP64", "data": data}]}),
        )
        .await;
    assert_eq!(st, 413, "{out}");
    assert!(
        out["error"]
            .as_str()
            .unwrap_or_default()
            .contains("limit of 3")
    );
}

/// A text column one-hot encoded at training (`colour=red`, `colour=blue`) is scored from the raw
/// column as clients have it, and equals the encoded form.
#[tokio::test]
async fn invocations_encode_text_columns_as_training_did() {
    let cfg = server::ServerConfig {
        default_model: Some(("colours".into(), Selector::Alias("champion".into()))),
        ..Default::default()
    };
    let s = start(cfg).await;
    let header = ["a".to_owned(), "colour".to_owned(), "y".to_owned()];
    let rows: Vec<Vec<String>> = (0..60)
        .map(|i| {
            let colour = if i % 2 == 0 { "red" } else { "blue" };
            let y = i as f64 % 5.0 + if i % 2 == 0 { 10.0 } else { 0.0 };
            vec![(i % 5).to_string(), colour.to_owned(), y.to_string()]
        })
        .collect();
    let d = Dataset::from_rows_encoded(&header, &rows, "y", &[]).expect("dataset");
    assert_eq!(d.features, ["a", "colour=blue", "colour=red"]);
    // One-hot levels plus an intercept are collinear: a whisper of ridge.
    let o = TrainOptions {
        l2: 1e-6,
        ..Default::default()
    };
    let p = learn::train_least_squares(&d, &o).expect("fit").package;
    let v = register(&s, "colours", p.to_json()).await;
    alias(&s, "colours", &v).await;
    let (st, raw) = s
        .post(
            "/invocations",
            json!({"dataframe_records": [{"a": 3, "colour": "red"}, {"a": 3, "colour": "blue"}]}),
        )
        .await;
    assert_eq!(st, 200, "{raw}");
    let (_, encoded) = s
        .post(
            "/invocations",
            json!({"dataframe_records": [
                {"a": 3, "colour=blue": 0, "colour=red": 1},
                {"a": 3, "colour=blue": 1, "colour=red": 0}]}),
        )
        .await;
    assert_eq!(raw["predictions"], encoded["predictions"]);
    let red = raw["predictions"][0].as_f64().expect("number");
    let blue = raw["predictions"][1].as_f64().expect("number");
    assert!((red - blue - 10.0).abs() < 1e-3, "red {red} vs blue {blue}");
    let (st, out) = s
        .post("/invocations", json!({"dataframe_records": [{"a": 3}]}))
        .await;
    assert_eq!(st, 400);
    assert!(
        out["error"]
            .as_str()
            .is_some_and(|m| m.contains("colour=blue")),
        "{out}"
    );
}
