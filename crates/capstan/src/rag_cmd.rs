//! `capstan rag ingest PATH --collection NAME` and `capstan rag query NAME QUESTION`: retrieval-
//! augmented answers over the embedded vector store (files: Markdown, HTML, plain text).

use crate::config::Config;
use crate::platform::Error;
use crate::progress::Progress;
use crate::report::table;
use rag::chunk::ChunkOptions;
use rag::pipeline::{collect_files, read_sources};
use rag::{Mode, QueryOptions, Rag};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vector::{CollectionConfig, HnswParams, Metric};

#[derive(clap::Subcommand, Debug)]
pub enum RagCmd {
    /// Ingest a file or a folder (Markdown, HTML, text); only changed files are re-embedded.
    Ingest {
        path: PathBuf,
        #[arg(long, short)]
        collection: String,
        #[arg(long, default_value_t = 200)]
        chunk_tokens: usize,
        #[arg(long, default_value_t = 40)]
        overlap_tokens: usize,
        /// Also remove what was ingested before from files no longer under PATH.
        #[arg(long)]
        complete: bool,
    },
    /// Answer a question from a collection, with citations.
    Query {
        collection: String,
        question: String,
        /// hybrid, vector or keyword.
        #[arg(long, default_value = "hybrid")]
        mode: String,
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        /// Re-rank this many of the first results by their best-matching sentence (slower).
        #[arg(long, default_value_t = 0)]
        rerank: usize,
        /// Print the assembled context too.
        #[arg(long)]
        context: bool,
    },
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}

/// Ingests a file or folder into a collection (created for MiniLM texts when missing); the
/// report (with the files skipped and why) and the collection's size after.
#[allow(clippy::too_many_arguments)]
pub fn ingest(
    store: &dyn vector::VectorStore,
    model: Arc<neural::MiniLm>,
    path: &Path,
    collection: &str,
    chunks: ChunkOptions,
    complete: bool,
    progress: bool,
) -> Result<(rag::IngestReport, usize), Error> {
    if !path.exists() {
        return Err(err(format!("{} does not exist", path.display())));
    }
    let c = match store.get(collection) {
        Ok(c) => c,
        Err(vector::Error::NotFound(_)) => store
            .create(
                collection,
                CollectionConfig {
                    dim: 384,
                    metric: Metric::Cosine,
                    hnsw: HnswParams::default(),
                    quantize: false,
                    embedder: Some("all-MiniLM-L6-v2".into()),
                },
            )
            .map_err(err)?,
        Err(e) => return Err(err(e)),
    };
    let rag = Rag::new(c.clone(), model).map_err(err)?;
    let (files, mut skipped) = collect_files(path);
    let docs = read_sources(files, &mut skipped);
    let mut bar = progress.then(|| Progress::new("ingesting", docs.len() as u64));
    let mut last = 0;
    let mut report = rag
        .ingest(docs, chunks, complete, &mut |done, _| {
            if let Some(b) = bar.as_mut() {
                b.inc((done - last) as u64);
            }
            last = done;
        })
        .map_err(err)?;
    if let Some(b) = bar {
        b.finish();
    }
    skipped.append(&mut report.skipped);
    report.skipped = skipped;
    let total = c.count(None).map_err(err)?;
    Ok((report, total))
}

pub async fn run(home: &Path, config: &Config, cmd: RagCmd) -> Result<(), Error> {
    let store = crate::vectors_cmd::open_store(home, config).await?;
    let model = Arc::new(crate::vectors_cmd::embedder(home, config, "all-MiniLM-L6-v2").await?);
    match cmd {
        RagCmd::Ingest {
            path,
            collection,
            chunk_tokens,
            overlap_tokens,
            complete,
        } => {
            let (report, total) = ingest(
                store.as_ref(),
                model,
                &path,
                &collection,
                ChunkOptions {
                    max_tokens: chunk_tokens.clamp(16, 512),
                    overlap_tokens,
                },
                complete,
                true,
            )?;
            println!(
                "{collection}: {} documents ({} changed, {} unchanged, {} removed); {} chunks added, {} deleted; {} points in all",
                report.documents,
                report.changed,
                report.unchanged,
                report.removed,
                report.chunks_added,
                report.chunks_deleted,
                total
            );
            let skipped = report.skipped;
            for (source, why) in skipped {
                eprintln!("skipped {source}: {why}");
            }
        }
        RagCmd::Query {
            collection,
            question,
            mode,
            top_k,
            rerank,
            context,
        } => {
            let c = store.get(&collection).map_err(err)?;
            let rag = Rag::new(c, model).map_err(err)?;
            let mode = Mode::parse(&mode)
                .ok_or_else(|| err(format!("mode `{mode}` is not hybrid, vector or keyword")))?;
            let a = rag
                .answer(
                    &question,
                    &QueryOptions {
                        mode,
                        top_k,
                        rerank,
                        ..Default::default()
                    },
                )
                .map_err(err)?;
            println!("{}\n", a.answer);
            let rows: Vec<Vec<String>> = a
                .citations
                .iter()
                .zip(&a.hits)
                .map(|(c, h)| {
                    vec![
                        format!("[{}]", c.n),
                        c.source.clone(),
                        c.headings.join(" > "),
                        h.vector_rank.map_or("-".into(), |r| r.to_string()),
                        h.keyword_rank.map_or("-".into(), |r| r.to_string()),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["cite", "source", "section", "vector rank", "keyword rank"],
                    &rows
                )
            );
            if context {
                println!("\n{}", a.context);
            }
        }
    }
    Ok(())
}
