//! The job queue, identical on SQLite and PostgreSQL: leases, heartbeats, expiry and reclaim,
//! retries with backoff, deduplication, cancellation, and concurrent workers never sharing a job.

use crate::db_test;
use pipeline::jobs::{JobQueue, JobState, NewJob, backoff_ms};
use serde_json::json;
use store::Db;

fn job(kind: &str, n: i64) -> NewJob {
    NewJob::new(kind, json!({"n": n}))
}

db_test!(jobs_run_through_their_lifecycle, |db: Db| async move {
    let a = db.enqueue(job("retrain", 1), 1_000).await.expect("enqueue");
    assert_eq!(
        (a.state, a.attempts, a.kind.as_str()),
        (JobState::Queued, 0, "retrain")
    );
    let mut later = job("retrain", 2);
    later.run_after_ms = 50_000;
    let b = db.enqueue(later, 1_000).await.expect("enqueue later");
    db.enqueue(job("ingest", 3), 1_000)
        .await
        .expect("enqueue other kind");

    // Kind filter, then oldest runnable first; a job whose time has not come is not leased.
    let kinds = vec!["retrain".to_owned()];
    let l = db
        .lease("w1", &kinds, 10_000, 2_000)
        .await
        .expect("lease")
        .expect("a job");
    assert_eq!(l.id, a.id);
    assert_eq!(
        (
            l.state,
            l.attempts,
            l.lease_owner.as_deref(),
            l.lease_until_ms
        ),
        (JobState::Running, 1, Some("w1"), Some(12_000))
    );
    assert!(
        db.lease("w2", &kinds, 10_000, 2_000)
            .await
            .expect("lease")
            .is_none(),
        "b runs at 50 s"
    );
    assert!(
        db.heartbeat(a.id, "w1", 10_000, 5_000)
            .await
            .expect("heartbeat")
    );
    assert_eq!(
        db.get(a.id)
            .await
            .expect("get")
            .expect("job")
            .lease_until_ms,
        Some(15_000)
    );
    assert!(
        !db.heartbeat(a.id, "w2", 10_000, 5_000)
            .await
            .expect("heartbeat"),
        "not w2's lease"
    );
    assert!(
        db.complete(a.id, "w1", json!({"version": 7}), 6_000)
            .await
            .expect("complete")
    );
    let done = db.get(a.id).await.expect("get").expect("job");
    assert_eq!(
        (done.state, done.result),
        (JobState::Succeeded, Some(json!({"version": 7})))
    );
    assert!(
        !db.complete(a.id, "w1", json!(null), 7_000)
            .await
            .expect("complete twice")
    );

    let next = db
        .lease("w1", &kinds, 10_000, 60_000)
        .await
        .expect("lease")
        .expect("b");
    assert_eq!(next.id, b.id);
    let all = db.list(None, 10).await.expect("list");
    assert_eq!(all.len(), 3);
    assert!(all[0].id > all[2].id, "newest first");
    assert_eq!(
        db.list(Some(JobState::Succeeded), 10)
            .await
            .expect("list")
            .len(),
        1
    );
});

db_test!(
    expired_leases_are_reclaimed_and_the_old_worker_is_refused,
    |db: Db| async move {
        let j = db.enqueue(job("repro", 1), 0).await.expect("enqueue");
        db.lease("dead", &[], 1_000, 0)
            .await
            .expect("lease")
            .expect("job");
        // Its worker died: after the lease ends, another worker gets the job.
        assert!(
            db.lease("w2", &[], 1_000, 500)
                .await
                .expect("lease")
                .is_none(),
            "lease still valid"
        );
        let again = db
            .lease("w2", &[], 1_000, 2_000)
            .await
            .expect("lease")
            .expect("reclaimed");
        assert_eq!(
            (again.id, again.attempts, again.lease_owner.as_deref()),
            (j.id, 2, Some("w2"))
        );
        assert!(
            !db.complete(j.id, "dead", json!(1), 2_500)
                .await
                .expect("late complete"),
            "the dead worker lost it"
        );
        assert!(
            db.fail(j.id, "dead", "late", 2_500)
                .await
                .expect("late fail")
                .is_none()
        );
        assert!(
            db.complete(j.id, "w2", json!(2), 2_600)
                .await
                .expect("complete")
        );

        // Out of attempts through expiry alone: it fails instead of running a fourth time.
        let k = db.enqueue(job("repro", 2), 10_000).await.expect("enqueue");
        for (i, t) in [10_000, 20_000, 30_000].into_iter().enumerate() {
            let l = db
                .lease(&format!("w{i}"), &[], 1_000, t)
                .await
                .expect("lease")
                .expect("job");
            assert_eq!(l.id, k.id);
        }
        assert!(
            db.lease("w9", &[], 1_000, 40_000)
                .await
                .expect("lease")
                .is_none()
        );
        let gone = db.get(k.id).await.expect("get").expect("job");
        assert_eq!(gone.state, JobState::Failed);
        assert!(
            gone.last_error
                .unwrap_or_default()
                .contains("lease expired")
        );
    }
);

