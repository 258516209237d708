//! Retraining a registered model by its policy (`pipeline::retrain::Policy`, kept as the model's
//! tag `capstan.retrain.policy`): the `retrain` job kind the worker runs, and `capstan retrain
//! policy | run | history`.
//!
//! A retraining reads the labelled data, holds out its newest `evaluation_days`, trains a
//! candidate on the policy's window **with the champion's input schema** (so clients and serving
//! keep the same contract), scores champion and candidate on the held-out rows, runs the model's
//! tests, and promotes (moves `champion`, keeping `previous`) or rejects — each step tracked as a
//! run in the experiment `retraining`, with the data's md5 as its input and the decision as tags.
//! Registry effects happen once per job: the candidate version carries the job id, so a job that
//! resumes after a crash finds its version and its scores instead of registering another.

use crate::platform::{Error, Platform};
use data::frame::{ColumnData, Frame};
use learn::{ModelPackage, Prediction};
use pipeline::jobs::JobQueue;
use pipeline::retrain::{Decision, Metric, POLICY_TAG, Policy, ROWS_TAG, Rollout};
use serde_json::{Value, json};
use std::path::Path;
use tracking::{Dataset, DatasetInput, Metric as RunMetric, NewRun, RunStatus, Tag};

pub const EXPERIMENT: &str = "retraining";
const JOB_TAG: &str = "capstan.retrain.job";
const AS_OF_TAG: &str = "capstan.retrain.as_of_ms";

fn other(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}

pub async fn policy_of(p: &Platform, model: &str) -> Result<Policy, Error> {
    let m = p.registry.get_model(model).await?;
    let tag = m.tags.iter().find(|t| t.key == POLICY_TAG).ok_or_else(|| {
        Error::Other(format!(
            "model `{model}` has no retraining policy (capstan retrain policy {model} FILE)"
        ))
    })?;
    Policy::parse(&tag.value).map_err(Error::Other)
}

/// Stores `policy` on `model` after checking it parses and its data can be read.
pub async fn set_policy(p: &Platform, model: &str, text: &str) -> Result<Policy, Error> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| other(format!("policy: {e}")))?;
    let policy = Policy::parse(&value.to_string()).map_err(Error::Other)?;
    let frame = data::frame::read_frame(Path::new(&policy.data)).map_err(other)?;
    for col in [&policy.target, &policy.time_column] {
        if frame.column(col).is_none() {
            return Err(other(format!("{}: no column `{col}`", policy.data)));
        }
    }
    let json = serde_json::to_string(&policy).map_err(other)?;
    p.registry
        .set_model_tag(model, &Tag::new(POLICY_TAG, json))
        .await?;
    let counted = p
        .registry
        .get_model(model)
        .await?
        .tags
        .iter()
        .any(|t| t.key == ROWS_TAG);
    if !counted {
        p.registry
            .set_model_tag(model, &Tag::new(ROWS_TAG, frame.rows().to_string()))
            .await?;
    }
    Ok(policy)
}

/// A new version of `path` (a `capstan data add` that changed it): queues a retraining of every
/// model whose policy trains on it; the jobs queued (or found pending), by model.
pub async fn on_new_data_version(
    p: &Platform,
    path: &Path,
    md5: &str,
) -> Result<Vec<(String, pipeline::Job)>, Error> {
    let Ok(path) = std::fs::canonicalize(path) else {
        return Ok(Vec::new());
    };
    let mut models = Vec::new();
    loop {
        let page = p
            .registry
            .search_models("", &[], 50_000, models.len() as u64)
            .await?
            .items;
        let last = page.len() < 50_000;
        models.extend(page);
        if last {
            break;
        }
    }
    let mut queued = Vec::new();
    for m in models {
        let Some(tag) = m.tags.iter().find(|t| t.key == POLICY_TAG) else {
            continue;
        };
        let Ok(policy) = Policy::parse(&tag.value) else {
            continue;
        };
        if std::fs::canonicalize(&policy.data).ok().as_deref() != Some(path.as_path()) {
            continue;
        }
        let reason = format!("new data version of {} (md5 {md5})", policy.data);
        let job = enqueue_retrain(p, &m.name, &reason, false).await?;
        queued.push((m.name, job));
    }
    Ok(queued)
}

