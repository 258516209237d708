//! The later steps of `capstan demo`: an A/B test of the champion against a challenger with real
//! statistics, and the retraining loop on bike-sharing data replayed in time order — a model
//! trained on winter serves spring, its monitor fires, the alert queues a retraining that a
//! worker (here, in-process) runs, the candidate beats the champion and is promoted while
//! requests keep flowing.

use crate::client::Client;
use crate::platform::{Error, Platform};
use crate::progress::Progress;
use serde_json::{Value, json};
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub(crate) const BIKES: &str = include_str!("../../../data/bike_sharing_hourly.csv");
const BIKE_MODEL: &str = "bike-demand";

/// One line of the demo's closing summary: step, what happened, the numbers.
pub type Line = (String, String, String);

fn indent(table: &str) -> String {
    table.lines().map(|l| format!("  {l}\n")).collect()
}

/// Step 5: `champion-vs-v1` splits traffic 50/50 between the champion and version 1; every row of
/// the data is sent once, whether the prediction was within ±50 of the truth fed back as the
/// outcome (higher is better, as the deployment's statistics read it), and the statistics say
/// whether the difference is real.
pub async fn ab_step(c: &Client, model: &str, data: &learn::Dataset) -> Result<Line, Error> {
    c.post(
        "/api/2.0/capstan/deployments",
        &json!({"name": "champion-vs-v1", "mode": "split", "variants": [
            {"name": "champion", "model": model, "alias": "champion", "weight": 50},
            {"name": "challenger", "model": model, "version": 1, "weight": 50}]}),
    )
    .await?;
    let mut bar = Progress::new("A/B traffic", data.x.len() as u64);
    for (i, row) in data.x.iter().enumerate() {
        let out = c
            .post(
                "/deployments/champion-vs-v1/infer",
                &json!({"id": format!("ab-{i}"), "inputs": [{"name": "rows", "shape": [1, row.len()], "datatype": "FP64", "data": row}]}),
            )
            .await?;
        let predicted = out["outputs"][0]["data"][0].as_f64().unwrap_or(f64::NAN);
        let actual: f64 = data.y[i].parse().unwrap_or(f64::NAN);
        c.post(
            "/deployments/champion-vs-v1/feedback",
            &json!({"request_id": format!("ab-{i}"), "outcome": f64::from(u8::from((predicted - actual).abs() <= 50.0))}),
        )
        .await?;
        bar.inc(1);
    }
    bar.finish();
    let stats = c.get("/deployments/champion-vs-v1/stats", &[]).await?;
    let rows: Vec<Vec<String>> = stats["variants"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| {
                    vec![
                        v["name"].as_str().unwrap_or("?").to_owned(),
                        v["requests"].to_string(),
                        format!("{:.3}", v["outcome_mean"].as_f64().unwrap_or(f64::NAN)),
                        format!("{:.3}", v["latency_p99_ms"].as_f64().unwrap_or(f64::NAN)),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    print!(
        "{}",
        indent(&crate::report::table(
            &["variant", "requests", "share within ±50", "p99 ms"],
            &rows
        ))
    );
    let cmp = &stats["comparisons"][0];
    let verdict = format!(
        "challenger − champion share within ±50: {:+.3} (95% CI {:.3} … {:.3}), p = {:.3}, always-valid p = {:.3}: {}",
        cmp["difference"].as_f64().unwrap_or(f64::NAN),
        cmp["ci95"][0].as_f64().unwrap_or(f64::NAN),
        cmp["ci95"][1].as_f64().unwrap_or(f64::NAN),
        cmp["p_value"].as_f64().unwrap_or(f64::NAN),
        cmp["always_valid_p"].as_f64().unwrap_or(f64::NAN),
        cmp["verdict"].as_str().unwrap_or("?")
    );
    println!("  {verdict}");
    Ok((
        "A/B test".into(),
        format!("{} requests split champion / v1", data.x.len()),
        verdict,
    ))
}

/// The data's `6am` / `12pm` hours as 0–23.
pub(crate) fn hour24(h: &str) -> u32 {
    let n: u32 = h
        .trim_end_matches("am")
        .trim_end_matches("pm")
        .parse()
        .unwrap_or(0);
    match (n, h.ends_with("pm")) {
        (12, false) => 0,
        (12, true) => 12,
        (n, true) => n + 12,
        (n, false) => n,
    }
}

/// The bike rows sorted by day, then hour.
pub(crate) fn bike_rows() -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = BIKES.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::to_owned)
        .collect();
    let hour = hour24;
    let mut rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    rows.sort_by(|a, b| (&a[0], hour(&a[2])).cmp(&(&b[0], hour(&b[2]))));
    (header, rows)
}

/// Rows as the model's inputs: numbers by name, `column=value` one-hot from text.
fn encode(inputs: &[String], header: &[String], rows: &[&Vec<String>]) -> Vec<f64> {
    let col = |name: &str| header.iter().position(|h| h == name);
    let mut out = Vec::with_capacity(rows.len() * inputs.len());
    for r in rows {
        for input in inputs {
            let v = match (col(input), input.split_once('=')) {
                (Some(i), _) => r[i].parse().unwrap_or(f64::NAN),
                (None, Some((c, v))) => f64::from(u8::from(col(c).is_some_and(|i| r[i] == v))),
                (None, None) => f64::NAN,
            };
            out.push(v);
        }
    }
    out
}

fn body(id: &str, inputs: &[String], header: &[String], rows: &[&Vec<String>]) -> Value {
    json!({"id": id, "inputs": [{"name": "rows", "shape": [rows.len(), inputs.len()], "datatype": "FP64", "data": encode(inputs, header, rows)}]})
}

fn rmse(pred: &Value, rows: &[&Vec<String>], target: usize) -> f64 {
    let p: Vec<f64> = pred["outputs"][0]["data"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let se: f64 = p
        .iter()
        .zip(rows)
        .map(|(p, r)| (p - r[target].parse::<f64>().unwrap_or(f64::NAN)).powi(2))
        .sum();
    (se / p.len().max(1) as f64).sqrt()
}

fn write_rows(f: &mut std::fs::File, rows: &[&Vec<String>]) -> Result<(), Error> {
    for r in rows {
        writeln!(f, "{}", r.join(","))?;
    }
    Ok(())
}

/// Step 6: the retraining loop on bike-sharing hours.
pub async fn retrain_step(
    home: &Path,
    config: &crate::config::Config,
    c: &Client,
    url: &str,
) -> Result<Vec<Line>, Error> {
    let p = Platform::open(home, config).await?;
    let dir = home.join("bikes");
    std::fs::create_dir_all(&dir)?;
    let (header, rows) = bike_rows();
    let target = header.iter().position(|h| h == "cnt").unwrap_or(0);
    let between = |from: &str, to: &str| -> Vec<&Vec<String>> {
        rows.iter()
            .filter(|r| r[0].as_str() >= from && r[0].as_str() <= to)
            .collect()
    };
    let labelled = dir.join("labelled.csv");
    let winter = between("2011-01-01", "2011-03-31");
    for path in [&labelled, &dir.join("reference.csv")] {
        let mut f = std::fs::File::create(path)?;
        writeln!(f, "{}", header.join(","))?;
        write_rows(&mut f, &winter)?;
    }
    println!(
        "  labelled data: {} ({} hours of January–March 2011), md5 {}",
        labelled.display(),
        winter.len(),
        data::md5_file(&labelled)?
    );
    if p.registry.get_model(BIKE_MODEL).await.is_err() {
        p.registry
            .create_model(
                BIKE_MODEL,
                "hourly bike rentals, gradient-boosted trees",
                &[],
            )
            .await?;
    }
    // Model tests every candidate must pass before it may replace the champion.
    let tests = dir.join("model-tests.yaml");
    std::fs::write(
        &tests,
        "name: bike_model\ntarget: cnt\ntests:\n  - {test: metric, metric: rmse, max: 150}\n  - {test: metric, metric: rmse, max: 200, slice: {column: workingday, equals: 'Yes'}}\n  - {test: beats_champion, metric: rmse, margin: 0.0}\n",
    )?;
    let policy = format!(
        "data: {}\ntarget: cnt\ntime_column: dteday\ndrop: [casual, registered]\nalgorithm: gbm\nrounds: 100\nwindow: {{kind: sliding, days: 60}}\nevaluation_days: 14\nmetric: rmse\nmin_improvement: 0.05\ntests: {}\n",
        labelled.display(),
        tests.display()
    );
    crate::retrain::set_policy(&p, BIKE_MODEL, &policy).await?;
    // The first model is a retraining with no champion to beat.
    let first = crate::retrain::run_now(&p, BIKE_MODEL, "first model", false).await?;
    println!(
        "  {BIKE_MODEL} v{} trained on winter ({}): champion",
        first["candidate_version"],
        first["reason"].as_str().unwrap_or("")
    );
    let meta = c.get(&format!("/v2/models/{BIKE_MODEL}"), &[]).await?;
    let inputs: Vec<String> = meta["inputs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    c.post(
        "/api/2.0/capstan/monitors",
        &json!({"name": "bike-health", "model": BIKE_MODEL, "window_seconds": 86400, "interval_seconds": 86400,
            "reference": dir.join("reference.csv").to_string_lossy(),
            "checks": [{"check": "drift", "columns": ["temp", "atemp", "hum", "windspeed"], "drift_share": 0.5},
                       {"check": "rmse_above", "value": 120.0}],
            "on_alert": {"kind": "retrain", "payload": {"model": BIKE_MODEL}}}),
    )
    .await?;

    // Spring arrives day by day: served, labelled, appended to the labelled data.
    let mut days: Vec<&str> = between("2011-04-01", "2011-06-30")
        .iter()
        .map(|r| r[0].as_str())
        .collect();
    days.dedup();
    let mut bar = Progress::new("replay Apr–Jun 2011", days.len() as u64);
    let mut f = std::fs::OpenOptions::new().append(true).open(&labelled)?;
    let (mut se, mut n) = (0.0, 0usize);
    for day in &days {
        let batch = between(day, day);
        let id = format!("bikes-{day}");
        let out = c
            .post(
                &format!("/v2/models/{BIKE_MODEL}/infer"),
                &body(&id, &inputs, &header, &batch),
            )
            .await?;
        se += rmse(&out, &batch, target).powi(2) * batch.len() as f64;
        n += batch.len();
        let labels: Vec<f64> = batch
            .iter()
            .map(|r| r[target].parse().unwrap_or(f64::NAN))
            .collect();
        c.post(
            &format!("/v2/models/{BIKE_MODEL}/feedback"),
            &json!({"id": id, "labels": labels}),
        )
        .await?;
        write_rows(&mut f, &batch)?;
        bar.inc(1);
    }
    bar.finish();
    let spring_rmse = (se / n.max(1) as f64).sqrt();
    let eval = c
        .post("/api/2.0/capstan/monitors/bike-health/evaluate", &json!({}))
        .await?;
    let failing: Vec<String> = eval["evaluation"]["results"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|r| r["failing"].as_bool() == Some(true))
                .map(|r| r["message"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default();
    println!(
        "  the champion's RMSE on spring: {spring_rmse:.1}; monitor bike-health: {}",
        if failing.is_empty() {
            "ok".to_owned()
        } else {
            format!("FAILING — {}", failing.join("; "))
        }
    );

    // The alert queued a retraining; a worker runs it while traffic keeps flowing.
    use pipeline::jobs::JobQueue;
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        let probe = body("probe", &inputs, &header, &[&rows[rows.len() / 2]]);
        let url = format!("{url}/v2/models/{BIKE_MODEL}/infer");
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                let ok = matches!(http.post(&url).json(&probe).send().await, Ok(r) if r.status().is_success());
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let owner = format!("demo-worker-{}", std::process::id());
    let job =
        p.db.lease(&owner, &["retrain".to_owned()], 600_000, base::now_millis())
            .await
            .map_err(Error::Other)?;
    let result = match job {
        Some(job) => {
            let why = crate::retrain::trigger_of(&job.payload);
            println!("  job {} (retrain) started: {why}", job.id);
            let r = crate::retrain::retrain(&p, BIKE_MODEL, job.id, &why, false).await;
            match r {
                Ok(v) => {
                    p.db.complete(job.id, &owner, v.clone(), base::now_millis())
                        .await
                        .map_err(Error::Other)?;
                    v
                }
                Err(e) => {
                    p.db.fail(job.id, &owner, &e.to_string(), base::now_millis())
                        .await
                        .map_err(Error::Other)?;
                    return Err(e);
                }
            }
        }
        None => crate::retrain::run_now(&p, BIKE_MODEL, "spring data", false).await?,
    };
    println!(
        "  {}: {}{}",
        result["outcome"].as_str().unwrap_or("?"),
        result["reason"].as_str().unwrap_or(""),
        result["tests"]
            .as_str()
            .map_or(String::new(), |t| format!("; {t}"))
    );
    // Servers follow the alias within their poll interval (0.5 s).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    load.await
        .map_err(|e| Error::Other(format!("load task: {e}")))?;
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("  requests during the retraining and promotion: {sent}, failed: {failed}");

    // The weeks that follow, which neither model has seen.
    let old = result["champion_version"].as_i64().unwrap_or(1);
    let mut table = Vec::new();
    let (mut old_se, mut new_se, mut m) = (0.0, 0.0, 0usize);
    for (from, to) in [
        ("2011-07-01", "2011-07-14"),
        ("2011-07-15", "2011-07-28"),
        ("2011-07-29", "2011-08-11"),
    ] {
        let weeks = between(from, to);
        let b = body("after", &inputs, &header, &weeks);
        let a = c
            .post(&format!("/v2/models/{BIKE_MODEL}/versions/{old}/infer"), &b)
            .await?;
        let now = c
            .post(&format!("/v2/models/{BIKE_MODEL}/infer"), &b)
            .await?;
        let (ra, rb) = (rmse(&a, &weeks, target), rmse(&now, &weeks, target));
        old_se += ra * ra * weeks.len() as f64;
        new_se += rb * rb * weeks.len() as f64;
        m += weeks.len();
        table.push(vec![
            format!("{from} … {to}"),
            weeks.len().to_string(),
            format!("{ra:.1}"),
            format!("{rb:.1}"),
            now["model_version"].as_str().unwrap_or("?").to_owned(),
        ]);
    }
    print!(
        "{}",
        indent(&crate::report::table(
            &[
                "following weeks",
                "hours",
                &format!("v{old} RMSE"),
                "champion RMSE",
                "champion"
            ],
            &table
        ))
    );
    let (before, after) = ((old_se / m as f64).sqrt(), (new_se / m as f64).sqrt());
    Ok(vec![
        (
            "monitoring".into(),
            "bike-health on spring traffic".into(),
            if failing.is_empty() {
                "no alert".into()
            } else {
                format!("{} check(s) failing → retrain job queued", failing.len())
            },
        ),
        (
            "retraining".into(),
            format!(
                "v{} vs v{old} on the newest 14 days",
                result["candidate_version"]
            ),
            format!(
                "{} ({:.1} vs {:.1} RMSE)",
                result["outcome"].as_str().unwrap_or("?"),
                result["candidate_score"].as_f64().unwrap_or(f64::NAN),
                result["champion_score"].as_f64().unwrap_or(f64::NAN)
            ),
        ),
        (
            "zero downtime".into(),
            format!("{sent} requests across the promotion"),
            format!("{failed} failed"),
        ),
        (
            "after".into(),
            "RMSE on the next 6 weeks".into(),
            format!("v{old} {before:.1} → champion {after:.1}"),
        ),
    ])
}

/// The Rust book's chapters the RAG step reads (from this toolchain's docs), or Capstan's own
/// README and architecture when the docs component is not installed.
fn documents() -> (String, Vec<Value>) {
    const CHAPTERS: &[&str] = &[
        "ch04-01-what-is-ownership.html",
        "ch04-02-references-and-borrowing.html",
        "ch04-03-slices.html",
        "ch08-01-vectors.html",
        "ch08-02-strings.html",
        "ch08-03-hash-maps.html",
        "ch09-02-recoverable-errors-with-result.html",
        "ch10-02-traits.html",
    ];
    let sysroot = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if let Some(root) = sysroot {
        let book = Path::new(&root).join("share/doc/rust/html/book");
        let docs: Vec<Value> = CHAPTERS
            .iter()
            .filter_map(|c| {
                let content = std::fs::read_to_string(book.join(c)).ok()?;
                Some(json!({"source": c, "content": content, "format": "html"}))
            })
            .collect();
        if !docs.is_empty() {
            return (format!("the Rust book ({})", book.display()), docs);
        }
    }
    (
        "Capstan's README and ARCHITECTURE (no Rust docs installed)".into(),
        vec![
            json!({"source": "README.md", "content": include_str!("../../../README.md"), "format": "markdown"}),
            json!({"source": "ARCHITECTURE.md", "content": include_str!("../../../ARCHITECTURE.md"), "format": "markdown"}),
        ],
    )
}

/// Step 7: RAG over the Rust book through the gateway with a versioned prompt, answered by
/// SmolLM2 in-process; the same questions again (exact cache) and reworded (semantic cache);
/// tokens, cost and traces of it all.
pub async fn llm_step(
    home: &Path,
    config: &crate::config::Config,
    c: &Client,
    url: &str,
) -> Result<Vec<Line>, Error> {
    let (what, docs) = documents();
    let from_book = what.starts_with("the Rust book");
    let n_docs = docs.len();
    let ingested = c
        .post(
            "/rag/rust-book/ingest",
            &json!({"documents": docs, "chunk_tokens": 200}),
        )
        .await?;
    let chunks = ingested["result"]["chunks_added"].as_u64().unwrap_or(0);
    println!("  ingested {n_docs} documents of {what}: {chunks} chunks embedded with MiniLM");
    for (template, message) in [
        (
            "Context:\n{{ context }}\n\nQuestion: {{ question }}",
            "plain context and question",
        ),
        (
            "Answer in one short sentence, using only the context.\n\nContext:\n{{ context }}\n\nQuestion: {{ question }}\nAnswer:",
            "one sentence, from the context only",
        ),
    ] {
        c.post(
            "/api/2.0/capstan/prompts",
            &json!({"name": "rust-qa", "template": {"messages": [{"role": "user", "content": template}]},
                "params": {"temperature": 0}, "commit_message": message}),
        )
        .await?;
    }
    let http = reqwest::Client::new();
    let label = http
        .put(format!(
            "{url}/api/2.0/capstan/prompts/rust-qa/labels/production"
        ))
        .json(&json!({"version": 2}))
        .send()
        .await
        .map_err(|e| Error::Other(e.to_string()))?;
    if !label.status().is_success() {
        return Err(Error::Other(format!(
            "labelling rust-qa: {}",
            label.text().await.unwrap_or_default()
        )));
    }
    let questions = [
        "What does the borrow checker prevent?",
        "How do you get an element of a vector without panicking?",
        "What does the ? operator do with an Err value?",
        "What is a string slice?",
    ];
    let rounds: [(&str, Vec<&str>); 3] = [
        ("first asked", questions.to_vec()),
        ("asked again", questions.to_vec()),
        (
            "reworded",
            vec![
                "What does the borrow checker stop?",
                "How can I get an element from a vector without a panic?",
            ],
        ),
    ];
    let mut rows = Vec::new();
    let (mut hits, mut semantic, mut calls) = (0, 0, 0);
    let mut bar = Progress::new(
        "RAG questions",
        rounds.iter().map(|r| r.1.len() as u64).sum(),
    );
    for (round, qs) in &rounds {
        for q in qs {
            let found = c
                .post(
                    "/rag/rust-book/query",
                    &json!({"query": q, "top_k": 3, "context_tokens": 400}),
                )
                .await?;
            let context = found["result"]["context"].as_str().unwrap_or("").to_owned();
            let source = found["result"]["citations"][0]["source"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let r = http
                .post(format!("{url}/v1/chat/completions"))
                .json(&json!({"model": "smollm2", "prompt": "rust-qa@production",
                    "variables": {"question": q, "context": context},
                    "max_tokens": 40, "temperature": 0, "user": "demo"}))
                .send()
                .await
                .map_err(|e| Error::Other(e.to_string()))?;
            let cache = r
                .headers()
                .get("x-capstan-cache")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let ok = r.status().is_success();
            let v: Value = r.json().await.unwrap_or_default();
            if !ok {
                return Err(Error::Other(format!("the gateway refused: {v}")));
            }
            calls += 1;
            hits += usize::from(cache == "hit");
            semantic += usize::from(cache == "semantic-hit");
            let answer: String = v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let short: String = answer.chars().take(70).collect();
            rows.push(vec![
                round.to_string(),
                q.to_string(),
                source,
                cache,
                if short.len() < answer.len() {
                    format!("{short}…")
                } else {
                    short
                },
            ]);
            bar.inc(1);
        }
    }
    bar.finish();
    print!(
        "{}",
        indent(&crate::report::table(
            &[
                "",
                "question",
                "top source",
                "cache",
                "answer (SmolLM2-135M)"
            ],
            &rows
        ))
    );
    let usage = c
        .get("/api/2.0/capstan/gateway/usage/summary", &[("by", "model")])
        .await?;
    let (mut prompt_tokens, mut completion_tokens, mut cost) = (0u64, 0u64, 0.0f64);
    for g in usage["groups"].as_array().into_iter().flatten() {
        prompt_tokens += g["prompt_tokens"].as_u64().unwrap_or(0);
        completion_tokens += g["completion_tokens"].as_u64().unwrap_or(0);
        cost += g["cost_usd"].as_f64().unwrap_or(0.0);
    }
    // Spans are written off the request path: give the last ones a moment.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let traces = c
        .get("/api/2.0/capstan/traces", &[("limit", "1000")])
        .await?;
    let n_traces = traces["traces"].as_array().map_or(0, Vec::len);
    println!(
        "  {calls} gateway calls: {prompt_tokens} prompt + {completion_tokens} completion tokens, ${cost:.4} (the local model is free); {n_traces} traces"
    );
    let mut lines = Vec::new();
    if from_book {
        lines.push(evaluate(home, config, c, url).await?);
    }
    let mut out = vec![
        (
            "RAG".into(),
            format!("{n_docs} documents, {chunks} chunks, prompt rust-qa@production (v2)"),
            format!("{} questions answered with sources", questions.len()),
        ),
        (
            "LLM gateway".into(),
            format!("{calls} calls to smollm2"),
            format!(
                "{prompt_tokens} + {completion_tokens} tokens, ${cost:.4}; {hits} exact and {semantic} semantic cache hits"
            ),
        ),
        (
            "observability".into(),
            "every RAG query and gateway call traced".into(),
            format!("{n_traces} traces"),
        ),
    ];
    out.extend(lines);
    Ok(out)
}

/// The questions with reference answers and the chapter that answers each: the evaluation
/// harness scores the answers (token F1 against the reference), the retrieval (did the
/// answering chapter come back) and faithfulness (is the answer in the retrieved context).
const CASES: &[(&str, &str, &str)] = &[
    (
        "What does the borrow checker prevent?",
        "dangling references and data races",
        "ch04-02-references-and-borrowing.html",
    ),
    (
        "How do you get an element of a vector without panicking?",
        "use the get method, which returns an Option",
        "ch08-01-vectors.html",
    ),
    (
        "What does the ? operator do with an Err value?",
        "it returns the error early from the function",
        "ch09-02-recoverable-errors-with-result.html",
    ),
    (
        "What is a string slice?",
        "a reference to part of a String",
        "ch04-03-slices.html",
    ),
];

async fn evaluate(
    home: &Path,
    config: &crate::config::Config,
    c: &Client,
    url: &str,
) -> Result<Line, Error> {
    let cases = home.join("rust-book-cases.jsonl");
    let mut f = std::fs::File::create(&cases)?;
    for (i, (q, a, src)) in CASES.iter().enumerate() {
        writeln!(
            f,
            "{}",
            json!({"id": format!("q{}", i + 1), "inputs": {"question": q}, "expected": [a], "relevant_sources": [src]})
        )?;
    }
    drop(f);
    let report = home.join("reports/rust-book-eval.html");
    crate::eval_cmd::run(
        home,
        config,
        crate::eval_cmd::EvalCmd::Run {
            dataset: cases.clone(),
            model: "smollm2".into(),
            prompt: Some("rust-qa@production".into()),
            collection: Some("rust-book".into()),
            top_k: 3,
            evaluators: [
                "token_f1",
                "context_recall",
                "context_precision",
                "faithfulness",
            ]
            .map(str::to_owned)
            .to_vec(),
            judge_model: None,
            concurrency: 2,
            max_tokens: 40,
            limit: None,
            experiment: "evaluations".into(),
            fail_under: Vec::new(),
            html: Some(report.clone()),
            server: Some(url.to_owned()),
        },
    )
    .await?;
    let exp = c
        .get(
            "/api/2.0/mlflow/experiments/get-by-name",
            &[("experiment_name", "evaluations")],
        )
        .await?;
    let runs = c
        .post(
            "/api/2.0/mlflow/runs/search",
            &json!({"experiment_ids": [exp["experiment"]["experiment_id"]], "order_by": ["attributes.start_time DESC"], "max_results": 1}),
        )
        .await?;
    let metric = |k: &str| {
        runs["runs"][0]["data"]["metrics"]
            .as_array()
            .and_then(|m| m.iter().find(|x| x["key"] == k))
            .and_then(|x| x["value"].as_f64())
            .unwrap_or(f64::NAN)
    };
    Ok((
        "evaluation".into(),
        format!("{} cases, report {}", CASES.len(), report.display()),
        format!(
            "token F1 {:.2}, context recall {:.2}, faithfulness {:.2}",
            metric("token_f1"),
            metric("context_recall"),
            metric("faithfulness")
        ),
    ))
}