db_test!(failures_retry_with_backoff_then_fail, |db: Db| async move {
    let mut n = job("train", 1);
    n.max_attempts = 2;
    let j = db.enqueue(n, 0).await.expect("enqueue");
    db.lease("w", &[], 60_000, 0)
        .await
        .expect("lease")
        .expect("job");
    let retry = db
        .fail(j.id, "w", "boom", 100)
        .await
        .expect("fail")
        .expect("mine");
    assert_eq!(retry.state, JobState::Queued);
    assert_eq!(retry.run_after_ms, 100 + backoff_ms(j.id, 1));
    assert_eq!(retry.last_error.as_deref(), Some("boom"));
    assert!(
        db.lease("w", &[], 60_000, 100)
            .await
            .expect("lease")
            .is_none(),
        "backing off"
    );
    let second = db
        .lease("w", &[], 60_000, retry.run_after_ms)
        .await
        .expect("lease")
        .expect("retry");
    assert_eq!(second.attempts, 2);
    let dead = db
        .fail(j.id, "w", "boom again", retry.run_after_ms + 1)
        .await
        .expect("fail")
        .expect("mine");
    assert_eq!(
        (dead.state, dead.last_error.as_deref()),
        (JobState::Failed, Some("boom again"))
    );
});

db_test!(dedupe_keys_and_cancellation, |db: Db| async move {
    let mut d = job("retrain", 1);
    d.dedupe_key = Some("retrain:bikes:drift".into());
    let first = db.enqueue(d.clone(), 0).await.expect("enqueue");
    let second = db.enqueue(d.clone(), 10).await.expect("enqueue again");
    assert_eq!(first.id, second.id, "one incident, one job");
    db.lease("w", &[], 1_000, 20)
        .await
        .expect("lease")
        .expect("job");
    assert_eq!(
        db.enqueue(d.clone(), 30).await.expect("while running").id,
        first.id
    );
    assert!(
        db.complete(first.id, "w", json!(null), 40)
            .await
            .expect("complete")
    );
    let third = db.enqueue(d, 50).await.expect("after it finished");
    assert_ne!(third.id, first.id);

    assert!(db.cancel(third.id, 60).await.expect("cancel"));
    assert_eq!(
        db.get(third.id).await.expect("get").expect("job").state,
        JobState::Cancelled
    );
    assert!(
        db.lease("w", &[], 1_000, 70)
            .await
            .expect("lease")
            .is_none(),
        "cancelled jobs never run"
    );
    assert!(
        !db.cancel(first.id, 80).await.expect("cancel finished"),
        "finished jobs stay finished"
    );
    assert!(
        db.enqueue(NewJob::new("bad kind!", json!(null)), 0)
            .await
            .is_err()
    );
});

db_test!(concurrent_workers_never_share_a_job, |db: Db| async move {
    for i in 0..60 {
        db.enqueue(job("work", i), 0).await.expect("enqueue");
    }
    let mut tasks = Vec::new();
    for w in 0..4 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(j) = db
                .lease(&format!("w{w}"), &[], 60_000, 1)
                .await
                .expect("lease")
            {
                got.push(j.id);
                assert!(
                    db.complete(j.id, &format!("w{w}"), json!(w), 2)
                        .await
                        .expect("complete")
                );
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("worker"));
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!((n, all.len()), (60, 60), "every job leased exactly once");
    assert_eq!(
        db.list(Some(JobState::Succeeded), 100)
            .await
            .expect("list")
            .len(),
        60
    );
});