/// The candidate's data as the model sees it: inputs in `schema`'s order, or (first model)
/// encoded from the table.
fn dataset(
    frame: &Frame,
    rows: &[usize],
    policy: &Policy,
    schema: Option<&ModelPackage>,
) -> Result<learn::Dataset, Error> {
    let target = frame
        .column(&policy.target)
        .ok_or_else(|| other(format!("no column `{}`", policy.target)))?;
    let y: Vec<String> = rows
        .iter()
        .map(|&i| target.text(i).unwrap_or_default())
        .collect();
    match schema {
        Some(pkg) => {
            let all = monitor::modeltest::rows_for(pkg, frame).map_err(other)?;
            Ok(learn::Dataset {
                features: pkg.input_names().iter().map(|s| s.to_string()).collect(),
                target: policy.target.clone(),
                x: rows.iter().map(|&i| all[i].clone()).collect(),
                y,
            })
        }
        None => {
            let header: Vec<String> = frame.columns.iter().map(|c| c.name.clone()).collect();
            let text: Vec<Vec<String>> = rows
                .iter()
                .map(|&i| {
                    frame
                        .columns
                        .iter()
                        .map(|c| c.text(i).unwrap_or_default())
                        .collect()
                })
                .collect();
            let mut drop: Vec<&str> = policy.drop.iter().map(String::as_str).collect();
            drop.push(&policy.time_column);
            learn::Dataset::from_rows_encoded(&header, &text, &policy.target, &drop).map_err(other)
        }
    }
}

/// The policy's metric of `pkg` on `rows` of `frame`.
fn score(pkg: &ModelPackage, frame: &Frame, rows: &[usize], policy: &Policy) -> Result<f64, Error> {
    let x = monitor::modeltest::rows_for(pkg, frame).map_err(other)?;
    let x: Vec<Vec<f64>> = rows.iter().map(|&i| x[i].clone()).collect();
    let preds = pkg.predict(&x).map_err(other)?;
    let target = frame
        .column(&policy.target)
        .ok_or_else(|| other(format!("no column `{}`", policy.target)))?;
    let truth: Vec<String> = rows
        .iter()
        .map(|&i| target.text(i).unwrap_or_default())
        .collect();
    let n = truth.len().max(1) as f64;
    Ok(match policy.metric {
        Metric::Accuracy => {
            preds
                .iter()
                .zip(&truth)
                .filter(|(p, t)| matches!(p, Prediction::Class { label, .. } if label == *t))
                .count() as f64
                / n
        }
        m => {
            let errors = preds.iter().zip(&truth).map(|(p, t)| {
                let y: f64 = t.parse().unwrap_or(f64::NAN);
                match p {
                    Prediction::Value(v) => v - y,
                    Prediction::Class { .. } => f64::NAN,
                }
            });
            if m == Metric::Rmse {
                (errors.map(|e| e * e).sum::<f64>() / n).sqrt()
            } else {
                errors.map(f64::abs).sum::<f64>() / n
            }
        }
    })
}

fn event_times(frame: &Frame, col: &str) -> Result<Vec<Option<i64>>, Error> {
    let c = frame
        .column(col)
        .ok_or_else(|| other(format!("no time column `{col}`")))?;
    Ok((0..c.len())
        .map(|i| match &c.data {
            ColumnData::Numeric(v) => v[i].is_finite().then(|| (v[i] * 1000.0) as i64),
            _ => c.text(i).and_then(|t| pipeline::retrain::parse_time_ms(&t)),
        })
        .collect())
}

async fn load(p: &Platform, model: &str, version: i64) -> Result<ModelPackage, Error> {
    use serving::PackageSource;
    let source = server::RegistrySource {
        registry: p.registry.clone(),
        tracking: p.tracking.clone(),
        artifacts: std::sync::Arc::new(p.db.clone()),
        blobs: p.blobs.clone(),
    };
    source.load(model, version).await.map_err(other)
}

/// A line in the retraining job's log (`capstan jobs logs ID`). Best effort: a log line that
/// cannot be written does not stop the retraining.
async fn note(p: &Platform, job_id: i64, line: String) {
    let _ = p.db.append_log(job_id, &[line], base::now_millis()).await;
}

