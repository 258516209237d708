//! `capstan profile TABLE… -o OUT.json`: the reference profile of one or more tables (profiled
//! one at a time and merged, so a reference split over many files never has to fit in memory at
//! once), for `capstan drift` and monitors to compare against.

use crate::platform::Error;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ProfileArgs {
    /// Tables (CSV or Parquet) with the same columns, or profiles (.json) to merge.
    #[arg(required = true)]
    pub tables: Vec<PathBuf>,
    #[arg(long, short)]
    pub out: PathBuf,
}

pub fn run(a: &ProfileArgs) -> Result<(), Error> {
    let mut merged: Option<monitor::profile::Profile> = None;
    for t in &a.tables {
        let p = if t
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            monitor::profile::Profile::from_json(&std::fs::read(t)?)
                .map_err(|e| Error::Other(format!("{}: {e}", t.display())))?
        } else {
            let frame = data::frame::read_frame(t).map_err(|e| Error::Other(e.to_string()))?;
            monitor::profile::Profile::of(&frame)
        };
        merged = Some(match merged {
            None => p,
            Some(m) => m
                .merge(&p)
                .map_err(|e| Error::Other(format!("{}: {e}", t.display())))?,
        });
    }
    let p = merged.ok_or_else(|| Error::Other("no tables".into()))?;
    let json = serde_json::to_vec(&p).map_err(|e| Error::Other(e.to_string()))?;
    crate::drift_cmd::write_atomic(&a.out, &json)?;
    println!(
        "profile of {} rows × {} columns written to {} ({} KB)",
        p.rows,
        p.columns.len(),
        a.out.display(),
        json.len() / 1024
    );
    Ok(())
}
