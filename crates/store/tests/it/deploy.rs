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
