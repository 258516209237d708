//! Tracking store behaviour, identical on every backend.

use crate::db_test;
use base::{ArtifactPath, ContentHash, ExperimentId, RunId};
use std::sync::Arc;
use store::Db;
use tracking::*;

fn svc(db: &Db) -> Tracking {
    Tracking::new(Arc::new(db.clone()))
}

fn m(key: &str, value: f64, ts: i64, step: i64) -> Metric {
    Metric {
        key: key.into(),
        value,
        timestamp: ts,
        step,
    }
}

async fn new_run(t: &Tracking, exp: ExperimentId, name: &str, start: i64) -> Run {
    t.create_run(NewRun {
        experiment_id: exp,
        run_name: Some(name.into()),
        user_id: "u".into(),
        start_time: start,
        tags: vec![],
    })
    .await
    .expect("create run")
}

db_test!(experiments_lifecycle, |db: Db| async move {
    let t = svc(&db);
    let default = t
        .get_experiment(ExperimentId::DEFAULT)
        .await
        .expect("default exists");
    assert_eq!(default.name, "Default");
    let id = t
        .create_experiment("exp-a", None, &[Tag::new("team", "ml")])
        .await
        .expect("create");
    let e = t.get_experiment(id).await.expect("get");
    assert_eq!(e.artifact_location, format!("mlflow-artifacts:/{id}"));
    assert_eq!(e.tags, vec![Tag::new("team", "ml")]);
    assert_eq!(
        t.get_experiment_by_name("exp-a").await.expect("by name").id,
        id
    );
    let dup = t
        .create_experiment("exp-a", None, &[])
        .await
        .expect_err("duplicate");
    assert_eq!(dup.code(), base::ErrorCode::ResourceAlreadyExists);
    t.rename_experiment(id, "exp-b").await.expect("rename");
    assert!(t.get_experiment_by_name("exp-a").await.is_err());
    t.delete_experiment(id).await.expect("delete");
    assert_eq!(
        t.get_experiment(id).await.expect("get").lifecycle,
        Lifecycle::Deleted
    );
    let active = t
        .list_experiments(ViewType::ActiveOnly, 100, 0)
        .await
        .expect("list")
        .items;
    assert!(active.iter().all(|e| e.id != id));
    t.restore_experiment(id).await.expect("restore");
    t.set_experiment_tag(id, &Tag::new("team", "data"))
        .await
        .expect("tag");
    assert_eq!(
        t.get_experiment(id).await.expect("get").tags,
        vec![Tag::new("team", "data")]
    );
    let missing = t
        .get_experiment(ExperimentId::new(9999))
        .await
        .expect_err("missing");
    assert_eq!(missing.code(), base::ErrorCode::ResourceDoesNotExist);
});

