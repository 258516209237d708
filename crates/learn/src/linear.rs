//! Linear and logistic regression by full-batch gradient descent on standardised features,
//! reproducible by seed (the seed fixes the train/test split).

use crate::package::{
    Algorithm, Column, DType, LearnError, ModelPackage, Prediction, Task, dot, softmax,
};

/// A numeric table: `x` row-major, `y` a number (regression) or a class label.
pub struct Dataset {
    pub features: Vec<String>,
    pub target: String,
    pub x: Vec<Vec<f64>>,
    pub y: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct TrainOptions {
    pub learning_rate: f64,
    pub epochs: usize,
    pub seed: u64,
    /// Share of rows held out for testing.
    pub test_fraction: f64,
    /// L2 penalty on the weights.
    pub l2: f64,
    /// Cross-validation: the last `n` rows are the test set, in order (no shuffle).
    pub holdout: Option<usize>,
}

impl Default for TrainOptions {
    fn default() -> TrainOptions {
        TrainOptions {
            learning_rate: 0.05,
            epochs: 300,
            seed: 42,
            test_fraction: 0.2,
            l2: 0.0,
            holdout: None,
        }
    }
}

pub struct Fit {
    pub package: ModelPackage,
    /// (epoch, train metric, test metric): RMSE for regression, log-loss for classification.
    pub history: Vec<(usize, f64, f64)>,
    /// Test accuracy for classification.
    pub test_accuracy: Option<f64>,
}

/// xorshift64*: a tiny deterministic generator so a seed reproduces the split exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

struct Split {
    train: Vec<usize>,
    test: Vec<usize>,
    mean: Vec<f64>,
    std: Vec<f64>,
    z: Vec<Vec<f64>>,
}

/// The seeded train/test split every trainer uses (Fisher–Yates with xorshift64*): the same seed
/// gives the same rows, so peers can be evaluated on exactly these splits.
pub fn split_indices(n: usize, seed: u64, test_fraction: f64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = Rng(seed.max(1));
    for i in (1..n).rev() {
        idx.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let n_test = ((n as f64 * test_fraction) as usize).clamp(1, n.saturating_sub(1).max(1));
    let (test, train) = idx.split_at(n_test);
    (train.to_vec(), test.to_vec())
}

fn split(d: &Dataset, o: &TrainOptions) -> Result<Split, LearnError> {
    let n = d.x.len();
    if n < 5 {
        return Err(LearnError::Data(format!("{n} rows; at least 5 are needed")));
    }
    let k = d.features.len();
    if let Some((i, r)) = d.x.iter().enumerate().find(|(_, r)| r.len() != k) {
        return Err(LearnError::Data(format!(
            "row {i} with {} values for {k} features",
            r.len()
        )));
    }
    let (train, test) = match o.holdout {
        Some(h) if h > 0 && h < n => ((0..n - h).collect(), (n - h..n).collect()),
        _ => split_indices(n, o.seed, o.test_fraction),
    };
    let (train, test) = (&train[..], &test[..]);
    let mean: Vec<f64> = (0..k)
        .map(|j| train.iter().map(|&i| d.x[i][j]).sum::<f64>() / train.len() as f64)
        .collect();
    let std: Vec<f64> = (0..k)
        .map(|j| {
            let v = (train
                .iter()
                .map(|&i| (d.x[i][j] - mean[j]).powi(2))
                .sum::<f64>()
                / train.len() as f64)
                .sqrt();
            if v > 1e-12 { v } else { 1.0 }
        })
        .collect();
    let z =
        d.x.iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .map(|(j, x)| (x - mean[j]) / std[j])
                    .collect()
            })
            .collect();
    Ok(Split {
        train: train.to_vec(),
        test: test.to_vec(),
        mean,
        std,
        z,
    })
}

fn columns(d: &Dataset) -> Vec<Column> {
    d.features
        .iter()
        .map(|f| Column {
            name: f.clone(),
            dtype: DType::Fp64,
        })
        .collect()
}

