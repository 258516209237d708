//! `capstan bench training`: Capstan's trainers beside scikit-learn on exactly the same train/test
//! rows (the split indices are handed to the peer script), same run.

use crate::platform::Error;
use learn::trees::{TreeKind, TreeOptions};
use learn::{Dataset, TrainOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

const BREAST_CANCER: &str = include_str!("../../../data/breast_cancer.csv");
const DIABETES: &str = include_str!("../../../data/diabetes.csv");
const BIKES: &str = include_str!("../../../data/bike_sharing_hourly.csv");

struct Case {
    name: &'static str,
    csv: &'static str,
    file: &'static str,
    target: &'static str,
    peer_model: &'static str,
    metric: &'static str,
    drop: &'static [&'static str],
}

fn ours(case: &Case, d: &Dataset) -> Result<(f64, f64), Error> {
    let t = Instant::now();
    let o = TrainOptions {
        learning_rate: 0.5,
        epochs: 300,
        seed: 42,
        test_fraction: 0.2,
        l2: 0.0,
        holdout: None,
    };
    let fit = match case.peer_model {
        "logistic" => learn::train_logistic_regression(d, &o, |_| {}),
        // Rounds chosen to reach scikit-learn's RMSE: the issue compares fit time at equal RMSE.
        "hgb_regressor" => learn::train_trees(
            d,
            false,
            &TreeOptions {
                kind: TreeKind::GradientBoosting,
                rounds: 60,
                learning_rate: 0.2,
                max_depth: 8,
                min_samples_leaf: 20,
                lambda: 1.0,
                max_bins: 255,
                seed: 42,
                test_fraction: 0.2,
                holdout: None,
            },
            |_| {},
        ),
        "hgb" => learn::train_trees(
            d,
            true,
            &TreeOptions {
                kind: TreeKind::GradientBoosting,
                rounds: 100,
                learning_rate: 0.1,
                max_depth: 6,
                min_samples_leaf: 20,
                lambda: 1.0,
                max_bins: 255,
                seed: 42,
                test_fraction: 0.2,
                holdout: None,
            },
            |_| {},
        ),
        _ => learn::train_least_squares(d, &o),
    }
    .map_err(|e| Error::Other(e.to_string()))?;
    let secs = t.elapsed().as_secs_f64();
    let metric = match case.metric {
        "accuracy" => fit.test_accuracy.unwrap_or(f64::NAN),
        _ => fit.history.last().map_or(f64::NAN, |h| h.2),
    };
    Ok((metric, secs))
}

fn peer(python: &str, dir: &Path, case: &Case, split: &Path) -> Result<(f64, f64), Error> {
    let data = dir.join(case.file);
    std::fs::write(&data, case.csv)?;
    let drop = case.drop.join(",");
    let stdout = crate::bench::run_peer(
        python,
        "training_peer.py",
        &[
            "--data".as_ref(),
            data.as_os_str(),
            "--target".as_ref(),
            case.target.as_ref(),
            "--model".as_ref(),
            case.peer_model.as_ref(),
            "--drop".as_ref(),
            drop.as_ref(),
            "--split".as_ref(),
            split.as_os_str(),
        ],
    )?;
    let v: serde_json::Value =
        serde_json::from_slice(&stdout).map_err(|e| Error::Other(format!("peer output: {e}")))?;
    Ok((
        v["metric"].as_f64().unwrap_or(f64::NAN),
        v["fit_seconds"].as_f64().unwrap_or(f64::NAN),
    ))
}

pub fn run(python: &str, out: Option<PathBuf>) -> Result<(), Error> {
    let cases = [
        Case {
            name: "breast_cancer, logistic regression",
            csv: BREAST_CANCER,
            file: "breast_cancer.csv",
            target: "diagnosis",
            peer_model: "logistic",
            metric: "accuracy",
            drop: &[],
        },
        Case {
            name: "breast_cancer, gradient boosting (vs HistGradientBoostingClassifier)",
            csv: BREAST_CANCER,
            file: "breast_cancer.csv",
            target: "diagnosis",
            peer_model: "hgb",
            metric: "accuracy",
            drop: &[],
        },
        Case {
            name: "diabetes, linear regression",
            csv: DIABETES,
            file: "diabetes.csv",
            target: "progression",
            peer_model: "linear",
            metric: "rmse",
            drop: &[],
        },
        Case {
            name: "bike_sharing_hourly, gradient boosting (vs HistGradientBoostingRegressor)",
            csv: BIKES,
            file: "bike_sharing_hourly.csv",
            target: "cnt",
            peer_model: "hgb_regressor",
            metric: "rmse",
            drop: &["dteday", "casual", "registered"],
        },
    ];
    let dir = tempfile::tempdir()?;
    let mut t = String::from(
        "| case (same 80/20 split, seed 42) | metric | capstan | scikit-learn | difference | capstan fit (s) | scikit-learn fit (s) |\n|---|---|---|---|---|---|---|\n",
    );
    for case in &cases {
        let d = Dataset::from_csv_encoded(case.csv, case.target, case.drop)
            .map_err(|e| Error::Other(e.to_string()))?;
        let (train, test) = learn::split_indices(d.x.len(), 42, 0.2);
        let split = dir.path().join("split.json");
        std::fs::write(
            &split,
            serde_json::json!({"train": train, "test": test}).to_string(),
        )?;
        let (m, s) = ours(case, &d)?;
        let (pm, ps) = if python == "none" {
            (f64::NAN, f64::NAN)
        } else {
            peer(python, dir.path(), case, &split)?
        };
        let diff = if case.metric == "accuracy" {
            format!("{:+.1} points", (m - pm) * 100.0)
        } else {
            format!("{:+.2}%", (m / pm - 1.0) * 100.0)
        };
        t += &format!(
            "| {} | {} | {m:.4} | {pm:.4} | {diff} | {s:.3} | {ps:.3} |\n",
            case.name, case.metric
        );
    }
    println!("\n{t}");
    if let Some(p) = out {
        std::fs::write(p, &t)?;
    }
    Ok(())
}