db_test!(runs_params_metrics_tags, |db: Db| async move {
    let t = svc(&db);
    let exp = t.create_experiment("runs", None, &[]).await.expect("exp");
    let run = new_run(&t, exp, "first", 1000).await;
    let id = run.info.run_id.clone();
    assert_eq!(run.info.run_name, "first");
    assert!(run.info.artifact_uri.ends_with(&format!("/{id}/artifacts")));
    assert!(run.tags.contains(&Tag::new("mlflow.runName", "first")));

    t.log_batch(
        &id,
        &[
            m("loss", 1.0, 10, 0),
            m("loss", 0.5, 20, 1),
            m("loss", 0.7, 5, 2),
            m("acc", f64::NAN, 1, 0),
        ],
        &[Tag::new("lr", "0.1")],
        &[Tag::new("env", "test")],
    )
    .await
    .expect("batch");
    // Logging the same param value again is fine; another value is refused and changes nothing.
    t.log_batch(&id, &[], &[Tag::new("lr", "0.1")], &[])
        .await
        .expect("same param");
    let err = t
        .log_batch(&id, &[m("loss", 9.0, 99, 9)], &[Tag::new("lr", "0.2")], &[])
        .await
        .expect_err("changed param");
    assert_eq!(err.code(), base::ErrorCode::InvalidParameterValue);
    assert!(err.to_string().contains("lr"), "{err}");

    let run = t.get_run(&id).await.expect("get");
    let loss = run.metrics.iter().find(|m| m.key == "loss").expect("loss");
    assert_eq!(
        (loss.value, loss.step),
        (0.7, 2),
        "latest = highest step, not latest timestamp"
    );
    assert!(
        run.metrics
            .iter()
            .find(|m| m.key == "acc")
            .is_some_and(|m| m.value.is_nan())
    );
    assert_eq!(run.params, vec![Tag::new("lr", "0.1")]);
    let hist = t
        .metric_history(&id, "loss", None, 0)
        .await
        .expect("history")
        .items;
    assert_eq!(
        hist.iter().map(|m| m.value).collect::<Vec<_>>(),
        vec![1.0, 0.5, 0.7],
        "the failed batch left nothing"
    );
    let page = t
        .metric_history(&id, "loss", Some(2), 0)
        .await
        .expect("page");
    assert_eq!((page.items.len(), page.next_offset), (2, Some(2)));

    let info = t
        .update_run(
            &id,
            RunUpdate {
                status: Some(RunStatus::Finished),
                end_time: Some(2000),
                run_name: Some("renamed".into()),
            },
        )
        .await
        .expect("update");
    assert_eq!(
        (info.status, info.end_time, info.run_name.as_str()),
        (RunStatus::Finished, Some(2000), "renamed")
    );
    t.delete_tag(&id, "env").await.expect("delete tag");
    assert!(
        t.get_run(&id)
            .await
            .expect("get")
            .tags
            .iter()
            .all(|t| t.key != "env")
    );

    t.log_inputs(
        &id,
        &[DatasetInput {
            dataset: Dataset {
                name: "diabetes".into(),
                digest: "abc123".into(),
                source_type: "local".into(),
                source: "data/diabetes.csv".into(),
                schema: None,
                profile: None,
            },
            tags: vec![Tag::new("mlflow.data.context", "training")],
        }],
    )
    .await
    .expect("inputs");
    assert_eq!(
        t.get_run(&id).await.expect("get").inputs[0].dataset.digest,
        "abc123"
    );

    t.delete_run(&id).await.expect("delete");
    let err = t
        .log_batch(&id, &[m("x", 1.0, 1, 0)], &[], &[])
        .await
        .expect_err("deleted run refuses writes");
    assert_eq!(err.code(), base::ErrorCode::InvalidParameterValue);
    t.restore_run(&id).await.expect("restore");
    let unknown = RunId::random();
    assert_eq!(
        t.get_run(&unknown).await.expect_err("unknown").code(),
        base::ErrorCode::ResourceDoesNotExist
    );
});

db_test!(batch_limits, |db: Db| async move {
    let t = svc(&db);
    let run = new_run(&t, ExperimentId::DEFAULT, "limits", 1).await;
    let many: Vec<Metric> = (0..1001).map(|i| m("k", i as f64, i, i)).collect();
    let err = t
        .log_batch(&run.info.run_id, &many, &[], &[])
        .await
        .expect_err("too many");
    assert!(err.to_string().contains("at most 1000 metrics"), "{err}");
    let ok: Vec<Metric> = (0..1000).map(|i| m("k", i as f64, i, i)).collect();
    t.log_batch(&run.info.run_id, &ok, &[], &[])
        .await
        .expect("1000 is fine");
    let bad_key = t
        .log_batch(&run.info.run_id, &[m("../etc", 1.0, 1, 1)], &[], &[])
        .await
        .expect_err("bad key");
    assert_eq!(bad_key.code(), base::ErrorCode::InvalidParameterValue);
});