pub fn train_linear_regression(
    d: &Dataset,
    o: &TrainOptions,
    mut on_epoch: impl FnMut(usize),
) -> Result<Fit, LearnError> {
    let y: Vec<f64> = d.numeric_target()?;
    let s = split(d, o)?;
    let k = d.features.len();
    let (mut w, mut b) = (vec![0.0; k], 0.0);
    let rmse = |w: &[f64], b: f64, ids: &[usize]| {
        (ids.iter()
            .map(|&i| (dot(w, &s.z[i]) + b - y[i]).powi(2))
            .sum::<f64>()
            / ids.len() as f64)
            .sqrt()
    };
    let mut history = Vec::with_capacity(o.epochs);
    let m = s.train.len() as f64;
    for epoch in 0..o.epochs {
        let mut gw = vec![0.0; k];
        let mut gb = 0.0;
        for &i in &s.train {
            let err = dot(&w, &s.z[i]) + b - y[i];
            for (g, z) in gw.iter_mut().zip(&s.z[i]) {
                *g += err * z;
            }
            gb += err;
        }
        for j in 0..k {
            w[j] -= o.learning_rate * (2.0 * gw[j] / m + 2.0 * o.l2 * w[j]);
        }
        b -= o.learning_rate * 2.0 * gb / m;
        history.push((epoch, rmse(&w, b, &s.train), rmse(&w, b, &s.test)));
        on_epoch(epoch);
    }
    let output = Column {
        name: d.target.clone(),
        dtype: DType::Fp64,
    };
    let package = ModelPackage::new(
        Task::Regression,
        Algorithm::LinearRegression {
            weights: w,
            bias: b,
        },
        columns(d),
        output,
        s.mean,
        s.std,
    );
    Ok(Fit {
        package,
        history,
        test_accuracy: None,
    })
}

