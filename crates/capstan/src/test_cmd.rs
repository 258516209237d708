//! `capstan test data SUITE TABLE`: runs a data expectation suite, prints what each check saw,
//! optionally writes JSON, and exits with status 3 when a check fails (a CI or pipeline gate).

use crate::platform::Error;
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
}

/// Logs a suite's outcome as metrics of `run_id`.
pub async fn log_to_run(
    p: &crate::platform::Platform,
    run_id: &str,
    r: &monitor::expect::SuiteResult,
) -> Result<(), Error> {
    let id = base::RunId::parse(run_id).map_err(|e| Error::Other(e.to_string()))?;
    let now = base::now_millis();
    let metric = |k: &str, v: f64| tracking::Metric {
        key: format!("expectations.{}.{k}", r.suite),
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
pub fn run(cmd: &TestCmd) -> Result<monitor::expect::SuiteResult, Error> {
    match cmd {
        TestCmd::Data {
            suite,
            table: t,
            json,
            ..
        } => {
            let s = monitor::expect::Suite::load(suite).map_err(|e| Error::Other(e.to_string()))?;
            let frame = data::frame::read_frame(t).map_err(|e| Error::Other(e.to_string()))?;
            let base = suite
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            let r = monitor::expect::run(&s, &frame, &base);
            let text = serde_json::to_string_pretty(&r).map_err(|e| Error::Other(e.to_string()))?;
            if json.as_deref() == Some(std::path::Path::new("-")) {
                println!("{text}");
                return Ok(r);
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
                table(&["result", "expectation", "observed", "examples"], &rows)
            );
            println!(
                "\nsuite {}: {} passed, {} failed",
                r.suite, r.passed, r.failed
            );
            Ok(r)
        }
    }
}
