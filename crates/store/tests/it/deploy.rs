//! Deployment store behaviour, identical on every backend.

use crate::db_test;
use serving::deploy::{DeploymentStore, RequestRecord};
use store::Db;

fn req(id: &str, variant: &str, shadow: bool) -> RequestRecord {
    RequestRecord {
        deployment: "d".into(),
        request_id: id.into(),
        variant: variant.into(),
        latency_us: 120,
        error: false,
        shadow,
        outcome: None,
    }
}

db_test!(deployments_and_feedback, |db: Db| async move {
    let created = db.put_deployment("d", "{\"spec\": 1}").await.expect("put");
    assert_eq!(
        db.get_deployment("d").await.expect("get"),
        Some(("{\"spec\": 1}".to_owned(), created))
    );
    db.record_request(&req("r1", "A", false))
        .await
        .expect("record");
    db.record_request(&req("r1", "B", true))
        .await
        .expect("record shadow");
    db.record_request(&req("r1", "A", false))
        .await
        .expect("a retry is idempotent");
    assert!(db.record_feedback("d", "r1", 1.0).await.expect("feedback"));
    assert!(
        !db.record_feedback("d", "nope", 1.0)
            .await
            .expect("feedback"),
        "unknown request ids are reported"
    );
    let rows = db.requests("d").await.expect("requests");
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.outcome == Some(1.0)));
    assert_eq!(rows.iter().filter(|r| r.shadow).count(), 1);
    assert_eq!(db.list_deployments().await.expect("list").len(), 1);
    assert!(db.delete_deployment("d").await.expect("delete"));
    assert!(db.requests("d").await.expect("requests").is_empty());
    assert!(!db.delete_deployment("d").await.expect("delete again"));
});

db_test!(labels_upsert_and_join_by_request, |db: Db| async move {
    use monitor::performance::{Label, LabelStore, LabelValue};
    let label = |id: &str, row: i64, value: LabelValue| Label {
        request_id: id.into(),
        row,
        value,
        ts_ms: 5,
    };
    db.put_labels(
        "m",
        &[
            label("r1", 0, LabelValue::Class("yes".into())),
            label("r1", 1, LabelValue::Number(2.5)),
            label("r2", 0, LabelValue::Number(1.0)),
        ],
    )
    .await
    .expect("put");
    // A corrected label replaces the first one.
    db.put_labels("m", &[label("r1", 0, LabelValue::Class("no".into()))])
        .await
        .expect("upsert");
    db.put_labels("other", &[label("r1", 0, LabelValue::Number(9.0))])
        .await
        .expect("other model");
    let mut got = db
        .labels_for("m", &["r1".into(), "missing".into()])
        .await
        .expect("get");
    got.sort_by_key(|l| l.row);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].value, LabelValue::Class("no".into()));
    assert_eq!(got[1].value, LabelValue::Number(2.5));
    let many: Vec<String> = (0..1200)
        .map(|i| format!("x{i}"))
        .chain(["r2".into()])
        .collect();
    let got = db.labels_for("m", &many).await.expect("chunked");
    assert_eq!(got.len(), 1, "ids beyond one chunk are found");
    assert_eq!(got[0].request_id, "r2");
});

