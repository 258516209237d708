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
