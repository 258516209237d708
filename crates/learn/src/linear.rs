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

#[derive(Debug)]
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
    let stats = LeastSquaresStats::of_rows(&d.x, &y, &s.train);
    least_squares_fit(d, &y, stats, o.l2, &s.train, &s.test)
}

/// Least squares updated incrementally: the champion's statistics (from its package), weighed
/// by `forgetting` (1 keeps all of the old data, 0.5 halves its weight), plus every row of `d`.
/// With `forgetting = 1` the result equals training once on the old rows and the new together.
pub fn update_least_squares(
    champion: &ModelPackage,
    d: &Dataset,
    forgetting: f64,
    l2: f64,
) -> Result<Fit, LearnError> {
    if !(forgetting > 0.0 && forgetting <= 1.0) {
        return Err(LearnError::Data(format!(
            "forgetting must be in (0, 1], not {forgetting}"
        )));
    }
    let names: Vec<&str> = champion.inputs.iter().map(|c| c.name.as_str()).collect();
    if names != d.features.iter().map(String::as_str).collect::<Vec<_>>() {
        return Err(LearnError::Data(format!(
            "the new rows' inputs ({}) are not the model's ({})",
            d.features.join(", "),
            names.join(", ")
        )));
    }
    let mut old = champion
        .training
        .get(LEAST_SQUARES_KEY)
        .and_then(|v| serde_json::from_value::<LeastSquaresStats>(v.clone()).ok())
        .ok_or_else(|| {
            LearnError::Data(
                "the model carries no least-squares statistics to update (retrain it in full once)"
                    .into(),
            )
        })?;
    let y: Vec<f64> = d.numeric_target()?;
    let all: Vec<usize> = (0..d.x.len()).collect();
    old.scale(forgetting);
    old.merge(&LeastSquaresStats::of_rows(&d.x, &y, &all));
    least_squares_fit(d, &y, old, l2, &all, &[])
}

/// Where a linear regression's package keeps its [`LeastSquaresStats`].
pub const LEAST_SQUARES_KEY: &str = "least_squares";

/// What least squares needs of its training rows, in a form that merges: the (weighted) count,
/// the means, and the co-moments about the means (Chan et al.'s pairwise update, stable where
/// raw sums of squares would cancel).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LeastSquaresStats {
    pub n: f64,
    pub mean_x: Vec<f64>,
    pub mean_y: f64,
    /// Σ (x − x̄)(x − x̄)ᵀ, row-major k × k.
    pub cxx: Vec<f64>,
    /// Σ (x − x̄)(y − ȳ).
    pub cxy: Vec<f64>,
    /// Σ (y − ȳ)².
    pub cyy: f64,
}

impl LeastSquaresStats {
    /// Two passes over `rows` of `x`/`y`: the means, then the co-moments about them.
    pub fn of_rows(x: &[Vec<f64>], y: &[f64], rows: &[usize]) -> LeastSquaresStats {
        let k = x.first().map_or(0, Vec::len);
        let n = rows.len() as f64;
        let mut mean_x = vec![0.0; k];
        let mut mean_y = 0.0;
        for &i in rows {
            for (m, v) in mean_x.iter_mut().zip(&x[i]) {
                *m += v;
            }
            mean_y += y[i];
        }
        mean_x.iter_mut().for_each(|m| *m /= n.max(1.0));
        mean_y /= n.max(1.0);
        let mut cxx = vec![0.0; k * k];
        let mut cxy = vec![0.0; k];
        let mut cyy = 0.0;
        let mut dx = vec![0.0; k];
        for &i in rows {
            for ((d, v), m) in dx.iter_mut().zip(&x[i]).zip(&mean_x) {
                *d = v - m;
            }
            let dy = y[i] - mean_y;
            for r in 0..k {
                cxy[r] += dx[r] * dy;
                for (c, dc) in dx.iter().enumerate() {
                    cxx[r * k + c] += dx[r] * dc;
                }
            }
            cyy += dy * dy;
        }
        LeastSquaresStats {
            n,
            mean_x,
            mean_y,
            cxx,
            cxy,
            cyy,
        }
    }

    /// Every row's weight times `f`.
    pub fn scale(&mut self, f: f64) {
        self.n *= f;
        self.cxx.iter_mut().for_each(|v| *v *= f);
        self.cxy.iter_mut().for_each(|v| *v *= f);
        self.cyy *= f;
    }