pub fn train_logistic_regression(
    d: &Dataset,
    o: &TrainOptions,
    mut on_epoch: impl FnMut(usize),
) -> Result<Fit, LearnError> {
    let (classes, label) = d.class_labels()?;
    let s = split(d, o)?;
    let (k, c) = (d.features.len(), classes.len());
    let mut w = vec![vec![0.0; k]; c];
    let mut b = vec![0.0; c];
    let probs = |w: &[Vec<f64>], b: &[f64], i: usize| {
        softmax(
            &w.iter()
                .zip(b)
                .map(|(wc, bc)| dot(wc, &s.z[i]) + bc)
                .collect::<Vec<_>>(),
        )
    };
    let log_loss = |w: &[Vec<f64>], b: &[f64], ids: &[usize]| {
        ids.iter()
            .map(|&i| -probs(w, b, i)[label[i]].max(1e-15).ln())
            .sum::<f64>()
            / ids.len() as f64
    };
    let mut history = Vec::with_capacity(o.epochs);
    let m = s.train.len() as f64;
    for epoch in 0..o.epochs {
        let mut gw = vec![vec![0.0; k]; c];
        let mut gb = vec![0.0; c];
        for &i in &s.train {
            let p = probs(&w, &b, i);
            for cl in 0..c {
                let err = p[cl] - if label[i] == cl { 1.0 } else { 0.0 };
                for (g, z) in gw[cl].iter_mut().zip(&s.z[i]) {
                    *g += err * z;
                }
                gb[cl] += err;
            }
        }
        for cl in 0..c {
            for j in 0..k {
                w[cl][j] -= o.learning_rate * (gw[cl][j] / m + o.l2 * w[cl][j]);
            }
            b[cl] -= o.learning_rate * gb[cl] / m;
        }
        history.push((epoch, log_loss(&w, &b, &s.train), log_loss(&w, &b, &s.test)));
        on_epoch(epoch);
    }
    let correct = s.test.iter().filter(|&&i| {
        let p = probs(&w, &b, i);
        p.iter()
            .enumerate()
            .fold(0, |best, (j, v)| if *v > p[best] { j } else { best })
            == label[i]
    });
    let test_accuracy = Some(correct.count() as f64 / s.test.len() as f64);
    let output = Column {
        name: d.target.clone(),
        dtype: DType::Bytes,
    };
    let package = ModelPackage::new(
        Task::Classification,
        Algorithm::LogisticRegression {
            weights: w,
            bias: b,
            classes,
        },
        columns(d),
        output,
        s.mean,
        s.std,
    );
    Ok(Fit {
        package,
        history,
        test_accuracy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Prediction;

    fn toy() -> Dataset {
        // y = 3a - 2b + 1, exactly.
        let x: Vec<Vec<f64>> = (0..60)
            .map(|i| vec![i as f64 % 7.0, (i * 3) as f64 % 11.0])
            .collect();
        let y = x
            .iter()
            .map(|r| (3.0 * r[0] - 2.0 * r[1] + 1.0).to_string())
            .collect();
        Dataset {
            features: vec!["a".into(), "b".into()],
            target: "y".into(),
            x,
            y,
        }
    }

    #[test]
    fn linear_regression_recovers_a_linear_law_and_roundtrips() {
        let fit = train_linear_regression(
            &toy(),
            &TrainOptions {
                learning_rate: 0.1,
                epochs: 2000,
                ..Default::default()
            },
            |_| {},
        )
        .expect("fit");
        assert!(fit.history.last().map(|h| h.2).unwrap_or(1.0) < 1e-6);
        let p = ModelPackage::from_json(&fit.package.to_json()).expect("roundtrip");
        assert_eq!(p, fit.package, "a package survives its JSON");
        match &p.predict(&[vec![2.0, 5.0]]).expect("predict")[0] {
            Prediction::Value(v) => assert!((v - (-3.0)).abs() < 1e-3, "{v}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            p.predict(&[vec![1.0]]),
            Err(LearnError::Width {
                got: 1,
                want: 2,
                ..
            })
        ));
        assert!(matches!(
            p.predict(&[vec![1.0, f64::NAN]]),
            Err(LearnError::NotFinite { .. })
        ));
    }

    #[test]
    fn logistic_regression_separates_classes() {
        let x: Vec<Vec<f64>> = (0..80)
            .map(|i| vec![(i % 40) as f64, ((i * 7) % 13) as f64])
            .collect();
        let y = x
            .iter()
            .map(|r| {
                if r[0] > 20.0 {
                    "high".to_string()
                } else {
                    "low".to_string()
                }
            })
            .collect();
        let d = Dataset {
            features: vec!["a".into(), "b".into()],
            target: "c".into(),
            x,
            y,
        };
        let fit = train_logistic_regression(
            &d,
            &TrainOptions {
                learning_rate: 0.5,
                epochs: 500,
                ..Default::default()
            },
            |_| {},
        )
        .expect("fit");
        assert!(
            fit.test_accuracy.unwrap_or(0.0) >= 0.9,
            "{:?}",
            fit.test_accuracy
        );
        match &fit.package.predict(&[vec![35.0, 3.0]]).expect("predict")[0] {
            Prediction::Class {
                label,
                probabilities,
            } => {
                assert_eq!(label, "high");
                assert!((probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn broken_packages_are_refused() {
        assert!(ModelPackage::from_json(b"{}").is_err());
        let fit = train_linear_regression(&toy(), &TrainOptions::default(), |_| {}).expect("fit");
        let mut p = fit.package.clone();
        p.std[0] = 0.0;
        assert!(ModelPackage::from_json(&p.to_json()).is_err());
        let mut p = fit.package;
        p.format = "other/9".into();
        assert!(ModelPackage::from_json(&p.to_json()).is_err());
    }
}

impl Dataset {
    /// The target as numbers (regression); a text value is an error naming its row.
    pub fn numeric_target(&self) -> Result<Vec<f64>, LearnError> {
        self.y
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.parse::<f64>().map_err(|_| {
                    LearnError::Data(format!(
                        "target '{}' row {i} is '{v}', not a number",
                        self.target
                    ))
                })
            })
            .collect()
    }

    /// Reads a numeric CSV with a header (plain comma-separated, no quoted fields): every column
    /// but `target` must be a number; the target is kept as text (a label or a number).
    pub fn from_csv(text: &str, target: &str) -> Result<Dataset, LearnError> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let header: Vec<String> = lines
            .next()
            .ok_or_else(|| LearnError::Data("an empty file".into()))?
            .split(',')
            .map(|h| h.trim().to_owned())
            .collect();
        let t = header.iter().position(|h| h == target).ok_or_else(|| {
            LearnError::Data(format!(
                "no column '{target}' (columns: {})",
                header.join(", ")
            ))
        })?;
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (n, line) in lines.enumerate() {
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            if cells.len() != header.len() {
                return Err(LearnError::Data(format!(
                    "line {}: {} fields, expected {}",
                    n + 2,
                    cells.len(),
                    header.len()
                )));
            }
            let mut row = Vec::with_capacity(header.len() - 1);
            for (j, c) in cells.iter().enumerate() {
                if j == t {
                    y.push((*c).to_owned());
                } else {
                    row.push(c.parse::<f64>().map_err(|_| {
                        LearnError::Data(format!(
                            "line {} column '{}': '{c}' is not a number",
                            n + 2,
                            header[j]
                        ))
                    })?);
                }
            }
            x.push(row);
        }
        let features = header
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != t)
            .map(|(_, h)| h.clone())
            .collect();
        Ok(Dataset {
            features,
            target: target.to_owned(),
            x,
            y,
        })
    }
}

#[cfg(test)]
mod csv_tests {
    use super::*;

    #[test]
    fn reads_numeric_csv_and_names_bad_cells() {
        let d = Dataset::from_csv("a,label,b\r\n1,x,2\r\n3,y,4\r\n", "label").expect("csv");
        assert_eq!(
            (d.features.clone(), d.x.clone(), d.y.clone()),
            (
                vec!["a".to_owned(), "b".to_owned()],
                vec![vec![1.0, 2.0], vec![3.0, 4.0]],
                vec!["x".to_owned(), "y".to_owned()]
            )
        );
        let e = Dataset::from_csv("a,label\n1,x\nfoo,y\n", "label")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("line 3 column 'a': 'foo'"), "{e}");
        assert!(Dataset::from_csv("a,b\n1,2\n", "nope").is_err());
        assert!(Dataset::from_csv("", "a").is_err());
    }
}

/// Trains gradient-boosted trees, a random forest or a decision tree; regression when the target
/// parses as numbers and `classification` is false, else classification over the distinct labels.
pub fn train_trees(
    d: &Dataset,
    classification: bool,
    o: &crate::trees::TreeOptions,
    on_round: impl FnMut(usize),
) -> Result<Fit, LearnError> {
    continue_trees(d, classification, o, None, on_round)
}

/// [`train_trees`], boosting on from `init` when given (a warm start: `init`'s trees are kept and
/// `o.rounds` more are fitted to this data's residuals at `init`'s learning rate). `init` must
/// read the same inputs as `d`; a forest of another kind is ignored.
pub fn continue_trees(
    d: &Dataset,
    classification: bool,
    o: &crate::trees::TreeOptions,
    init: Option<&crate::trees::Forest>,
    mut on_round: impl FnMut(usize),
) -> Result<Fit, LearnError> {
    use crate::trees::{TreeKind, bin, fit_forest};
    let s = split(
        d,
        &TrainOptions {
            seed: o.seed,
            test_fraction: o.test_fraction,
            ..Default::default()
        },
    )?;
    let (classes, targets, labels, values): (Vec<String>, Vec<Vec<f64>>, Vec<usize>, Vec<f64>) =
        if classification {
            let (classes, labels) = d.class_labels()?;
            let one_output = classes.len() == 2 && o.kind == TreeKind::GradientBoosting;
            let targets = labels
                .iter()
                .map(|&l| {
                    if one_output {
                        vec![l as f64]
                    } else {
                        (0..classes.len())
                            .map(|c| f64::from(u8::from(c == l)))
                            .collect()
                    }
                })
                .collect();
            (classes, targets, labels, Vec::new())
        } else {
            let values: Vec<f64> = d.numeric_target()?;
            (
                Vec::new(),
                values.iter().map(|v| vec![*v]).collect(),
                Vec::new(),
                values,
            )
        };
    let binned = bin(&d.x, &s.train, o.max_bins);
    let every = (o.rounds / 20).max(1);
    let probe: Vec<usize> = s
        .train
        .iter()
        .copied()
        .step_by((s.train.len() / 2000).max(1))
        .collect();
    let mut history = Vec::new();
    let name = match o.kind {
        TreeKind::GradientBoosting => "gradient_boosting",
        TreeKind::RandomForest => "random_forest",
        TreeKind::DecisionTree => "decision_tree",
    };
    let make_package = |forest: crate::trees::Forest| {
        let k = d.features.len();
        let output = Column {
            name: d.target.clone(),
            dtype: if classification {
                DType::Bytes
            } else {
                DType::Fp64
            },
        };
        ModelPackage::new(
            if classification {
                Task::Classification
            } else {
                Task::Regression
            },
            Algorithm::Trees {
                name: name.to_owned(),
                forest,
                classes: classes.clone(),
            },
            columns(d),
            output,
            vec![0.0; k],
            vec![1.0; k],
        )
    };
    let score = |p: &ModelPackage, ids: &[usize]| -> f64 {
        let rows: Vec<Vec<f64>> = ids.iter().map(|&i| d.x[i].clone()).collect();
        let preds = p.predict(&rows).unwrap_or_default();
        if classification {
            let probs: Vec<Vec<f64>> = preds
                .iter()
                .map(|x| {
                    if let Prediction::Class { probabilities, .. } = x {
                        probabilities.clone()
                    } else {
                        vec![]
                    }
                })
                .collect();
            let l: Vec<usize> = ids.iter().map(|&i| labels[i]).collect();
            crate::classification_metrics(&l, &probs)["log_loss"]
        } else {
            let v: Vec<f64> = preds
                .iter()
                .map(|x| {
                    if let Prediction::Value(v) = x {
                        *v
                    } else {
                        f64::NAN
                    }
                })
                .collect();
            let y: Vec<f64> = ids.iter().map(|&i| values[i]).collect();
            crate::regression_metrics(&y, &v)["rmse"]
        }
    };
    let score_raw = |raw: &[Vec<f64>], ids: &[usize]| -> f64 {
        if classification {
            let probs: Vec<Vec<f64>> = ids
                .iter()
                .map(|&i| {
                    let r = &raw[i];
                    if r.len() == 1 {
                        let p = 1.0 / (1.0 + (-r[0]).exp());
                        vec![1.0 - p, p]
                    } else {
                        softmax(r)
                    }
                })
                .collect();
            let l: Vec<usize> = ids.iter().map(|&i| labels[i]).collect();
            crate::classification_metrics(&l, &probs)["log_loss"]
        } else {
            let v: Vec<f64> = ids.iter().map(|&i| raw[i][0]).collect();
            let y: Vec<f64> = ids.iter().map(|&i| values[i]).collect();
            crate::regression_metrics(&y, &v)["rmse"]
        }
    };
    let forest = fit_forest(
        &binned,
        &d.x,
        &targets,
        &s.train,
        classification,
        (o, init),
        |round, f, raw| {
            on_round(round);
            if (round + 1) % every == 0 {
                // Boosting keeps every row's raw score: evaluate from it instead of re-predicting.
                let entry = match raw {
                    Some(raw) => (round, score_raw(raw, &probe), score_raw(raw, &s.test)),
                    None => {
                        let p = make_package(f.clone());
                        (round, score(&p, &probe), score(&p, &s.test))
                    }
                };
                history.push(entry);
            }
        },
    );
    let package = make_package(forest);
    let test_accuracy = classification.then(|| {
        let rows: Vec<Vec<f64>> = s.test.iter().map(|&i| d.x[i].clone()).collect();
        let preds = package.predict(&rows).unwrap_or_default();
        preds
            .iter()
            .zip(&s.test)
            .filter(|(p, i)| matches!(p, Prediction::Class { label, .. } if *label == d.y[**i]))
            .count() as f64
            / s.test.len() as f64
    });
    Ok(Fit {
        package,
        history,
        test_accuracy,
    })
}

/// Ordinary least squares (with an optional ridge `l2`) solved exactly on standardised features:
/// the optimum gradient descent approaches.
pub fn train_least_squares(d: &Dataset, o: &TrainOptions) -> Result<Fit, LearnError> {
    let y: Vec<f64> = d.numeric_target()?;
    let s = split(d, o)?;
    let k = d.features.len();
    // Normal equations on [z, 1]: A w = b.
    let m = k + 1;
    let mut a = vec![vec![0.0; m]; m];
    let mut b = vec![0.0; m];
    for &i in &s.train {
        let row: Vec<f64> = s.z[i].iter().copied().chain(std::iter::once(1.0)).collect();
        for r in 0..m {
            b[r] += row[r] * y[i];
            for c in 0..m {
                a[r][c] += row[r] * row[c];
            }
        }
    }
    for (r, a_r) in a.iter_mut().enumerate().take(k) {
        a_r[r] += o.l2 * s.train.len() as f64;
    }
    let w = solve(a, b).ok_or_else(|| {
        LearnError::Data(
            "the features are collinear (one-hot levels plus the intercept are); add l2 regularisation (capstan train --l2 1e-6)".into(),
        )
    })?;
    let (weights, bias) = (w[..k].to_vec(), w[k]);
    let rmse = |ids: &[usize]| {
        (ids.iter()
            .map(|&i| (dot(&weights, &s.z[i]) + bias - y[i]).powi(2))
            .sum::<f64>()
            / ids.len() as f64)
            .sqrt()
    };
    let history = vec![(0, rmse(&s.train), rmse(&s.test))];
    let output = Column {
        name: d.target.clone(),
        dtype: DType::Fp64,
    };
    let package = ModelPackage::new(
        Task::Regression,
        Algorithm::LinearRegression { weights, bias },
        columns(d),
        output,
        s.mean,
        s.std,
    );
    Ok(Fit {
        package,
        history,
        test_accuracy: None,
    })
}

/// Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (head, tail) = a.split_at_mut(col + 1);
        let pivot_row = &head[col];
        for (off, row) in tail.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
            b[col + 1 + off] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        x[r] = (b[r] - (r + 1..n).map(|c| a[r][c] * x[c]).sum::<f64>()) / a[r][r];
    }
    Some(x)
}