/// Runs one retraining of `model` for job `job_id`, `trigger` saying why it started; with
/// `if_new_rows`, only when the policy's `min_new_rows` labelled rows are newer than the
/// champion's data.
pub async fn retrain(
    p: &Platform,
    model: &str,
    job_id: i64,
    trigger: &str,
    if_new_rows: bool,
) -> Result<Value, Error> {
    let policy = policy_of(p, model).await?;
    let champion = p.registry.version_by_alias(model, "champion").await.ok();
    let champion_pkg = match &champion {
        Some(v) => Some(load(p, model, v.version).await?),
        None => None,
    };
    let bytes = std::fs::read(&policy.data)?;
    let digest = data::md5_bytes(&bytes);
    let frame = data::frame::read_frame(Path::new(&policy.data)).map_err(other)?;
    // What the next `retrain_after_rows` trigger counts from.
    p.registry
        .set_model_tag(model, &Tag::new(ROWS_TAG, frame.rows().to_string()))
        .await?;
    let times = event_times(&frame, &policy.time_column)?;
    let split = pipeline::retrain::split(&times, &policy).map_err(Error::Other)?;
    let metric = policy.metric.name();
    note(
        p,
        job_id,
        format!(
            "{trigger}; data {} (md5 {digest}): {} rows, window {} rows, evaluation {} rows (the newest {} days); champion {}",
            policy.data,
            frame.rows(),
            split.train.len(),
            split.eval.len(),
            policy.evaluation_days,
            champion
                .as_ref()
                .map_or("none".to_owned(), |v| format!("v{}", v.version))
        ),
    )
    .await;
    // The newest labelled time the champion was trained on (when a retraining made it).
    let since = champion
        .as_ref()
        .and_then(|v| v.tags.iter().find(|t| t.key == AS_OF_TAG))
        .and_then(|t| t.value.parse::<i64>().ok())
        .unwrap_or(i64::MIN);
    if if_new_rows {
        let new_rows = times.iter().flatten().filter(|&&t| t > since).count();
        if new_rows < policy.min_new_rows.max(1) {
            return Ok(
                json!({"model": model, "outcome": "skipped", "trigger": trigger,
                "new_rows": new_rows,
                "reason": format!("{new_rows} labelled rows newer than the champion's data; the policy needs {}", policy.min_new_rows.max(1))}),
            );
        }
    }

    // A job that resumes after a crash finds the version it registered.
    let mine = p
        .registry
        .search_versions(
            &format!(
                "name = '{}' and tags.`{JOB_TAG}` = '{job_id}'",
                model.replace('\'', "''")
            ),
            1,
            0,
        )
        .await?
        .items
        .into_iter()
        .next();
    let (candidate_version, run_id, candidate_score, champion_score, candidate_pkg) = match mine {
        Some(v) => {
            note(
                p,
                job_id,
                format!(
                    "resumed: v{} was registered by an earlier attempt of this job",
                    v.version
                ),
            )
            .await;
            let run_id = v.run_id.clone().unwrap_or_default();
            let run = p
                .tracking
                .get_run(&base::RunId::parse(&run_id).map_err(other)?)
                .await?;
            let m = |k: &str| run.metrics.iter().find(|x| x.key == k).map(|x| x.value);
            (
                v.version,
                run_id,
                m(&format!("candidate_{metric}")).unwrap_or(f64::NAN),
                m(&format!("champion_{metric}")),
                // A resumed job reads back the candidate it registered.
                load(p, model, v.version).await?,
            )
        }
        None => {
            if split.eval.len() < policy.min_eval_rows {
                return Ok(
                    json!({"model": model, "outcome": "skipped", "trigger": trigger,
                    "reason": format!("{} evaluation rows, the policy needs {}", split.eval.len(), policy.min_eval_rows)}),
                );
            }
            // Incremental least squares adds only rows the champion has not seen.
            let linear_from = match (&champion_pkg, policy.warm_start, policy.algorithm.as_str()) {
                (Some(c), true, "linear")
                    if c.training.contains_key(learn::LEAST_SQUARES_KEY)
                        && matches!(c.algorithm, learn::Algorithm::LinearRegression { .. }) =>
                {
                    Some(c.clone())
                }
                _ => None,
            };
            let rows: Vec<usize> = match &linear_from {
                Some(_) => split
                    .train
                    .iter()
                    .copied()
                    .filter(|&i| times[i].is_some_and(|t| t > since))
                    .collect(),
                None => split.train.clone(),
            };
            if linear_from.is_some() {
                note(
                    p,
                    job_id,
                    format!(
                        "incremental least squares: {} window rows are newer than the champion's data; old rows weigh {}",
                        rows.len(),
                        policy.forgetting
                    ),
                )
                .await;
            }
            let d = dataset(&frame, &rows, &policy, champion_pkg.as_ref())?;
            let options = crate::train::FitOptions {
                algorithm: policy.algorithm.clone(),
                classify: policy.algorithm == "logistic" || policy.metric == Metric::Accuracy,
                rounds: policy.rounds,
                learning_rate: policy.learning_rate,
                // One-hot levels and the intercept are collinear: a whisper of ridge.
                l2: 1e-6,
                max_depth: policy.max_depth,
                seed: policy.seed,
            };
            // Incremental: boost on from the champion's trees (same inputs, by construction).
            let init = match (&champion_pkg, policy.warm_start, policy.algorithm.as_str()) {
                (Some(c), true, "gbm") => match &c.algorithm {
                    learn::Algorithm::Trees { forest, .. } => Some(forest.clone()),
                    _ => None,
                },
                _ => None,
            };
            let warm_from = (init.is_some() || linear_from.is_some())
                .then(|| champion.as_ref().map(|v| v.version))
                .flatten();
            let forgetting = policy.forgetting;
            let fit = tokio::task::spawn_blocking(move || match (init, linear_from) {
                (_, Some(c)) => learn::update_least_squares(&c, &d, forgetting, options.l2),
                (Some(forest), None) => learn::continue_trees(
                    &d,
                    options.classify,
                    &learn::trees::TreeOptions {
                        rounds: options.rounds,
                        learning_rate: options.learning_rate,
                        max_depth: options.max_depth,
                        seed: options.seed,
                        ..Default::default()
                    },
                    Some(&forest),
                    |_| {},
                ),
                (None, None) => crate::train::fit(&options, &d, None, &mut |_| {}),
            })
            .await
            .map_err(other)?
            .map_err(other)?;
            let mut package = fit.package;
            if let Some(v) = warm_from {
                package.training.insert("warm_start_from".into(), json!(v));
            }
            let candidate_score = score(&package, &frame, &split.eval, &policy)?;
            let champion_score = match &champion_pkg {
                Some(c) => Some(score(c, &frame, &split.eval, &policy)?),
                None => None,
            };
            note(
                p,
                job_id,
                format!(
                    "trained {} ({} rounds{}): {metric} {candidate_score:.4} on the evaluation rows{}",
                    policy.algorithm,
                    policy.rounds,
                    warm_from.map_or(String::new(), |v| format!(", warm-started from v{v}")),
                    champion_score.map_or(String::new(), |c| format!(", the champion's {c:.4}"))
                ),
            )
            .await;
            package.training.insert("dataset_md5".into(), json!(digest));
            package.training.insert("retrain_job".into(), json!(job_id));
            let run = track(
                p,
                model,
                &policy,
                &digest,
                &split,
                trigger,
                (candidate_score, champion_score),
                &fit.history,
                champion.as_ref().map(|v| v.version),
            )
            .await?;
            p.log_package(&run.info, &package).await?;
            // The job's tag is written with the version, in one transaction: a job that dies
            // at any point either finds its candidate when it resumes or registered none.
            let v = p
                .register_run_model_tagged(
                    model,
                    &run.info.run_id,
                    "model",
                    vec![
                        Tag::new(JOB_TAG, job_id.to_string()),
                        Tag::new(AS_OF_TAG, split.as_of_ms.to_string()),
                    ],
                )
                .await?;
            note(
                p,
                job_id,
                format!(
                    "registered {model} v{} (run {})",
                    v.version, run.info.run_id
                ),
            )
            .await;
            // Fault injection for the crash test: die between the registry write and the rest.
            if std::env::var("CAPSTAN_FAILPOINT").as_deref() == Ok("retrain-after-register") {
                std::process::abort();
            }
            (
                v.version,
                run.info.run_id.to_string(),
                candidate_score,
                champion_score,
                package,
            )
        }
    };

    let trees = match &candidate_pkg.algorithm {
        learn::Algorithm::Trees { forest, .. } => {
            Some(forest.trees.iter().map(Vec::len).sum::<usize>())
        }
        _ => None,
    };
    let warm_start_from = candidate_pkg.training.get("warm_start_from").cloned();
    let mut tests_said = None;
    let tests = match &policy.tests {
        None => Ok(()),
        Some(path) => {
            let suite = monitor::modeltest::ModelSuite::load(Path::new(path)).map_err(other)?;
            let candidate = &candidate_pkg;
            let keep: Vec<bool> = {
                let mut k = vec![false; frame.rows()];
                split.eval.iter().for_each(|&i| k[i] = true);
                k
            };
            let r = monitor::modeltest::run(
                &suite,
                candidate,
                champion_pkg.as_ref(),
                &frame.filter_rows(&keep),
            );
            tests_said = Some(format!(
                "{} of {} model tests pass",
                r.passed,
                r.passed + r.failed
            ));
            if r.success {
                Ok(())
            } else {
                Err(format!(
                    "{} of {} tests failed",
                    r.failed,
                    r.failed + r.passed
                ))
            }
        }
    };
    let decision = pipeline::retrain::decide(&policy, champion_score, candidate_score, tests);
    let promoted_to = if decision.promote {
        rollout(
            p,
            model,
            &policy,
            champion.as_ref().map(|v| v.version),
            candidate_version,
        )
        .await?
    } else {
        None
    };
    finish(p, &run_id, &decision).await?;
    note(
        p,
        job_id,
        format!(
            "{}: {}{}",
            decision.outcome,
            decision.reason,
            promoted_to.map_or(String::new(), |a| format!(
                "; {model}@{a} = v{candidate_version}"
            ))
        ),
    )
    .await;
    let outcome = match promoted_to {
        Some("challenger (canary)") => "canary",
        Some("challenger (shadow)") => "shadow",
        _ => decision.outcome,
    };
    Ok(json!({
        "model": model, "trigger": trigger, "outcome": outcome, "reason": decision.reason,
        "decision": decision.outcome, "improvement": decision.improvement,
        "metric": metric, "candidate_score": candidate_score, "champion_score": champion_score,
        "candidate_version": candidate_version, "champion_version": champion.as_ref().map(|v| v.version),
        "alias": promoted_to, "run_id": run_id, "trees": trees, "tests": tests_said,
        "warm_start_from": warm_start_from,
        "train_rows": split.train.len(), "eval_rows": split.eval.len(),
        "as_of_ms": split.as_of_ms, "eval_start_ms": split.eval_start_ms,
    }))
}

