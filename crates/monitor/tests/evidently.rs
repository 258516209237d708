//! Drift verdicts and scores against the real Evidently on the same data
//! (`fixtures/gen_evidently.py` wrote the CSVs and Evidently's answers), plus the "not testable"
//! cases Evidently would crash on.

use data::frame::{parse_csv_frame, read_frame};
use monitor::{DriftOptions, Method, drift};
use std::path::Path;

fn fixture(name: &str) -> data::frame::Frame {
    read_frame(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

fn method_of(evidently_name: &str) -> Method {
    match evidently_name {
        "K-S p_value" => Method::Ks,
        "chi-square p_value" => Method::Chisquare,
        "Z-test p_value" => Method::Z,
        "Wasserstein distance (normed)" => Method::Wasserstein,
        "Jensen-Shannon distance" => Method::Jensenshannon,
        other => panic!("unknown Evidently method {other}"),
    }
}

#[test]
fn same_tests_scores_and_verdicts_as_evidently() {
    let expected: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/evidently_drift.json")).unwrap();
    for case in expected["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let reference = fixture(&format!("{name}_reference.csv"));
        let current = fixture(&format!("{name}_current.csv"));
        let report = drift(&reference, &current, &DriftOptions::default());
        for (column, ev) in case["columns"].as_object().unwrap() {
            let ours = report.column(column).unwrap();
            let what = format!("{name}/{column}");
            assert_eq!(
                ours.method,
                Some(method_of(ev["method"].as_str().unwrap())),
                "{what}"
            );
            let (score, theirs) = (ours.score.unwrap(), ev["score"].as_f64().unwrap());
            let tol = if ours.method.unwrap().is_p_value() {
                1e-6
            } else {
                1e-9
            };
            assert!(
                (score - theirs).abs() <= tol * theirs.abs().max(1e-300) || score == theirs,
                "{what}: ours {score:e}, Evidently {theirs:e}"
            );
            let threshold = ev["threshold"].as_f64().unwrap();
            assert_eq!(
                ours.drifted,
                ours.method.unwrap().drifted(theirs, threshold),
                "{what}"
            );
        }
        assert_eq!(
            report.number_of_drifted_columns as f64,
            case["drifted_count"].as_f64().unwrap(),
            "{name}"
        );
        assert!(
            report.dataset_drift,
            "{name}: more than half the columns drifted"
        );
    }
}

#[test]
fn columns_that_cannot_be_tested_say_why() {
    let reference = parse_csv_frame("a,b,c,d,e\n1,x,,7,1\n2,y,,7,2\n3,x,,7,3\n4,y,,7,4\n").unwrap();
    let current = parse_csv_frame("a,b,c,d\n1,x,,7\n2,oops,,7\nnot a number,x,,7\n").unwrap();
    let report = drift(&reference, &current, &DriftOptions::default());
    let why = |c: &str| {
        report
            .column(c)
            .unwrap()
            .not_testable
            .clone()
            .unwrap_or_default()
    };
    assert!(
        why("a").contains("numbers in the reference but text"),
        "{}",
        why("a")
    );
    assert!(why("c").contains("no values"), "{}", why("c"));
    assert!(why("d").contains("single distinct value"), "{}", why("d"));
    assert!(
        why("e").contains("missing from the current"),
        "{}",
        why("e")
    );
    // b is categorical on both sides and testable.
    assert!(report.column("b").unwrap().score.is_some());
    assert_eq!(report.number_of_columns, 1);
    for c in ["a", "c", "d", "e"] {
        let col = report.column(c).unwrap();
        assert!(col.score.is_none() && !col.drifted, "{c}: no fake p-value");
    }
    // An empty current window: nothing testable, no dataset drift.
    let empty = parse_csv_frame("a,b,c,d,e\n").unwrap();
    let report = drift(&reference, &empty, &DriftOptions::default());
    assert_eq!(report.number_of_columns, 0);
    assert!(!report.dataset_drift);
}

#[test]
fn thresholds_and_tests_can_be_set_per_column() {
    let reference = fixture("large_reference.csv");
    let current = fixture("large_current.csv");
    let mut options = DriftOptions::default();
    options.per_column.insert(
        "stable".into(),
        monitor::drift::ColumnOptions {
            method: Some(Method::Psi),
            threshold: Some(0.0),
        },
    );
    options.per_column.insert(
        "shifted".into(),
        monitor::drift::ColumnOptions {
            method: None,
            threshold: Some(10.0),
        },
    );
    let report = drift(&reference, &current, &options);
    let stable = report.column("stable").unwrap();
    assert_eq!(stable.method, Some(Method::Psi));
    assert!(stable.drifted, "a zero PSI threshold flags any difference");
    assert_eq!(stable.score, stable.psi);
    let shifted = report.column("shifted").unwrap();
    assert_eq!(shifted.method, Some(Method::Wasserstein));
    assert!(!shifted.drifted, "threshold 10 is never reached");
    // PSI, KL and Hellinger are reported for every testable column.
    for c in &report.columns {
        assert!(
            c.psi.unwrap() >= 0.0 && c.kl_div.unwrap() >= 0.0,
            "{}",
            c.column
        );
        let h = c.hellinger.unwrap();
        assert!((0.0..=1.0).contains(&h), "{}", c.column);
    }
}
