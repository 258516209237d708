//! `capstan train`: train a built-in algorithm on a CSV, track it as a run (params, metrics per
//! round, the data's md5 as a dataset input, the model package as an artifact), optionally register it.

use crate::platform::{Error, Platform};
use crate::progress::Progress;
use clap::Args;
use learn::trees::{TreeKind, TreeOptions};
use learn::{Prediction, TrainOptions};
use std::path::PathBuf;
use tracking::{Dataset, DatasetInput, Metric, NewRun, RunStatus, Tag};

#[derive(Args)]
pub struct TrainArgs {
    /// A CSV with a header, or a Parquet file (`.parquet`).
    #[arg(long)]
    pub(crate) data: PathBuf,
    #[arg(long)]
    pub(crate) target: String,
    /// Columns to leave out (ids, dates, leaks of the target), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub(crate) drop: Vec<String>,
    #[arg(long, default_value = "gbm", value_parser = ["linear", "logistic", "gbm", "forest", "tree"])]
    pub(crate) algorithm: String,
    /// Classification (labels) rather than regression; implied by `logistic`.
    #[arg(long)]
    pub(crate) classify: bool,
    /// Boosting rounds, trees in a forest, or gradient-descent epochs.
    #[arg(long, default_value_t = 200)]
    pub(crate) rounds: usize,
    #[arg(long, default_value_t = 0.1)]
    pub(crate) learning_rate: f64,
    /// Ridge penalty of the linear models (one-hot columns plus the intercept are collinear
    /// without it: 1e-6 is enough).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) l2: f64,
    #[arg(long, default_value_t = 6)]
    pub(crate) max_depth: usize,
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Also report k-fold cross-validation of the same settings (k ≥ 2).
    #[arg(long)]
    pub(crate) cv: Option<usize>,
    #[arg(long, default_value = "training")]
    pub(crate) experiment: String,
    /// Register the trained package as a new version of this model.
    #[arg(long)]
    pub(crate) register: Option<String>,
    /// Treat --data as an entity table and join this feature service onto it point-in-time
    /// before training (definitions from `capstan features apply`).
    #[arg(long)]
    pub(crate) feature_service: Option<String>,
    /// The entity table's timestamp column (with --feature-service; not a model input).
    #[arg(long, default_value = "event_timestamp")]
    pub(crate) entity_timestamp: String,
}

/// How to fit one of the built-in algorithms.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// `linear`, `logistic`, `gbm`, `forest` or `tree`.
    pub algorithm: String,
    pub classify: bool,
    /// Boosting rounds, trees in a forest, or gradient-descent epochs.
    pub rounds: usize,
    pub learning_rate: f64,
    /// Ridge penalty of the linear models.
    pub l2: f64,
    pub max_depth: usize,
    pub seed: u64,
}

/// Fits `o.algorithm` on `d` (its last `holdout` rows held out when given); `on` sees each round.
pub fn fit(
    o: &FitOptions,
    d: &learn::Dataset,
    holdout: Option<usize>,
    on: &mut dyn FnMut(usize),
) -> Result<learn::Fit, learn::LearnError> {
    match o.algorithm.as_str() {
        "linear" | "logistic" => {
            let t = TrainOptions {
                learning_rate: o.learning_rate,
                epochs: o.rounds,
                seed: o.seed,
                l2: o.l2,
                holdout,
                ..Default::default()
            };
            if o.classify {
                learn::train_logistic_regression(d, &t, &mut *on)
            } else {
                // The exact least-squares optimum (gradient descent is the demo's teaching example).
                learn::train_least_squares(d, &t)
            }
        }
        other => {
            let kind = match other {
                "forest" => TreeKind::RandomForest,
                "tree" => TreeKind::DecisionTree,
                _ => TreeKind::GradientBoosting,
            };
            let t = TreeOptions {
                kind,
                rounds: o.rounds,
                learning_rate: o.learning_rate,
                max_depth: o.max_depth,
                seed: o.seed,
                holdout,
                ..Default::default()
            };
            learn::train_trees(d, o.classify, &t, &mut *on)
        }
    }
}