db_test!(monitors_evaluations_and_alerts, |db: Db| async move {
    use monitor::monitors::{Alert, Check, Evaluation, MonitorSpec, MonitorStore};
    let spec = MonitorSpec {
        name: "lat".into(),
        model: "bc".into(),
        window_seconds: 60,
        interval_seconds: 5,
        reference: None,
        checks: vec![Check::LatencyP99AboveMs { value: 5.0 }],
        webhook: None,
        on_alert: None,
    };
    db.put_monitor(&spec).await.expect("put");
    assert_eq!(
        db.get_monitor("lat").await.expect("get"),
        Some((spec.clone(), None))
    );
    let eval = Evaluation {
        monitor: "lat".into(),
        model: "bc".into(),
        at_ms: 10,
        window_start_ms: 0,
        predictions: 3,
        results: vec![],
        drift_share: None,
        drift_columns: vec![],
        counters: Some((3, 0)),
    };
    let alert = |check: &str, at: i64| Alert {
        id: 0,
        monitor: "lat".into(),
        model: "bc".into(),
        check: check.into(),
        message: "p99 9 ms".into(),
        value: Some(9.0),
        threshold: 5.0,
        created_ms: at,
    };
    let stored = db
        .record_evaluation(&eval, &[alert("latency_p99_above_ms", 10)], None)
        .await
        .expect("record")
        .expect("first evaluation");
    assert!(stored[0].id > 0);
    // A second evaluator judged against the same (empty) past loses: no duplicate alert.
    let lost = db
        .record_evaluation(&eval, &[alert("latency_p99_above_ms", 10)], None)
        .await
        .expect("record");
    assert_eq!(lost, None);
    db.record_evaluation(
        &Evaluation {
            at_ms: 20,
            ..eval.clone()
        },
        &[alert("x", 20)],
        Some(10),
    )
    .await
    .expect("record 2")
    .expect("judged against the stored evaluation");
    let (_, last) = db.get_monitor("lat").await.expect("get").expect("some");
    assert_eq!(last.expect("evaluated").at_ms, 20);
    let alerts = db.list_alerts(Some("lat"), 10).await.expect("alerts");
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0].check, "x", "newest first");
    assert_eq!(alerts[1].value, Some(9.0));
    assert!(
        db.list_alerts(Some("other"), 10)
            .await
            .expect("none")
            .is_empty()
    );
    assert_eq!(db.list_alerts(None, 1).await.expect("limit").len(), 1);
    assert_eq!(db.list_monitors().await.expect("list").len(), 1);
    assert!(db.delete_monitor("lat").await.expect("delete"));
    assert!(!db.delete_monitor("lat").await.expect("delete again"));
});

db_test!(feature_definitions_apply_and_replace, |db: Db| async move {
    use features::defs::{Applied, FeatureRegistry};
    assert_eq!(db.applied().await.expect("empty"), None);
    let defs =
        features::Definitions::from_yaml("entities:\n  - {name: driver, join_keys: [driver_id]}\n")
            .expect("defs");
    let a = Applied {
        definitions: defs,
        base_dir: "/repo".into(),
        applied_ms: 5,
    };
    db.apply(&a).await.expect("apply");
    assert_eq!(db.applied().await.expect("read"), Some(a.clone()));
    let b = Applied {
        definitions: features::Definitions::default(),
        applied_ms: 6,
        ..a
    };
    db.apply(&b).await.expect("replace");
    assert_eq!(db.applied().await.expect("read"), Some(b));
    assert_eq!(db.materialized("v").await.expect("none yet"), None);
    db.set_materialized("v", 10).await.expect("set");
    db.set_materialized("v", 20).await.expect("move");
    assert_eq!(db.materialized("v").await.expect("read"), Some(20));
});

/// The online-store contract, run against the SQL store and a real Redis.
async fn online_store_contract(store: &dyn features::online::OnlineStore, view: &str) {
    use features::online::OnlineRow;
    let row = |ts: i64, v: f64| OnlineRow {
        ts,
        values: vec![serde_json::json!(v), serde_json::Value::Null],
    };
    assert_eq!(
        store.read(view, &["a".into()]).await.expect("empty"),
        vec![None]
    );
    store
        .replace_view(
            view,
            &[("a".into(), row(1, 1.5)), ("b".into(), row(2, 2.5))],
        )
        .await
        .expect("first snapshot");
    let got = store
        .read(view, &["b".into(), "zzz".into(), "a".into()])
        .await
        .expect("read");
    assert_eq!(got, vec![Some(row(2, 2.5)), None, Some(row(1, 1.5))]);
    // A new snapshot replaces the view: b is gone, c is new.
    store
        .replace_view(
            view,
            &[("a".into(), row(3, 3.5)), ("c".into(), row(4, 4.5))],
        )
        .await
        .expect("second snapshot");
    let got = store
        .read(view, &["a".into(), "b".into(), "c".into()])
        .await
        .expect("read");
    assert_eq!(got, vec![Some(row(3, 3.5)), None, Some(row(4, 4.5))]);
    assert_eq!(store.read(view, &[]).await.expect("no keys"), vec![]);
    assert_eq!(
        store.read_all(view).await.expect("all"),
        vec![("a".to_owned(), row(3, 3.5)), ("c".to_owned(), row(4, 4.5))]
    );
    assert!(
        store
            .read_all("never-materialised")
            .await
            .expect("none")
            .is_empty()
    );
}

