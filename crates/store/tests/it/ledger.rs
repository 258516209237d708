//! The gateway's budget ledger on every backend: concurrent reservations never pass the limit,
//! settling moves reserved to spent (`gateway::budget::conformance`). Redis is the ledger several
//! gateway replicas share: two connections reserve against one key.

use crate::db_test;
use gateway::budget::Ledger;
use std::sync::Arc;
use store::Db;

db_test!(ledger_in_the_metadata_db, |db: Db| async move {
    gateway::budget::conformance(Arc::new(db), "t").await;
});

async fn redis(prefix: &str) -> store::Redis {
    store::Redis::connect("redis://127.0.0.1:6379", prefix)
        .await
        .expect("Redis on 127.0.0.1:6379 (scripts/test.sh starts it)")
}

#[tokio::test]
async fn ledger_on_redis_shared_by_replicas() {
    let prefix = format!("capstan-test-{}", uuid::Uuid::new_v4().simple());
    gateway::budget::conformance(Arc::new(redis(&prefix).await), "t").await;
    // Two replicas (two connections), 40 concurrent reservations of 0.05 against a limit of 1.
    let a: Arc<dyn Ledger> = Arc::new(redis(&prefix).await);
    let b: Arc<dyn Ledger> = Arc::new(redis(&prefix).await);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let l = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            l.reserve("shared", 0.05, 1.0, i64::MAX).await
        }));
    }
    let mut granted = 0;
    for t in tasks {
        if t.await.expect("join").expect("reserve") {
            granted += 1;
        }
    }
    assert_eq!(granted, 20);
    let (spent, reserved) = a.get("shared").await.expect("get");
    assert_eq!(spent, 0.0);
    assert!((reserved - 1.0).abs() < 1e-9, "{reserved}");
    // A window key expires with its window.
    let soon = base::now_millis() + 200;
    assert!(a.reserve("window", 1.0, 2.0, soon).await.expect("reserve"));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(a.get("window").await.expect("get"), (0.0, 0.0));
}
