//! `capstan jobs …` over jobs queued in the embedded metadata database.

use crate::binary::{cli, cli_ok};
use pipeline::jobs::{JobQueue, NewJob};

#[tokio::test]
async fn jobs_cli_lists_shows_and_cancels() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let db = store::Db::open(&format!("sqlite://{}", h.join("capstan.db").display()))
        .await
        .expect("db");
    let now = base::now_millis();
    let a = db
        .enqueue(
            NewJob::new("retrain", serde_json::json!({"model": "bikes"})),
            now,
        )
        .await
        .expect("enqueue");
    let b = db
        .enqueue(
            NewJob::new("rag-ingest", serde_json::json!({"path": "docs"})),
            now,
        )
        .await
        .expect("enqueue");
    db.lease("worker-1", &["rag-ingest".to_owned()], 60_000, now)
        .await
        .expect("lease")
        .expect("job");
    drop(db);

    let out = cli_ok(h, &["jobs", "list"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[2].contains("rag-ingest")
            && lines[2].contains("running")
            && lines[2].contains("worker-1"),
        "{out}"
    );
    assert!(
        lines[3].contains("retrain") && lines[3].contains("queued") && lines[3].contains("0/3"),
        "{out}"
    );
    let shown = cli_ok(h, &["jobs", "show", &a.id.to_string()]);
    let v: serde_json::Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(v["payload"]["model"], "bikes");
    assert!(cli_ok(h, &["jobs", "cancel", &a.id.to_string()]).contains("cancelled"));
    let (code, _, err) = cli(h, &["jobs", "cancel", &a.id.to_string()]);
    assert_ne!(code, Some(0));
    assert!(err.contains("already finished"), "{err}");
    let out = cli_ok(h, &["jobs", "list", "--state", "cancelled"]);
    assert!(
        out.contains("retrain") && !out.contains("rag-ingest"),
        "{out}"
    );
    let (code, _, err) = cli(h, &["jobs", "list", "--state", "sleeping"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("unknown state"), "{err}");
    assert!(cli_ok(h, &["jobs", "show", &b.id.to_string()]).contains("\"running\""));
}