db_test!(online_store_in_the_metadata_db, |db: Db| async move {
    online_store_contract(&db, "v").await;
    online_store_contract(&db, "w").await;
});

#[tokio::test]
async fn online_store_on_redis() {
    let prefix = format!("capstan-test-{}", uuid::Uuid::new_v4().simple());
    let redis = store::Redis::connect("redis://127.0.0.1:6379", &prefix)
        .await
        .expect("Redis on 127.0.0.1:6379 (scripts/test.sh starts it)");
    online_store_contract(&redis, "v").await;
    // The old generation was unlinked: only the current one and the counters remain.
    let keys = redis
        .pipeline(&[vec![b"KEYS".to_vec(), format!("{prefix}:*").into_bytes()]])
        .await
        .expect("keys");
    match &keys[0] {
        store::Reply::Array(Some(k)) => assert_eq!(k.len(), 3, "{k:?}"),
        other => panic!("{other:?}"),
    }
    for k in ["v:generation", "v:current", "v:g2"] {
        redis
            .pipeline(&[vec![b"DEL".to_vec(), format!("{prefix}:{k}").into_bytes()]])
            .await
            .expect("cleanup");
    }
}

db_test!(
    cached_online_reads_see_other_writers_after_recheck,
    |db: Db| async move {
        use features::online::{CachedOnline, OnlineRow, OnlineStore};
        let row = |v: f64| OnlineRow {
            ts: 1,
            values: vec![serde_json::json!(v)],
        };
        let raw: std::sync::Arc<dyn OnlineStore> = std::sync::Arc::new(db.clone());
        raw.replace_view("v", &[("a".into(), row(1.0))])
            .await
            .expect("first");
        assert_eq!(raw.version("v").await.expect("version"), 1);
        let slow = CachedOnline::new(raw.clone(), std::time::Duration::from_secs(3600));
        let fresh = CachedOnline::new(raw.clone(), std::time::Duration::ZERO);
        assert_eq!(
            slow.read("v", &["a".into()]).await.expect("read"),
            vec![Some(row(1.0))]
        );
        assert_eq!(
            fresh.read("v", &["a".into()]).await.expect("read"),
            vec![Some(row(1.0))]
        );
        // Another process materialises: the raw store changes underneath both caches.
        raw.replace_view("v", &[("a".into(), row(2.0))])
            .await
            .expect("second");
        assert_eq!(raw.version("v").await.expect("version"), 2);
        assert_eq!(
            slow.read("v", &["a".into()]).await.expect("read"),
            vec![Some(row(1.0))],
            "within the recheck interval the cache answers"
        );
        assert_eq!(
            fresh.read("v", &["a".into()]).await.expect("read"),
            vec![Some(row(2.0))],
            "after it, the new version is seen"
        );
        // Writing through the cache invalidates it at once.
        slow.replace_view("v", &[("a".into(), row(3.0))])
            .await
            .expect("third");
        assert_eq!(
            slow.read("v", &["a".into()]).await.expect("read"),
            vec![Some(row(3.0))]
        );
        assert_eq!(
            slow.read("v", &["zz".into()]).await.expect("read"),
            vec![None]
        );
    }
);
