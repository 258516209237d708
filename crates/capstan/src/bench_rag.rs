//! `capstan bench rag`: retrieval quality on SQuAD v1.1 dev — its 2,067 passages ingested as
//! documents (title as heading), every one of its 10,565 questions asked, and the rank of the
//! gold passage among the retrieved sources: hit@1, hit@5 and MRR@20 for vector search, BM25
//! and the hybrid (reciprocal rank fusion).

use crate::bench_vectors::load_model;
use crate::platform::Error;
use crate::progress::Progress;
use rag::chunk::ChunkOptions;
use rag::text::Format;
use rag::{Fusion, Mode, QueryOptions, Rag, SourceDoc};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use vector::{CollectionConfig, Collections, HnswParams, Metric};

const PASSAGES: &str = include_str!("../../../data/squad_v1.1_dev_passages.csv");
const QUESTIONS: &str = include_str!("../../../data/squad_v1.1_dev_questions.csv");

#[derive(Default, Clone, Copy)]
struct Score {
    hit1: f64,
    hit5: f64,
    mrr: f64,
    n: usize,
}

impl Score {
    /// Scores one question: the rank of the gold passage among the distinct sources of the
    /// hits, in retrieval order (counted within the first 20).
    fn add(&mut self, hits: &[rag::Hit], gold: &str) {
        let mut seen: Vec<&str> = Vec::new();
        for h in hits {
            if !seen.contains(&h.source.as_str()) {
                seen.push(&h.source);
            }
        }
        if let Some(r) = seen.iter().take(20).position(|s| *s == gold) {
            self.mrr += 1.0 / (r as f64 + 1.0);
            self.hit1 += (r == 0) as u8 as f64;
            self.hit5 += (r < 5) as u8 as f64;
        }
        self.n += 1;
    }
}

