//! `capstan bench drift`: (1) the seasonal table on bike-sharing hours — reference January and
//! February 2011, current each later month; (2) a data-drift report over two generated tables
//! (default 1,000,000 rows × 20 columns each, Parquet) by Capstan and by the real Evidently in the
//! same run: time, ratio, and whether every column's verdict agrees.

use crate::platform::Error;
use data::frame::{Frame, parse_csv_frame, read_frame};
use monitor::drift::ColumnOptions;
use monitor::{DriftOptions, drift};
use std::path::{Path, PathBuf};
use std::time::Instant;

const BIKES: &str = include_str!("../../../data/bike_sharing_hourly.csv");

fn seasonal() -> Result<String, Error> {
    let all = parse_csv_frame(BIKES).map_err(Error::Other)?;
    let mut parts = all
        .partition_by("dteday", |d| match d.get(..7) {
            Some("2011-01" | "2011-02") => "reference".to_owned(),
            Some(m) => m.to_owned(),
            None => "?".to_owned(),
        })
        .ok_or_else(|| Error::Other("bike data has no dteday column".into()))?;
    let reference = parts
        .remove("reference")
        .ok_or_else(|| Error::Other("no January-February 2011 rows".into()))?;
    let default = DriftOptions {
        exclude: vec!["dteday".into()],
        ..DriftOptions::default()
    };
    let mut tuned = default.clone();
    for c in ["temp", "atemp"] {
        tuned.per_column.insert(
            c.into(),
            ColumnOptions {
                method: None,
                threshold: Some(0.5),
            },
        );
    }
    let mut t = format!(
        "Reference: January–February 2011 ({} hours). Scores are Wasserstein / std(reference).\n\n\
         | month | temp | atemp | hum | windspeed | temp/atemp drift (0.1, Evidently default) | temp/atemp drift (0.5) | drifted columns (defaults) |\n\
         |---|---|---|---|---|---|---|---|\n",
        reference.rows()
    );
    for (month, cur) in &parts {
        let d = drift(&reference, cur, &default);
        let k = drift(&reference, cur, &tuned);
        let score = |c: &str| {
            d.column(c)
                .and_then(|c| c.score)
                .map_or("-".into(), |s| format!("{s:.3}"))
        };
        let flag = |r: &monitor::DriftReport| {
            let both = ["temp", "atemp"]
                .iter()
                .filter(|c| r.column(c).is_some_and(|c| c.drifted))
                .count();
            match both {
                2 => "**drift**",
                1 => "partial",
                _ => "no",
            }
        };
        t += &format!(
            "| {month} | {} | {} | {} | {} | {} | {} | {}/{} |\n",
            score("temp"),
            score("atemp"),
            score("hum"),
            score("windspeed"),
            flag(&d),
            flag(&k),
            d.number_of_drifted_columns,
            d.number_of_columns
        );
    }
    Ok(t)
}

fn peer(python: &str, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>, Error> {
    crate::bench::run_peer(python, "drift_peer.py", args)
}

fn evidently_name(m: monitor::Method) -> &'static str {
    use monitor::Method::*;
    match m {
        Ks => "K-S p_value",
        Chisquare => "chi-square p_value",
        Z => "Z-test p_value",
        Wasserstein => "Wasserstein distance (normed)",
        Jensenshannon => "Jensen-Shannon distance",
        _ => "",
    }
}

