//! The `capstan` binary: parse arguments, layer configuration, start tracing, wire the backends,
//! and run one subcommand.

/// mimalloc instead of glibc's malloc: the server's request paths allocate many small,
/// short-lived objects across threads (a third of its CPU went to glibc's malloc and free).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod bench_data;
mod bench_drift;
mod bench_features;
mod bench_gateway;
mod bench_jobs;
mod bench_rag;
mod bench_semantic;
mod bench_serving;
mod bench_traces;
mod bench_training;
mod bench_vectors;
mod client;
mod config;
mod data_cmd;
mod demo;
mod demo_features;
mod demo_story;
mod deploy;
mod drift_cmd;
mod eval_cmd;
mod features_cmd;
mod jobs_cmd;
mod llm_cmd;
mod models;
mod monitors_cmd;
mod platform;
mod profile_cmd;
mod progress;
mod prompts_cmd;
mod rag_cmd;
mod report;
mod retrain;
mod test_cmd;
mod traces_cmd;
mod train;
mod vectors_cmd;
mod worker;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "capstan",
    version,
    about = "MLOps + LLMOps platform: tracking, registry, serving, monitoring"
)]
struct Cli {
    /// State directory (metadata database, artifacts, config).
    #[arg(long, global = true, env = "CAPSTAN_HOME", default_value = ".capstan")]
    home: PathBuf,
    /// Configuration file (default: $CAPSTAN_HOME/capstan.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Metadata database URL: sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(long, global = true)]
    db: Option<String>,
    /// Artifact store: a directory or s3://bucket/prefix.
    #[arg(long, global = true)]
    artifacts: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (MLflow-compatible tracking API, artifacts).
    Server {
        #[arg(long)]
        host: Option<String>,
        /// Port to listen on; 0 picks a free one (the bound address is printed).
        #[arg(long)]
        port: Option<u16>,
        /// Require API tokens on every route but /health.
        #[arg(long)]
        auth: bool,
    },
    /// Serve one registered model (MODEL@ALIAS or MODEL/VERSION) over OIP v2 and /invocations.
    Serve {
        model: String,
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        port: Option<u16>,
    },
    /// Version data and models in DVC's formats (pointer files, md5 cache, remotes).
    Data {
        /// The data repository (the directory holding .dvc/).
        #[arg(long, short = 'C', default_value = ".")]
        repo: PathBuf,
        #[command(subcommand)]
        cmd: data_cmd::DataCmd,
    },
    /// Train a built-in algorithm on a CSV; tracked as a run, optionally registered.
    Train(train::TrainArgs),
    /// Inspect experiments.
    #[command(subcommand)]
    Experiments(ExperimentsCmd),
    /// Inspect and compare runs.
    #[command(subcommand)]
    Runs(RunsCmd),
    /// The model registry: versions, aliases, checks, lineage.
    #[command(subcommand)]
    Models(models::ModelsCmd),
    /// A/B, canary and shadow deployments and their statistics.
    #[command(subcommand)]
    Deploy(deploy::DeployCmd),
    /// Manage API tokens.
    #[command(subcommand)]
    Tokens(TokensCmd),
    /// The feature store: definitions, point-in-time correct training sets.
    #[command(subcommand)]
    Features(features_cmd::FeaturesCmd),
    /// Monitors over served models (drift, live accuracy, latency, errors) and their alerts.
    #[command(subcommand)]
    Monitors(monitors_cmd::MonitorsCmd),
    /// Lease jobs from the queue and run them (rag-ingest, data-repro, retrain).
    Worker(worker::WorkerArgs),
    /// Retraining by a declared policy: set it, run it, see what each retraining decided.
    #[command(subcommand)]
    Retrain(retrain::RetrainCmd),
    /// The durable job queue: list, inspect and cancel jobs.
    #[command(subcommand)]
    Jobs(jobs_cmd::JobsCmd),
    /// The prompt registry: versions, labels, rendering, diffs.
    #[command(subcommand)]
    Prompts(prompts_cmd::PromptsCmd),
    /// LLM evaluation: run a dataset through a model and prompt, score it, compare runs.
    #[command(subcommand)]
    Eval(eval_cmd::EvalCmd),
    /// Fine-tune the local language model: LoRA on instruction pairs, continued pre-training,
    /// generation and evaluation with adapters.
    #[command(subcommand)]
    Llm(llm_cmd::LlmCmd),
    /// Traces and spans: search, span trees, GenAI stats, retention.
    #[command(subcommand)]
    Traces(traces_cmd::TracesCmd),
    /// Retrieval-augmented answers: ingest documents, ask questions with citations.
    #[command(subcommand)]
    Rag(rag_cmd::RagCmd),
    /// The embedded vector store: collections, points, search, snapshots.
    #[command(subcommand)]
    Vectors(vectors_cmd::VectorsCmd),
    /// Data and model tests (expectation suites); exit status 3 when a check fails.
    #[command(subcommand)]
    Test(test_cmd::TestCmd),
    /// The reference profile of tables (mergeable statistics drift compares against).
    Profile(profile_cmd::ProfileArgs),
    /// Data drift between a reference and a current table (CSV or Parquet), Evidently's tests.
    Drift(drift_cmd::DriftArgs),
    /// Run the end-to-end demo on embedded defaults.
    Demo {
        /// Exit when the demo is done instead of serving its results.
        #[arg(long)]
        no_serve: bool,
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Stop after this step (1–8): 4 ends after monitoring, before the A/B test, the
        /// retraining loop, the LLM step (which loads MiniLM and SmolLM2) and the fine-tune.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=8))]
        until: u8,
    },
    /// Benchmarks against peers, printed as tables.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

#[derive(Subcommand)]
enum ExperimentsCmd {
    /// List experiments.
    List {
        /// Include deleted experiments.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum RunsCmd {
    /// List runs of an experiment, with MLflow's filter grammar.
    List {
        /// Experiment name or id.
        #[arg(long, short, default_value = "0")]
        experiment: String,
        #[arg(long, short, default_value = "")]
        filter: String,
        #[arg(long = "order-by")]
        order_by: Vec<String>,
        #[arg(long, default_value_t = 50)]
        max: u32,
    },
    /// Show one run: params, latest metrics, tags, inputs, artifacts.
    Show { run_id: String },
    /// Compare runs side by side; --html writes a report with metric charts.
    Compare {
        run_ids: Vec<String>,
        #[arg(long)]
        html: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokensCmd {
    /// Create a token; it is printed once and stored only as a hash.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["read", "write", "admin"])]
        scope: String,
    },
    List,
    Revoke {
        id: i64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_LOG")
                .unwrap_or_else(|_| "warn,capstan=info,server=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(platform::Error::DriftDetected | platform::Error::ChecksFailed) => ExitCode::from(3),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), platform::Error> {
    let config_file = cli
        .config
        .clone()
        .unwrap_or_else(|| cli.home.join("capstan.toml"));
    let mut config = config::Config::load(&config_file, std::env::vars())?;
    if let Some(db) = cli.db {
        config.store.db = db;
    }
    if let Some(a) = cli.artifacts {
        config.store.artifacts = a;
    }
    let home = cli.home;
    match cli.command {
        Command::Server { host, port, auth } => {
            if let Some(h) = host {
                config.server.host = h;
            }
            if let Some(p) = port {
                config.server.port = p;
            }
            config.server.auth |= auth;
            let mut p = platform::Platform::open(&home, &config).await?;
            p.config_file = Some(config_file.clone());
            p.serve(&config, None, None).await
        }
        Command::Serve { model, host, port } => {
            if let Some(h) = host {
                config.server.host = h;
            }
            if let Some(p) = port {
                config.server.port = p;
            }
            let target = parse_model_ref(&model)?;
            let p = platform::Platform::open(&home, &config).await?;
            p.serve(&config, None, Some(target)).await
        }
        Command::Experiments(ExperimentsCmd::List { all }) => {
            report::experiments(&platform::Platform::open(&home, &config).await?, all).await
        }
        Command::Runs(cmd) => {
            let p = platform::Platform::open(&home, &config).await?;
            match cmd {
                RunsCmd::List {
                    experiment,
                    filter,
                    order_by,
                    max,
                } => report::list_runs(&p, &experiment, &filter, &order_by, max).await,
                RunsCmd::Show { run_id } => report::show_run(&p, &run_id).await,
                RunsCmd::Compare { run_ids, html } => {
                    report::compare_runs(&p, &run_ids, html.as_deref()).await
                }
            }
        }
        Command::Models(cmd) => {
            models::run(&platform::Platform::open(&home, &config).await?, cmd).await
        }
        Command::Train(args) => train::run(&platform::Platform::open(&home, &config).await?, args)
            .await
            .map(|_| ()),
        Command::Data { repo, cmd } => data_cmd::run(&repo, &home, &config, cmd).await,
        Command::Deploy(cmd) => {
            deploy::run(
                &platform::Platform::open(&home, &config).await?,
                &config,
                cmd,
            )
            .await
        }
        Command::Tokens(cmd) => {
            let p = platform::Platform::open(&home, &config).await?;
            match cmd {
                TokensCmd::Create { name, scope } => report::create_token(&p, &name, &scope).await,
                TokensCmd::List => report::list_tokens(&p).await,
                TokensCmd::Revoke { id } => report::revoke_token(&p, id).await,
            }
        }
        Command::Features(cmd) => features_cmd::run(&home, &config, cmd).await,
        Command::Monitors(cmd) => monitors_cmd::run(&home, &config, cmd).await,
        Command::Vectors(cmd) => vectors_cmd::run(&home, &config, cmd).await,
        Command::Rag(cmd) => rag_cmd::run(&home, &config, cmd).await,
        Command::Jobs(cmd) => jobs_cmd::run(&home, &config, cmd).await,
        Command::Retrain(cmd) => retrain::run_cmd(&home, &config, cmd).await,
        Command::Prompts(cmd) => prompts_cmd::run(&home, &config, cmd).await,
        Command::Traces(cmd) => traces_cmd::run(&home, &config, cmd).await,
        Command::Eval(cmd) => eval_cmd::run(&home, &config, cmd).await,
        Command::Llm(cmd) => llm_cmd::run(&home, &config, cmd).await,
        Command::Worker(args) => worker::run(&home, &config, args).await,
        Command::Test(cmd) => {
            let result = test_cmd::run(&cmd, &home, &config).await?;
            if result.success {
                Ok(())
            } else {
                Err(platform::Error::ChecksFailed)
            }
        }
        Command::Profile(args) => profile_cmd::run(&args),
        Command::Drift(args) => {
            if drift_cmd::run(&args)? && args.fail_on_drift {
                return Err(platform::Error::DriftDetected);
            }
            Ok(())
        }
        Command::Demo {
            no_serve,
            port,
            until,
        } => demo::run(&home, config, no_serve, port, until).await,
        Command::Bench(cmd) => bench::run(cmd, &home).await,
    }
}

/// `name@alias` or `name/version`.
pub(crate) fn parse_model_ref(s: &str) -> Result<(String, serving::Selector), platform::Error> {
    if let Some((name, alias)) = s.split_once('@') {
        return Ok((name.to_owned(), serving::Selector::Alias(alias.to_owned())));
    }
    if let Some((name, v)) = s.rsplit_once('/')
        && let Ok(v) = v.parse::<i64>()
    {
        return Ok((name.to_owned(), serving::Selector::Version(v)));
    }
    Err(platform::Error::Other(format!(
        "'{s}' is not MODEL@ALIAS or MODEL/VERSION"
    )))
}