db_test!(
    schedules_fire_each_tick_once_however_many_workers_ask,
    |db: Db| async move {
        use pipeline::schedules::{Schedule, ScheduleStore, fire_due};
        // 2026-11-27T10:47:30Z.
        let t = 1_795_776_450_000i64;
        let s =
            Schedule::new("hourly-retrain", "0 * * * *", &job("retrain", 1), t).expect("schedule");
        assert_eq!(
            s.next_fire_ms,
            t - 30_000 - 47 * 60_000 + 3_600_000,
            "11:00"
        );
        db.put_schedule(&s).await.expect("put");
        assert!(
            fire_due(&db, t).await.expect("fire").is_empty(),
            "not due yet"
        );
        // Three workers check at 11:00:05: one job.
        let at = s.next_fire_ms + 5_000;
        let (a, b, c) = tokio::join!(fire_due(&db, at), fire_due(&db, at), fire_due(&db, at));
        let fired: Vec<i64> = [a, b, c]
            .into_iter()
            .flat_map(|r| r.expect("fire"))
            .collect();
        assert_eq!(fired.len(), 1, "{fired:?}");
        let j = db.get(fired[0]).await.expect("get").expect("job");
        assert_eq!(
            (j.kind.as_str(), j.dedupe_key.as_deref()),
            (
                "retrain",
                Some(format!("schedule:hourly-retrain:{}", s.next_fire_ms)).as_deref()
            )
        );
        let listed = db.list_schedules().await.expect("list");
        assert_eq!(
            listed[0].next_fire_ms,
            s.next_fire_ms + 3_600_000,
            "12:00 next"
        );
        // Down for five hours: the missed ticks fire once, then it is back on the hour.
        let late = s.next_fire_ms + 5 * 3_600_000 + 60_000;
        assert_eq!(fire_due(&db, late).await.expect("fire").len(), 1);
        assert_eq!(
            db.list_schedules().await.expect("list")[0].next_fire_ms,
            s.next_fire_ms + 6 * 3_600_000
        );
        assert!(db.delete_schedule("hourly-retrain").await.expect("delete"));
        assert!(
            !db.delete_schedule("hourly-retrain")
                .await
                .expect("delete again")
        );
        assert!(
            Schedule::new("x", "0 0 31 2 *", &job("retrain", 1), t).is_err(),
            "never fires"
        );
        assert!(Schedule::new("bad name", "* * * * *", &job("retrain", 1), t).is_err());
    }
);

db_test!(
    a_job_is_leased_by_id_only_when_runnable,
    |db: Db| async move {
        let older = db.enqueue(job("retrain", 1), 1_000).await.expect("enqueue");
        let mine = db.enqueue(job("retrain", 2), 1_000).await.expect("enqueue");
        let mut later = job("retrain", 3);
        later.run_after_ms = 50_000;
        let not_yet = db.enqueue(later, 1_000).await.expect("enqueue");
        // By id, past an older job of the same kind.
        let l = db
            .lease_id(mine.id, "cli", 10_000, 2_000)
            .await
            .expect("lease")
            .expect("leased");
        assert_eq!((l.id, l.state, l.attempts), (mine.id, JobState::Running, 1));
        assert_eq!(l.lease_owner.as_deref(), Some("cli"));
        // Held: not again, not by a worker.
        assert!(
            db.lease_id(mine.id, "other", 10_000, 3_000)
                .await
                .expect("lease")
                .is_none()
        );
        let w = db
            .lease("w", &["retrain".to_owned()], 10_000, 3_000)
            .await
            .expect("lease")
            .expect("the older one");
        assert_eq!(w.id, older.id);
        // Not before its time; unknown ids are nothing.
        assert!(
            db.lease_id(not_yet.id, "cli", 10_000, 3_000)
                .await
                .expect("lease")
                .is_none()
        );
        assert!(
            db.lease_id(999_999, "cli", 10_000, 3_000)
                .await
                .expect("lease")
                .is_none()
        );
        // An expired lease is taken over, as `lease` would.
        let again = db
            .lease_id(mine.id, "cli2", 10_000, 20_000)
            .await
            .expect("lease")
            .expect("reclaimed");
        assert_eq!(
            (again.attempts, again.lease_owner.as_deref()),
            (2, Some("cli2"))
        );
    }
);