#[cfg(test)]
mod least_squares_tests {
    use super::*;

    #[test]
    fn exact_solution_beats_or_matches_gradient_descent() {
        let x: Vec<Vec<f64>> = (0..60)
            .map(|i| vec![i as f64 % 7.0, (i * 3) as f64 % 11.0])
            .collect();
        let y = x
            .iter()
            .map(|r| (3.0 * r[0] - 2.0 * r[1] + 1.0).to_string())
            .collect();
        let d = Dataset {
            features: vec!["a".into(), "b".into()],
            target: "y".into(),
            x,
            y,
        };
        let exact = train_least_squares(&d, &TrainOptions::default()).expect("ols");
        assert!(exact.history[0].2 < 1e-9, "{:?}", exact.history);
        let (train, test) = split_indices(60, 42, 0.2);
        assert_eq!((train.len(), test.len()), (48, 12));
        assert_eq!(split_indices(60, 42, 0.2), (train, test), "seeded");
    }
}

impl Dataset {
    /// The target's classes (sorted) and each row's class index; at least two classes.
    pub fn class_labels(&self) -> Result<(Vec<String>, Vec<usize>), LearnError> {
        let mut classes: Vec<String> = self.y.clone();
        classes.sort();
        classes.dedup();
        if classes.len() < 2 {
            return Err(LearnError::Data(format!(
                "target '{}' has fewer than two classes",
                self.target
            )));
        }
        let labels = self
            .y
            .iter()
            .map(|v| classes.binary_search(v).unwrap_or(0))
            .collect();
        Ok((classes, labels))
    }

