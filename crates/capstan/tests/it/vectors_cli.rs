//! `capstan vectors …` on the embedded store, with texts embedded by the real MiniLM.

use crate::binary::{cli, cli_ok, start};

#[tokio::test]
async fn vectors_cli_loads_texts_searches_and_refuses_a_second_writer() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    // Share the machine's model cache instead of fetching again.
    let models = std::env::var_os("CAPSTAN_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/capstan")
        })
        .join("models");
    std::os::unix::fs::symlink(&models, h.join("models")).expect("link models");
    cli_ok(
        h,
        &["vectors", "create", "faq", "--model", "all-MiniLM-L6-v2"],
    );
    let lines = [
        r#"{"id": 1, "text": "To add a dependency, list it under [dependencies] in Cargo.toml.", "payload": {"book": "cargo"}}"#,
        r#"{"id": 2, "text": "A reference must never outlive the value it borrows.", "payload": {"book": "rust"}}"#,
        r#"{"id": "weather", "text": "Heavy rain keeps most people from renting bikes.", "payload": {"book": "none"}}"#,
    ];
    let file = h.join("faq.jsonl");
    std::fs::write(&file, lines.join("\n")).expect("write");
    let out = cli_ok(h, &["vectors", "upsert", "faq", file.to_str().unwrap()]);
    assert!(
        out.contains("upserted 3 points into faq (3 in all)"),
        "{out}"
    );
    let out = cli_ok(
        h,
        &[
            "vectors",
            "search",
            "faq",
            "--text",
            "does it rain a lot",
            "--limit",
            "1",
        ],
    );
    assert!(
        out.lines().nth(2).unwrap_or("").contains("weather"),
        "{out}"
    );
    let out = cli_ok(
        h,
        &[
            "vectors",
            "search",
            "faq",
            "--text",
            "how do I depend on a crate",
            "--limit",
            "3",
            "--filter",
            r#"{"must_not": [{"key": "book", "match": {"value": "cargo"}}]}"#,
        ],
    );
    assert!(!out.contains("cargo"), "{out}");
    let out = cli_ok(h, &["vectors", "list"]);
    assert!(out.contains("faq") && out.contains("384"), "{out}");
    let (code, _, err) = cli(h, &["vectors", "search", "faq", "--vector", "[1, 2]"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("query vector has dimension 2"), "{err}");

    // A running server owns the store: the CLI says so instead of corrupting it.
    let _s = start(h, &[]);
    let v: serde_json::Value = reqwest::get(format!("{}/collections/faq", _s.url))
        .await
        .expect("info")
        .json()
        .await
        .expect("json");
    assert_eq!(v["result"]["points_count"], 3, "{v}");
    let (code, _, err) = cli(h, &["vectors", "list"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("in use by another process"), "{err}");
}
