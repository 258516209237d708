//! The RAG pipeline on a real collection with the real MiniLM: ingestion with change detection,
//! the three retrieval modes, citations, and skipped files.

use neural::{MINILM, MiniLm};
use rag::chunk::ChunkOptions;
use rag::pipeline::{collect_files, read_sources};
use rag::{Mode, QueryOptions, Rag};
use std::path::PathBuf;
use std::sync::Arc;
use vector::{CollectionConfig, Collections, HnswParams, Metric};

fn model() -> Arc<MiniLm> {
    let home = std::env::var_os("CAPSTAN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/capstan"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = rt
        .block_on(MINILM.resolve(None, &home, "https://pypi.org"))
        .unwrap();
    Arc::new(MiniLm::load(&dir).unwrap())
}

const OWNERSHIP: &str = "# Ownership\n\nEach value in Rust has an owner. There can only be one owner at a time. When the owner goes out of scope, the value will be dropped.\n\n## Borrowing\n\nA reference lets you use a value without taking ownership of it. References must always be valid: the borrow checker rejects a reference that outlives its data.\n";
const CARGO: &str = "<html><head><title>Cargo</title></head><body><nav>Menu</nav><main><h1>Dependencies</h1><p>To depend on a crate from crates.io, add it under the [dependencies] section of Cargo.toml. Cargo downloads it and builds it with your package.</p><h2>Features</h2><p>Optional features are enabled with the features key.</p></main></body></html>";
const BIKES: &str = "Bike rentals rise on warm working days. Rain and snow keep riders at home.";

fn write(dir: &std::path::Path, name: &str, content: &[u8]) {
    std::fs::write(dir.join(name), content).unwrap();
}

#[test]
fn ingest_retrieve_answer_and_reingest_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(docs.join("sub")).unwrap();
    write(&docs, "ownership.md", OWNERSHIP.as_bytes());
    write(&docs.join("sub"), "cargo.html", CARGO.as_bytes());
    write(&docs, "bikes.txt", BIKES.as_bytes());
    write(&docs, "image.png", b"\x89PNG");
    write(&docs, "broken.md", b"\xff\xfe not utf-8 \xc3");

    let store = Collections::open(&tmp.path().join("vectors")).unwrap();
    let c = store
        .create(
            "docs",
            CollectionConfig {
                dim: 384,
                metric: Metric::Cosine,
                hnsw: HnswParams::default(),
                quantize: false,
                embedder: Some("all-MiniLM-L6-v2".into()),
            },
        )
        .unwrap();
    let rag = Rag::new(c.clone(), model()).unwrap();

    let ingest = |rag: &Rag| {
        let (files, mut skipped) = collect_files(&docs);
        let sources = read_sources(files, &mut skipped);
        let mut report = rag
            .ingest(
                sources,
                ChunkOptions {
                    max_tokens: 40,
                    overlap_tokens: 10,
                },
                true,
                &mut |_, _| {},
            )
            .unwrap();
        report.skipped.extend(skipped);
        report
    };
    let r = ingest(&rag);
    assert_eq!((r.documents, r.changed, r.unchanged), (3, 3, 0), "{r:?}");
    let mut skipped: Vec<&str> = r.skipped.iter().map(|s| s.0.as_str()).collect();
    skipped.sort();
    assert_eq!(skipped, vec!["broken.md", "image.png"], "{r:?}");
    assert!(r.skipped.iter().any(|s| s.1 == "not UTF-8 text"));
    let first_chunks = c.count(None);
    assert_eq!(first_chunks, r.chunks_added);
    assert!(first_chunks >= 4, "{first_chunks}");

    for mode in [Mode::Vector, Mode::Keyword, Mode::Hybrid] {
        let opts = QueryOptions {
            mode,
            top_k: 3,
            ..Default::default()
        };
        let hits = rag
            .retrieve("how do I add a dependency in Cargo.toml?", &opts)
            .unwrap();
        assert_eq!(hits[0].source, "sub/cargo.html", "{mode:?}: {hits:#?}");
        assert_eq!(hits[0].headings, vec!["Dependencies"]);
        assert_eq!(hits[0].title, "Cargo");
    }
    // Re-ranking by best sentence keeps the right chunk first and returns the same set.
    let plain = rag
        .retrieve(
            "What happens when the owner goes out of scope?",
            &QueryOptions {
                top_k: 4,
                ..Default::default()
            },
        )
        .unwrap();
    let reranked = rag
        .retrieve(
            "What happens when the owner goes out of scope?",
            &QueryOptions {
                top_k: 4,
                rerank: 4,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(reranked[0].text.contains("dropped"), "{reranked:#?}");
    let mut a: Vec<_> = plain.iter().map(|h| h.id.clone()).collect();
    let mut b: Vec<_> = reranked.iter().map(|h| h.id.clone()).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    let answer = rag
        .answer(
            "What happens to a value when its owner goes out of scope?",
            &QueryOptions {
                top_k: 3,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(answer.answer.contains("dropped"), "{answer:#?}");
    assert!(
        answer.answer.ends_with("[1]") || answer.answer.ends_with("[2]"),
        "{}",
        answer.answer
    );
    assert_eq!(answer.citations[0].source, "ownership.md");
    assert!(
        answer.context.starts_with("[1] (ownership.md"),
        "{}",
        answer.context
    );
    // A tiny budget keeps only the first block.
    let (ctx, cites) = rag.context(&answer.hits, 5);
    assert_eq!(cites.len(), 1);
    assert!(ctx.starts_with("[1]"));

    // Nothing changed: nothing re-embedded.
    let r = ingest(&rag);
    assert_eq!(
        (r.changed, r.unchanged, r.chunks_added, r.chunks_deleted),
        (0, 3, 0, 0),
        "{r:?}"
    );
    // One file changed, one removed.
    write(
        &docs,
        "bikes.txt",
        b"Bike rentals fall sharply in heavy rain.",
    );
    std::fs::remove_file(docs.join("sub/cargo.html")).unwrap();
    let r = ingest(&rag);
    assert_eq!((r.changed, r.unchanged, r.removed), (1, 1, 1), "{r:?}");
    assert!(r.chunks_deleted >= 3, "{r:?}");
    let hits = rag
        .retrieve(
            "cargo dependencies",
            &QueryOptions {
                mode: Mode::Keyword,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(
        hits.iter().all(|h| h.source != "sub/cargo.html"),
        "{hits:#?}"
    );
    let hits = rag
        .retrieve(
            "rain",
            &QueryOptions {
                mode: Mode::Keyword,
                top_k: 1,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(hits[0].text, "Bike rentals fall sharply in heavy rain.");
    assert!(rag.retrieve("  ", &QueryOptions::default()).is_err());
}
