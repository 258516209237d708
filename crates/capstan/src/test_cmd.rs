//! `capstan test data SUITE TABLE` and `capstan test model SUITE --model … --data …`: run an
//! expectation or model test suite, print what each check saw, optionally write JSON and log the
//! outcome to a run (where registry checks gate promotion on it); exit status 3 when a check fails.

use crate::platform::{Error, Platform};
use crate::report::table;
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum TestCmd {
    /// Run a data expectation suite (YAML) on a table (CSV or Parquet).
    Data {
        suite: PathBuf,
        table: PathBuf,
        /// Write the results as JSON here ("-" for stdout instead of the table).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Log the outcome to this run (`expectations.<suite>.passed` = 1 or 0, and
        /// `.failed` = failed checks), where a registry check can gate promotion on it.
        #[arg(long)]
        run: Option<String>,
    },
    /// Run a model test suite (YAML): metrics overall and per slice, invariance, directional
    /// expectations, improvement over the champion.
    Model {
        suite: PathBuf,
        /// MODEL@ALIAS, MODEL/VERSION, or a model.json file.
        #[arg(long)]
        model: String,
        /// The labelled table to test on (CSV or Parquet).
        #[arg(long)]
        data: PathBuf,
        /// The model to beat (default MODEL@champion when --model is a registry reference;
        /// "none" for no champion).
        #[arg(long)]
        champion: Option<String>,
        #[arg(long)]
        json: Option<PathBuf>,
        /// Log the outcome to this run (default: the tested version's source run).
        #[arg(long)]
        run: Option<String>,
    },
}

/// A package from a file, or from the registry (with its version's source run).
async fn load_model(
    p: &Platform,
    reference: &str,
) -> Result<(learn::ModelPackage, Option<(String, i64)>), Error> {
    use serving::PackageSource;
    let path = std::path::Path::new(reference);
    if path.is_file() {
        let bytes = std::fs::read(path)?;
        let pkg =
            learn::ModelPackage::from_json(&bytes).map_err(|e| Error::Other(e.to_string()))?;
        return Ok((pkg, None));
    }
    let (name, sel) = crate::parse_model_ref(reference)?;
    let source = server::RegistrySource {
        registry: p.registry.clone(),
        tracking: p.tracking.clone(),
        artifacts: std::sync::Arc::new(p.db.clone()),
        blobs: p.blobs.clone(),
    };
    let version = source
        .resolve(&name, &sel)
        .await
        .map_err(|e| Error::Other(e.to_string()))?;
    let pkg = source
        .load(&name, version)
        .await
        .map_err(|e| Error::Other(e.to_string()))?;
    Ok((pkg, Some((name, version))))
}

fn print_result(
    r: &monitor::expect::SuiteResult,
    json: Option<&std::path::Path>,
) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(r).map_err(|e| Error::Other(e.to_string()))?;
    if json == Some(std::path::Path::new("-")) {
        println!("{text}");
        return Ok(());
    }
    if let Some(p) = json {
        crate::drift_cmd::write_atomic(p, text.as_bytes())?;
    }
    let rows: Vec<Vec<String>> = r
        .results
        .iter()
        .map(|o| {
            vec![
                if o.success { "pass" } else { "FAIL" }.to_owned(),
                o.expectation.clone(),
                o.observed.clone(),
                o.unexpected.join(", "),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["result", "check", "observed", "examples"], &rows)
    );
    println!(
        "\nsuite {}: {} passed, {} failed",
        r.suite, r.passed, r.failed
    );
    Ok(())
}

/// Logs a suite's outcome as metrics `<kind>.<suite>.passed` / `.failed` of `run_id`.
pub async fn log_to_run(
    p: &Platform,
    run_id: &str,
    kind: &str,
    r: &monitor::expect::SuiteResult,
) -> Result<(), Error> {
    let id = base::RunId::parse(run_id).map_err(|e| Error::Other(e.to_string()))?;
    let now = base::now_millis();
    let metric = |k: &str, v: f64| tracking::Metric {
        key: format!("{kind}.{}.{k}", r.suite),
        value: v,
        timestamp: now,
        step: 0,
    };
    p.tracking
        .log_batch(
            &id,
            &[
                metric("passed", if r.success { 1.0 } else { 0.0 }),
                metric("failed", r.failed as f64),
            ],
            &[],
            &[],
        )
        .await?;
    println!("logged to run {run_id}");
    Ok(())
}

/// Runs the command; the suite's result (printed or written already).
pub async fn run(
    cmd: &TestCmd,
    home: &std::path::Path,
    config: &crate::config::Config,
) -> Result<monitor::expect::SuiteResult, Error> {
    match cmd {
        TestCmd::Data {
            suite,
            table: t,
            json,
            run,
        } => {
            let s = monitor::expect::Suite::load(suite).map_err(|e| Error::Other(e.to_string()))?;
            let frame = data::frame::read_frame(t).map_err(|e| Error::Other(e.to_string()))?;
            let base = suite
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            let r = monitor::expect::run(&s, &frame, &base);
            print_result(&r, json.as_deref())?;
            if let Some(run_id) = run {
                let p = Platform::open(home, config).await?;
                log_to_run(&p, run_id, "expectations", &r).await?;
            }
            Ok(r)
        }
        TestCmd::Model {
            suite,
            model,
            data: table_path,
            champion,
            json,
            run,
        } => {
            let s = monitor::modeltest::ModelSuite::load(suite)
                .map_err(|e| Error::Other(e.to_string()))?;
            let frame =
                data::frame::read_frame(table_path).map_err(|e| Error::Other(e.to_string()))?;
            let p = Platform::open(home, config).await?;
            let (candidate, registered) = load_model(&p, model).await?;
            let champion_ref = match (champion.as_deref(), &registered) {
                (Some("none"), _) => None,
                (Some(c), _) => Some(c.to_owned()),
                (None, Some((name, _))) => Some(format!("{name}@champion")),
                (None, None) => None,
            };
            let champ = match champion_ref {
                None => None,
                Some(c) => match load_model(&p, &c).await {
                    // The tested version may be the champion itself: nothing to beat then.
                    Ok((_, Some((_, v))))
                        if registered.as_ref().is_some_and(|(_, rv)| *rv == v) =>
                    {
                        None
                    }
                    Ok((pkg, _)) => Some(pkg),
                    Err(e) if champion.is_some() => return Err(e),
                    Err(_) => None,
                },
            };
            let r = monitor::modeltest::run(&s, &candidate, champ.as_ref(), &frame);
            print_result(&r, json.as_deref())?;
            let target_run = match (run, &registered) {
                (Some(r), _) => Some(r.clone()),
                (None, Some((name, v))) => p.registry.get_version(name, *v).await?.run_id,
                (None, None) => None,
            };
            if let Some(run_id) = target_run {
                log_to_run(&p, &run_id, "model_tests", &r).await?;
            }
            Ok(r)
        }
    }
}
