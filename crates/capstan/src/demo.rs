//! `capstan demo`: the main job on embedded defaults. At this stage it starts the server, trains
//! gradient-descent linear regressions on the diabetes data, tracks them through the MLflow API
//! (params, per-epoch metrics, the dataset digest, model artifacts), registers them in the model
//! registry where a check gates the `champion` alias, serves the champion, then monitors it:
//! traffic whose `bmi` shifts, labels that arrive later, a monitor whose drift check raises an
//! alert, and a drift report in HTML; it prints where to look.

use crate::client::Client;
use crate::config::Config;
use crate::platform::{Error, Platform};
use crate::progress::Progress;
use serde_json::{Value, json};
use std::path::Path;

/// The diabetes data (scikit-learn 1.9.1, BSD-3-Clause; see data/README.md), shipped in the binary.
const DIABETES_CSV: &str = include_str!("../../../data/diabetes.csv");

/// The diabetes data as a numeric table (target `progression`).
pub fn diabetes() -> Result<learn::Dataset, Error> {
    learn::Dataset::from_csv(DIABETES_CSV, "progression")
        .map_err(|e| Error::Other(format!("diabetes.csv: {e}")))
}

/// The code version the demo runs from, when it runs inside a git checkout.
fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn kv(key: &str, value: impl ToString) -> Value {
    json!({"key": key, "value": value.to_string()})
}

