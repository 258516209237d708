//! Drift against a stored profile instead of the reference table: exact where the profile is
//! exact (small references, few distinct values, categories), the same verdicts and close scores
//! where it summarises; profiles of parts merge into the profile of the whole.

use data::frame::{Frame, read_frame};
use monitor::profile::{Profile, Sketch};
use monitor::{DriftOptions, drift};
use std::path::Path;

fn fixture(name: &str) -> Frame {
    read_frame(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

fn through_json(p: &Profile) -> Profile {
    Profile::from_json(&serde_json::to_vec(p).unwrap()).unwrap()
}

#[test]
fn small_reference_profiles_are_exact() {
    let (r, c) = (fixture("small_reference.csv"), fixture("small_current.csv"));
    let exact = drift(&r, &c, &DriftOptions::default());
    let profile = through_json(&Profile::of(&r));
    let via = drift(&profile.to_frame(20_000), &c, &DriftOptions::default());
    for (a, b) in exact.columns.iter().zip(&via.columns) {
        assert_eq!(a.method, b.method, "{}", a.column);
        assert_eq!(a.score, b.score, "{}", a.column);
        assert_eq!(a.drifted, b.drifted, "{}", a.column);
    }
}

#[test]
fn large_reference_profiles_give_the_same_verdicts() {
    let (r, c) = (fixture("large_reference.csv"), fixture("large_current.csv"));
    let exact = drift(&r, &c, &DriftOptions::default());
    let via = drift(
        &through_json(&Profile::of(&r)).to_frame(20_000),
        &c,
        &DriftOptions::default(),
    );
    for (a, b) in exact.columns.iter().zip(&via.columns) {
        assert_eq!(a.method, b.method, "{}", a.column);
        assert_eq!(a.drifted, b.drifted, "{}", a.column);
        let (x, y) = (a.score.unwrap(), b.score.unwrap());
        assert!(
            (x - y).abs() <= 0.02 * x.abs() + 0.002,
            "{}: {x} vs {y}",
            a.column
        );
    }
    // On real data too: bike-sharing months against January-February 2011.
    let bikes = read_frame(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/bike_sharing_hourly.csv"),
    )
    .unwrap();
    let mut parts = bikes
        .partition_by("dteday", |d| match &d[..7] {
            "2011-01" | "2011-02" => "reference".into(),
            m => m.into(),
        })
        .unwrap();
    let reference = parts.remove("reference").unwrap();
    let stand_in = Profile::of(&reference).to_frame(20_000);
    let opts = DriftOptions {
        exclude: vec!["dteday".into()],
        ..DriftOptions::default()
    };
    let mut compared = 0;
    for month in ["2011-07", "2012-01", "2012-07"] {
        let a = drift(&reference, &parts[month], &opts);
        let b = drift(&stand_in, &parts[month], &opts);
        for (x, y) in a.columns.iter().zip(&b.columns) {
            assert_eq!(x.drifted, y.drifted, "{month} {}", x.column);
            if let (Some(s), Some(t)) = (x.score, y.score) {
                assert!(
                    (s - t).abs() <= 0.03 * s.abs() + 0.005,
                    "{month} {}: {s} vs {t}",
                    x.column
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 20);
}

#[test]
fn profiles_of_parts_merge_into_the_profile_of_the_whole() {
    let r = fixture("large_reference.csv");
    let n = r.rows();
    let first: Vec<bool> = (0..n).map(|i| i < n / 2).collect();
    let second: Vec<bool> = first.iter().map(|b| !b).collect();
    let merged = Profile::of(&r.filter_rows(&first))
        .merge(&Profile::of(&r.filter_rows(&second)))
        .unwrap();
    let whole = Profile::of(&r);
    assert_eq!(merged.rows, whole.rows);
    for (m, w) in merged.columns.iter().zip(&whole.columns) {
        match (&m.sketch, &w.sketch) {
            (
                Sketch::Numeric {
                    count: c1,
                    missing: x1,
                    min: a1,
                    max: b1,
                    counts: k1,
                    sum: s1,
                    ..
                },
                Sketch::Numeric {
                    count: c2,
                    missing: x2,
                    min: a2,
                    max: b2,
                    counts: k2,
                    sum: s2,
                    ..
                },
            ) => {
                assert_eq!((c1, x1, a1, b1, k1), (c2, x2, a2, b2, k2), "{}", m.name);
                assert!((s1 - s2).abs() < 1e-6 * s2.abs().max(1.0));
            }
            (a, b) => assert_eq!(a, b, "{}", m.name),
        }
    }
    // The merged summary still gives the same verdicts.
    let c = fixture("large_current.csv");
    let a = drift(&whole.to_frame(20_000), &c, &DriftOptions::default());
    let b = drift(&merged.to_frame(20_000), &c, &DriftOptions::default());
    for (x, y) in a.columns.iter().zip(&b.columns) {
        assert_eq!(x.drifted, y.drifted, "{}", x.column);
    }
    assert!(Profile::from_json(b"{\"format\": \"other\", \"rows\": 0, \"columns\": []}").is_err());
}