db_test!(search_filters_and_orders, |db: Db| async move {
    let t = svc(&db);
    let exp = t.create_experiment("search", None, &[]).await.expect("exp");
    let mut ids = Vec::new();
    for i in 0..6i64 {
        let r = new_run(&t, exp, &format!("run-{i}"), 1000 + i).await;
        let mut metrics = vec![m("rmse", 1.0 - i as f64 * 0.1, 1, 0)];
        if i == 5 {
            metrics.clear(); // run-5 has no rmse: it sorts last both ways
        }
        let solver = if i % 2 == 0 { "lbfgs" } else { "Adam" };
        t.log_batch(
            &r.info.run_id,
            &metrics,
            &[Tag::new("solver", solver)],
            &[Tag::new("env", format!("env{i}"))],
        )
        .await
        .expect("log");
        ids.push(r.info.run_id);
    }
    let names = |p: Page<Run>| {
        p.items
            .into_iter()
            .map(|r| r.info.run_name)
            .collect::<Vec<_>>()
    };
    let q = |f: &str, o: &[&str], max: u32, off: u64| {
        let t = t.clone();
        let f = f.to_owned();
        let o: Vec<String> = o.iter().map(|s| s.to_string()).collect();
        async move {
            t.search_runs(vec![exp], &f, &o, ViewType::ActiveOnly, max, off)
                .await
        }
    };
    assert_eq!(
        names(q("", &[], 100, 0).await.expect("all")),
        ["run-5", "run-4", "run-3", "run-2", "run-1", "run-0"]
    );
    assert_eq!(
        names(
            q("metrics.rmse < 0.75", &["metrics.rmse ASC"], 100, 0)
                .await
                .expect("f")
        ),
        ["run-4", "run-3"]
    );
    assert_eq!(
        names(
            q("params.solver = 'lbfgs'", &["metrics.rmse DESC"], 100, 0)
                .await
                .expect("f")
        ),
        ["run-0", "run-2", "run-4"]
    );
    assert_eq!(
        names(q("", &["metrics.rmse DESC"], 100, 0).await.expect("f"))
            .last()
            .map(String::as_str),
        Some("run-5")
    );
    assert_eq!(
        names(q("", &["metrics.rmse ASC"], 100, 0).await.expect("f"))
            .last()
            .map(String::as_str),
        Some("run-5")
    );
    assert_eq!(
        names(
            q("params.solver LIKE 'a%'", &[], 100, 0)
                .await
                .expect("case-sensitive LIKE")
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        names(
            q(
                "params.solver ILIKE 'a%'",
                &["attributes.start_time ASC"],
                100,
                0
            )
            .await
            .expect("ILIKE")
        ),
        ["run-1", "run-3", "run-5"]
    );
    assert_eq!(
        names(
            q(
                "tags.env = 'env3' and attributes.run_name = 'run-3'",
                &[],
                100,
                0
            )
            .await
            .expect("tags")
        ),
        ["run-3"]
    );
    let in_list = format!("attributes.run_id IN ('{}', '{}')", ids[0], ids[1]);
    assert_eq!(q(&in_list, &[], 100, 0).await.expect("in").items.len(), 2);
    assert_eq!(
        names(
            q("attributes.start_time >= 1004", &[], 100, 0)
                .await
                .expect("time")
        ),
        ["run-5", "run-4"]
    );
    assert_eq!(
        names(
            q(
                "params.missing IS NULL and metrics.rmse <= 0.6",
                &[],
                100,
                0
            )
            .await
            .expect("null")
        ),
        ["run-4"]
    );
    // Paging walks every run exactly once.
    let p1 = q("", &["metrics.rmse ASC"], 4, 0).await.expect("p1");
    assert_eq!(p1.next_offset, Some(4));
    let p2 = q("", &["metrics.rmse ASC"], 4, 4).await.expect("p2");
    assert_eq!(p2.next_offset, None);
    assert_eq!(
        names(p1).into_iter().chain(names(p2)).collect::<Vec<_>>(),
        ["run-4", "run-3", "run-2", "run-1", "run-0", "run-5"]
    );
    // NaN sorts after numbers and before missing keys, in both directions; offsets that skip whole
    // segments land on the right run.
    let nan_run = new_run(&t, exp, "run-nan", 999).await;
    t.log_batch(&nan_run.info.run_id, &[m("rmse", f64::NAN, 1, 0)], &[], &[])
        .await
        .expect("nan");
    for dir in ["ASC", "DESC"] {
        let order = format!("metrics.rmse {dir}");
        let all = names(q("", &[&order], 100, 0).await.expect("all"));
        assert_eq!(&all[5..], ["run-nan", "run-5"], "{dir}: {all:?}");
        for (offset, want) in all.iter().enumerate() {
            let one = names(q("", &[&order], 1, offset as u64).await.expect("one"));
            assert_eq!(one, std::slice::from_ref(want), "{dir} offset {offset}");
        }
    }
    assert_eq!(
        names(
            q(
                "params.solver = 'Adam'",
                &["params.solver DESC", "metrics.rmse ASC"],
                100,
                0
            )
            .await
            .expect("p")
        ),
        ["run-3", "run-1", "run-5"]
    );
    t.delete_run(&nan_run.info.run_id)
        .await
        .expect("delete nan run");
    // Deleted runs only show in the views that ask for them.
    t.delete_run(&ids[0]).await.expect("delete");
    assert_eq!(
        t.search_runs(vec![exp], "", &[], ViewType::DeletedOnly, 10, 0)
            .await
            .expect("deleted")
            .items
            .len(),
        2
    );
    assert_eq!(
        t.search_runs(vec![exp], "", &[], ViewType::All, 10, 0)
            .await
            .expect("all")
            .items
            .len(),
        7
    );
    let bad = q("metrics.rmse ~ 1", &[], 10, 0)
        .await
        .expect_err("bad filter");
    assert_eq!(bad.code(), base::ErrorCode::InvalidParameterValue);
});

db_test!(artifact_index_and_tokens, |db: Db| async move {
    let p = |s: &str| ArtifactPath::parse(s).expect("path");
    let h = ContentHash::of(b"x");
    for path in [
        "1/r/artifacts/a.txt",
        "1/r/artifacts/dir/b.txt",
        "1/r/artifacts/dir/c/d.txt",
        "1/r/artifacts0/no.txt",
    ] {
        db.put_artifact(&ArtifactEntry {
            path: p(path),
            hash: h.clone(),
            size: 1,
        })
        .await
        .expect("put");
    }
    let listed: Vec<String> = db
        .list_artifacts(&p("1/r/artifacts"))
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.path.to_string())
        .collect();
    assert_eq!(
        listed,
        [
            "1/r/artifacts/a.txt",
            "1/r/artifacts/dir/b.txt",
            "1/r/artifacts/dir/c/d.txt"
        ]
    );
    assert!(
        db.get_artifact(&p("1/r/artifacts/a.txt"))
            .await
            .expect("get")
            .is_some()
    );
    assert_eq!(
        db.delete_artifacts(&p("1/r/artifacts/dir"))
            .await
            .expect("delete"),
        2
    );

    let tok = ContentHash::of(b"secret-token");
    assert_eq!(db.count_tokens().await.expect("count"), 0);
    let info = db
        .create_token("ci", &tok, Scope::Write)
        .await
        .expect("create token");
    assert_eq!(
        db.find_token(&tok).await.expect("find").map(|i| i.scope),
        Some(Scope::Write)
    );
    db.revoke_token(info.id).await.expect("revoke");
    assert!(db.find_token(&tok).await.expect("find").is_none());
});

