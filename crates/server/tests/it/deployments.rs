//! A/B, shadow and canary deployments over HTTP: sticky routing, feedback, statistics.

use crate::serving::{alias_to, package, register};
use crate::support::start;
use serde_json::json;

#[tokio::test]
async fn ab_split_is_sticky_and_reports_a_winner() {
    let s = start(Default::default()).await;
    let v1 = register(&s, "m", package(3.0).to_json()).await;
    let v2 = register(&s, "m", package(5.0).to_json()).await;
    alias_to(&s, "m", "champion", &v1).await;
    alias_to(&s, "m", "challenger", &v2).await;
    let dep = json!({"name": "checkout", "mode": "split", "variants": [
        {"name": "A", "model": "m", "alias": "champion", "weight": 50},
        {"name": "B", "model": "m", "alias": "challenger", "weight": 50}
    ]});
    let (st, v) = s.post("/api/2.0/capstan/deployments", dep).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["current_weights"], json!([0.5, 0.5]));

    let body = |id: &str| json!({"id": id, "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [2.0, 5.0]}]});
    let mut counts = std::collections::HashMap::new();
    for i in 0..400 {
        let key = format!("user-{i}");
        let r = s
            .http
            .post(format!("{}/deployments/checkout/infer", s.url))
            .header("x-capstan-key", &key)
            .json(&body(&format!("req-{i}")))
            .send()
            .await
            .expect("infer");
        assert_eq!(r.status().as_u16(), 200);
        let variant = r
            .headers()
            .get("x-capstan-variant")
            .and_then(|v| v.to_str().ok())
            .expect("variant header")
            .to_owned();
        let out: serde_json::Value = r.json().await.expect("json");
        assert_eq!(out["parameters"]["variant"], variant);
        let y = out["outputs"][0]["data"][0].as_f64().expect("y");
        // A is y = 3a - 2b + 1 = -3, B is y = 5a - 2b + 1 = 1 at (2, 5).
        let want = if variant == "A" { -3.0 } else { 1.0 };
        assert!((y - want).abs() < 1e-2, "{variant}: {y}");
        // Sticky: the same key lands on the same variant.
        let again = s
            .http
            .post(format!("{}/deployments/checkout/infer", s.url))
            .header("x-capstan-key", &key)
            .json(&body(&format!("again-{i}")))
            .send()
            .await
            .expect("infer");
        assert_eq!(
            again
                .headers()
                .get("x-capstan-variant")
                .and_then(|v| v.to_str().ok()),
            Some(variant.as_str())
        );
        // B converts at 30%, A at 10%.
        let converted = if variant == "B" {
            i % 10 < 3
        } else {
            i % 10 < 1
        };
        *counts.entry(variant).or_insert(0) += 1;
        let (st, _) = s
            .post(
                "/deployments/checkout/feedback",
                json!({"request_id": format!("req-{i}"), "outcome": converted}),
            )
            .await;
        assert_eq!(st, 200);
    }
    assert!(
        counts.values().all(|c| (150..=250).contains(c)),
        "{counts:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (_, stats) = s.get("/deployments/checkout/stats", &[]).await;
    let cmp = &stats["comparisons"][0];
    assert_eq!(cmp["metric"], "conversion", "{stats}");
    assert_eq!(cmp["verdict"], "B beats A", "{stats}");
    let variants = stats["variants"].as_array().expect("variants");
    let arm = |i: usize| {
        (
            variants[i]["outcome_mean"].as_f64().unwrap_or(0.0)
                * variants[i]["feedback"].as_f64().unwrap_or(0.0),
            variants[i]["feedback"].as_f64().unwrap_or(0.0),
        )
    };
    let ((xa, na), (xb, nb)) = (arm(0), arm(1));
    let z = stats::ab::two_proportion_z(xa.round(), na, xb.round(), nb);
    assert!((cmp["p_value"].as_f64().unwrap_or(1.0) - z.p_value).abs() < 1e-12);
    assert!(
        stats["sample_ratio_p"].as_f64().unwrap_or(0.0) > 0.001,
        "the split matches its weights"
    );
    assert_eq!(
        variants[0]["requests"].as_u64().unwrap_or(0)
            + variants[1]["requests"].as_u64().unwrap_or(0),
        800
    );
}

#[tokio::test]
async fn shadow_and_canary_and_bad_input() {
    let s = start(Default::default()).await;
    let v1 = register(&s, "m", package(3.0).to_json()).await;
    let v2 = register(&s, "m", package(5.0).to_json()).await;
    let body =
        json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [2.0, 5.0]}]});
    let shadow = json!({"name": "mirror", "mode": "shadow", "variants": [
        {"name": "primary", "model": "m", "version": v1.parse::<i64>().unwrap_or(1)},
        {"name": "shadow", "model": "m", "version": v2.parse::<i64>().unwrap_or(2)}
    ]});
    assert_eq!(s.post("/api/2.0/capstan/deployments", shadow).await.0, 200);
    for _ in 0..20 {
        let (st, out) = s.post("/deployments/mirror/infer", body.clone()).await;
        assert_eq!(
            (st, out["parameters"]["variant"].as_str()),
            (200, Some("primary"))
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, stats) = s.get("/deployments/mirror/stats", &[]).await;
    assert_eq!(stats["variants"][0]["requests"], 20);
    assert_eq!(stats["variants"][1]["shadow_requests"], 20, "{stats}");
    assert_eq!(stats["variants"][1]["requests"], 0);

    let canary = json!({"name": "ramp", "mode": "canary", "ramp": {"start_weight": 1.0, "end_weight": 1.0, "ramp_seconds": 0}, "variants": [
        {"name": "stable", "model": "m", "version": 1}, {"name": "canary", "model": "m", "version": 2}
    ]});
    assert_eq!(s.post("/api/2.0/capstan/deployments", canary).await.0, 200);
    let (_, out) = s.post("/deployments/ramp/infer", body.clone()).await;
    assert_eq!(out["parameters"]["variant"], "canary");

    let check = |(st, v): (u16, serde_json::Value), want: u16, needle: &str| {
        assert_eq!(st, want, "{v}");
        assert!(
            v["error"].as_str().unwrap_or_default().contains(needle),
            "{v}"
        );
    };
    check(
        s.post("/deployments/nope/infer", body.clone()).await,
        404,
        "nope",
    );
    check(
        s.post(
            "/deployments/mirror/feedback",
            json!({"request_id": "unknown", "outcome": 1}),
        )
        .await,
        404,
        "unknown",
    );
    check(
        s.post(
            "/deployments/mirror/feedback",
            json!({"request_id": "x", "outcome": "yes"}),
        )
        .await,
        400,
        "outcome",
    );
    check(s.post("/api/2.0/capstan/deployments", json!({"name": "solo", "mode": "split", "variants": [{"name": "A", "model": "m", "weight": 1}]})).await, 400, "two variants");
    check(s.post("/api/2.0/capstan/deployments", json!({"name": "ghost", "mode": "split", "variants": [{"name": "A", "model": "m", "version": 1, "weight": 1}, {"name": "B", "model": "ghost", "weight": 1}]})).await, 400, "variant 'B'");
}
