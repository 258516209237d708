//! The collections API over HTTP: Qdrant's shapes, texts embedded by the real MiniLM, filters,
//! and every refusal with its status.

use crate::support::{TestServer, start};
use reqwest::Method;
use serde_json::{Value, json};

fn error_of((status, body): (u16, Value)) -> (u16, String) {
    (
        status,
        body["status"]["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

async fn put(s: &TestServer, path: &str, body: Value) -> (u16, Value) {
    s.send(Method::PUT, path, body).await
}

#[tokio::test]
async fn collections_store_and_search_texts_and_vectors() {
    let s = start(Default::default()).await;
    // A text collection: the dimension comes from the embedding model.
    let (st, v) = put(
        &s,
        "/collections/kb",
        json!({"embedding_model": "all-MiniLM-L6-v2"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let docs = [
        (
            1,
            "Cargo is the Rust package manager; it downloads dependencies and builds crates.",
            "cargo",
        ),
        (
            2,
            "The borrow checker enforces that references never outlive the data they point to.",
            "book",
        ),
        (
            3,
            "Ownership: each value in Rust has a single owner, and it is dropped when the owner goes out of scope.",
            "book",
        ),
        (
            4,
            "Bike rentals rise on warm working days and fall when it rains.",
            "other",
        ),
    ];
    let points: Vec<Value> = docs
        .iter()
        .map(|(id, text, src)| json!({"id": id, "text": text, "payload": {"source": src, "len": text.len()}}))
        .collect();
    let (st, v) = put(&s, "/collections/kb/points", json!({"points": points})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["result"]["status"], "completed");

    let (st, v) = s
        .post(
            "/collections/kb/points/search",
            json!({"text": "how do I add a dependency to my project?", "limit": 2}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["result"][0]["id"], 1, "{v}");
    let (first, second) = (
        v["result"][0]["score"].as_f64().unwrap(),
        v["result"][1]["score"].as_f64().unwrap(),
    );
    assert!(first > second + 0.1, "{v}");
    assert_eq!(v["result"][0]["payload"]["source"], "cargo");

    // The same question, filtered to the book: the filter applies inside the search.
    let (_, v) = s
        .post(
            "/collections/kb/points/search",
            json!({"text": "who owns a value and when is it freed?", "limit": 3,
                   "filter": {"must": [{"key": "source", "match": {"value": "book"}}]}}),
        )
        .await;
    let ids: Vec<i64> = v["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![3, 2], "{v}");

    let (_, v) = s
        .post(
            "/collections/kb/points/count",
            json!({"filter": {"must": [{"key": "len", "range": {"gt": 70}}]}}),
        )
        .await;
    assert_eq!(v["result"]["count"], 3, "{v}");
    let (_, v) = s.get("/collections/kb", &[]).await;
    assert_eq!(v["result"]["points_count"], 4);
    assert_eq!(v["result"]["config"]["params"]["vectors"]["size"], 384);
    assert_eq!(
        v["result"]["config"]["params"]["vectors"]["distance"],
        "Cosine"
    );

    // Raw vectors, Euclidean distance, retrieve, delete, scroll, snapshot.
    let (st, _) = put(
        &s,
        "/collections/raw",
        json!({"vectors": {"size": 3, "distance": "Euclid"}}),
    )
    .await;
    assert_eq!(st, 200);
    let pts: Vec<Value> = (0..20)
        .map(|i| json!({"id": i, "vector": [i as f32, 0.0, 1.0], "payload": {"even": i % 2 == 0}}))
        .collect();
    put(&s, "/collections/raw/points", json!({"points": pts})).await;
    let (_, v) = s
        .post(
            "/collections/raw/points/search",
            json!({"vector": [7.2, 0.0, 1.0], "limit": 3, "with_vector": true}),
        )
        .await;
    assert_eq!(v["result"][0]["id"], 7);
    assert!(
        (v["result"][0]["score"].as_f64().unwrap() - 0.2).abs() < 1e-5,
        "{v}"
    );
    assert_eq!(v["result"][0]["vector"], json!([7.0, 0.0, 1.0]));
    let (_, v) = s
        .post("/collections/raw/points", json!({"ids": [3, 99]}))
        .await;
    assert_eq!(v["result"].as_array().unwrap().len(), 1);
    let (_, v) = s
        .post(
            "/collections/raw/points/delete",
            json!({"filter": {"must": [{"key": "even", "match": {"value": true}}]}}),
        )
        .await;
    assert_eq!(v["result"]["deleted"], 10, "{v}");
    let (_, v) = s
        .post("/collections/raw/points/scroll", json!({"limit": 4}))
        .await;
    let ids: Vec<i64> = v["result"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 3, 5, 7]);
    assert_eq!(v["result"]["next_page_offset"], 9);
    let (st, v) = s.post("/collections/raw/snapshots", json!({})).await;
    assert_eq!(st, 200, "{v}");
    assert!(v["result"]["size"].as_u64().unwrap() > 0);
    let (_, v) = s.get("/collections", &[]).await;
    assert_eq!(
        v["result"]["collections"],
        json!([{"name": "kb"}, {"name": "raw"}])
    );
    let (st, _) = s.send(Method::DELETE, "/collections/raw", json!({})).await;
    assert_eq!(st, 200);
    assert_eq!(s.get("/collections/raw", &[]).await.0, 404);
}

#[tokio::test]
async fn bad_input_gets_the_right_status_and_reason() {
    let s = start(Default::default()).await;
    put(
        &s,
        "/collections/c",
        json!({"vectors": {"size": 4, "distance": "Dot"}}),
    )
    .await;
    put(
        &s,
        "/collections/c/points",
        json!({"points": [{"id": 1, "vector": [1, 0, 0, 0]}]}),
    )
    .await;
    for (resp, status, needle) in [
        (
            put(
                &s,
                "/collections/c",
                json!({"vectors": {"size": 4, "distance": "Dot"}}),
            )
            .await,
            409,
            "already exists",
        ),
        (
            put(
                &s,
                "/collections/d",
                json!({"vectors": {"size": 4, "distance": "Manhattan"}}),
            )
            .await,
            400,
            "unknown distance",
        ),
        (
            put(
                &s,
                "/collections/d",
                json!({"vectors": {"distance": "Dot"}}),
            )
            .await,
            400,
            "vectors.size",
        ),
        (
            put(
                &s,
                "/collections/a.b",
                json!({"vectors": {"size": 4, "distance": "Dot"}}),
            )
            .await,
            400,
            "letters, digits",
        ),
        (
            put(
                &s,
                "/collections/c/points",
                json!({"points": [{"id": 2, "vector": [1, 0]}]}),
            )
            .await,
            400,
            "dimension 2, collection `c` expects 4",
        ),
        (
            put(
                &s,
                "/collections/c/points",
                json!({"points": [{"id": -1, "vector": [1, 0, 0, 0]}]}),
            )
            .await,
            400,
            "points[0].id",
        ),
        (
            put(
                &s,
                "/collections/c/points",
                json!({"points": [{"id": 2, "text": "hi"}]}),
            )
            .await,
            400,
            "names no embedding model",
        ),
        (
            put(&s, "/collections/nope/points", json!({"points": []})).await,
            404,
            "does not exist",
        ),
        (
            s.post("/collections/c/points/search", json!({"vector": [1, 0, 0]}))
                .await,
            400,
            "query vector has dimension 3",
        ),
        (
            s.post(
                "/collections/c/points/search",
                json!({"vector": [1, 0, 0, 0], "filter": {"must": [{"key": "a"}]}}),
            )
            .await,
            400,
            "malformed filter",
        ),
        (
            s.post("/collections/c/points/search", json!({})).await,
            400,
            "needs a `vector` or a `text`",
        ),
        (
            s.post(
                "/collections/c/points/search",
                json!({"vector": [1, 0, 0, 0], "limit": 0}),
            )
            .await,
            400,
            "limit",
        ),
        (
            s.post("/collections/nope/points/search", json!({"vector": [1]}))
                .await,
            404,
            "does not exist",
        ),
        (
            s.post("/collections/c/points/delete", json!({})).await,
            400,
            "`points`",
        ),
    ] {
        let (st, msg) = error_of(resp);
        assert_eq!(st, status, "{msg}");
        assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    }
    // Nothing above changed the collection.
    let (_, v) = s.post("/collections/c/points/count", json!({})).await;
    assert_eq!(v["result"]["count"], 1);
    // Body that is not JSON.
    let r = s
        .http
        .post(format!("{}/collections/c/points/search", s.url))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn rag_ingests_documents_and_answers_with_citations() {
    let s = start(Default::default()).await;
    let docs = json!({"documents": [
        {"source": "book/ownership.md", "format": "markdown", "content": "# Ownership\n\nEach value has one owner. When the owner goes out of scope, the value is dropped.\n\n## Moves\n\nAssigning a String to another variable moves it; the first variable can no longer be used."},
        {"source": "cargo/deps.html", "format": "html", "content": "<html><title>Cargo</title><main><h1>Dependencies</h1><p>Add a crate under [dependencies] in Cargo.toml and Cargo fetches it from crates.io.</p></main></html>"}
    ]});
    let (st, v) = s.post("/rag/book/ingest", docs.clone()).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["result"]["changed"], 2, "{v}");
    let (_, v) = s.post("/rag/book/ingest", docs).await;
    assert_eq!(
        v["result"]["unchanged"], 2,
        "re-ingesting the same content embeds nothing: {v}"
    );

    let (st, v) = s
        .post(
            "/rag/book/query",
            json!({"query": "What happens when a variable that owns a value goes out of scope?"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let r = &v["result"];
    assert!(r["answer"].as_str().unwrap().contains("dropped"), "{v}");
    assert_eq!(r["citations"][0]["source"], "book/ownership.md", "{v}");
    assert_eq!(r["hits"][0]["headings"], json!(["Ownership"]));
    let (_, v) = s
        .post(
            "/rag/book/query",
            json!({"query": "crates.io dependencies", "mode": "keyword", "top_k": 1}),
        )
        .await;
    assert_eq!(v["result"]["hits"][0]["source"], "cargo/deps.html", "{v}");
    let (_, v) = s
        .post("/rag/book/query", json!({"query": "dependencies", "filter": {"must": [{"key": "source", "match": {"value": "book/ownership.md"}}]}}))
        .await;
    assert!(
        v["result"]["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["source"] == "book/ownership.md"),
        "{v}"
    );

    for (resp, status, needle) in [
        (
            s.post("/rag/book/query", json!({"query": "x", "mode": "fuzzy"}))
                .await,
            400,
            "not hybrid",
        ),
        (
            s.post("/rag/book/query", json!({"query": "   "})).await,
            400,
            "empty",
        ),
        (s.post("/rag/book/query", json!({})).await, 400, "`query`"),
        (
            s.post("/rag/nothing/query", json!({"query": "x"})).await,
            404,
            "does not exist",
        ),
        (
            s.post(
                "/rag/book/ingest",
                json!({"documents": [{"source": "a", "content": "b", "format": "pdf"}]}),
            )
            .await,
            400,
            "not markdown",
        ),
        (
            s.post("/rag/book/ingest", json!({"documents": [{"content": "b"}]}))
                .await,
            400,
            "documents[0].source",
        ),
    ] {
        let (st, msg) = error_of(resp);
        assert_eq!(st, status, "{msg}");
        assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_embeddings_endpoint_serves_minilm_and_an_http_embedder_uses_it() {
    let s = start(Default::default()).await;
    let (st, v) = s.post("/v1/embeddings", json!({"model": "all-MiniLM-L6-v2", "input": ["Cargo builds crates.", "Rain keeps riders home."]})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][1]["index"], 1);
    let first: Vec<f32> = serde_json::from_value(v["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(first.len(), 384);
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() >= 8, "{v}");
    // base64, as the openai Python client asks: little-endian f32 bytes.
    let (_, b) = s.post("/v1/embeddings", json!({"model": "all-MiniLM-L6-v2", "input": "Cargo builds crates.", "encoding_format": "base64"})).await;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(decoded, first);
    let (_, m) = s.get("/v1/models", &[]).await;
    assert_eq!(m["data"][0]["id"], "all-MiniLM-L6-v2");
    for (body, status, param) in [
        (
            json!({"model": "text-embedding-3-small", "input": "x"}),
            404,
            "model",
        ),
        (
            json!({"model": "all-MiniLM-L6-v2", "input": [1, 2, 3]}),
            400,
            "input",
        ),
        (
            json!({"model": "all-MiniLM-L6-v2", "input": ""}),
            400,
            "input",
        ),
        (
            json!({"model": "all-MiniLM-L6-v2", "input": "x", "encoding_format": "int8"}),
            400,
            "encoding_format",
        ),
        (json!({"input": "x"}), 400, "model"),
    ] {
        let (st, v) = s.post("/v1/embeddings", body.clone()).await;
        assert_eq!(st, status, "{body}: {v}");
        assert_eq!(v["error"]["param"], param, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }

    // The OpenAI-compatible embedder, over real HTTP, gives the in-process model's vectors.
    let remote = neural::HttpEmbedder::connect(&format!("{}/v1", s.url), None, "all-MiniLM-L6-v2")
        .await
        .unwrap();
    let got = tokio::task::spawn_blocking(move || {
        use neural::Embedder;
        (
            remote.dim(),
            remote.embed(&["Cargo builds crates."]).unwrap(),
        )
    })
    .await
    .unwrap();
    assert_eq!(got.0, 384);
    let dot: f32 = got.1[0].iter().zip(&first).map(|(a, b)| a * b).sum();
    assert!(dot > 0.99999, "cosine {dot}");
    assert!(
        neural::HttpEmbedder::connect(&format!("{}/v1", s.url), None, "nope")
            .await
            .is_err()
    );
}
