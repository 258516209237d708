//! MLflow tracking endpoints over HTTP.

use crate::support::{check_error, start};
use serde_json::json;

#[tokio::test]
async fn run_lifecycle_in_mlflow_shapes() {
    let s = start(Default::default()).await;
    let (st, v) = s
        .post(
            "/api/2.0/mlflow/experiments/create",
            json!({"name": "wire", "tags": [{"key": "t", "value": "1"}]}),
        )
        .await;
    assert_eq!(st, 200);
    let exp = v["experiment_id"]
        .as_str()
        .expect("experiment_id is a string")
        .to_owned();
    let (_, v) = s
        .get(
            "/api/2.0/mlflow/experiments/get-by-name",
            &[("experiment_name", "wire")],
        )
        .await;
    assert_eq!(v["experiment"]["experiment_id"], exp);
    assert_eq!(v["experiment"]["lifecycle_stage"], "active");
    assert_eq!(
        v["experiment"]["artifact_location"],
        format!("mlflow-artifacts:/{exp}")
    );

    let (_, v) = s.post("/api/2.0/mlflow/runs/create", json!({"experiment_id": exp, "start_time": 1700000000000i64, "tags": [{"key": "mlflow.user", "value": "ada"}]})).await;
    let info = &v["run"]["info"];
    let run_id = info["run_id"].as_str().expect("run_id").to_owned();
    assert_eq!(info["run_uuid"], run_id);
    assert_eq!(info["status"], "RUNNING");
    assert_eq!(info["user_id"], "ada");
    assert!(
        info["run_name"].as_str().is_some_and(|n| !n.is_empty()),
        "the server invents a name"
    );
    assert_eq!(
        info["artifact_uri"],
        format!("mlflow-artifacts:/{exp}/{run_id}/artifacts")
    );

    // Strings for numbers and non-finite doubles travel the way MLflow's parser accepts them.
    let (st, v) = s.post("/api/2.0/mlflow/runs/log-batch", json!({"run_id": run_id, "run_uuid": run_id,
        "metrics": [{"key": "loss", "value": 0.5, "timestamp": "1700000000001", "step": 1}, {"key": "loss", "value": 0.9, "timestamp": 1700000000009i64, "step": 0}, {"key": "nan", "value": "NaN", "timestamp": 1, "step": 0}, {"key": "inf", "value": "Infinity", "timestamp": 1}],
        "params": [{"key": "alpha", "value": "0.1"}], "tags": [{"key": "env", "value": "ci"}]})).await;
    assert_eq!(st, 200, "{v}");
    let (_, v) = s
        .get("/api/2.0/mlflow/runs/get", &[("run_id", &run_id)])
        .await;
    let metrics = v["run"]["data"]["metrics"]
        .as_array()
        .expect("metrics")
        .clone();
    let find = |k: &str| {
        metrics
            .iter()
            .find(|m| m["key"] == k)
            .cloned()
            .expect("metric")
    };
    assert_eq!(find("loss")["value"], 0.5);
    assert_eq!(find("loss")["step"], 1);
    assert_eq!(find("nan")["value"], "NaN");
    assert_eq!(find("inf")["value"], "Infinity");
    assert_eq!(
        v["run"]["data"]["params"],
        json!([{"key": "alpha", "value": "0.1"}])
    );

    let (_, v) = s
        .get(
            "/api/2.0/mlflow/metrics/get-history",
            &[("run_id", &run_id), ("metric_key", "loss")],
        )
        .await;
    assert_eq!(v["metrics"].as_array().map(Vec::len), Some(2));

    let (st, v) = s
        .post(
            "/api/2.0/mlflow/runs/update",
            json!({"run_id": run_id, "status": "FINISHED", "end_time": 1700000001000i64}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["run_info"]["status"], "FINISHED");
    assert_eq!(v["run_info"]["end_time"], 1700000001000i64);

    let (_, v) = s.post("/api/2.0/mlflow/runs/search", json!({"experiment_ids": [exp], "filter": "metrics.loss < 0.6 and params.alpha = '0.1'", "order_by": ["metrics.loss DESC"], "max_results": 10})).await;
    assert_eq!(v["runs"].as_array().map(Vec::len), Some(1));
    assert!(v.get("next_page_token").is_none());

    let (_, v) = s
        .post(
            "/api/2.0/mlflow/experiments/search",
            json!({"filter": "name LIKE 'wi%'", "max_results": 5}),
        )
        .await;
    assert_eq!(v["experiments"].as_array().map(Vec::len), Some(1));
    let (st, _) = s
        .post(
            "/api/2.0/mlflow/logged-models/search",
            json!({"experiment_ids": [exp]}),
        )
        .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn search_pages_with_opaque_tokens() {
    let s = start(Default::default()).await;
    for _ in 0..5 {
        s.new_run().await;
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"experiment_ids": ["0"], "max_results": 2});
        if let Some(t) = &token {
            body["page_token"] = t.clone().into();
        }
        let (_, v) = s.post("/api/2.0/mlflow/runs/search", body).await;
        for r in v["runs"].as_array().expect("runs") {
            seen.push(r["info"]["run_id"].as_str().expect("id").to_owned());
        }
        match v["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5);
}

#[tokio::test]
async fn user_mistakes_get_mlflow_errors_never_500() {
    let s = start(Default::default()).await;
    let run = s.new_run().await;
    let missing = "0123456789abcdef0123456789abcdef";
    check_error(
        s.get("/api/2.0/mlflow/runs/get", &[("run_id", missing)])
            .await,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        missing,
    );
    check_error(
        s.get(
            "/api/2.0/mlflow/experiments/get",
            &[("experiment_id", "424242")],
        )
        .await,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "424242",
    );
    check_error(
        s.get(
            "/api/2.0/mlflow/experiments/get",
            &[("experiment_id", "abc")],
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "abc",
    );
    check_error(
        s.get(
            "/api/2.0/mlflow/experiments/get-by-name",
            &[("experiment_name", "nope")],
        )
        .await,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "nope",
    );
    s.post("/api/2.0/mlflow/experiments/create", json!({"name": "dup"}))
        .await;
    check_error(
        s.post("/api/2.0/mlflow/experiments/create", json!({"name": "dup"}))
            .await,
        400,
        "RESOURCE_ALREADY_EXISTS",
        "dup",
    );
    check_error(
        s.post("/api/2.0/mlflow/experiments/create", json!({"name": 5}))
            .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "",
    );
    check_error(
        s.post("/api/2.0/mlflow/experiments/create", json!({}))
            .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "name",
    );

    s.post(
        "/api/2.0/mlflow/runs/log-parameter",
        json!({"run_id": run, "key": "lr", "value": "0.1"}),
    )
    .await;
    check_error(
        s.post(
            "/api/2.0/mlflow/runs/log-parameter",
            json!({"run_id": run, "key": "lr", "value": "0.2"}),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "lr",
    );
    check_error(
        s.post(
            "/api/2.0/mlflow/runs/log-metric",
            json!({"run_id": run, "key": "m", "value": "abc", "timestamp": 1}),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "",
    );
    check_error(
        s.post(
            "/api/2.0/mlflow/runs/log-metric",
            json!({"run_id": run, "key": "m", "value": 1.0}),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "timestamp",
    );
    check_error(
        s.post(
            "/api/2.0/mlflow/runs/log-metric",
            json!({"run_id": missing, "key": "m", "value": 1.0, "timestamp": 1}),
        )
        .await,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "",
    );
    let too_many: Vec<_> = (0..101)
        .map(|i| json!({"key": format!("p{i}"), "value": "v"}))
        .collect();
    check_error(
        s.post(
            "/api/2.0/mlflow/runs/log-batch",
            json!({"run_id": run, "params": too_many}),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "100 params",
    );
    check_error(
        s.post(
            "/api/2.0/mlflow/runs/log-batch",
            json!({"run_id": run, "metrics": [{"key": "../x", "value": 1, "timestamp": 1}]}),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "../x",
    );
    check_error(
        s.post(
            "/api/2.0/mlflow/runs/search",
            json!({"experiment_ids": ["0"], "filter": "metrics.a < 1 or metrics.b > 2"}),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "OR",
    );
    check_error(
        s.post(
            "/api/2.0/mlflow/runs/search",
            json!({"experiment_ids": ["0"], "filter": "metrics.a LIKE 'x'"}),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "LIKE",
    );
    check_error(
        s.post(
            "/api/2.0/mlflow/runs/search",
            json!({"experiment_ids": ["0"], "max_results": 50001}),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "max_results",
    );
    check_error(
        s.post(
            "/api/2.0/mlflow/runs/search",
            json!({"experiment_ids": ["0"], "page_token": "garbage"}),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "page token",
    );
    check_error(
        s.post(
            "/api/2.0/mlflow/runs/search",
            json!({"experiment_ids": ["0"], "order_by": ["metrics.a", "metrics.a DESC"]}),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "duplicate",
    );

    // A body that is not JSON is answered in MLflow's shape.
    let r = s
        .http
        .post(format!("{}/api/2.0/mlflow/runs/log-batch", s.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["error_code"],
        "INVALID_PARAMETER_VALUE"
    );
    // Unknown routes are 404 ENDPOINT_NOT_FOUND.
    check_error(
        s.get("/api/2.0/mlflow/nothing-here", &[]).await,
        404,
        "ENDPOINT_NOT_FOUND",
        "nothing-here",
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let s = start(server::ServerConfig {
        max_json_bytes: 10_000,
        ..Default::default()
    })
    .await;
    let run = s.new_run().await;
    let big = "x".repeat(20_000);
    let (st, v) = s
        .post(
            "/api/2.0/mlflow/runs/set-tag",
            json!({"run_id": run, "key": "k", "value": big}),
        )
        .await;
    assert_eq!(st, 413, "{v}");
    assert_eq!(v["error_code"], "INVALID_PARAMETER_VALUE");
}