fn versus_evidently(python: &str, rows: usize) -> Result<String, Error> {
    let dir = tempfile::tempdir()?;
    peer(
        python,
        &[
            "gen".as_ref(),
            "--rows".as_ref(),
            rows.to_string().as_ref(),
            "--out".as_ref(),
            dir.path().as_os_str(),
        ],
    )?;
    let (rp, cp) = (
        dir.path().join("reference.parquet"),
        dir.path().join("current.parquet"),
    );
    let t0 = Instant::now();
    let load = |p: &Path| read_frame(p).map_err(|e| Error::Other(e.to_string()));
    let (reference, current): (Frame, Frame) = (load(&rp)?, load(&cp)?);
    let t1 = Instant::now();
    let ours = drift(&reference, &current, &DriftOptions::default());
    let t2 = Instant::now();
    let theirs: serde_json::Value = serde_json::from_slice(&peer(
        python,
        &["run".as_ref(), rp.as_os_str(), cp.as_os_str()],
    )?)
    .map_err(|e| Error::Other(format!("peer output: {e}")))?;
    let (ours_load, ours_drift) = ((t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64());
    // The monitor path: the reference profiled once, drift against the profile.
    let tp = Instant::now();
    let profile = monitor::profile::Profile::of(&reference);
    let profile_secs = tp.elapsed().as_secs_f64();
    let profile_kb = serde_json::to_vec(&profile).map_or(0, |v| v.len() / 1024);
    let tq = Instant::now();
    let stand_in = profile.to_frame(monitor::profile::STAND_IN_POINTS);
    let via_profile = drift(&stand_in, &current, &DriftOptions::default());
    let profile_drift_secs = tq.elapsed().as_secs_f64();
    let ev_load = theirs["load_seconds"].as_f64().unwrap_or(f64::NAN);
    let ev_report = theirs["report_seconds"].as_f64().unwrap_or(f64::NAN);
    let profile_agree = via_profile
        .columns
        .iter()
        .filter(|c| theirs["columns"][&c.column]["drifted"].as_bool() == Some(c.drifted))
        .count();
    let mut agree = 0;
    let mut mismatches = Vec::new();
    for c in &ours.columns {
        let ev = &theirs["columns"][&c.column];
        let same_test = c.method.map(evidently_name) == ev["method"].as_str();
        let same_verdict = ev["drifted"].as_bool() == Some(c.drifted);
        if same_test && same_verdict {
            agree += 1;
        } else {
            mismatches.push(c.column.clone());
        }
    }
    let (ours_total, ev_total) = (ours_load + ours_drift, ev_load + ev_report);
    let mut t = format!(
        "Two tables of {rows} rows × {} columns (Parquet), DataDriftPreset defaults.\n\n\
         | | load (s) | drift report (s) | total (s) | drifted columns |\n|---|---|---|---|---|\n",
        ours.columns.len()
    );
    t += &format!(
        "| capstan | {ours_load:.2} | {ours_drift:.2} | {ours_total:.2} | {} |\n",
        ours.number_of_drifted_columns
    );
    let ev_drifted = theirs["columns"]
        .as_object()
        .map_or(0, |m| m.values().filter(|v| v["drifted"] == true).count());
    t += &format!(
        "| capstan, against a stored profile ({profile_kb} KB, built once in {profile_secs:.2} s) | {:.2} (current only) | {profile_drift_secs:.2} | {:.2} | {} |\n",
        ours_load / 2.0,
        ours_load / 2.0 + profile_drift_secs,
        via_profile.number_of_drifted_columns
    );
    t += &format!("| Evidently | {ev_load:.2} | {ev_report:.2} | {ev_total:.2} | {ev_drifted} |\n");
    t += &format!(
        "\nCapstan is {:.1}× faster in total ({:.1}× on the report alone); same test and same verdict on {agree} of {} columns{}; against the profile, same verdict on {profile_agree}.\n",
        ev_total / ours_total,
        ev_report / ours_drift,
        ours.columns.len(),
        if mismatches.is_empty() {
            String::new()
        } else {
            format!(" (differ: {})", mismatches.join(", "))
        }
    );
    Ok(t)
}

pub fn run(python: &str, rows: usize, out: Option<PathBuf>) -> Result<(), Error> {
    let mut t = String::from("### Seasonal drift, bike-sharing hours\n\n");
    t += &seasonal()?;
    if python != "none" {
        t += "\n### Capstan vs Evidently\n\n";
        t += &versus_evidently(python, rows)?;
    }
    println!("\n{t}");
    if let Some(p) = out {
        std::fs::write(p, &t)?;
    }
    Ok(())
}
