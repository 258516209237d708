//! The seasonal check on real data: bike-sharing hours, reference = January–February 2011,
//! current = each later month. Temperature drifts in summer and is back to the reference's
//! distribution in the next winter.

use data::frame::{Frame, read_frame};
use monitor::{DriftOptions, Method, drift};
use std::collections::BTreeMap;
use std::path::Path;

fn months() -> (Frame, BTreeMap<String, Frame>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/bike_sharing_hourly.csv");
    let all = read_frame(&path).unwrap();
    // January and February 2011 form one part, the reference; every later month its own.
    let mut months = all
        .partition_by("dteday", |d| match &d[..7] {
            "2011-01" | "2011-02" => "reference".to_owned(),
            month => month.to_owned(),
        })
        .unwrap();
    let reference = months.remove("reference").unwrap();
    (reference, months)
}

#[test]
fn temperature_drifts_in_summer_and_not_next_winter() {
    let (reference, months) = months();
    assert!(
        reference.rows() > 1000,
        "a large reference: Wasserstein for numbers"
    );
    // Evidently's default (0.1 of a reference standard deviation) also flags January 2012, which
    // was 1.7 °C warmer than January–February 2011; half a standard deviation separates a
    // season from a mild winter, so the temperature columns get that threshold.
    let mut opts = DriftOptions {
        exclude: vec!["dteday".into()],
        ..DriftOptions::default()
    };
    for col in ["temp", "atemp"] {
        opts.per_column.insert(
            col.into(),
            monitor::drift::ColumnOptions {
                method: None,
                threshold: Some(0.5),
            },
        );
    }
    let verdict = |month: &str, column: &str| {
        let r = drift(&reference, &months[month], &opts);
        let c = r.column(column).unwrap().clone();
        assert_eq!(c.method, Some(Method::Wasserstein), "{month} {column}");
        (c.drifted, c.score.unwrap())
    };
    for month in ["2011-06", "2011-07", "2011-08", "2012-07"] {
        for col in ["temp", "atemp"] {
            let (drifted, score) = verdict(month, col);
            assert!(drifted, "{month} {col}: summer must drift (score {score})");
            assert!(
                score > 3.0,
                "{month} {col}: far from winter (score {score})"
            );
        }
    }
    for col in ["temp", "atemp"] {
        let (drifted, score) = verdict("2012-01", col);
        assert!(
            !drifted,
            "2012-01 {col}: next winter matches (score {score})"
        );
        assert!(score < 0.4, "2012-01 {col}: score {score}");
    }
    // Columns the season does not move stay quiet in the comparable month.
    let r = drift(&reference, &months["2012-01"], &opts);
    for col in ["windspeed", "holiday", "workingday"] {
        assert!(!r.column(col).unwrap().drifted, "2012-01 {col}");
    }
}