    /// The statistics of both sets of rows together.
    pub fn merge(&mut self, other: &LeastSquaresStats) {
        let n = self.n + other.n;
        if other.n == 0.0 {
            return;
        }
        if self.n == 0.0 {
            *self = other.clone();
            return;
        }
        let w = self.n * other.n / n;
        let k = self.mean_x.len();
        let dx: Vec<f64> = (0..k).map(|j| other.mean_x[j] - self.mean_x[j]).collect();
        let dy = other.mean_y - self.mean_y;
        for r in 0..k {
            self.cxy[r] += other.cxy[r] + dx[r] * dy * w;
            for c in 0..k {
                self.cxx[r * k + c] += other.cxx[r * k + c] + dx[r] * dx[c] * w;
            }
            self.mean_x[r] += dx[r] * other.n / n;
        }
        self.cyy += other.cyy + dy * dy * w;
        self.mean_y += dy * other.n / n;
        self.n = n;
    }

    /// Ridge regression on the standardised inputs (penalty `l2 · n` on the weights, none on the
    /// intercept): (mean, std, weights, bias).
    #[allow(clippy::type_complexity)]
    fn solve(&self, l2: f64) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>, f64), LearnError> {
        let k = self.mean_x.len();
        let std: Vec<f64> = (0..k)
            .map(|j| {
                let v = (self.cxx[j * k + j] / self.n).max(0.0).sqrt();
                if v > 1e-12 { v } else { 1.0 }
            })
            .collect();
        // In z = (x − x̄)/σ the intercept decouples (Σz = 0): it is ȳ; the weights solve
        // (Σ z zᵀ + λn I) w = Σ z y.
        let a: Vec<Vec<f64>> = (0..k)
            .map(|r| {
                (0..k)
                    .map(|c| {
                        self.cxx[r * k + c] / (std[r] * std[c])
                            + if r == c { l2 * self.n } else { 0.0 }
                    })
                    .collect()
            })
            .collect();
        let b: Vec<f64> = (0..k).map(|r| self.cxy[r] / std[r]).collect();
        let w = solve(a, b).ok_or_else(|| {
            LearnError::Data(
                "the features are collinear (one-hot levels plus the intercept are); add l2 regularisation (capstan train --l2 1e-6)".into(),
            )
        })?;
        Ok((self.mean_x.clone(), std, w, self.mean_y))
    }
}

