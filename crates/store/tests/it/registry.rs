//! Registry store behaviour, identical on every backend; promotion gates through the domain.

use crate::db_test;
use base::ExperimentId;
use registry::{NewVersion, Registry, Stage};
use std::sync::Arc;
use store::Db;
use tracking::{Metric, NewRun, Tag, Tracking};

fn svc(db: &Db) -> (Registry, Tracking) {
    let t = Tracking::new(Arc::new(db.clone()));
    (Registry::new(Arc::new(db.clone()), t.clone()), t)
}

fn version(source: &str, run_id: Option<&str>) -> NewVersion {
    NewVersion {
        source: source.into(),
        run_id: run_id.map(str::to_owned),
        ..Default::default()
    }
}

db_test!(models_versions_aliases_stages, |db: Db| async move {
    let (r, _) = svc(&db);
    let m = r
        .create_model("churn", "predicts churn", &[Tag::new("team", "ml")])
        .await
        .expect("create");
    assert_eq!(
        (m.name.as_str(), m.description.as_str()),
        ("churn", "predicts churn")
    );
    let dup = r
        .create_model("churn", "", &[])
        .await
        .expect_err("duplicate");
    assert_eq!(dup.code(), base::ErrorCode::ResourceAlreadyExists);
    let v1 = r
        .create_version("churn", version("runs:/a/model", None))
        .await
        .expect("v1");
    let v2 = r
        .create_version("churn", version("runs:/b/model", None))
        .await
        .expect("v2");
    assert_eq!((v1.version, v2.version, v2.stage), (1, 2, Stage::None));
    r.delete_version("churn", 2).await.expect("delete v2");
    let v3 = r
        .create_version("churn", version("runs:/c/model", None))
        .await
        .expect("v3");
    assert_eq!(v3.version, 3, "numbers are never reused");
    assert_eq!(
        r.create_version("nope", version("x", None))
            .await
            .expect_err("no model")
            .code(),
        base::ErrorCode::ResourceDoesNotExist
    );

    r.set_alias("churn", "champion", 1).await.expect("alias");
    assert_eq!(
        r.version_by_alias("churn", "champion")
            .await
            .expect("by alias")
            .version,
        1
    );
    r.set_alias("churn", "champion", 3)
        .await
        .expect("move alias");
    let by = r
        .version_by_alias("churn", "champion")
        .await
        .expect("moved");
    assert_eq!(
        (by.version, by.aliases.clone()),
        (3, vec!["champion".to_owned()])
    );
    assert_eq!(
        r.get_model("churn").await.expect("get").aliases,
        vec![("champion".to_owned(), 3)]
    );
    assert_eq!(
        r.version_by_alias("churn", "ghost")
            .await
            .expect_err("unknown alias")
            .code(),
        base::ErrorCode::ResourceDoesNotExist
    );
    assert!(
        r.set_alias("churn", "latest", 1).await.is_err(),
        "reserved alias"
    );
    assert!(
        r.set_alias("churn", "x", 99).await.is_err(),
        "unknown version"
    );

    r.transition_stage("churn", 1, "production", false)
        .await
        .expect("stage");
    r.transition_stage("churn", 3, "Production", true)
        .await
        .expect("stage");
    assert_eq!(
        r.get_version("churn", 1).await.expect("v1").stage,
        Stage::Archived,
        "archive_existing"
    );
    let latest = r
        .latest_versions("churn", &["Production".into()])
        .await
        .expect("latest");
    assert_eq!(latest.iter().map(|v| v.version).collect::<Vec<_>>(), [3]);
    assert!(r.transition_stage("churn", 1, "Live", false).await.is_err());

    r.set_version_tag("churn", 3, &Tag::new("validated", "yes"))
        .await
        .expect("tag");
    let found = r
        .search_versions("name = 'churn' and tags.validated = 'yes'", 100, 0)
        .await
        .expect("search")
        .items;
    assert_eq!(found.iter().map(|v| v.version).collect::<Vec<_>>(), [3]);
    let models = r
        .search_models(
            "name LIKE 'ch%' AND tag.`mlflow.prompt.is_prompt` != 'true'",
            &[],
            100,
            0,
        )
        .await
        .expect("models")
        .items;
    assert_eq!(models.len(), 1);
    assert_eq!(
        models[0].latest_versions.len(),
        2,
        "latest per stage: Production v3, Archived v1"
    );

    let renamed = r.rename_model("churn", "churn-v2").await.expect("rename");
    assert_eq!(renamed.aliases, vec![("champion".to_owned(), 3)]);
    assert_eq!(
        r.get_version("churn-v2", 3).await.expect("moved").tags,
        vec![Tag::new("validated", "yes")]
    );
    r.delete_model("churn-v2").await.expect("delete");
    assert_eq!(
        r.get_model("churn-v2").await.expect_err("gone").code(),
        base::ErrorCode::ResourceDoesNotExist
    );
    assert!(
        r.search_versions("", 100, 0)
            .await
            .expect("all")
            .items
            .is_empty()
    );
});

db_test!(promotion_is_gated_by_checks, |db: Db| async move {
    let (r, t) = svc(&db);
    let mut runs = Vec::new();
    for rmse in [70.0, 55.0] {
        let run = t
            .create_run(NewRun {
                experiment_id: ExperimentId::DEFAULT,
                run_name: None,
                user_id: "u".into(),
                start_time: 1,
                tags: vec![Tag::new("mlflow.source.git.commit", "abc123")],
            })
            .await
            .expect("run");
        t.log_batch(
            &run.info.run_id,
            &[Metric {
                key: "rmse".into(),
                value: rmse,
                timestamp: 1,
                step: 0,
            }],
            &[],
            &[],
        )
        .await
        .expect("log");
        runs.push(run.info.run_id.to_string());
    }
    r.create_model("bikes", "", &[]).await.expect("model");
    r.set_model_tag(
        "bikes",
        &Tag::new("capstan.check.rmse", "metrics.rmse < 60"),
    )
    .await
    .expect("check");
    assert!(
        r.set_model_tag("bikes", &Tag::new("capstan.check.bad", "metrics.rmse <"))
            .await
            .is_err(),
        "a malformed check is refused"
    );
    let weak = r
        .create_version(
            "bikes",
            version(&format!("runs:/{}/model", runs[0]), Some(&runs[0])),
        )
        .await
        .expect("v1");
    let good = r
        .create_version(
            "bikes",
            version(&format!("runs:/{}/model", runs[1]), Some(&runs[1])),
        )
        .await
        .expect("v2");
    let orphan = r
        .create_version("bikes", version("s3://somewhere", None))
        .await
        .expect("v3");
    let err = r
        .set_alias("bikes", "champion", weak.version)
        .await
        .expect_err("gate");
    assert_eq!(err.code(), base::ErrorCode::InvalidParameterValue);
    assert!(
        err.to_string().contains("rmse") && err.to_string().contains("70"),
        "{err}"
    );
    assert!(
        r.set_alias("bikes", "champion", orphan.version)
            .await
            .is_err(),
        "no run, no promotion"
    );
    r.set_alias("bikes", "champion", good.version)
        .await
        .expect("passes");
    let lineage = r.lineage("bikes", good.version).await.expect("lineage");
    assert_eq!(lineage.commit.as_deref(), Some("abc123"));
    assert_eq!(
        lineage.run.map(|r| r.info.run_id.to_string()),
        Some(runs[1].clone())
    );
});
