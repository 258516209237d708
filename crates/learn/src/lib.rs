//! Tabular learning: self-describing model packages (algorithm, preprocessing, signature,
//! training record) and the algorithms that make them. Plain functions, no I/O, no async.

mod linear;
mod metrics;
mod package;
pub mod trees;

pub use linear::{
    Dataset, Fit, LEAST_SQUARES_KEY, LeastSquaresStats, TrainOptions, continue_trees,
    cross_validate, split_indices, train_least_squares, train_linear_regression,
    train_logistic_regression, train_trees, update_least_squares,
};
pub use metrics::{classification_metrics, regression_metrics};
pub use package::{
    Algorithm, Column, DType, LearnError, ModelPackage, PACKAGE_FILE, Prediction, Task,
};