/// The package of the least-squares solution of `stats`, carrying them for later updates;
/// its history's RMSEs are over `train` and `test` rows of `d`.
fn least_squares_fit(
    d: &Dataset,
    y: &[f64],
    stats: LeastSquaresStats,
    l2: f64,
    train: &[usize],
    test: &[usize],
) -> Result<Fit, LearnError> {
    let (mean, std, weights, bias) = stats.solve(l2)?;
    let rmse = |ids: &[usize]| {
        let se: f64 = ids
            .iter()
            .map(|&i| {
                let z: Vec<f64> = d.x[i]
                    .iter()
                    .zip(mean.iter().zip(&std))
                    .map(|(x, (m, s))| (x - m) / s)
                    .collect();
                (dot(&weights, &z) + bias - y[i]).powi(2)
            })
            .sum();
        if ids.is_empty() {
            f64::NAN
        } else {
            (se / ids.len() as f64).sqrt()
        }
    };
    let history = vec![(0, rmse(train), rmse(test))];
    let output = Column {
        name: d.target.clone(),
        dtype: DType::Fp64,
    };
    let mut package = ModelPackage::new(
        Task::Regression,
        Algorithm::LinearRegression { weights, bias },
        columns(d),
        output,
        mean,
        std,
    );
    package.training.insert(
        LEAST_SQUARES_KEY.into(),
        serde_json::to_value(&stats).map_err(|e| LearnError::Data(e.to_string()))?,
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

    /// y = slope·(a − 2003) + 3·2003 − 2b + 1 + noise over rows `from..to` (the slope turns about
    /// a = 2003), `a` around 2003 (a year: large mean, small spread — where raw sums of squares
    /// would cancel).
    fn rows(from: usize, to: usize, slope: f64) -> Dataset {
        let x: Vec<Vec<f64>> = (from..to)
            .map(|i| vec![2000.0 + (i % 13) as f64 * 0.5, ((i * 7) % 17) as f64])
            .collect();
        let y = x
            .iter()
            .zip(from..)
            .map(|(r, i)| {
                let noise = ((i * 2_654_435_761) % 1000) as f64 / 1000.0 - 0.5;
                (slope * (r[0] - 2003.0) + 3.0 * 2003.0 - 2.0 * r[1] + 1.0 + noise).to_string()
            })
            .collect();
        Dataset {
            features: vec!["a".into(), "b".into()],
            target: "y".into(),
            x,
            y,
        }
    }

    fn weights(p: &ModelPackage) -> (Vec<f64>, f64) {
        match &p.algorithm {
            Algorithm::LinearRegression { weights, bias } => (weights.clone(), *bias),
            other => panic!("{other:?}"),
        }
    }

    fn raw(p: &ModelPackage, x: &[f64]) -> f64 {
        match p.predict(&[x.to_vec()]).expect("predict")[0] {
            Prediction::Value(v) => v,
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn merged_statistics_equal_the_statistics_of_all_rows() {
        let (a, b) = (rows(0, 70, 3.0), rows(70, 200, 3.0));
        let all = rows(0, 200, 3.0);
        let ys = |d: &Dataset| d.numeric_target().expect("y");
        let ids = |d: &Dataset| (0..d.x.len()).collect::<Vec<_>>();
        let mut merged = LeastSquaresStats::of_rows(&a.x, &ys(&a), &ids(&a));
        merged.merge(&LeastSquaresStats::of_rows(&b.x, &ys(&b), &ids(&b)));
        let whole = LeastSquaresStats::of_rows(&all.x, &ys(&all), &ids(&all));
        assert_eq!(merged.n, 200.0);
        for (m, w) in merged
            .cxx
            .iter()
            .chain(&merged.cxy)
            .chain(&merged.mean_x)
            .zip(whole.cxx.iter().chain(&whole.cxy).chain(&whole.mean_x))
        {
            assert!((m - w).abs() <= 1e-9 * w.abs().max(1.0), "{m} vs {w}");
        }
        assert!((merged.cyy - whole.cyy).abs() <= 1e-9 * whole.cyy);
    }

    #[test]
    fn an_incremental_update_equals_training_on_old_and_new_rows_together() {
        let all_rows = TrainOptions {
            holdout: Some(1),
            ..Default::default()
        };
        // The champion saw rows 0..120 (the last one held out); the update adds 120..300.
        let old = train_least_squares(&rows(0, 120, 3.0), &all_rows).expect("old");
        let seen: Vec<usize> = (0..119).collect();
        let mut union = rows(0, 300, 3.0);
        union.x = seen
            .iter()
            .map(|&i| union.x[i].clone())
            .chain(union.x[120..].iter().cloned())
            .collect();
        union.y = seen
            .iter()
            .map(|&i| union.y[i].clone())
            .chain(union.y[120..].iter().cloned())
            .collect();
        let new = rows(120, 300, 3.0);
        let updated = update_least_squares(&old.package, &new, 1.0, 0.0).expect("update");
        // Trained once on the union (every row, none held out).
        let y = union.numeric_target().expect("y");
        let ids: Vec<usize> = (0..union.x.len()).collect();
        let direct = least_squares_fit(
            &union,
            &y,
            LeastSquaresStats::of_rows(&union.x, &y, &ids),
            0.0,
            &ids,
            &[],
        )
        .expect("direct");
        for probe in [[2001.0, 3.0], [2005.5, 16.0], [1990.0, -4.0]] {
            let (u, d) = (raw(&updated.package, &probe), raw(&direct.package, &probe));
            assert!((u - d).abs() < 1e-7, "{u} vs {d}");
        }
        let (w, _) = weights(&updated.package);
        assert_eq!(w.len(), 2);
        let stats: LeastSquaresStats =
            serde_json::from_value(updated.package.training[LEAST_SQUARES_KEY].clone())
                .expect("stats travel with the package");
        assert_eq!(stats.n, 299.0);
    }

    #[test]
    fn forgetting_moves_an_update_towards_the_new_data() {
        let all_rows = TrainOptions {
            holdout: Some(1),
            ..Default::default()
        };
        // The world changes: a's slope goes from 3 to 5.
        let old = train_least_squares(&rows(0, 400, 3.0), &all_rows).expect("old");
        let new = rows(400, 480, 5.0);
        let slope = |p: &ModelPackage| raw(p, &[2003.0, 5.0]) - raw(p, &[2002.0, 5.0]);
        let keep = update_least_squares(&old.package, &new, 1.0, 0.0).expect("keep");
        let forget = update_least_squares(&old.package, &new, 0.01, 0.0).expect("forget");
        let (s_old, s_keep, s_forget) = (
            slope(&old.package),
            slope(&keep.package),
            slope(&forget.package),
        );
        assert!((s_old - 3.0).abs() < 0.05, "{s_old}");
        assert!(s_keep > s_old && s_keep < 4.0, "mostly old data: {s_keep}");
        assert!(s_forget > 4.5, "mostly new data: {s_forget}");
        // Bad input is refused, naming what is wrong.
        let err = update_least_squares(&old.package, &new, 0.0, 0.0).unwrap_err();
        assert!(err.to_string().contains("forgetting"), "{err}");
        let mut other = rows(0, 10, 3.0);
        other.features = vec!["a".into(), "c".into()];
        let err = update_least_squares(&old.package, &other, 1.0, 0.0).unwrap_err();
        assert!(err.to_string().contains("a, c"), "{err}");
        let mut bare = old.package.clone();
        bare.training.clear();
        let err = update_least_squares(&bare, &new, 1.0, 0.0).unwrap_err();
        assert!(err.to_string().contains("statistics"), "{err}");
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
