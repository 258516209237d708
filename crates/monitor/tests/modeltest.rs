//! Model tests on a real model (logistic regression on the breast-cancer data): metric bounds,
//! slices, invariance, directional expectations and beating a weaker champion.

use data::frame::read_frame;
use learn::{Dataset, TrainOptions};
use monitor::modeltest::{ModelSuite, run};
use std::path::Path;

fn data_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/breast_cancer.csv")
}

fn train(epochs: usize) -> learn::ModelPackage {
    let text = std::fs::read_to_string(data_path()).unwrap();
    let d = Dataset::from_csv_encoded(&text, "diagnosis", &[]).unwrap();
    let o = TrainOptions {
        learning_rate: 0.5,
        epochs,
        seed: 42,
        ..Default::default()
    };
    learn::train_logistic_regression(&d, &o, |_| {})
        .unwrap()
        .package
}

#[test]
fn a_good_model_passes_and_a_weak_champion_is_beaten() {
    let strong = train(300);
    let weak = train(1);
    let table = read_frame(&data_path()).unwrap();
    let suite: ModelSuite = serde_yaml_ng::from_str(
        r#"
name: bc_model
target: diagnosis
tests:
  - {test: metric, metric: accuracy, min: 0.95}
  - {test: metric, metric: accuracy, min: 0.9, slice: {column: mean_radius, min: 15}}
  - {test: metric, metric: accuracy, min: 0.9, slice: {column: diagnosis, equals: malignant}}
  - {test: invariance, column: mean_fractal_dimension, add: 0.00001, max_changed: 0.01}
  - {test: directional, column: worst_concave_points, add: 0.1, class: malignant, expect: increase}
  - {test: beats_champion, metric: accuracy, margin: 0.01}
"#,
    )
    .unwrap();
    let r = run(&suite, &strong, Some(&weak), &table);
    assert!(r.success, "{r:#?}");
    assert!(
        r.results[0].observed.ends_with("on 569 rows"),
        "{}",
        r.results[0].observed
    );
    assert!(
        r.results[2].observed.ends_with("on 212 rows"),
        "{}",
        r.results[2].observed
    );

    // The weak model fails the bar and cannot beat the strong one.
    let r = run(&suite, &weak, Some(&strong), &table);
    assert!(!r.success);
    assert!(!r.results[0].success, "{:?}", r.results[0]);
    assert!(!r.results[5].success, "{:?}", r.results[5]);
    assert!(
        r.results[5].observed.starts_with("candidate 0."),
        "{}",
        r.results[5].observed
    );
}

#[test]
fn broken_expectations_fail_with_the_numbers() {
    let model = train(300);
    let table = read_frame(&data_path()).unwrap();
    let suite: ModelSuite = serde_yaml_ng::from_str(
        r#"
name: strict
target: diagnosis
tests:
  - {test: metric, metric: accuracy, min: 0.999}
  - {test: invariance, column: worst_radius, add: 10}
  - {test: directional, column: worst_concave_points, add: 0.1, class: malignant, expect: decrease}
  - {test: metric, metric: rmse, max: 1}
  - {test: metric, metric: accuracy, slice: {column: nope, min: 1}}
"#,
    )
    .unwrap();
    let r = run(&suite, &model, None, &table);
    assert_eq!(r.failed, 5, "{r:#?}");
    assert!(
        r.results[1].observed.contains("predictions changed"),
        "{}",
        r.results[1].observed
    );
    assert!(r.results[2].observed.contains("rows moved as expected"));
    assert!(
        r.results[3].observed.contains("regression model"),
        "{}",
        r.results[3].observed
    );
    assert!(r.results[4].observed.contains("no column nope"));
}