/// Moves the alias the policy's rollout names; returns it. Idempotent: a resumed job that finds
/// the candidate already champion changes nothing.
async fn rollout(
    p: &Platform,
    model: &str,
    policy: &Policy,
    champion: Option<i64>,
    candidate: i64,
) -> Result<Option<&'static str>, Error> {
    let alias = match (policy.rollout, champion) {
        (Rollout::Challenger, _) => "challenger",
        // A canary or a shadow needs a champion to compare with; the first model is simply
        // promoted.
        (Rollout::Canary { .. } | Rollout::Shadow { .. }, None) | (Rollout::Promote, _) => {
            "champion"
        }
        (Rollout::Shadow { check_seconds, .. }, Some(_)) => {
            p.registry.set_alias(model, "challenger", candidate).await?;
            open_rollout(p, model, candidate, None, check_seconds).await?;
            return Ok(Some("challenger (shadow)"));
        }
        (
            Rollout::Canary {
                start_weight,
                end_weight,
                ramp_seconds,
                check_seconds,
                ..
            },
            Some(_),
        ) => {
            p.registry.set_alias(model, "challenger", candidate).await?;
            let ramp = serving::deploy::Ramp {
                start_weight,
                end_weight,
                ramp_seconds,
            };
            open_rollout(p, model, candidate, Some(ramp), check_seconds).await?;
            return Ok(Some("challenger (canary)"));
        }
    };
    if alias == "champion"
        && let Some(old) = champion.filter(|&old| old != candidate)
    {
        p.registry.set_alias(model, "previous", old).await?;
    }
    // The registry's own promotion checks (capstan.check.*) still apply.
    p.registry.set_alias(model, alias, candidate).await?;
    Ok(Some(alias))
}

