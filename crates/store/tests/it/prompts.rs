//! The prompt registry on SQLite and PostgreSQL: versions numbered without gaps or repeats under
//! concurrent writers, read back whole; labels move.

use crate::db_test;
use gateway::prompts::{NewPromptVersion, PromptStore};
use std::sync::Arc;
use store::Db;

db_test!(prompt_versions_and_labels, |db: Db| async move {
    let new: NewPromptVersion = serde_json::from_value(serde_json::json!({
        "template": {"messages": [{"role": "user", "content": "{{ q }}"}]},
        "params": {"temperature": 0}, "commit_message": "m"}))
    .unwrap();
    let vars = gateway::prompts::check(&new).unwrap();
    let db = Arc::new(db);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (db, new, vars) = (db.clone(), new.clone(), vars.clone());
        tasks.push(tokio::spawn(async move {
            db.create_prompt_version("qa", &new, &vars)
                .await
                .unwrap()
                .version
        }));
    }
    let mut versions: Vec<i64> = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort();
    assert_eq!(versions, (1..=8).collect::<Vec<_>>());
    let v3 = db.prompt_version("qa", 3).await.unwrap().unwrap();
    assert_eq!(v3.template, new.template);
    assert_eq!(v3.variables, vars);
    assert_eq!(v3.params["temperature"], 0);
    assert!(db.prompt_version("qa", 9).await.unwrap().is_none());
    db.set_prompt_label("qa", "production", 2).await.unwrap();
    db.set_prompt_label("qa", "production", 5).await.unwrap();
    assert_eq!(db.prompt_labels("qa").await.unwrap()["production"], 5);
    assert_eq!(db.prompts().await.unwrap(), vec![("qa".to_string(), 8)]);
    assert_eq!(db.prompt_versions("qa").await.unwrap().len(), 8);
    let w: std::collections::BTreeMap<i64, f64> = [(1, 0.25), (2, 0.75)].into_iter().collect();
    db.set_prompt_split("qa", "production", Some(&w))
        .await
        .unwrap();
    assert_eq!(db.prompt_split("qa", "production").await.unwrap(), Some(w));
    db.set_prompt_split("qa", "production", None).await.unwrap();
    assert_eq!(db.prompt_split("qa", "production").await.unwrap(), None);
});
