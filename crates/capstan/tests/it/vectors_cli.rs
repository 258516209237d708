//! `capstan vectors …` on the embedded store, with texts embedded by the real MiniLM.

use crate::binary::{cli, cli_ok, start};

#[tokio::test]
async fn vectors_cli_loads_texts_searches_and_refuses_a_second_writer() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    // Share the machine's model cache instead of fetching again.
    crate::binary::link_models(h);
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

#[test]
fn rag_cli_ingests_a_folder_and_answers_with_citations() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    crate::binary::link_models(h);
    let docs = h.join("docs");
    std::fs::create_dir_all(&docs).expect("mkdir");
    std::fs::write(
        docs.join("ownership.md"),
        "# Ownership\n\nWhen the owner goes out of scope, the value is dropped.\n",
    )
    .expect("write");
    std::fs::write(
        docs.join("cargo.md"),
        "# Cargo\n\nCargo downloads your dependencies from crates.io.\n",
    )
    .expect("write");
    std::fs::write(docs.join("notes.pdf"), b"%PDF-1.4").expect("write");
    let (code, out, err) = cli(
        h,
        &[
            "rag",
            "ingest",
            docs.to_str().unwrap(),
            "--collection",
            "book",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("2 documents (2 changed, 0 unchanged, 0 removed)"),
        "{out}"
    );
    assert!(
        err.contains("skipped notes.pdf: unsupported file type"),
        "{err}"
    );
    let out = cli_ok(
        h,
        &[
            "rag",
            "ingest",
            docs.to_str().unwrap(),
            "--collection",
            "book",
        ],
    );
    assert!(out.contains("(0 changed, 2 unchanged"), "{out}");
    let out = cli_ok(
        h,
        &[
            "rag",
            "query",
            "book",
            "what happens when the owner goes out of scope?",
        ],
    );
    assert!(
        out.starts_with("When the owner goes out of scope, the value is dropped. [1]"),
        "{out}"
    );
    assert!(out.contains("ownership.md"), "{out}");
    let (code, _, err) = cli(h, &["rag", "query", "nope", "x"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("collection `nope` does not exist"), "{err}");
}