/// Opens (or replaces) the rollout's deployment of champion vs challenger — `<model>-canary`,
/// the challenger's share following `ramp`, or without one `<model>-shadow`, where the champion
/// answers and the challenger predicts the same requests unseen — and queues its first check.
async fn open_rollout(
    p: &Platform,
    model: &str,
    candidate: i64,
    ramp: Option<serving::deploy::Ramp>,
    check_seconds: u64,
) -> Result<(), Error> {
    use serving::deploy::{DeploymentSpec, DeploymentStore, Mode, VariantSpec};
    let (mode, kind) = match ramp {
        Some(_) => (Mode::Canary, "canary"),
        None => (Mode::Shadow, "shadow"),
    };
    let name = format!("{model}-{kind}");
    let variant = |v: &str| VariantSpec {
        name: v.into(),
        model: model.into(),
        alias: Some(v.into()),
        version: None,
        weight: 0.0,
    };
    let spec = DeploymentSpec {
        name: name.clone(),
        mode,
        variants: vec![variant("champion"), variant("challenger")],
        ramp,
    };
    spec.validate().map_err(other)?;
    p.db.put_deployment(&name, &serde_json::to_string(&spec).map_err(other)?)
        .await
        .map_err(other)?;
    queue_check(p, model, &name, candidate, 1, check_seconds).await
}

/// A shadow's evidence: requests and failures per model from the deployment's log, and both
/// models' losses on every labelled row they both predicted (the prediction log since the
/// deployment opened, joined with the labels fed back for its requests).
async fn shadow_stats(
    p: &Platform,
    model: &str,
    name: &str,
    created_ms: i64,
    candidate: i64,
) -> Result<pipeline::retrain::ShadowStats, Error> {
    use monitor::performance::LabelStore;
    use serving::deploy::DeploymentStore;
    let records = p.db.requests(name).await.map_err(other)?;
    let count = |shadow: bool, failed: bool| {
        records
            .iter()
            .filter(|r| r.shadow == shadow && (r.error || !failed))
            .count() as u64
    };
    let ids: std::collections::BTreeSet<&str> =
        records.iter().map(|r| r.request_id.as_str()).collect();
    let (_, logged) = server::monitoring::logged_since(&p.blobs, model, created_ms)
        .await
        .map_err(other)?;
    let logged: Vec<_> = logged
        .into_iter()
        .filter(|q| ids.contains(q.request_id.as_str()))
        .collect();
    let ids: Vec<String> = ids.into_iter().map(str::to_owned).collect();
    let labels = p.db.labels_for(model, &ids).await.map_err(other)?;
    let champion = p
        .registry
        .version_by_alias(model, "champion")
        .await?
        .version;
    Ok(pipeline::retrain::ShadowStats {
        champion_requests: count(false, false),
        champion_errors: count(false, true),
        challenger_requests: count(true, false),
        challenger_errors: count(true, true),
        losses: monitor::performance::paired_losses(&logged, &labels, champion, candidate),
    })
}

