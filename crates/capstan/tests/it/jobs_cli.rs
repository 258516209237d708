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

#[test]
fn a_worker_runs_submitted_jobs_and_the_queue_retries_failures() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    crate::binary::link_models(h);
    let docs = h.join("docs");
    std::fs::create_dir_all(&docs).expect("mkdir");
    std::fs::write(
        docs.join("own.md"),
        "# Ownership\n\nWhen the owner goes out of scope, the value is dropped.\n",
    )
    .expect("write");
    std::fs::write(
        docs.join("cargo.md"),
        "# Cargo\n\nCargo downloads dependencies from crates.io.\n",
    )
    .expect("write");
    let payload = format!(r#"{{"collection": "book", "path": "{}"}}"#, docs.display());
    assert!(cli_ok(h, &["jobs", "submit", "rag-ingest", "--payload", &payload]).contains("queued"));
    cli_ok(
        h,
        &[
            "jobs",
            "submit",
            "rag-ingest",
            "--payload",
            r#"{"collection": "x", "path": "/nowhere"}"#,
            "--max-attempts",
            "1",
        ],
    );
    cli_ok(
        h,
        &[
            "jobs",
            "submit",
            "data-repro",
            "--payload",
            r#"{"repo": "/nowhere"}"#,
            "--max-attempts",
            "2",
        ],
    );
    let (code, _, err) = cli(h, &["jobs", "submit", "shell", "--payload", "{}"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("unknown job kind"), "{err}");

    let out = cli_ok(h, &["worker", "--once", "--name", "w1"]);
    assert!(out.contains("job 1 (rag-ingest) succeeded"), "{out}");
    assert!(
        out.contains("job 2 (rag-ingest) failed: /nowhere does not exist; no attempts left"),
        "{out}"
    );
    assert!(
        out.contains("job 3 (data-repro) failed:") && out.contains("retry in"),
        "{out}"
    );

    let one: serde_json::Value =
        serde_json::from_str(&cli_ok(h, &["jobs", "show", "1"])).expect("json");
    assert_eq!(one["state"], "succeeded");
    assert_eq!(one["result"]["points"], 2, "{one}");
    assert_eq!(one["lease_owner"], "w1");
    let two: serde_json::Value =
        serde_json::from_str(&cli_ok(h, &["jobs", "show", "2"])).expect("json");
    assert_eq!(two["state"], "failed");
    let three: serde_json::Value =
        serde_json::from_str(&cli_ok(h, &["jobs", "show", "3"])).expect("json");
    assert_eq!(
        (three["state"].as_str(), three["attempts"].as_u64()),
        (Some("queued"), Some(1)),
        "{three}"
    );
    assert!(three["last_error"].as_str().is_some_and(|e| !e.is_empty()));
    // What the job ingested answers questions.
    let out = cli_ok(
        h,
        &[
            "rag",
            "query",
            "book",
            "when is a value dropped?",
            "--top-k",
            "1",
        ],
    );
    assert!(out.contains("own.md"), "{out}");
}

#[test]
fn schedules_are_created_listed_and_removed() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let out = cli_ok(
        h,
        &[
            "jobs",
            "schedule",
            "nightly",
            "--cron",
            "0 3 * * *",
            "rag-ingest",
            "--payload",
            r#"{"collection": "book", "path": "docs"}"#,
        ],
    );
    assert!(
        out.contains("schedule nightly: rag-ingest at `0 3 * * *`, next ")
            && out.trim_end().ends_with("03:00"),
        "{out}"
    );
    let out = cli_ok(h, &["jobs", "schedules"]);
    assert!(
        out.contains("nightly") && out.contains("0 3 * * *"),
        "{out}"
    );
    let (code, _, err) = cli(
        h,
        &[
            "jobs",
            "schedule",
            "bad",
            "--cron",
            "61 * * * *",
            "rag-ingest",
        ],
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("cron minute `61`"), "{err}");
    assert!(cli_ok(h, &["jobs", "unschedule", "nightly"]).contains("removed"));
    let (code, _, err) = cli(h, &["jobs", "unschedule", "nightly"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("no schedule named"), "{err}");
}