pub async fn run(
    questions: usize,
    rerank_questions: usize,
    out: Option<PathBuf>,
    home: &Path,
) -> Result<(), Error> {
    let err = |e: rag::Error| Error::Other(e.to_string());
    let model = Arc::new(load_model(home).await?);
    // Kept between runs: re-ingesting unchanged passages embeds nothing.
    let dir = home.join("bench-rag");
    let store = Collections::open(&dir).map_err(|e| Error::Other(e.to_string()))?;
    let c = match store.get("squad") {
        Ok(c) => c,
        Err(_) => store
            .create(
                "squad",
                CollectionConfig {
                    dim: 384,
                    metric: Metric::Cosine,
                    hnsw: HnswParams::default(),
                    quantize: false,
                    embedder: Some("all-MiniLM-L6-v2".into()),
                },
            )
            .map_err(|e| Error::Other(e.to_string()))?,
    };
    let rag = Rag::new(c.clone(), model.clone()).map_err(err)?;
    let docs: Vec<SourceDoc> = rag::csv::rows(PASSAGES)
        .into_iter()
        .map(|r| SourceDoc {
            source: r["passage_id"].clone(),
            content: format!("# {}\n\n{}", r["title"], r["text"]),
            format: Format::Markdown,
        })
        .collect();
    let n_docs = docs.len();
    let mut bar = Progress::new("ingesting passages", n_docs as u64);
    let t = Instant::now();
    let mut last = 0;
    let report = rag
        .ingest(docs, ChunkOptions::default(), true, &mut |done, _| {
            bar.inc((done - last) as u64);
            last = done;
        })
        .map_err(err)?;
    bar.finish();
    let ingest_s = t.elapsed().as_secs_f64();
    let rows = rag::csv::rows(QUESTIONS);
    let step = (rows.len() / questions.max(1)).max(1);
    let qs: Vec<(String, String)> = rows
        .iter()
        .step_by(step)
        .take(questions)
        .map(|r| (r["question"].clone(), r["passage_id"].clone()))
        .collect();
    let mut bar = Progress::new("embedding questions", qs.len() as u64);
    let mut qvs = Vec::with_capacity(qs.len());
    for chunk in qs.chunks(512) {
        let refs: Vec<&str> = chunk.iter().map(|q| q.0.as_str()).collect();
        qvs.extend(
            neural::Embedder::embed(model.as_ref(), &refs)
                .map_err(|e| Error::Other(e.to_string()))?,
        );
        bar.inc(chunk.len() as u64);
    }
    bar.finish();
    let modes = [
        ("vector (MiniLM, HNSW)", Mode::Vector, Fusion::default()),
        ("keyword (BM25)", Mode::Keyword, Fusion::default()),
        (
            "hybrid: reciprocal rank fusion (k=60)",
            Mode::Hybrid,
            Fusion::Rrf { k: 60.0 },
        ),
        (
            "hybrid: relative score fusion (w=0.5, the default)",
            Mode::Hybrid,
            Fusion::Relative { vector_weight: 0.5 },
        ),
    ];
    let mut scores = Vec::new();
    for (label, mode, fusion) in modes {
        let mut s = Score::default();
        let mut bar = Progress::new(label, qs.len() as u64);
        let t = Instant::now();
        for ((q, gold), qv) in qs.iter().zip(&qvs) {
            let opts = QueryOptions {
                mode,
                fusion,
                top_k: 40,
                candidates: 50,
                ..Default::default()
            };
            let hits = rag.retrieve_with(q, Some(qv.clone()), &opts).map_err(err)?;
            s.add(&hits, gold);
            bar.inc(1);
        }
        bar.finish();
        let per_q_ms = t.elapsed().as_secs_f64() * 1000.0 / qs.len() as f64;
        scores.push((label, s, per_q_ms));
    }
    // Re-ranking embeds every sentence of the reranked chunks: measured on an evenly spread
    // subset, against hybrid on the same questions.
    let step = (qs.len() / rerank_questions.max(1)).max(1);
    let subset: Vec<usize> = (0..qs.len()).step_by(step).take(rerank_questions).collect();
    let mut rerank_rows = Vec::new();
    if !subset.is_empty() {
        for (label, rerank) in [
            ("hybrid (relative score fusion)", 0usize),
            ("hybrid + sentence re-ranking of the top 10", 10),
        ] {
            let mut s = Score::default();
            let mut bar = Progress::new(label, subset.len() as u64);
            let t = Instant::now();
            for &i in &subset {
                let (q, gold) = &qs[i];
                let opts = QueryOptions {
                    mode: Mode::Hybrid,
                    rerank,
                    top_k: 40,
                    candidates: 50,
                    ..Default::default()
                };
                let hits = rag
                    .retrieve_with(q, Some(qvs[i].clone()), &opts)
                    .map_err(err)?;
                s.add(&hits, gold);
                bar.inc(1);
            }
            bar.finish();
            rerank_rows.push((
                label,
                s,
                t.elapsed().as_secs_f64() * 1000.0 / subset.len() as f64,
            ));
        }
    }
    let mut t = format!(
        "SQuAD v1.1 dev: {n_docs} passages ({} chunks; this run ingested {} changed passages in {ingest_s:.1} s), {} questions; gold passage rank among retrieved sources.\n\n\
         | retrieval | hit@1 | hit@5 | MRR@20 | ms/query |\n|---|---|---|---|---|\n",
        c.count(None),
        report.changed,
        qs.len()
    );
    for (label, s, ms) in &scores {
        let n = s.n as f64;
        t += &format!(
            "| {label} | {:.3} | {:.3} | {:.3} | {ms:.2} |\n",
            s.hit1 / n,
            s.hit5 / n,
            s.mrr / n
        );
    }
    if !rerank_rows.is_empty() {
        t += &format!(
            "\nRe-ranking, on {} of the questions (every {step}th):\n\n| retrieval | hit@1 | hit@5 | MRR@20 | ms/query |\n|---|---|---|---|---|\n",
            subset.len()
        );
        for (label, s, ms) in &rerank_rows {
            let n = s.n as f64;
            t += &format!(
                "| {label} | {:.3} | {:.3} | {:.3} | {ms:.1} |\n",
                s.hit1 / n,
                s.hit5 / n,
                s.mrr / n
            );
        }
    }
    println!("{t}");
    if let Some(o) = out {
        std::fs::write(o, &t)?;
    }
    Ok(())
}