    /// Reads a CSV with text columns too: `drop` columns are left out, a column whose values are
    /// all numbers (or empty) stays numeric with empty cells imputed by the column median, any
    /// other column is one-hot encoded into `column=value` features (values sorted). The target is
    /// kept as text.
    pub fn from_csv_encoded(
        text: &str,
        target: &str,
        drop: &[&str],
    ) -> Result<Dataset, LearnError> {
        let mut lines = text
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.trim().is_empty());
        let header: Vec<String> = lines
            .next()
            .ok_or_else(|| LearnError::Data("an empty file".into()))?
            .split(',')
            .map(|h| h.trim().to_owned())
            .collect();
        let rows: Vec<Vec<String>> = lines
            .map(|l| l.split(',').map(|c| c.trim().to_owned()).collect())
            .collect();
        Dataset::from_rows_encoded(&header, &rows, target, drop)
    }

    /// [`Dataset::from_csv_encoded`] over already split cells (CSV, Parquet, …).
    pub fn from_rows_encoded(
        header: &[String],
        rows: &[Vec<String>],
        target: &str,
        drop: &[&str],
    ) -> Result<Dataset, LearnError> {
        if rows.is_empty() {
            return Err(LearnError::Data("no rows".into()));
        }
        let t = header.iter().position(|h| h == target).ok_or_else(|| {
            LearnError::Data(format!(
                "no column '{target}' (columns: {})",
                header.join(", ")
            ))
        })?;
        if let Some(d) = drop.iter().find(|d| !header.iter().any(|h| h == *d)) {
            return Err(LearnError::Data(format!(
                "cannot drop '{d}': no such column"
            )));
        }
        if let Some((n, r)) = rows
            .iter()
            .enumerate()
            .find(|(_, r)| r.len() != header.len())
        {
            return Err(LearnError::Data(format!(
                "line {}: {} fields, expected {}",
                n + 2,
                r.len(),
                header.len()
            )));
        }
        let mut features = Vec::new();
        let mut columns: Vec<Vec<f64>> = Vec::new();
        for (j, name) in header.iter().enumerate() {
            if j == t || drop.contains(&name.as_str()) {
                continue;
            }
            let parsed: Vec<Option<f64>> = rows
                .iter()
                .map(|r| {
                    if r[j].is_empty() {
                        None
                    } else {
                        r[j].parse::<f64>().ok()
                    }
                })
                .collect();
            let numeric = rows
                .iter()
                .zip(&parsed)
                .all(|(r, p)| r[j].is_empty() || p.is_some());
            if numeric {
                let mut present: Vec<f64> = parsed.iter().flatten().copied().collect();
                present.sort_by(f64::total_cmp);
                let median = present.get(present.len() / 2).copied().unwrap_or(0.0);
                features.push(name.clone());
                columns.push(parsed.iter().map(|p| p.unwrap_or(median)).collect());
            } else {
                let mut values: Vec<&str> = rows.iter().map(|r| r[j].as_str()).collect();
                values.sort();
                values.dedup();
                for v in values {
                    features.push(format!("{name}={v}"));
                    columns.push(
                        rows.iter()
                            .map(|r| f64::from(u8::from(r[j] == v)))
                            .collect(),
                    );
                }
            }
        }
        let x = (0..rows.len())
            .map(|i| columns.iter().map(|c| c[i]).collect())
            .collect();
        let y = rows.iter().map(|r| r[t].clone()).collect();
        Ok(Dataset {
            features,
            target: target.to_owned(),
            x,
            y,
        })
    }
}