async fn queue_check(
    p: &Platform,
    model: &str,
    deployment: &str,
    candidate: i64,
    round: u64,
    check_seconds: u64,
) -> Result<(), Error> {
    let now = base::now_millis();
    let mut job = pipeline::NewJob::new(
        "rollout-check",
        json!({"model": model, "deployment": deployment, "candidate": candidate, "round": round}),
    );
    job.run_after_ms = now + (check_seconds as i64) * 1000;
    job.dedupe_key = Some(format!("rollout:{model}:{candidate}:{round}"));
    p.db.enqueue(job, now).await.map_err(Error::Other)?;
    Ok(())
}

/// The `rollout-check` job: reads the canary's statistics and promotes, rolls back, or looks
/// again in `check_seconds`.
pub async fn rollout_check(p: &Platform, payload: &Value) -> Result<Value, Error> {
    use pipeline::retrain::{CanaryStats, CanaryVerdict, judge_canary, judge_shadow};
    use serving::deploy::{DeploymentSpec, DeploymentStore};
    let field = |k: &str| {
        payload[k]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| other(format!("payload needs a string `{k}`")))
    };
    let (model, name) = (field("model")?, field("deployment")?);
    let candidate = payload["candidate"]
        .as_i64()
        .ok_or_else(|| other("payload needs the `candidate` version"))?;
    let round = payload["round"].as_u64().unwrap_or(1);
    let policy = policy_of(p, &model).await?;
    let (json, created) =
        p.db.get_deployment(&name)
            .await
            .map_err(other)?
            .ok_or_else(|| other(format!("the rollout's deployment {name} is gone")))?;
    let (verdict, check_seconds, evidence) = match policy.rollout {
        Rollout::Canary {
            min_feedback,
            check_seconds,
            ..
        } => {
            let spec: DeploymentSpec = serde_json::from_str(&json).map_err(other)?;
            let records = p.db.requests(&name).await.map_err(other)?;
            let r = serving::deploy::report(
                &spec,
                &spec.weights_at(created, base::now_millis()),
                &records,
            );
            let arm = |n: &str| r.variants.iter().find(|v| v.name == n);
            let (champ, chall) = (arm("champion"), arm("challenger"));
            let cmp = r.comparisons.first();
            let stats = CanaryStats {
                champion_requests: champ.map_or(0, |v| v.requests),
                champion_errors: champ.map_or(0, |v| v.errors),
                challenger_requests: chall.map_or(0, |v| v.requests),
                challenger_errors: chall.map_or(0, |v| v.errors),
                min_feedback: champ
                    .map_or(0, |v| v.feedback)
                    .min(chall.map_or(0, |v| v.feedback)),
                difference: cmp.map_or(0.0, |c| c.difference),
                always_valid_p: cmp.map_or(1.0, |c| c.always_valid_p),
            };
            (
                judge_canary(&stats, min_feedback),
                check_seconds,
                json!({"champion_requests": stats.champion_requests,
                    "challenger_requests": stats.challenger_requests,
                    "feedback_per_arm": stats.min_feedback}),
            )
        }
        Rollout::Shadow {
            min_labelled,
            check_seconds,
        } => {
            let stats = shadow_stats(p, &model, &name, created, candidate).await?;
            let (champion_loss, challenger_loss) = stats.mean_losses();
            (
                judge_shadow(&stats, min_labelled),
                check_seconds,
                json!({"champion_requests": stats.champion_requests,
                    "challenger_requests": stats.challenger_requests,
                    "labelled_rows": stats.losses.len(),
                    "champion_loss": champion_loss, "challenger_loss": challenger_loss}),
            )
        }
        _ => {
            return Err(other(format!(
                "{model}'s policy no longer rolls out by canary or shadow"
            )));
        }
    };
    match &verdict {
        CanaryVerdict::Waiting(_) => {
            queue_check(p, &model, &name, candidate, round + 1, check_seconds).await?;
        }
        CanaryVerdict::Promoted(_) => {
            let old = p.registry.version_by_alias(&model, "champion").await.ok();
            if let Some(old) = old.filter(|o| o.version != candidate) {
                p.registry
                    .set_alias(&model, "previous", old.version)
                    .await?;
            }
            p.registry.set_alias(&model, "champion", candidate).await?;
            p.registry.delete_alias(&model, "challenger").await.ok();
            p.db.delete_deployment(&name).await.map_err(other)?;
        }
        CanaryVerdict::RolledBack(_) => {
            p.registry.delete_alias(&model, "challenger").await.ok();
            p.db.delete_deployment(&name).await.map_err(other)?;
        }
    }
    let mut out = serde_json::to_value(&verdict).map_err(other)?;
    out["model"] = json!(model);
    out["candidate_version"] = json!(candidate);
    out["round"] = json!(round);
    if let (Some(out), Value::Object(evidence)) = (out.as_object_mut(), evidence) {
        out.extend(evidence);
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn track(
    p: &Platform,
    model: &str,
    policy: &Policy,
    digest: &str,
    split: &pipeline::retrain::Split,
    trigger: &str,
    (candidate, champion): (f64, Option<f64>),
    history: &[(usize, f64, f64)],
    champion_version: Option<i64>,
) -> Result<tracking::Run, Error> {
    let exp = p.experiment_id(EXPERIMENT).await?;
    let run = p
        .tracking
        .create_run(NewRun {
            experiment_id: exp,
            run_name: Some(format!("retrain-{model}")),
            user_id: String::new(),
            start_time: base::now_millis(),
            tags: vec![
                Tag::new("mlflow.source.name", "capstan retrain"),
                Tag::new("capstan.retrain.model", model),
                Tag::new("capstan.retrain.trigger", trigger),
            ],
        })
        .await?;
    let id = &run.info.run_id;
    let window = serde_json::to_string(&policy.window).unwrap_or_default();
    let params = vec![
        Tag::new("model", model),
        Tag::new("algorithm", policy.algorithm.clone()),
        Tag::new("rounds", policy.rounds.to_string()),
        Tag::new("window", window),
        Tag::new("evaluation_days", policy.evaluation_days.to_string()),
        Tag::new("metric", policy.metric.name()),
        Tag::new("min_improvement", policy.min_improvement.to_string()),
        Tag::new("as_of_ms", split.as_of_ms.to_string()),
        Tag::new("train_rows", split.train.len().to_string()),
        Tag::new("eval_rows", split.eval.len().to_string()),
        Tag::new(
            "champion_version",
            champion_version.map_or("none".into(), |v| v.to_string()),
        ),
    ];
    let now = base::now_millis();
    let m = |key: String, value: f64, step: i64| RunMetric {
        key,
        value,
        timestamp: now,
        step,
    };
    let name = policy.metric.name();
    let mut metrics = vec![m(format!("candidate_{name}"), candidate, 0)];
    if let Some(c) = champion {
        metrics.push(m(format!("champion_{name}"), c, 0));
    }
    for (step, tr, te) in history {
        metrics.push(m(format!("train_{name}"), *tr, *step as i64));
        metrics.push(m(format!("test_{name}"), *te, *step as i64));
    }
    p.tracking.log_batch(id, &[], &params, &[]).await?;
    for chunk in metrics.chunks(1000) {
        p.tracking.log_batch(id, chunk, &[], &[]).await?;
    }
    p.tracking
        .log_inputs(
            id,
            &[DatasetInput {
                dataset: Dataset {
                    name: Path::new(&policy.data)
                        .file_name()
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or_default(),
                    digest: digest.to_owned(),
                    source_type: "local".into(),
                    source: policy.data.clone(),
                    schema: None,
                    profile: None,
                },
                tags: vec![Tag::new("mlflow.data.context", "training")],
            }],
        )
        .await?;
    Ok(run)
}

async fn finish(p: &Platform, run_id: &str, d: &Decision) -> Result<(), Error> {
    let id = base::RunId::parse(run_id).map_err(other)?;
    let tags = [
        Tag::new("capstan.retrain.decision", d.outcome),
        Tag::new("capstan.retrain.reason", d.reason.clone()),
    ];
    p.tracking.log_batch(&id, &[], &[], &tags).await?;
    p.end_run(&id, RunStatus::Finished).await
}

/// Why a job started, from its payload: the monitor and its alerts, or a stated reason.
pub fn trigger_of(payload: &Value) -> String {
    if let Some(m) = payload["monitor"].as_str() {
        let alerts: Vec<String> = payload["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["message"].as_str().or(x["check"].as_str()))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        return format!("monitor {m}: {}", alerts.join("; "));
    }
    if let Some(d) = payload["deployment"].as_str() {
        let kind = if d.ends_with("-shadow") {
            "shadow"
        } else {
            "canary"
        };
        return format!(
            "{kind} check {} of {d}",
            payload["round"].as_u64().unwrap_or(1)
        );
    }
    payload["reason"].as_str().unwrap_or("manual").to_owned()
}

#[derive(clap::Subcommand, Debug)]
pub enum RetrainCmd {
    /// Declare how MODEL retrains (YAML or JSON: data, target, time_column, window,
    /// evaluation_days, metric, min_improvement, tests, rollout …).
    Policy {
        model: String,
        file: std::path::PathBuf,
    },
    /// Retrain MODEL now (in this process), or queue it for `capstan worker` with --queue.
    Run {
        model: String,
        /// Why (recorded on the run and the job).
        #[arg(long, default_value = "manual")]
        reason: String,
        #[arg(long)]
        queue: bool,
        /// Only if the policy's `min_new_rows` labelled rows are newer than the champion's data
        /// (what a nightly `capstan jobs schedule … retrain` asks for).
        #[arg(long)]
        if_new_rows: bool,
    },
    /// Retrainings of MODEL, newest first: why each started and what it decided.
    History { model: String },
}

pub async fn run_cmd(
    home: &Path,
    config: &crate::config::Config,
    cmd: RetrainCmd,
) -> Result<(), Error> {
    let p = Platform::open(home, config).await?;
    match cmd {
        RetrainCmd::Policy { model, file } => {
            let text = std::fs::read_to_string(&file)?;
            let policy = set_policy(&p, &model, &text).await?;
            println!(
                "{model}: retrains {} on {} ({}), judged on the last {} days by {}",
                policy.algorithm,
                policy.data,
                serde_json::to_string(&policy.window).unwrap_or_default(),
                policy.evaluation_days,
                policy.metric.name()
            );
            Ok(())
        }
        RetrainCmd::Run {
            model,
            reason,
            queue,
            if_new_rows,
        } => {
            if queue {
                let j = enqueue_retrain(&p, &model, &reason, if_new_rows).await?;
                println!("job {} (retrain) {}", j.id, j.state.as_str());
                return Ok(());
            }
            let result = run_now(&p, &model, &reason, if_new_rows).await?;
            print_result(&result);
            Ok(())
        }
        RetrainCmd::History { model } => {
            let jobs = p.db.list(None, 10_000).await.map_err(Error::Other)?;
            let rows: Vec<Vec<String>> = jobs
                .iter()
                .filter(|j| {
                    (j.kind == "retrain" || j.kind == "rollout-check")
                        && j.payload["model"].as_str() == Some(&model)
                })
                .map(|j| {
                    let r = j.result.as_ref();
                    vec![
                        j.id.to_string(),
                        crate::jobs_cmd::iso(j.created_ms),
                        trigger_of(&j.payload),
                        j.state.as_str().to_owned(),
                        r.and_then(|r| r["outcome"].as_str())
                            .unwrap_or("")
                            .to_owned(),
                        r.and_then(|r| r["reason"].as_str())
                            .map(str::to_owned)
                            .or_else(|| j.last_error.clone())
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("no retrainings of {model} yet");
            } else {
                print!(
                    "{}",
                    crate::report::table(
                        &["job", "queued", "why", "state", "decision", "detail"],
                        &rows,
                    )
                );
            }
            Ok(())
        }
    }
}

/// Queues a retraining of `model`: refused at once for a model without a policy (not queued to
/// fail later); one pending retraining per model, so a second request finds the first.
async fn enqueue_retrain(
    p: &Platform,
    model: &str,
    reason: &str,
    if_new_rows: bool,
) -> Result<pipeline::Job, Error> {
    policy_of(p, model).await?;
    let mut job = pipeline::NewJob::new(
        "retrain",
        json!({"model": model, "reason": reason, "if_new_rows": if_new_rows}),
    );
    job.dedupe_key = Some(format!("retrain:{model}"));
    p.db.enqueue(job, base::now_millis())
        .await
        .map_err(Error::Other)
}

/// Queues a retraining of `model` (so the history shows it) and runs it here, under this
/// process's lease; the job records the result or the error.
pub async fn run_now(
    p: &Platform,
    model: &str,
    reason: &str,
    if_new_rows: bool,
) -> Result<Value, Error> {
    let j = enqueue_retrain(p, model, reason, if_new_rows).await?;
    let owner = format!("cli-{}", std::process::id());
    let leased = p
        .db
        .lease_id(j.id, &owner, 600_000, base::now_millis())
        .await
        .map_err(Error::Other)?
        .ok_or_else(|| {
            Error::Other(format!(
                "a retraining of {model} is already pending: job {} ({}, attempt {} of {}); a worker runs it, or `capstan jobs cancel {}`",
                j.id,
                j.state.as_str(),
                j.attempts,
                j.max_attempts,
                j.id
            ))
        })?;
    match retrain(p, model, leased.id, reason, if_new_rows).await {
        Ok(result) => {
            p.db.complete(leased.id, &owner, result.clone(), base::now_millis())
                .await
                .map_err(Error::Other)?;
            Ok(result)
        }
        Err(e) => {
            p.db.fail(leased.id, &owner, &e.to_string(), base::now_millis())
                .await
                .map_err(Error::Other)?;
            Err(e)
        }
    }
}

fn print_result(r: &Value) {
    println!(
        "{}: {} — {}",
        r["model"].as_str().unwrap_or(""),
        r["outcome"].as_str().unwrap_or(""),
        r["reason"].as_str().unwrap_or("")
    );
    if let Some(v) = r["candidate_version"].as_i64() {
        println!(
            "  candidate version {v} trained on {} rows, judged on {} rows; alias {}",
            r["train_rows"],
            r["eval_rows"],
            r["alias"].as_str().unwrap_or("unchanged")
        );
    }
}
