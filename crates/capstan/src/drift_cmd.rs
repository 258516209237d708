//! `capstan drift REFERENCE CURRENT`: per-column drift (Evidently's tests), printed as a table,
//! written as JSON and as a self-contained HTML report; `--fail-on-drift` makes it a CI gate.

use crate::platform::Error;
use crate::report::table;
use monitor::{DriftOptions, DriftReport, Method};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct DriftArgs {
    /// The reference table (CSV or .parquet), or its profile (`capstan profile`, .json).
    pub reference: PathBuf,
    /// The current table to compare with it.
    pub current: PathBuf,
    /// Write the HTML report here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Write the JSON report here ("-" for stdout instead of the table).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Only these columns (comma-separated); default every reference column.
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Numeric columns to compare as categories.
    #[arg(long, value_delimiter = ',')]
    pub categorical: Vec<String>,
    /// The target column (target drift).
    #[arg(long)]
    pub target: Option<String>,
    /// The prediction column (prediction drift).
    #[arg(long)]
    pub prediction: Option<String>,
    /// Dataset drift when at least this share of columns drifted.
    #[arg(long, default_value_t = 0.5)]
    pub drift_share: f64,
    /// One test for every column: ks, chisquare, z, wasserstein, jensenshannon, psi, kl_div, hellinger.
    #[arg(long)]
    pub method: Option<String>,
    /// One threshold for every column.
    #[arg(long)]
    pub threshold: Option<f64>,
    /// COLUMN=METHOD, repeatable.
    #[arg(long = "column-method")]
    pub column_method: Vec<String>,
    /// COLUMN=THRESHOLD, repeatable.
    #[arg(long = "column-threshold")]
    pub column_threshold: Vec<String>,
    /// Exit with status 3 when the dataset drifted.
    #[arg(long)]
    pub fail_on_drift: bool,
}

fn parse_method(s: &str) -> Result<Method, Error> {
    Method::parse(s).ok_or_else(|| {
        let all: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
        Error::Other(format!(
            "unknown drift test {s:?}; one of {}",
            all.join(", ")
        ))
    })
}

fn split_pair(s: &str) -> Result<(&str, &str), Error> {
    s.split_once('=')
        .ok_or_else(|| Error::Other(format!("expected COLUMN=VALUE, got {s:?}")))
}

pub fn options(a: &DriftArgs) -> Result<DriftOptions, Error> {
    if !(0.0..=1.0).contains(&a.drift_share) {
        return Err(Error::Other("--drift-share must be between 0 and 1".into()));
    }
    let mut o = DriftOptions {
        drift_share: a.drift_share,
        columns: (!a.columns.is_empty()).then(|| a.columns.clone()),
        exclude: a.exclude.clone(),
        method: a.method.as_deref().map(parse_method).transpose()?,
        threshold: a.threshold,
        categorical: a.categorical.clone(),
        target: a.target.clone(),
        prediction: a.prediction.clone(),
        ..DriftOptions::default()
    };
    for s in &a.column_method {
        let (c, m) = split_pair(s)?;
        o.per_column.entry(c.to_owned()).or_default().method = Some(parse_method(m)?);
    }
    for s in &a.column_threshold {
        let (c, t) = split_pair(s)?;
        let t: f64 = t
            .parse()
            .map_err(|_| Error::Other(format!("threshold for {c} is not a number: {t:?}")))?;
        o.per_column.entry(c.to_owned()).or_default().threshold = Some(t);
    }
    Ok(o)
}

fn load(path: &Path) -> Result<data::frame::Frame, Error> {
    data::frame::read_frame(path).map_err(|e| Error::Other(e.to_string()))
}

fn fmt_score(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x != 0.0 && x.abs() < 1e-4 => format!("{x:.3e}"),
        Some(x) => format!("{x:.4}"),
    }
}

pub fn print_table(r: &DriftReport) -> String {
    let rows: Vec<Vec<String>> = r
        .columns
        .iter()
        .map(|c| {
            vec![
                c.column.clone(),
                c.kind
                    .map(|k| format!("{k:?}").to_lowercase())
                    .unwrap_or_else(|| "-".into()),
                c.method.map_or("-", |m| m.name()).to_owned(),
                fmt_score(c.score),
                fmt_score(c.threshold),
                match &c.not_testable {
                    Some(why) => format!("not testable: {why}"),
                    None if c.drifted => "DRIFT".into(),
                    None => "ok".into(),
                },
            ]
        })
        .collect();
    let mut out = table(
        &["column", "type", "test", "score", "threshold", "drift"],
        &rows,
    );
    out.push_str(&format!(
        "\n{}: {} of {} testable columns drifted ({:.0}%; dataset drift at {:.0}%)\n",
        if r.dataset_drift {
            "DATASET DRIFT"
        } else {
            "no dataset drift"
        },
        r.number_of_drifted_columns,
        r.number_of_columns,
        r.share_of_drifted_columns * 100.0,
        r.drift_share * 100.0
    ));
    out
}

/// Runs the command; `Ok(true)` when the dataset drifted.
pub fn run(a: &DriftArgs) -> Result<bool, Error> {
    let opts = options(a)?;
    let reference = monitor::profile::read_reference(&a.reference).map_err(Error::Other)?;
    let current = load(&a.current)?;
    let report = monitor::drift(&reference, &current, &opts);
    let json = serde_json::to_string_pretty(&report).map_err(|e| Error::Other(e.to_string()))?;
    match a.json.as_deref() {
        Some(p) if p == Path::new("-") => println!("{json}"),
        Some(p) => {
            write_atomic(p, json.as_bytes())?;
            print!("{}", print_table(&report));
        }
        None => print!("{}", print_table(&report)),
    }
    if let Some(p) = &a.html {
        let title = format!(
            "Drift: {} vs {}",
            a.current.display(),
            a.reference.display()
        );
        write_atomic(p, monitor::html::render(&report, &title).as_bytes())?;
        eprintln!("report written to {}", p.display());
    }
    Ok(report.dataset_drift)
}

/// Writes through a temporary file in the same directory, then renames.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path).map_err(|e| Error::Io(e.error))?;
    Ok(())
}