#[cfg(test)]
mod encoded_tests {
    use super::*;

    #[test]
    fn one_hot_and_impute() {
        let d = Dataset::from_csv_encoded(
            "day,season,temp,id,y\n1,winter,,a,3\n2,summer,20,b,4\n3,winter,10,c,5\n",
            "y",
            &["id"],
        )
        .expect("csv");
        assert_eq!(
            d.features,
            ["day", "season=summer", "season=winter", "temp"]
        );
        assert_eq!(
            d.x[0],
            vec![1.0, 0.0, 1.0, 20.0],
            "median of 20 and 10 (upper) imputed"
        );
        assert!(Dataset::from_csv_encoded("a,y\n1,2\n", "y", &["nope"]).is_err());
    }
}

/// k-fold cross-validation: each fold trains on the other rows and scores on its own, through
/// `train` (given a dataset whose last `holdout` rows are the fold). Folds come from a seeded
/// shuffle; returns one score per fold.
pub fn cross_validate(
    d: &Dataset,
    k: usize,
    seed: u64,
    mut train: impl FnMut(&Dataset, usize) -> Result<f64, LearnError>,
) -> Result<Vec<f64>, LearnError> {
    let n = d.x.len();
    if k < 2 || k > n {
        return Err(LearnError::Data(format!(
            "cannot make {k} folds of {n} rows"
        )));
    }
    let (mut order, rest) = split_indices(n, seed, 0.0);
    order.extend(rest);
    let mut scores = Vec::with_capacity(k);
    for fold in 0..k {
        let (lo, hi) = (fold * n / k, (fold + 1) * n / k);
        let ids: Vec<usize> = order[..lo]
            .iter()
            .chain(&order[hi..])
            .chain(&order[lo..hi])
            .copied()
            .collect();
        let part = Dataset {
            features: d.features.clone(),
            target: d.target.clone(),
            x: ids.iter().map(|&i| d.x[i].clone()).collect(),
            y: ids.iter().map(|&i| d.y[i].clone()).collect(),
        };
        scores.push(train(&part, hi - lo)?);
    }
    Ok(scores)
}