/// What `run` tracked: the run and its final metrics (`test_rmse`, `test_accuracy`, …).
pub struct Trained {
    pub run_id: String,
    pub metrics: Vec<(String, f64)>,
}

impl Trained {
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.metrics.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

pub async fn run(p: &Platform, a: TrainArgs) -> Result<Trained, Error> {
    let bytes = std::fs::read(&a.data)?;
    // The data version as DVC names it: the md5 of the file (read once, parsed from memory).
    let digest = data::md5_bytes(&bytes);
    // CSV or Parquet (by extension); text columns are one-hot encoded, numeric gaps imputed.
    let table = match &a.feature_service {
        None => data::parse_table(&a.data, bytes).map_err(|e| Error::Other(e.to_string()))?,
        Some(service) => {
            let applied = features::defs::FeatureRegistry::applied(&p.db)
                .await
                .map_err(Error::Other)?
                .ok_or_else(|| Error::Other("no feature definitions applied".into()))?;
            let list = applied
                .definitions
                .feature_list(Some(service), &[])
                .map_err(Error::Other)?;
            let entities =
                data::frame::read_frame(&a.data).map_err(|e| Error::Other(e.to_string()))?;
            let joined = features::historical_features(
                &applied.definitions,
                std::path::Path::new(&applied.base_dir),
                &entities,
                &features::Request {
                    features: &list,
                    timestamp: &a.entity_timestamp,
                    full_feature_names: false,
                },
            )
            .map_err(Error::Other)?;
            eprintln!(
                "joined feature service {service} ({} features) onto {} entity rows as of {}",
                list.len(),
                joined.rows(),
                a.entity_timestamp
            );
            data::parse_table(
                std::path::Path::new("training.csv"),
                data::frame::to_csv(&joined).into_bytes(),
            )
            .map_err(|e| Error::Other(e.to_string()))?
        }
    };
    let mut drop: Vec<&str> = a.drop.iter().map(String::as_str).collect();
    if a.feature_service.is_some() {
        drop.push(&a.entity_timestamp);
    }
    let d = learn::Dataset::from_rows_encoded(&table.columns, &table.rows, &a.target, &drop)
        .map_err(|e| Error::Other(format!("{}: {e}", a.data.display())))?;
    let classify = a.classify || a.algorithm == "logistic";
    let fit_options = FitOptions {
        algorithm: a.algorithm.clone(),
        classify,
        rounds: a.rounds,
        learning_rate: a.learning_rate,
        l2: a.l2,
        max_depth: a.max_depth,
        seed: a.seed,
    };
    let train_once = |d: &learn::Dataset, holdout: Option<usize>, on: &mut dyn FnMut(usize)| {
        fit(&fit_options, d, holdout, on)
    };
    let mut bar = Progress::new(&format!("train {}", a.algorithm), a.rounds as u64);
    let fit = train_once(&d, None, &mut |_| bar.inc(1))
        .map_err(|e| Error::Other(format!("{}: {e}", a.data.display())))?;
    bar.finish();
    let cv_scores = match a.cv {
        Some(k) => Some(
            learn::cross_validate(&d, k, a.seed, |part, holdout| {
                let f = train_once(part, Some(holdout), &mut |_| {})?;
                Ok(if classify {
                    f.test_accuracy.unwrap_or(f64::NAN)
                } else {
                    f.history.last().map_or(f64::NAN, |h| h.2)
                })
            })
            .map_err(|e| Error::Other(format!("cross-validation: {e}")))?,
        ),
        None => None,
    };

    // Final metrics on the held-out split the history's last entry used.
    let rows: Vec<Vec<f64>> = d.x.clone();
    let preds = fit
        .package
        .predict(&rows)
        .map_err(|e| Error::Other(e.to_string()))?;
    let mut summary: Vec<(String, f64)> = Vec::new();
    if let Some(acc) = fit.test_accuracy {
        summary.push(("test_accuracy".into(), acc));
    }
    if let Some((_, tr, te)) = fit.history.last() {
        let name = if classify { "log_loss" } else { "rmse" };
        summary.push((format!("train_{name}"), *tr));
        summary.push((format!("test_{name}"), *te));
    }
    if let Some(scores) = &cv_scores {
        let name = if classify { "accuracy" } else { "rmse" };
        let mean = scores.iter().sum::<f64>() / scores.len() as f64;
        let sd = (scores.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
            / (scores.len() - 1).max(1) as f64)
            .sqrt();
        summary.push((format!("cv_mean_{name}"), mean));
        summary.push((format!("cv_std_{name}"), sd));
    }
    if !classify {
        let y: Vec<f64> = d.y.iter().map(|v| v.parse().unwrap_or(f64::NAN)).collect();
        let v: Vec<f64> = preds
            .iter()
            .map(|p| {
                if let Prediction::Value(x) = p {
                    *x
                } else {
                    f64::NAN
                }
            })
            .collect();
        summary.push(("all_r2".into(), learn::regression_metrics(&y, &v)["r2"]));
    }

    let exp = p.experiment_id(&a.experiment).await?;
    let run = p
        .tracking
        .create_run(NewRun {
            experiment_id: exp,
            run_name: Some(format!("{}-{}", a.algorithm, a.target)),
            user_id: String::new(),
            start_time: base::now_millis(),
            tags: vec![Tag::new("mlflow.source.name", "capstan train")],
        })
        .await?;
    let id = run.info.run_id.clone();
    let params = vec![
        Tag::new("algorithm", a.algorithm.clone()),
        Tag::new("rounds", a.rounds.to_string()),
        Tag::new("learning_rate", a.learning_rate.to_string()),
        Tag::new("max_depth", a.max_depth.to_string()),
        Tag::new("seed", a.seed.to_string()),
        Tag::new("target", a.target.clone()),
        Tag::new(
            "task",
            if classify {
                "classification"
            } else {
                "regression"
            },
        ),
    ];
    let mut params = params;
    if let Some(svc) = &a.feature_service {
        params.push(Tag::new("feature_service", svc.clone()));
    }
    let now = base::now_millis();
    let mut metrics: Vec<Metric> = Vec::new();
    for (step, tr, te) in &fit.history {
        let name = if classify { "log_loss" } else { "rmse" };
        metrics.push(Metric {
            key: format!("train_{name}"),
            value: *tr,
            timestamp: now,
            step: *step as i64,
        });
        metrics.push(Metric {
            key: format!("test_{name}"),
            value: *te,
            timestamp: now,
            step: *step as i64,
        });
    }
    metrics.extend(
        summary
            .iter()
            .filter(|(k, _)| {
                !k.starts_with("train_") && !k.starts_with("test_l") && !k.starts_with("test_r")
            })
            .map(|(k, v)| Metric {
                key: k.clone(),
                value: *v,
                timestamp: now,
                step: 0,
            }),
    );
    p.tracking.log_batch(&id, &[], &params, &[]).await?;
    for chunk in metrics.chunks(1000) {
        p.tracking.log_batch(&id, chunk, &[], &[]).await?;
    }
    p.tracking
        .log_inputs(
            &id,
            &[DatasetInput {
                dataset: Dataset {
                    name: a
                        .data
                        .file_name()
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or_default(),
                    digest: digest.clone(),
                    source_type: "local".into(),
                    source: a.data.display().to_string(),
                    schema: None,
                    profile: None,
                },
                tags: vec![Tag::new("mlflow.data.context", "training")],
            }],
        )
        .await?;
    let mut package = fit.package;
    package
        .training
        .insert("dataset_md5".into(), serde_json::json!(digest));
    if let Some(svc) = &a.feature_service {
        package
            .training
            .insert("feature_service".into(), serde_json::json!(svc));
    }
    package
        .training
        .insert("seed".into(), serde_json::json!(a.seed));
    p.log_package(&run.info, &package).await?;
    p.end_run(&id, RunStatus::Finished).await?;
    println!("run {id} in experiment '{}'", a.experiment);
    for (k, v) in &summary {
        println!("  {k:<16} {v:.4}");
    }
    if let Some(model) = a.register {
        let v = p.register_run_model(&model, &id, "model").await?;
        println!("registered {model} version {}", v.version);
    }
    Ok(Trained {
        run_id: id.to_string(),
        metrics: summary,
    })
}