db_test!(
    a_jobs_log_tells_its_lifecycle_and_its_work,
    |db: Db| async move {
        let kinds = vec!["retrain".to_owned()];
        let mut new = job("retrain", 1);
        new.max_attempts = 2;
        let a = db.enqueue(new, 1_000).await.expect("enqueue");
        let other = db.enqueue(job("ingest", 2), 1_000).await.expect("enqueue");
        db.lease("w1", &kinds, 10_000, 2_000)
            .await
            .expect("lease")
            .expect("a job");
        db.append_log(
            a.id,
            &["training 100 rounds".into(), "rmse 70.1".into()],
            3_000,
        )
        .await
        .expect("append");
        let long = "é".repeat(3_000);
        db.append_log(a.id, std::slice::from_ref(&long), 3_500)
            .await
            .expect("append a long line");
        db.fail(a.id, "w1", "out of memory", 4_000)
            .await
            .expect("fail")
            .expect("held");
        // Attempt 2, after the backoff, succeeds.
        let retry_at = 4_000 + backoff_ms(a.id, 1);
        db.lease("w2", &kinds, 1_000, retry_at)
            .await
            .expect("lease")
            .expect("the retry");
        db.append_log(a.id, &["resumed".into()], retry_at + 10)
            .await
            .expect("append");
        assert!(
            db.complete(a.id, "w2", json!({"ok": true}), retry_at + 20)
                .await
                .expect("complete")
        );
        // Lines of a job that does not exist are dropped, not attached to another.
        db.append_log(999_999, &["nobody".into()], 5_000)
            .await
            .expect("no job, no error");

        let lines = db.logs(a.id, 0, 100).await.expect("logs");
        let text: Vec<(u32, &str)> = lines.iter().map(|l| (l.attempt, l.line.as_str())).collect();
        assert_eq!(text[0], (0, "queued (retrain)"));
        assert_eq!(text[1], (1, "attempt 1/2 leased by w1"));
        assert_eq!(text[2], (1, "training 100 rounds"));
        assert_eq!(text[3], (1, "rmse 70.1"));
        assert!(
            text[4].1.len() <= pipeline::jobs::MAX_LOG_LINE + 40
                && text[4].1.contains("bytes cut]"),
            "a long line is clipped at a character boundary: {} bytes",
            text[4].1.len()
        );
        assert!(
            text[5].1.starts_with("failed: out of memory; retry in"),
            "{:?}",
            text[5]
        );
        assert_eq!(text[6], (2, "attempt 2/2 leased by w2"));
        assert_eq!(text[7], (2, "resumed"));
        assert_eq!(text[8], (2, "succeeded"));
        assert_eq!(lines.len(), 9);
        assert!(lines.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(lines[2].time_ms, 3_000);

        // Paging: after the third line, two at a time.
        let page = db.logs(a.id, lines[2].seq, 2).await.expect("page");
        assert_eq!(
            page.iter().map(|l| l.seq).collect::<Vec<_>>(),
            vec![lines[3].seq, lines[4].seq]
        );
        // The other job's log holds only its own line; cancelling it adds one.
        assert!(db.cancel(other.id, 6_000).await.expect("cancel"));
        let theirs: Vec<String> = db
            .logs(other.id, 0, 100)
            .await
            .expect("logs")
            .into_iter()
            .map(|l| l.line)
            .collect();
        assert_eq!(theirs, vec!["queued (ingest)", "cancelled"]);
        assert!(db.logs(999_999, 0, 100).await.expect("logs").is_empty());
    }
);