#[cfg(test)]
mod cv_tests {
    use super::*;

    #[test]
    fn folds_test_every_row_once() {
        let x: Vec<Vec<f64>> = (0..23).map(|i| vec![i as f64]).collect();
        let y: Vec<String> = (0..23).map(|i| i.to_string()).collect();
        let d = Dataset {
            features: vec!["a".into()],
            target: "y".into(),
            x,
            y,
        };
        let mut seen: Vec<String> = Vec::new();
        let scores = cross_validate(&d, 5, 7, |part, holdout| {
            assert_eq!(part.x.len(), 23);
            seen.extend(part.y[part.y.len() - holdout..].iter().cloned());
            Ok(holdout as f64)
        })
        .expect("cv");
        assert_eq!(scores.iter().sum::<f64>(), 23.0);
        seen.sort_by_key(|s| s.parse::<usize>().unwrap_or(0));
        assert_eq!(seen, (0..23).map(|i| i.to_string()).collect::<Vec<_>>());
        // The holdout split trains on the rest and tests on exactly the fold.
        let fit = train_least_squares(
            &d,
            &TrainOptions {
                holdout: Some(5),
                ..Default::default()
            },
        )
        .expect("fit");
        assert!(
            fit.history[0].2 < 1e-9,
            "a line through y = x generalises exactly"
        );
        assert!(cross_validate(&d, 1, 7, |_, _| Ok(0.0)).is_err());
    }
}
