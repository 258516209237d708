//! The model package: everything needed to serve a model, in one JSON document (`model.json`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The file name of a package inside a model's artifact directory.
pub const PACKAGE_FILE: &str = "model.json";
const FORMAT: &str = "capstan.model/1";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LearnError {
    #[error("not a Capstan model package: {0}")]
    BadPackage(String),
    #[error("input has {got} columns, the model expects {want} ({names})")]
    Width {
        got: usize,
        want: usize,
        names: String,
    },
    #[error("input column '{column}' row {row} is {value}, which the model cannot use")]
    NotFinite {
        column: String,
        row: usize,
        value: f64,
    },
    #[error("cannot train: {0}")]
    Data(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Regression,
    Classification,
}

/// Element types of the signature, named as the Open Inference Protocol names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DType {
    Fp64,
    Fp32,
    Int64,
    Bytes,
}

impl DType {
    pub fn oip_name(self) -> &'static str {
        match self {
            DType::Fp64 => "FP64",
            DType::Fp32 => "FP32",
            DType::Int64 => "INT64",
            DType::Bytes => "BYTES",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub dtype: DType,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Algorithm {
    /// y = w·z + b on standardised inputs z.
    LinearRegression { weights: Vec<f64>, bias: f64 },
    /// Softmax over classes; one weight row per class.
    LogisticRegression {
        weights: Vec<Vec<f64>>,
        bias: Vec<f64>,
        classes: Vec<String>,
    },
    /// Gradient-boosted trees, a random forest or one decision tree (on raw, unstandardised
    /// inputs: the package's mean is 0 and std 1). `classes` is empty for regression.
    Trees {
        name: String,
        forest: crate::trees::Forest,
        classes: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelPackage {
    pub format: String,
    pub task: Task,
    pub algorithm: Algorithm,
    pub inputs: Vec<Column>,
    pub output: Column,
    /// Standardisation learnt on the training split: z = (x - mean) / std.
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// Training record: dataset digest, seed, metrics.
    #[serde(default)]
    pub training: BTreeMap<String, serde_json::Value>,
}

/// One prediction: a number for regression, a class with probabilities for classification.
#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    Value(f64),
    Class {
        label: String,
        probabilities: Vec<f64>,
    },
}

impl ModelPackage {
    pub fn new(
        task: Task,
        algorithm: Algorithm,
        inputs: Vec<Column>,
        output: Column,
        mean: Vec<f64>,
        std: Vec<f64>,
    ) -> ModelPackage {
        ModelPackage {
            format: FORMAT.to_owned(),
            task,
            algorithm,
            inputs,
            output,
            mean,
            std,
            training: BTreeMap::new(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses and checks a package: a package that fails here is never served.
    pub fn from_json(bytes: &[u8]) -> Result<ModelPackage, LearnError> {
        let p: ModelPackage =
            serde_json::from_slice(bytes).map_err(|e| LearnError::BadPackage(e.to_string()))?;
        if p.format != FORMAT {
            return Err(LearnError::BadPackage(format!(
                "format '{}' (expected '{FORMAT}')",
                p.format
            )));
        }
        let d = p.inputs.len();
        let bad = |m: &str| Err(LearnError::BadPackage(m.to_owned()));
        if d == 0
            || p.mean.len() != d
            || p.std.len() != d
            || p.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
        {
            return bad("inputs, mean and std disagree");
        }
        match &p.algorithm {
            Algorithm::LinearRegression { weights, .. } if weights.len() != d => {
                bad("weights do not match the inputs")
            }
            Algorithm::LogisticRegression {
                weights,
                bias,
                classes,
            } if weights.len() != classes.len()
                || bias.len() != classes.len()
                || weights.iter().any(|w| w.len() != d)
                || classes.len() < 2 =>
            {
                bad("class weights do not match the inputs")
            }
            Algorithm::Trees {
                forest, classes, ..
            } if !trees_ok(forest, d) || (!classes.is_empty() && classes.len() < 2) => {
                bad("tree structure does not match the inputs")
            }
            _ => Ok(p),
        }
    }

    /// The classes of a classifier, in probability order; empty for regression.
    pub fn class_names(&self) -> &[String] {
        match &self.algorithm {
            Algorithm::LogisticRegression { classes, .. } | Algorithm::Trees { classes, .. } => {
                classes
            }
            Algorithm::LinearRegression { .. } => &[],
        }
    }

    pub fn input_names(&self) -> Vec<&str> {
        self.inputs.iter().map(|c| c.name.as_str()).collect()
    }

    /// Predicts each row (row-major, columns in `inputs` order).
    pub fn predict(&self, rows: &[Vec<f64>]) -> Result<Vec<Prediction>, LearnError> {
        let d = self.inputs.len();
        rows.iter()
            .enumerate()
            .map(|(r, row)| {
                if row.len() != d {
                    return Err(LearnError::Width {
                        got: row.len(),
                        want: d,
                        names: self.input_names().join(", "),
                    });
                }
                if let Some((j, v)) = row.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                    return Err(LearnError::NotFinite {
                        column: self.inputs[j].name.clone(),
                        row: r,
                        value: *v,
                    });
                }
                let z: Vec<f64> = row
                    .iter()
                    .zip(&self.mean)
                    .zip(&self.std)
                    .map(|((x, m), s)| (x - m) / s)
                    .collect();
                Ok(match &self.algorithm {
                    Algorithm::LinearRegression { weights, bias } => {
                        Prediction::Value(dot(weights, &z) + bias)
                    }
                    Algorithm::Trees {
                        forest, classes, ..
                    } => {
                        let raw = forest.raw(&z);
                        if classes.is_empty() {
                            Prediction::Value(raw[0])
                        } else {
                            let probabilities = match (forest.ensemble, raw.len()) {
                                (crate::trees::Ensemble::Boosted, 1) => {
                                    let p = 1.0 / (1.0 + (-raw[0]).exp());
                                    vec![1.0 - p, p]
                                }
                                (crate::trees::Ensemble::Boosted, _) => softmax(&raw),
                                (crate::trees::Ensemble::Averaged, _) => {
                                    let clipped: Vec<f64> =
                                        raw.iter().map(|v| v.max(0.0)).collect();
                                    let s: f64 = clipped.iter().sum();
                                    if s > 0.0 {
                                        clipped.iter().map(|v| v / s).collect()
                                    } else {
                                        vec![1.0 / raw.len() as f64; raw.len()]
                                    }
                                }
                            };
                            let best = probabilities
                                .iter()
                                .enumerate()
                                .fold(0, |b, (i, p)| if *p > probabilities[b] { i } else { b });
                            Prediction::Class {
                                label: classes[best].clone(),
                                probabilities,
                            }
                        }
                    }
                    Algorithm::LogisticRegression {
                        weights,
                        bias,
                        classes,
                    } => {
                        let probabilities = softmax(
                            &weights
                                .iter()
                                .zip(bias)
                                .map(|(w, b)| dot(w, &z) + b)
                                .collect::<Vec<_>>(),
                        );
                        let best = probabilities
                            .iter()
                            .enumerate()
                            .fold(0, |b, (i, p)| if *p > probabilities[b] { i } else { b });
                        Prediction::Class {
                            label: classes[best].clone(),
                            probabilities,
                        }
                    }
                })
            })
            .collect()
    }
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub(crate) fn softmax(logits: &[f64]) -> Vec<f64> {
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// Every split names an input and every child index exists.
fn trees_ok(f: &crate::trees::Forest, d: usize) -> bool {
    !f.trees.is_empty()
        && f.trees.len() == f.base.len()
        && f.trees.iter().flatten().all(|t| {
            !t.nodes.is_empty()
                && t.nodes.iter().all(|n| {
                    n.f < 0
                        || ((n.f as usize) < d
                            && (n.l as usize) < t.nodes.len()
                            && (n.r as usize) < t.nodes.len())
                })
        })
}
