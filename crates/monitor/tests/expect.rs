//! Data expectations: the suite shipped for the bike-sharing data passes on it, and each kind of
//! expectation fails on data that breaks it, saying what it saw.

use data::frame::{parse_csv_frame, read_frame};
use monitor::expect::{Suite, run};
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn shipped_suite_passes_on_the_shipped_data() {
    let suite = Suite::load(&root().join("data/expectations/bike_sharing.yaml")).unwrap();
    let table = read_frame(&root().join("data/bike_sharing_hourly.csv")).unwrap();
    let r = run(&suite, &table, root());
    assert!(r.success, "{r:#?}");
    assert_eq!(r.passed, suite.expectations.len());
}

#[test]
fn each_expectation_fails_with_what_it_saw() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("ref.csv");
    let ref_rows: String = (0..200).map(|i| format!("{}\n", 100 + i % 50)).collect();
    std::fs::write(&reference, format!("x\n{ref_rows}")).unwrap();
    let suite: Suite = serde_yaml_ng::from_str(
        r#"
name: broken
expectations:
  - {expect: columns_exist, columns: [id, x, missing_col]}
  - {expect: type, column: code, type: number}
  - {expect: not_null, column: x}
  - {expect: not_null, column: x, mostly: 0.5}
  - {expect: between, column: x, min: 0, max: 10}
  - {expect: in_set, column: code, values: [a, b]}
  - {expect: unique, column: id}
  - {expect: regex, column: code, pattern: '^[a-z]$'}
  - {expect: row_count, min: 10}
  - {expect: mean_between, column: x, min: 0, max: 5}
  - {expect: quantile_between, column: x, quantile: 0.5, min: 0, max: 3}
  - {expect: no_drift, column: x, reference: ref.csv}
"#,
    )
    .unwrap();
    suite.validate().unwrap();
    let table = parse_csv_frame("id,x,code\n1,1,a\n2,,b\n2,50,C9\n3,4,a\n").unwrap();
    let r = run(&suite, &table, dir.path());
    let by = |i: usize| &r.results[i];
    assert!(!r.success);
    assert_eq!(
        (by(0).success, by(0).unexpected.clone()),
        (false, vec!["missing_col".to_owned()])
    );
    assert_eq!((by(1).success, by(1).observed.as_str()), (false, "string"));
    assert_eq!(by(1).unexpected, ["a", "b", "C9"]);
    assert!(!by(2).success && by(2).observed == "1 of 4 values null");
    assert!(by(3).success, "75% not null passes mostly: 0.5");
    assert!(!by(4).success);
    assert_eq!(by(4).unexpected, ["50"]);
    assert!(
        by(4).observed.starts_with("1 of 3 values outside [0, 10]"),
        "{}",
        by(4).observed
    );
    assert_eq!(by(5).unexpected, ["C9"]);
    assert_eq!(
        (by(6).success, by(6).unexpected.clone()),
        (false, vec!["2".to_owned()])
    );
    assert_eq!(by(7).unexpected, ["C9"]);
    assert_eq!((by(8).success, by(8).observed.as_str()), (false, "4 rows"));
    assert!(
        !by(9).success && by(9).observed.starts_with("mean 18.33"),
        "{}",
        by(9).observed
    );
    assert!(
        !by(10).success && by(10).observed == "quantile 0.5 = 4.000000",
        "{}",
        by(10).observed
    );
    assert!(!by(11).success, "{:?}", by(11));
    assert_eq!(r.failed, 11);
    assert_eq!(r.passed, 1);
}

#[test]
fn suites_that_cannot_work_are_refused_when_loaded() {
    for (yaml, needle) in [
        (
            "name: s\nexpectations:\n  - {expect: between, column: x, min: 5, max: 1}\n",
            "min is above max",
        ),
        (
            "name: s\nexpectations:\n  - {expect: regex, column: x, pattern: '(('}\n",
            "invalid regex",
        ),
        (
            "name: s\nexpectations:\n  - {expect: not_null, column: x, mostly: 2}\n",
            "mostly",
        ),
        (
            "name: s\nexpectations:\n  - {expect: no_drift, reference: r.csv, method: magic}\n",
            "unknown drift test",
        ),
    ] {
        let suite: Suite = serde_yaml_ng::from_str(yaml).unwrap();
        let err = suite.validate().unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
    assert!(
        serde_yaml_ng::from_str::<Suite>("name: s\nexpectations:\n  - {expect: nonsense}\n")
            .is_err()
    );
}