db_test!(
    concurrent_batches_behave_as_if_sequential,
    |db: Db| async move {
        let t = svc(&db);
        let run = new_run(&t, ExperimentId::DEFAULT, "concurrent", 1).await;
        let deleted = new_run(&t, ExperimentId::DEFAULT, "gone", 1).await;
        t.delete_run(&deleted.info.run_id).await.expect("delete");
        let mut tasks = Vec::new();
        for i in 0..24i64 {
            let (t, id, gone) = (
                t.clone(),
                run.info.run_id.clone(),
                deleted.info.run_id.clone(),
            );
            tasks.push(tokio::spawn(async move {
                // Every third request targets a deleted run; the others race to set `lr`.
                let target = if i % 3 == 0 { gone } else { id };
                let lr = if i % 2 == 0 { "a" } else { "b" };
                let metrics: Vec<Metric> = (0..50)
                    .map(|j| m("loss", j as f64, i, i * 100 + j))
                    .collect();
                (
                    i,
                    lr,
                    t.log_batch(&target, &metrics, &[Tag::new("lr", lr)], &[])
                        .await,
                )
            }));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.expect("join"));
        }
        let stored = t.get_run(&run.info.run_id).await.expect("get");
        let winner = stored
            .params
            .iter()
            .find(|p| p.key == "lr")
            .map(|p| p.value.clone())
            .expect("lr logged");
        let mut ok_steps = 0;
        for (i, lr, result) in &outcomes {
            if i % 3 == 0 {
                assert_eq!(
                    result.as_ref().map_err(|e| e.code()),
                    Err(base::ErrorCode::InvalidParameterValue),
                    "request {i} to a deleted run"
                );
            } else if *lr == winner {
                assert!(
                    result.is_ok(),
                    "request {i} agrees with the stored param: {result:?}"
                );
                ok_steps += 50;
            } else {
                assert_eq!(
                    result.as_ref().map_err(|e| e.code()),
                    Err(base::ErrorCode::InvalidParameterValue),
                    "request {i} changes the param: {result:?}"
                );
            }
        }
        let history = t
            .metric_history(&run.info.run_id, "loss", None, 0)
            .await
            .expect("history")
            .items;
        assert_eq!(
            history.len(),
            ok_steps,
            "exactly the accepted batches are stored"
        );
        let latest = stored
            .metrics
            .iter()
            .find(|m| m.key == "loss")
            .expect("latest");
        assert_eq!(
            latest.step,
            history.iter().map(|m| m.step).max().unwrap_or(-1)
        );
    }
);