pub async fn run(
    home: &Path,
    mut config: Config,
    no_serve: bool,
    port: u16,
    until: u8,
) -> Result<(), Error> {
    config.server.port = port;
    // The demo shows the semantic cache answering reworded questions.
    config.gateway.cache.semantic.enabled = true;
    config.server.host = "127.0.0.1".into();
    let platform = Platform::open(home, &config).await?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let serve_config = config.clone();
    let server = tokio::spawn(async move { platform.serve(&serve_config, Some(tx), None).await });
    let addr = rx
        .await
        .map_err(|_| Error::Other("the server did not start".into()))?;
    let url = format!("http://{addr}");
    let c = Client::new(&url);

    eprintln!(
        "\n▶ Step 1: track candidate models for the diabetes data (gradient-descent linear regression)"
    );
    let data = diabetes()?;
    let digest = base::ContentHash::of(DIABETES_CSV.as_bytes());
    let exp_name = "diabetes-demo";
    let exp_id = match c
        .get(
            "/api/2.0/mlflow/experiments/get-by-name",
            &[("experiment_name", exp_name)],
        )
        .await
    {
        Ok(v) => v["experiment"]["experiment_id"]
            .as_str()
            .unwrap_or("0")
            .to_owned(),
        Err(_) => c
            .post(
                "/api/2.0/mlflow/experiments/create",
                &json!({"name": exp_name, "tags": [kv("project", "capstan-demo")]}),
            )
            .await?["experiment_id"]
            .as_str()
            .unwrap_or("0")
            .to_owned(),
    };
    let epochs = 300;
    let seed = 42;
    let mut summary = Vec::new();
    let mut sources = Vec::new();
    let commit = git_commit();
    for lr in [0.003, 0.01, 0.05] {
        let run = c
            .post("/api/2.0/mlflow/runs/create", &json!({"experiment_id": exp_id, "run_name": format!("gd-lr{lr}"), "start_time": base::now_millis(), "tags": [kv("mlflow.source.name", "capstan demo"), kv("mlflow.source.git.commit", &commit)]}))
            .await?;
        let run_id = run["run"]["info"]["run_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let artifact_uri = run["run"]["info"]["artifact_uri"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        c.post("/api/2.0/mlflow/runs/log-batch", &json!({"run_id": run_id, "params": [kv("learning_rate", lr), kv("epochs", epochs), kv("seed", seed), kv("model", "linear_regression_gd"), kv("features", data.features.join(","))]})).await?;
        c.post("/api/2.0/mlflow/runs/log-inputs", &json!({"run_id": run_id, "datasets": [{"dataset": {"name": "diabetes", "digest": &digest.as_str()[..16], "source_type": "local", "source": "data/diabetes.csv"}, "tags": [kv("mlflow.data.context", "training")]}]})).await?;
        let mut bar = Progress::new(&format!("train lr={lr}"), epochs as u64);
        let options = learn::TrainOptions {
            learning_rate: lr,
            epochs,
            seed,
            ..Default::default()
        };
        let fit = learn::train_linear_regression(&data, &options, |_| bar.inc(1))
            .map_err(|e| Error::Other(e.to_string()))?;
        bar.finish();
        let now = base::now_millis();
        for chunk in fit.history.chunks(100) {
            let metrics: Vec<Value> = chunk
                .iter()
                .flat_map(|(e, tr, te)| {
                    [
                        json!({"key": "train_rmse", "value": tr, "timestamp": now, "step": e}),
                        json!({"key": "test_rmse", "value": te, "timestamp": now, "step": e}),
                    ]
                })
                .collect();
            c.post(
                "/api/2.0/mlflow/runs/log-batch",
                &json!({"run_id": run_id, "metrics": metrics}),
            )
            .await?;
        }
        let mut package = fit.package;
        let (_, tr, te) = fit
            .history
            .last()
            .copied()
            .unwrap_or((0, f64::NAN, f64::NAN));
        package
            .training
            .insert("dataset_digest".into(), json!(digest.as_str()));
        package.training.insert("seed".into(), json!(seed));
        package
            .training
            .insert("metrics".into(), json!({"train_rmse": tr, "test_rmse": te}));
        let rel = artifact_uri
            .trim_start_matches("mlflow-artifacts:")
            .trim_start_matches('/');
        c.put(
            &format!("/api/2.0/mlflow-artifacts/artifacts/{rel}/model/model.json"),
            package.to_json(),
        )
        .await?;
        c.post(
            "/api/2.0/mlflow/runs/update",
            &json!({"run_id": run_id, "status": "FINISHED", "end_time": base::now_millis()}),
        )
        .await?;
        let (_, tr, te) = fit
            .history
            .last()
            .copied()
            .unwrap_or((0, f64::NAN, f64::NAN));
        sources.push(format!("{artifact_uri}/model"));
        summary.push((run_id, lr, tr, te));
    }
    let best = c
        .post("/api/2.0/mlflow/runs/search", &json!({"experiment_ids": [exp_id], "filter": "params.model = 'linear_regression_gd'", "order_by": ["metrics.test_rmse ASC"], "max_results": 1}))
        .await?;
    let best_id = best["runs"][0]["info"]["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    c.post(
        "/api/2.0/mlflow/runs/set-tag",
        &json!({"run_id": best_id, "key": "capstan.best", "value": "true"}),
    )
    .await?;

    let rows: Vec<Vec<String>> = summary
        .iter()
        .map(|(id, lr, tr, te)| {
            vec![
                id.clone(),
                lr.to_string(),
                format!("{tr:.2}"),
                format!("{te:.2}"),
                if *id == best_id {
                    "★ best".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    println!(
        "\nSummary: experiment '{exp_name}' (id {exp_id}), dataset diabetes sha256 {}…\n",
        &digest.as_str()[..16]
    );
    print!(
        "{}",
        crate::report::table(
            &["run", "learning_rate", "train_rmse", "test_rmse", ""],
            &rows
        )
    );

    eprintln!("\n▶ Step 2: register the candidates; a check gates who becomes champion");
    let model = "diabetes-regressor";
    if c.get("/api/2.0/mlflow/registered-models/get", &[("name", model)])
        .await
        .is_err()
    {
        c.post(
            "/api/2.0/mlflow/registered-models/create",
            &json!({"name": model, "description": "diabetes progression, linear regression"}),
        )
        .await?;
    }
    let check = "metrics.test_rmse < 60";
    c.post(
        "/api/2.0/mlflow/registered-models/set-tag",
        &json!({"name": model, "key": "capstan.check.test_rmse", "value": check}),
    )
    .await?;
    let mut versions = Vec::new();
    for ((run_id, ..), source) in summary.iter().zip(&sources) {
        let v = c
            .post(
                "/api/2.0/mlflow/model-versions/create",
                &json!({"name": model, "source": source, "run_id": run_id}),
            )
            .await?;
        versions.push((
            run_id.clone(),
            v["model_version"]["version"]
                .as_str()
                .unwrap_or("0")
                .to_owned(),
        ));
    }
    let mut promoted = None;
    for (run_id, version) in &versions {
        match c
            .post(
                "/api/2.0/mlflow/registered-models/alias",
                &json!({"name": model, "alias": "champion", "version": version}),
            )
            .await
        {
            Ok(_) if *run_id == best_id => promoted = Some(version.clone()),
            Ok(_) => {}
            Err(e) => println!(
                "  version {version} refused as champion: {}",
                e.to_string()
                    .split("failed check")
                    .nth(1)
                    .map_or(e.to_string(), |r| format!("failed check{r}"))
            ),
        }
    }
    // The best candidate is promoted last, so it ends as champion.
    if let Some((_, best_version)) = versions.iter().find(|(id, _)| *id == best_id) {
        c.post(
            "/api/2.0/mlflow/registered-models/alias",
            &json!({"name": model, "alias": "champion", "version": best_version}),
        )
        .await?;
        promoted = Some(best_version.clone());
    }
    let champion = c
        .get(
            "/api/2.0/mlflow/registered-models/alias",
            &[("name", model), ("alias", "champion")],
        )
        .await?;
    println!(
        "  {model}@champion = version {} (run {}, check `{check}` passed{})",
        champion["model_version"]["version"].as_str().unwrap_or("?"),
        champion["model_version"]["run_id"].as_str().unwrap_or("?"),
        if promoted.is_some() { "" } else { "?" }
    );

    eprintln!("\n▶ Step 3: serve the champion over the Open Inference Protocol v2");
    let sample: Vec<usize> = vec![0, 1, 2, 3, 4];
    let rows: Vec<f64> = sample
        .iter()
        .flat_map(|&i| data.x[i].iter().copied())
        .collect();
    let infer = c
        .post(
            &format!("/v2/models/{model}/infer"),
            &json!({"id": "demo", "inputs": [{"name": "rows", "shape": [sample.len(), data.features.len()], "datatype": "FP64", "data": rows}]}),
        )
        .await?;
    let predicted: Vec<f64> = infer["outputs"][0]["data"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = sample
        .iter()
        .zip(&predicted)
        .map(|(&i, p)| vec![i.to_string(), data.y[i].clone(), format!("{p:.1}")])
        .collect();
    println!(
        "  POST /v2/models/{model}/infer → version {}",
        infer["model_version"].as_str().unwrap_or("?")
    );
    print!(
        "{}",
        crate::report::table(&["row", "actual progression", "predicted"], &rows)
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    );

    eprintln!("\n▶ Step 4: monitor it — traffic with a shift, late labels, drift, alerts");
    let report = monitor_step(home, &c, model, &data).await?;

    let mut later = Vec::new();
    if until >= 5 {
        eprintln!("\n▶ Step 5: A/B test — the champion against version 1, judged by statistics");
        later.push(crate::demo_story::ab_step(&c, model, &data).await?);
    }
    if until >= 6 {
        eprintln!(
            "\n▶ Step 6: bike rentals — features by hour of week in the feature store, a point-in-time training set, online lookups"
        );
        later.push(crate::demo_features::features_step(home, &config, &c).await?);
        eprintln!(
            "\n▶ Step 6 (continued): continuous training — bike rentals replayed in time order; drift → retraining → promotion"
        );
        later.extend(crate::demo_story::retrain_step(home, &config, &c, &url).await?);
    }
    if until >= 7 {
        eprintln!(
            "\n▶ Step 7: RAG over the Rust book through the LLM gateway — a versioned prompt, caches, tokens, traces, an evaluation"
        );
        later.extend(crate::demo_story::llm_step(home, &config, &c, &url).await?);
    }
    if until >= 8 {
        eprintln!(
            "\n▶ Step 8: fine-tune — a LoRA adapter for SmolLM2 on rustc's error explanations, registered and served"
        );
        later.extend(crate::llm_cmd::demo_step(home, &config, &url).await?);
    }

    let best = summary
        .iter()
        .find(|s| s.0 == best_id)
        .map_or(f64::NAN, |s| s.3);
    let mut happened: Vec<Vec<String>> = vec![
        vec![
            "tracking".into(),
            format!("{} candidate runs in '{exp_name}'", summary.len()),
            format!("best test RMSE {best:.1}"),
        ],
        vec![
            "registry".into(),
            format!("check `{check}` gates `champion`"),
            format!("{model}@champion = v{}", promoted.as_deref().unwrap_or("?")),
        ],
        vec![
            "drift".into(),
            "bmi shifted in served traffic".into(),
            format!("report {}", report.display()),
        ],
    ];
    happened.extend(later.into_iter().map(|(a, b, c)| vec![a, b, c]));
    println!("\nWhat happened:");
    print!(
        "{}",
        crate::report::table(&["step", "what", "numbers"], &happened)
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    );

    let home_s = home.display();
    println!("\nWhere to look:");
    println!("  web UI           {url}/");
    println!("  tracking API     {url}  (MLFLOW_TRACKING_URI={url} works with the mlflow client)");
    println!(
        "  runs             capstan --home {home_s} runs list -e {exp_name} --order-by 'metrics.test_rmse ASC'"
    );
    println!("  registry         capstan --home {home_s} models show {model}");
    println!("  serve alone      capstan --home {home_s} serve {model}@champion --port 8080");
    println!("  predict          curl -s {url}/v2/models/{model}/infer -d '{{\"inputs\": [...]}}'");
    println!(
        "  lineage          capstan --home {home_s} models lineage {model} {}",
        promoted.as_deref().unwrap_or("1")
    );
    println!("  drift (HTML)     {}", report.display());
    println!(
        "  monitors         capstan --home {home_s} monitors list; capstan --home {home_s} monitors alerts"
    );
    println!("  metrics          curl -s {url}/metrics");
    println!(
        "  compare (HTML)   capstan --home {home_s} runs compare {} --html compare.html",
        summary
            .iter()
            .map(|s| s.0.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    if no_serve {
        server.abort();
        return Ok(());
    }
    println!("\nServing at {url} — Ctrl-C to stop.");
    match server.await {
        Ok(r) => r,
        Err(e) => Err(Error::Other(format!("server task failed: {e}"))),
    }
}

/// Step 4: 80 requests (the second half with `bmi` shifted by +8), their labels, a monitor with a
/// drift / RMSE / latency check evaluated now, and the HTML drift report of the served inputs.
async fn monitor_step(
    home: &Path,
    c: &Client,
    model: &str,
    data: &learn::Dataset,
) -> Result<std::path::PathBuf, Error> {
    let dir = home.join("reports");
    std::fs::create_dir_all(&dir)?;
    let reference = dir.join("diabetes_reference.csv");
    let mut csv = data.features.join(",") + "\n";
    for row in &data.x {
        let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        csv += &(cells.join(",") + "\n");
    }
    std::fs::write(&reference, &csv)?;
    let bmi = data.features.iter().position(|f| f == "bmi");
    let mut served = data.features.join(",") + "\n";
    for i in 0..80 {
        let mut row = data.x[i * 5 % data.x.len()].clone();
        if i >= 40
            && let Some(b) = bmi
        {
            row[b] += 8.0;
        }
        served += &(row
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(",")
            + "\n");
        let id = format!("demo-{i}");
        c.post(
            &format!("/v2/models/{model}/infer"),
            &json!({"id": id, "inputs": [{"name": "rows", "shape": [1, row.len()], "datatype": "FP64", "data": row}]}),
        )
        .await?;
        let label: f64 = data.y[i * 5 % data.x.len()].parse().unwrap_or(f64::NAN);
        c.post(
            &format!("/v2/models/{model}/feedback"),
            &json!({"id": id, "label": label}),
        )
        .await?;
    }
    let spec = json!({
        "name": format!("{model}-health"),
        "model": model,
        "window_seconds": 3600,
        "interval_seconds": 60,
        "reference": reference.to_string_lossy(),
        "checks": [
            {"check": "drift", "columns": data.features, "drift_share": 0.1},
            {"check": "rmse_above", "value": 70.0},
            {"check": "latency_p99_above_ms", "value": 50.0}
        ]
    });
    c.post("/api/2.0/capstan/monitors", &spec).await?;
    let out = c
        .post(
            &format!("/api/2.0/capstan/monitors/{model}-health/evaluate"),
            &json!({}),
        )
        .await?;
    let rows: Vec<Vec<String>> = out["evaluation"]["results"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    vec![
                        r["check"].as_str().unwrap_or("?").to_owned(),
                        match r["failing"].as_bool() {
                            Some(true) => "FAILING".into(),
                            Some(false) => "ok".into(),
                            None => "no verdict".into(),
                        },
                        r["message"].as_str().unwrap_or("").to_owned(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    print!(
        "{}",
        crate::report::table(&["check", "state", "observed"], &rows)
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    );
    println!(
        "  {} alert(s) raised",
        out["alerts"].as_array().map_or(0, Vec::len)
    );
    // The drift report a person reads: reference vs what was served.
    let r = data::frame::parse_csv_frame(&csv).map_err(Error::Other)?;
    let cur = data::frame::parse_csv_frame(&served).map_err(Error::Other)?;
    let drift = monitor::drift(
        &r,
        &cur,
        &monitor::DriftOptions {
            drift_share: 0.1,
            ..monitor::DriftOptions::default()
        },
    );
    let html = dir.join("drift.html");
    crate::drift_cmd::write_atomic(
        &html,
        monitor::html::render(&drift, "Diabetes model: served inputs vs training data").as_bytes(),
    )?;
    Ok(html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_descent_learns_diabetes() {
        let d = diabetes().expect("data");
        assert_eq!((d.x.len(), d.features.len()), (442, 10));
        let o = learn::TrainOptions {
            learning_rate: 0.05,
            epochs: 300,
            seed: 42,
            ..Default::default()
        };
        let fit = learn::train_linear_regression(&d, &o, |_| {}).expect("fit");
        let first = fit.history[0].2;
        let last = fit.history[299].2;
        // The target's std is about 77; a linear model reaches a test RMSE in the 50s.
        assert!(last < 62.0 && last > 45.0, "test rmse {last}");
        assert!(last < first * 0.5, "{first} -> {last}");
        let again = learn::train_linear_regression(&d, &o, |_| {}).expect("fit");
        assert_eq!(again.package, fit.package, "same seed, same model");
    }
}
