//! Labelled events over HTTP append to the data a model's retraining policy names: in the
//! file's column order, CSV-quoted, a batch all in or all out.

use crate::support::start;
use serde_json::json;

#[tokio::test]
async fn labelled_rows_append_to_the_policys_data_whole_batches_only() {
    let s = start(server::ServerConfig::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("labelled.csv");
    // No line break after the last row: the append adds one first.
    std::fs::write(&data, "day,kind,y\n2024-01-01,a,1").expect("csv");
    let (st, _) = s
        .post(
            "/api/2.0/mlflow/registered-models/create",
            json!({"name": "m"}),
        )
        .await;
    assert_eq!(st, 200);
    let url = "/api/2.0/capstan/models/m/labelled";
    let (st, out) = s
        .post(
            url,
            json!({"rows": [{"day": "2024-01-02", "kind": "b", "y": 2}]}),
        )
        .await;
    assert_eq!(st, 400, "no policy yet: {out}");
    assert!(
        out["message"]
            .as_str()
            .is_some_and(|m| m.contains("no retraining policy")),
        "{out}"
    );
    let policy = json!({"data": data.to_string_lossy(), "target": "y", "time_column": "day"});
    let (st, _) = s
        .post(
            "/api/2.0/mlflow/registered-models/set-tag",
            json!({"name": "m", "key": "capstan.retrain.policy", "value": policy.to_string()}),
        )
        .await;
    assert_eq!(st, 200);

    let (st, out) = s
        .post(
            url,
            json!({"rows": [
                {"y": 2, "kind": "b", "day": "2024-01-02"},
                {"day": "2024-01-03", "kind": "has, comma \"and quote\"", "y": 3.5}]}),
        )
        .await;
    assert_eq!(st, 200, "{out}");
    assert_eq!(
        (out["appended"].as_u64(), out["rows"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(
        std::fs::read_to_string(&data).expect("read"),
        "day,kind,y\n2024-01-01,a,1\n2024-01-02,b,2\n2024-01-03,\"has, comma \"\"and quote\"\"\",3.5\n"
    );
    let before = std::fs::read_to_string(&data).expect("read");
    for (body, why) in [
        (
            json!({"rows": [{"day": "d", "kind": "k", "y": 1}, {"day": "d", "y": 1}]}),
            "lacks column `kind`",
        ),
        (
            json!({"rows": [{"day": "d", "kind": "k", "y": 1, "z": 0}]}),
            "`z`, which is not a column",
        ),
        (
            json!({"rows": [{"day": "d", "kind": [1], "y": 1}]}),
            "rows[0].kind",
        ),
        (json!({"rows": []}), "non-empty"),
        (json!({"rows": [3]}), "rows[0] is not an object"),
    ] {
        let (st, out) = s.post(url, body).await;
        assert_eq!(st, 400, "{out}");
        assert!(
            out["message"].as_str().is_some_and(|m| m.contains(why)),
            "{why}: {out}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&data).expect("read"),
        before,
        "a refused batch writes nothing"
    );
    let (st, out) = s
        .post(
            "/api/2.0/capstan/models/nope/labelled",
            json!({"rows": [{"a": 1}]}),
        )
        .await;
    assert_eq!(st, 404, "{out}");
    assert_eq!(out["error_code"], "RESOURCE_DOES_NOT_EXIST");
}

/// `retrain_after_rows`: the batch that brings the rows since the last retraining (the model's
/// `capstan.retrain.rows` tag) to the policy's count queues a retraining; later batches find it
/// pending instead of queueing another.
#[tokio::test]
async fn enough_new_labelled_rows_queue_one_retraining() {
    let s = start(server::ServerConfig::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("labelled.csv");
    std::fs::write(&data, "day,y\n2024-01-01,1\n2024-01-02,2\n").expect("csv");
    s.post(
        "/api/2.0/mlflow/registered-models/create",
        json!({"name": "m"}),
    )
    .await;
    let policy = json!({"data": data.to_string_lossy(), "target": "y", "time_column": "day", "retrain_after_rows": 3});
    for (key, value) in [
        ("capstan.retrain.policy", policy.to_string()),
        // The last retraining saw the two rows the file holds.
        ("capstan.retrain.rows", "2".to_owned()),
    ] {
        let (st, _) = s
            .post(
                "/api/2.0/mlflow/registered-models/set-tag",
                json!({"name": "m", "key": key, "value": value}),
            )
            .await;
        assert_eq!(st, 200);
    }
    let url = "/api/2.0/capstan/models/m/labelled";
    let row = |d: u32| json!({"day": format!("2024-01-{d:02}"), "y": d});
    let (_, out) = s.post(url, json!({"rows": [row(3), row(4)]})).await;
    assert!(out["retrain_job"].is_null(), "2 new rows of 3: {out}");
    let (_, out) = s.post(url, json!({"rows": [row(5)]})).await;
    let id = out["retrain_job"]["id"].as_i64().expect("queued");
    assert_eq!(out["retrain_job"]["state"], "queued");
    let (_, job) = s.get(&format!("/api/2.0/capstan/jobs/{id}"), &[]).await;
    assert_eq!(job["job"]["kind"], "retrain");
    assert_eq!(
        job["job"]["payload"]["reason"],
        "3 labelled rows since the last retraining (the policy asks for 3)"
    );
    let (_, out) = s.post(url, json!({"rows": [row(6)]})).await;
    assert_eq!(
        out["retrain_job"]["id"], id,
        "one pending retraining per model"
    );
    let (_, listed) = s.get("/api/2.0/capstan/jobs", &[]).await;
    assert_eq!(listed["jobs"].as_array().expect("jobs").len(), 1);
}
