//! The retraining loop on real data, through the real binary: a model trained on the first
//! quarter of 2011's bike rentals is served while spring and summer arrive in time order; its
//! monitor sees the drift and the error; the alert queues one retraining (not one per
//! evaluation); a worker retrains on recent data, the candidate beats the champion on the newest
//! weeks and is promoted while requests keep flowing (none fails); on the weeks that follow it
//! is better than the model it replaced. Then the faults: a retraining that cannot beat the
//! champion is rejected and changes nothing, and a worker killed between registering the
//! candidate and finishing leaves exactly one candidate version after the job resumes.

use crate::binary::{capstan, cli, cli_ok, start};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const BIKES: &str = include_str!("../../../../data/bike_sharing_hourly.csv");

/// The rows sorted by time (day, then hour of day).
fn rows_in_time_order() -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = BIKES.lines();
    let header: Vec<String> = lines
        .next()
        .expect("header")
        .split(',')
        .map(str::to_owned)
        .collect();
    let hour = |h: &str| -> u32 {
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
    };
    let mut rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    rows.sort_by(|a, b| (&a[0], hour(&a[2])).cmp(&(&b[0], hour(&b[2]))));
    (header, rows)
}

fn write_csv(path: &Path, header: &[String], rows: &[&Vec<String>]) {
    let mut f = std::fs::File::create(path).expect("csv");
    writeln!(f, "{}", header.join(",")).expect("write");
    for r in rows {
        writeln!(f, "{}", r.join(",")).expect("write");
    }
}

/// Encodes rows for the model's inputs: numbers by name, `column=value` one-hot from text.
fn encode(inputs: &[String], header: &[String], rows: &[&Vec<String>]) -> Vec<f64> {
    let col = |name: &str| header.iter().position(|h| h == name).expect("column");
    let mut out = Vec::with_capacity(rows.len() * inputs.len());
    for r in rows {
        for input in inputs {
            out.push(match input.split_once('=') {
                Some((c, v)) if !header.contains(input) => f64::from(u8::from(r[col(c)] == v)),
                _ => r[col(input)].parse().expect("number"),
            });
        }
    }
    out
}

async fn infer(
    http: &reqwest::Client,
    url: &str,
    inputs: &[String],
    header: &[String],
    rows: &[&Vec<String>],
) -> (String, String, Vec<f64>) {
    let r = http
        .post(url)
        .json(&json!({"id": format!("{}-{}", rows[0][0], rows.len()), "inputs": [{"name": "rows", "shape": [rows.len(), inputs.len()], "datatype": "FP64", "data": encode(inputs, header, rows)}]}))
        .send()
        .await
        .expect("infer");
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.expect("json");
    let preds = v["outputs"][0]["data"]
        .as_array()
        .expect("outputs")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect();
    (
        v["id"].as_str().unwrap_or_default().to_owned(),
        v["model_version"].as_str().unwrap_or_default().to_owned(),
        preds,
    )
}

fn rmse(pred: &[f64], rows: &[&Vec<String>], target: usize) -> f64 {
    let se: f64 = pred
        .iter()
        .zip(rows)
        .map(|(p, r)| (p - r[target].parse::<f64>().expect("cnt")).powi(2))
        .sum();
    (se / pred.len() as f64).sqrt()
}

/// The rollout's deployment `name` is gone: the check that decided closed it.
async fn assert_closed(url: &str, name: &str) {
    let r = reqwest::get(format!("{url}/api/2.0/capstan/deployments/{name}"))
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 404, "the deployment {name} is closed");
}

/// Whether `capstan models show`'s table gives `version` the alias `alias`.
fn holds(models: &str, version: char, alias: &str) -> bool {
    models
        .lines()
        .any(|l| l.trim_start().starts_with(version) && l.contains(alias))
}

pub(crate) fn versions(home: &Path) -> usize {
    cli_ok(home, &["models", "show", "bikes"])
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drift_triggers_a_retraining_that_is_promoted_without_a_failed_request() {
    let home = tempfile::tempdir().expect("home");
    let h = home.path();
    let (header, rows) = rows_in_time_order();
    let target = header.iter().position(|c| c == "cnt").expect("cnt");
    let in_range = |from: &str, to: &str| -> Vec<&Vec<String>> {
        rows.iter()
            .filter(|r| r[0].as_str() >= from && r[0].as_str() <= to)
            .collect()
    };
    let labelled = h.join("labelled.csv");
    let q1 = in_range("2011-01-01", "2011-03-31");
    write_csv(&labelled, &header, &q1);
    write_csv(&h.join("reference.csv"), &header, &q1);

    // The champion: gradient-boosted trees on the first quarter.
    let out = cli_ok(
        h,
        &[
            "train",
            "--data",
            labelled.to_str().expect("utf8"),
            "--target",
            "cnt",
            "--algorithm",
            "gbm",
            "--drop",
            "dteday,casual,registered",
            "--rounds",
            "100",
            "--register",
            "bikes",
        ],
    );
    assert!(out.contains("registered bikes version 1"), "{out}");
    cli_ok(h, &["models", "promote", "bikes", "1"]);
    std::fs::write(
        h.join("policy.yaml"),
        format!(
            "data: {}\ntarget: cnt\ntime_column: dteday\ndrop: [casual, registered]\nalgorithm: gbm\nrounds: 100\nwindow: {{kind: sliding, days: 60}}\nevaluation_days: 14\nmetric: rmse\nmin_improvement: 0.05\nmin_new_rows: 24\n",
            labelled.display()
        ),
    )
    .expect("policy");
    let out = cli_ok(
        h,
        &[
            "retrain",
            "policy",
            "bikes",
            h.join("policy.yaml").to_str().expect("utf8"),
        ],
    );
    assert!(out.contains("judged on the last 14 days by rmse"), "{out}");
    let (code, _, err) = cli(h, &["retrain", "policy", "bikes", "/nonexistent.yaml"]);
    assert_eq!(code, Some(1), "a missing policy file is an error");
    assert!(!err.is_empty());
    std::fs::write(
        h.join("bad.yaml"),
        format!(
            "data: {}\ntarget: rides\ntime_column: dteday\n",
            labelled.display()
        ),
    )
    .expect("bad policy");
    let (code, _, err) = cli(
        h,
        &[
            "retrain",
            "policy",
            "bikes",
            h.join("bad.yaml").to_str().expect("utf8"),
        ],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("no column `rides`"), "{err}");
    let (code, _, err) = cli(h, &["retrain", "run", "nomodel"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("nomodel"), "{err}");
    std::fs::write(
        h.join("monitor.yaml"),
        format!(
            "name: bikes-health\nmodel: bikes\nwindow_seconds: 86400\ninterval_seconds: 86400\nreference: {}\nchecks:\n  - {{check: drift, columns: [temp, atemp, hum, windspeed], drift_share: 0.5}}\n  - {{check: rmse_above, value: 120}}\non_alert: {{kind: retrain, payload: {{model: bikes}}}}\n",
            h.join("reference.csv").display()
        ),
    )
    .expect("monitor");
    cli_ok(
        h,
        &[
            "monitors",
            "create",
            h.join("monitor.yaml").to_str().expect("utf8"),
        ],
    );
    std::fs::write(h.join("capstan.toml"), "[serving]\nlog_rotate_secs = 1\n").expect("toml");

    let server = start(h, &[]);
    let http = reqwest::Client::new();
    let meta: Value = http
        .get(format!("{}/v2/models/bikes", server.url))
        .send()
        .await
        .expect("meta")
        .json()
        .await
        .expect("json");
    let inputs: Vec<String> = meta["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|i| i["name"].as_str().expect("name").to_owned())
        .collect();
    assert!(
        inputs.contains(&"hr=6am".to_owned()) && inputs.contains(&"temp".to_owned()),
        "{inputs:?}"
    );
    let champion_url = format!("{}/v2/models/bikes/infer", server.url);

    // Spring and early summer arrive day by day: served, labelled, appended to the data.
    let mut spring_se = Vec::new();
    let mut days: Vec<&str> = in_range("2011-04-01", "2011-06-30")
        .iter()
        .map(|r| r[0].as_str())
        .collect();
    days.dedup();
    for day in &days {
        let batch = in_range(day, day);
        let (id, version, preds) = infer(&http, &champion_url, &inputs, &header, &batch).await;
        assert_eq!(version, "1");
        spring_se.push(rmse(&preds, &batch, target));
        let labels: Vec<f64> = batch
            .iter()
            .map(|r| r[target].parse().expect("cnt"))
            .collect();
        let r = http
            .post(format!("{}/v2/models/bikes/feedback", server.url))
            .json(&json!({"id": id, "labels": labels}))
            .send()
            .await
            .expect("feedback");
        assert_eq!(
            r.status().as_u16(),
            200,
            "{}",
            r.text().await.unwrap_or_default()
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&labelled)
            .expect("append");
        for r in &batch {
            writeln!(f, "{}", r.join(",")).expect("append");
        }
    }
    // The segments the server wrote are what the monitor reads.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;

    // The monitor fires on drift and error; a second evaluation of the same incident queues nothing new.
    let out = cli_ok(h, &["monitors", "evaluate", "bikes-health"]);
    assert!(out.contains("FAILING"), "{out}");
    let alerts = cli_ok(h, &["monitors", "alerts"]);
    assert!(
        alerts.contains("drift") && alerts.contains("rmse_above"),
        "{alerts}"
    );
    cli_ok(h, &["monitors", "evaluate", "bikes-health"]);
    let jobs = cli_ok(h, &["jobs", "list"]);
    assert_eq!(
        jobs.matches("retrain").count(),
        1,
        "one incident, one retraining: {jobs}"
    );

    // Requests keep flowing while the worker retrains and promotes.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed, on_v2) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let load = {
        let (stop, sent, failed, on_v2) =
            (stop.clone(), sent.clone(), failed.clone(), on_v2.clone());
        let (url, body) = (
            champion_url.clone(),
            json!({"inputs": [{"name": "rows", "shape": [1, inputs.len()], "datatype": "FP64", "data": encode(&inputs, &header, &[&rows[5000]])}]}),
        );
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                match http.post(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {
                        let v: Value = r.json().await.unwrap_or_default();
                        if v["model_version"] == "2" {
                            on_v2.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let out = cli_ok(h, &["worker", "--once", "--kinds", "retrain"]);
    assert!(out.contains("(retrain) succeeded"), "{out}");
    let history = cli_ok(h, &["retrain", "history", "bikes"]);
    assert!(
        history.contains("monitor bikes-health"),
        "why it started: {history}"
    );
    assert!(history.contains("promoted"), "{history}");
    let job: Value = serde_json::from_str(&cli_ok(h, &["jobs", "show", "1"])).expect("job json");
    let result = &job["result"];
    assert_eq!(result["outcome"], "promoted", "{job}");
    assert_eq!(result["candidate_version"], 2);
    let (cand, champ) = (
        result["candidate_score"].as_f64().expect("c"),
        result["champion_score"].as_f64().expect("c"),
    );
    assert!(
        cand < champ * 0.95,
        "candidate {cand} must beat champion {champ} by the 5% margin"
    );
    // Its log tells the story line by line, each line under its attempt.
    let log = cli_ok(h, &["jobs", "logs", "1"]);
    let lines: Vec<&str> = log.lines().collect();
    let expect = [
        "#0  queued (retrain)",
        "#1  attempt 1/3 leased by",
        "#1  monitor bikes-health",
        "#1  trained gbm (",
        "#1  registered bikes v2 (run ",
        "#1  promoted: ",
        "#1  finished in ",
        "#1  succeeded",
    ];
    assert_eq!(lines.len(), expect.len(), "{log}");
    for (line, start) in lines.iter().zip(expect) {
        assert!(
            line[21..].starts_with(start),
            "`{start}` expected in:\n{log}"
        );
    }
    assert!(lines[3].contains(&format!("rmse {cand:.4}")), "{log}");
    // The server follows the alias within its poll interval.
    for _ in 0..100 {
        if on_v2.load(Ordering::Relaxed) > 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load");
    assert!(
        on_v2.load(Ordering::Relaxed) > 20,
        "the new champion is served"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed across the promotion ({} sent)",
        sent.load(Ordering::Relaxed)
    );
    let models = cli_ok(h, &["models", "show", "bikes"]);
    assert!(
        models.contains("previous"),
        "the old champion keeps `previous`: {models}"
    );

    // The weeks that follow: the retrained champion against the model it replaced.
    let v1_url = format!("{}/v2/models/bikes/versions/1/infer", server.url);
    let mut table = String::from(
        "| weeks of 2011 | rows | champion v1 (Q1 data) RMSE | retrained v2 RMSE |\n|---|---:|---:|---:|\n",
    );
    let (mut wins, mut weeks) = (0, 0);
    for (from, to) in [
        ("2011-07-01", "2011-07-07"),
        ("2011-07-08", "2011-07-14"),
        ("2011-07-15", "2011-07-21"),
        ("2011-07-22", "2011-07-28"),
        ("2011-07-29", "2011-08-04"),
        ("2011-08-05", "2011-08-11"),
    ] {
        let week = in_range(from, to);
        let (_, _, old) = infer(&http, &v1_url, &inputs, &header, &week).await;
        let (_, version, new) = infer(&http, &champion_url, &inputs, &header, &week).await;
        assert_eq!(version, "2");
        let (a, b) = (rmse(&old, &week, target), rmse(&new, &week, target));
        table.push_str(&format!(
            "| {from} – {to} | {} | {a:.1} | {b:.1} |\n",
            week.len()
        ));
        weeks += 1;
        wins += usize::from(b < a);
    }
    println!("{table}");
    assert_eq!(
        wins, weeks,
        "the retrained model is better every following week:\n{table}"
    );
    assert!(!spring_se.is_empty());

    // A retraining on the same data cannot beat the champion it just produced: rejected, nothing moves.
    let out = cli_ok(h, &["retrain", "run", "bikes", "--reason", "no new data"]);
    assert!(out.contains("rejected"), "{out}");
    let champion = cli_ok(h, &["models", "show", "bikes"]);
    assert!(holds(&champion, '2', "champion"), "{champion}");

    // A worker killed between registering its candidate and finishing: the job resumes and
    // registers nothing twice.
    let before = versions(h);
    let queued = cli_ok(
        h,
        &[
            "retrain",
            "run",
            "bikes",
            "--queue",
            "--reason",
            "crash test",
        ],
    );
    let crash_job = queued.split_whitespace().nth(1).expect("job id").to_owned();
    let crashed = capstan(h)
        .args([
            "worker",
            "--once",
            "--kinds",
            "retrain",
            "--lease-secs",
            "1",
        ])
        .env("CAPSTAN_FAILPOINT", "retrain-after-register")
        .output()
        .expect("worker");
    assert!(!crashed.status.success(), "the failpoint aborts the worker");
    assert_eq!(
        versions(h),
        before + 1,
        "the candidate was registered before the crash"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let out = cli_ok(h, &["worker", "--once", "--kinds", "retrain"]);
    assert!(
        out.contains("attempt 2/3") && out.contains("succeeded"),
        "{out}"
    );
    assert_eq!(
        versions(h),
        before + 1,
        "no second candidate after the resume"
    );
    let log = cli_ok(h, &["jobs", "logs", &crash_job]);
    let registered = log.find("#1  registered bikes").expect(&log);
    let taken_over = log.find("#2  attempt 2/3 leased by").expect(&log);
    let resumed = log.find("#2  resumed: v").expect(&log);
    let done = log.find("#2  succeeded").expect(&log);
    assert!(
        registered < taken_over && taken_over < resumed && resumed < done,
        "{log}"
    );
    assert!(
        !log.contains("#1  succeeded"),
        "the crashed attempt never finished: {log}"
    );
    let history = cli_ok(h, &["retrain", "history", "bikes"]);
    assert!(history.contains("crash test"), "{history}");

    // The data gone: the retraining fails with the reason on record, and the champion stays.
    std::fs::rename(&labelled, h.join("moved.csv")).expect("move");
    let (code, _, err) = cli(h, &["retrain", "run", "bikes", "--reason", "data gone"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("labelled.csv") || err.contains("No such file"),
        "{err}"
    );
    let history = cli_ok(h, &["retrain", "history", "bikes"]);
    let line = history
        .lines()
        .find(|l| l.contains("data gone"))
        .expect("recorded");
    assert!(
        line.contains("No such file") || line.contains("labelled.csv"),
        "{history}"
    );
    let models = cli_ok(h, &["models", "show", "bikes"]);
    assert!(holds(&models, '2', "champion"), "{models}");

    // A nightly retraining asks for new data: none yet, then half a day (under the policy's 24
    // rows), then a week.
    // The failed job waits for its retry: one pending retraining per model, so asking again
    // says so; cancelled, it makes way.
    let failed_job = line.split_whitespace().next().expect("job id").to_owned();
    let (code, _, err) = cli(h, &["retrain", "run", "bikes"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!("already pending: job {failed_job}")),
        "{err}"
    );
    cli_ok(h, &["jobs", "cancel", &failed_job]);
    std::fs::rename(h.join("moved.csv"), &labelled).expect("restore");
    let out = cli_ok(h, &["retrain", "run", "bikes", "--if-new-rows"]);
    assert!(
        out.contains("skipped") && out.contains("0 labelled rows newer"),
        "{out}"
    );
    let july = in_range("2011-07-01", "2011-07-07");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&labelled)
        .expect("append");
    for r in &july[..12] {
        writeln!(f, "{}", r.join(",")).expect("append");
    }
    let out = cli_ok(h, &["retrain", "run", "bikes", "--if-new-rows"]);
    assert!(
        out.contains("skipped")
            && out.contains("12 labelled rows newer")
            && out.contains("needs 24"),
        "{out}"
    );
    for r in &july[12..] {
        writeln!(f, "{}", r.join(",")).expect("append");
    }
    drop(f);
    let out = cli_ok(h, &["retrain", "run", "bikes", "--if-new-rows"]);
    assert!(
        !out.contains("skipped") && (out.contains("promoted") || out.contains("rejected")),
        "{out}"
    );
    drop(server);
}

/// The shared start of the rollout tests: January–March 2011 trains champion v1 (100 boosted
/// trees), January–June is the labelled data, and the policy (sliding 60 days, 5 % margin, plus
/// `extra` YAML lines) is set. Returns the rows in time order.
pub(crate) fn winter_champion(h: &Path, extra: &str) -> (Vec<String>, Vec<Vec<String>>) {
    winter_champion_of(h, &["--algorithm", "gbm", "--rounds", "100"], extra)
}

/// [`winter_champion`] with the champion's algorithm given as `capstan train` arguments.
fn winter_champion_of(
    h: &Path,
    algorithm: &[&str],
    extra: &str,
) -> (Vec<String>, Vec<Vec<String>>) {
    let (header, rows) = rows_in_time_order();
    let in_range = |from: &str, to: &str| -> Vec<&Vec<String>> {
        rows.iter()
            .filter(|r| r[0].as_str() >= from && r[0].as_str() <= to)
            .collect()
    };
    let winter = h.join("winter.csv");
    write_csv(&winter, &header, &in_range("2011-01-01", "2011-03-31"));
    let labelled = h.join("labelled.csv");
    write_csv(&labelled, &header, &in_range("2011-01-01", "2011-06-30"));
    let mut train = vec![
        "train",
        "--data",
        winter.to_str().expect("utf8"),
        "--target",
        "cnt",
        "--drop",
        "dteday,casual,registered",
        "--register",
        "bikes",
    ];
    train.extend_from_slice(algorithm);
    cli_ok(h, &train);
    cli_ok(h, &["models", "promote", "bikes", "1"]);
    let policy = h.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "data: {}\ntarget: cnt\ntime_column: dteday\ndrop: [casual, registered]\nwindow: {{kind: sliding, days: 60}}\nmin_improvement: 0.05\n{extra}",
            labelled.display()
        ),
    )
    .expect("policy");
    cli_ok(
        h,
        &["retrain", "policy", "bikes", policy.to_str().expect("utf8")],
    );
    (header, rows)
}

/// A home whose policy rolls out by canary: the winter champion (v1), spring labelled, and a
/// retraining that opened `bikes-canary` (v1 vs challenger v2, half the traffic each).
fn canary_home(h: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let (header, rows) = winter_champion(
        h,
        "rounds: 100\nrollout: {canary: {start_weight: 0.5, end_weight: 0.5, ramp_seconds: 0, min_feedback: 40, check_seconds: 1}}\n",
    );
    let out = cli_ok(h, &["retrain", "run", "bikes", "--reason", "spring"]);
    assert!(
        out.contains("bikes: canary") && out.contains("alias challenger (canary)"),
        "{out}"
    );
    let models = cli_ok(h, &["models", "show", "bikes"]);
    assert!(holds(&models, '1', "champion"), "{models}");
    assert!(holds(&models, '2', "challenger"), "{models}");
    // Before any traffic the check (due a second after the retraining) waits and looks again.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = cli_ok(h, &["worker", "--once", "--kinds", "rollout-check"]);
    assert!(out.contains("(rollout-check) succeeded"), "{out}");
    let job: Value = serde_json::from_str(&cli_ok(h, &["jobs", "show", "2"])).expect("job");
    assert_eq!(job["result"]["outcome"], "waiting", "{job}");
    (header, rows)
}

/// Sends July's hours through the canary; `outcome` scores each answer (higher is better).
/// The served bike model's input names, in order (`GET /v2/models/bikes`).
async fn bike_inputs(http: &reqwest::Client, url: &str) -> Vec<String> {
    let meta: Value = http
        .get(format!("{url}/v2/models/bikes"))
        .send()
        .await
        .expect("meta")
        .json()
        .await
        .expect("json");
    meta["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|i| i["name"].as_str().expect("name").to_owned())
        .collect()
}

async fn canary_traffic(
    url: &str,
    header: &[String],
    rows: &[Vec<String>],
    outcome: impl Fn(&str, f64, f64) -> f64,
) -> [usize; 2] {
    let http = reqwest::Client::new();
    let inputs = bike_inputs(&http, url).await;
    let target = header.iter().position(|c| c == "cnt").expect("cnt");
    let july: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r[0].as_str() >= "2011-07-01" && r[0].as_str() <= "2011-07-14")
        .collect();
    let mut seen = [0usize; 2];
    for (i, r) in july.iter().enumerate() {
        let v: Value = http
            .post(format!("{url}/deployments/bikes-canary/infer"))
            .json(&json!({"id": format!("c{i}"), "inputs": [{"name": "rows", "shape": [1, inputs.len()], "datatype": "FP64", "data": encode(&inputs, header, &[r])}]}))
            .send()
            .await
            .expect("infer")
            .json()
            .await
            .expect("json");
        let variant = v["parameters"]["variant"]
            .as_str()
            .expect("variant")
            .to_owned();
        seen[usize::from(variant == "challenger")] += 1;
        let predicted = v["outputs"][0]["data"][0].as_f64().expect("prediction");
        let actual: f64 = r[target].parse().expect("cnt");
        let s = http
            .post(format!("{url}/deployments/bikes-canary/feedback"))
            .json(&json!({"request_id": format!("c{i}"), "outcome": outcome(&variant, predicted, actual)}))
            .send()
            .await
            .expect("feedback");
        assert_eq!(s.status().as_u16(), 200);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_promotes_a_challenger_that_is_not_worse() {
    let home = tempfile::tempdir().expect("home");
    let h = home.path();
    let (header, rows) = canary_home(h);
    let server = start(h, &[]);
    let seen = canary_traffic(&server.url, &header, &rows, |_, p, y| -(p - y).abs()).await;
    // The next check is due a second after the first.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(
        seen[0] > 100 && seen[1] > 100,
        "half the traffic each: {seen:?}"
    );
    let out = cli_ok(h, &["worker", "--once", "--kinds", "rollout-check"]);
    assert!(out.contains("succeeded"), "{out}");
    let history = cli_ok(h, &["retrain", "history", "bikes"]);
    assert!(
        history.contains("canary check 2 of bikes-canary") && history.contains("promoted"),
        "{history}"
    );
    let models = cli_ok(h, &["models", "show", "bikes"]);
    assert!(holds(&models, '2', "champion"), "{models}");
    assert!(holds(&models, '1', "previous"), "{models}");
    assert!(!models.contains("challenger"), "{models}");
    assert_closed(&server.url, "bikes-canary").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_rolls_back_a_challenger_its_users_find_worse() {
    let home = tempfile::tempdir().expect("home");
    let h = home.path();
    let (header, rows) = canary_home(h);
    let server = start(h, &[]);
    // Whatever its offline score, the challenger's users convert a fifth of the time, the
    // champion's four fifths (a deterministic split of the hours by their counts).
    canary_traffic(&server.url, &header, &rows, |variant, _, actual| {
        let bucket = (actual as i64) % 10;
        let converts = if variant == "challenger" {
            bucket < 2
        } else {
            bucket < 8
        };
        f64::from(u8::from(converts))
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    cli_ok(h, &["worker", "--once", "--kinds", "rollout-check"]);
    let history = cli_ok(h, &["retrain", "history", "bikes"]);
    assert!(
        history.contains("rolled-back") && history.contains("the challenger is worse"),
        "{history}"
    );
    let models = cli_ok(h, &["models", "show", "bikes"]);
    assert!(holds(&models, '1', "champion"), "{models}");
    assert!(
        !models.contains("challenger"),
        "the challenger alias is removed: {models}"
    );
    assert_closed(&server.url, "bikes-canary").await;
}

/// `warm_start: true`: the candidate keeps the champion's 100 trees and adds the policy's 30,
/// fitted to the recent window, and is judged like any other candidate.
#[test]
fn a_warm_started_retraining_adds_trees_to_the_champions() {
    let home = tempfile::tempdir().expect("home");
    let h = home.path();
    winter_champion(h, "rounds: 30\nwarm_start: true\n");
    let out = cli_ok(
        h,
        &[
            "retrain",
            "run",
            "bikes",
            "--reason",
            "spring, incrementally",
        ],
    );
    assert!(out.contains("promoted"), "{out}");
    let job: Value = serde_json::from_str(&cli_ok(h, &["jobs", "show", "1"])).expect("job");
    assert_eq!(job["result"]["trees"], 130, "100 kept + 30 added: {job}");
    assert_eq!(job["result"]["warm_start_from"], 1, "{job}");
    let (cand, champ) = (
        job["result"]["candidate_score"].as_f64().expect("c"),
        job["result"]["champion_score"].as_f64().expect("c"),
    );
    assert!(cand < champ * 0.95, "candidate {cand} vs champion {champ}");
}

/// `warm_start: true` on a linear model: the candidate is the champion's least-squares
/// statistics (old rows weighed by `forgetting`) plus the window's rows it has not seen — no
/// pass over the old data. A second retraining with nothing new changes nothing.
#[test]
fn a_warm_started_linear_retraining_updates_the_champions_statistics() {
    let home = tempfile::tempdir().expect("home");
    let h = home.path();
    winter_champion_of(
        h,
        &["--algorithm", "linear", "--l2", "1e-6"],
        "algorithm: linear\nwarm_start: true\nforgetting: 0.2\n",
    );
    let out = cli_ok(
        h,
        &[
            "retrain",
            "run",
            "bikes",
            "--reason",
            "spring, incrementally",
        ],
    );
    assert!(out.contains("promoted"), "{out}");
    let job: Value = serde_json::from_str(&cli_ok(h, &["jobs", "show", "1"])).expect("job");
    assert_eq!(job["result"]["warm_start_from"], 1, "{job}");
    let (cand, champ) = (
        job["result"]["candidate_score"].as_f64().expect("c"),
        job["result"]["champion_score"].as_f64().expect("c"),
    );
    assert!(cand < champ * 0.95, "candidate {cand} vs champion {champ}");
    let log = cli_ok(h, &["jobs", "logs", "1"]);
    let train_rows = job["result"]["train_rows"].as_u64().expect("rows");
    assert!(
        log.contains(&format!(
            "incremental least squares: {train_rows} window rows are newer than the champion's data; old rows weigh 0.2"
        )),
        "the winter champion has no retraining date, so the whole window is new: {log}"
    );
    assert!(log.contains("warm-started from v1"), "{log}");

    // Nothing labelled since: no new rows, the same solution, and the champion stays.
    let out = cli_ok(h, &["retrain", "run", "bikes", "--reason", "again"]);
    assert!(out.contains("rejected"), "{out}");
    let log = cli_ok(h, &["jobs", "logs", "2"]);
    assert!(
        log.contains("incremental least squares: 0 window rows are newer"),
        "{log}"
    );
    let job: Value = serde_json::from_str(&cli_ok(h, &["jobs", "show", "2"])).expect("job");
    let (cand, champ) = (
        job["result"]["candidate_score"].as_f64().expect("c"),
        job["result"]["champion_score"].as_f64().expect("c"),
    );
    assert!((cand - champ).abs() < 1e-6 * champ, "{cand} vs {champ}");
}

/// A home whose policy rolls out by shadow: the winter champion (v1), spring labelled, and a
/// retraining that opened `bikes-shadow` (v1 answers, challenger v2 predicts the same requests
/// unseen); the server writes its prediction log every second.
fn shadow_home(h: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    std::fs::write(h.join("capstan.toml"), "[serving]\nlog_rotate_secs = 1\n").expect("config");
    let (header, rows) = winter_champion(
        h,
        "rounds: 100\nrollout: {shadow: {min_labelled: 100, check_seconds: 1}}\n",
    );
    let out = cli_ok(h, &["retrain", "run", "bikes", "--reason", "spring"]);
    assert!(
        out.contains("bikes: shadow") && out.contains("alias challenger (shadow)"),
        "{out}"
    );
    (header, rows)
}

/// Every hour of `from..=to` through `bikes-shadow`, one request each, its true count fed back
/// as the label; every answer must come from the champion, version 1.
async fn shadow_traffic(url: &str, header: &[String], rows: &[Vec<String>], from: &str, to: &str) {
    let http = reqwest::Client::new();
    let inputs = bike_inputs(&http, url).await;
    let target = header.iter().position(|c| c == "cnt").expect("cnt");
    for (i, r) in rows
        .iter()
        .filter(|r| r[0].as_str() >= from && r[0].as_str() <= to)
        .enumerate()
    {
        let v: Value = http
            .post(format!("{url}/deployments/bikes-shadow/infer"))
            .json(&json!({"id": format!("s{i}"), "inputs": [{"name": "rows", "shape": [1, inputs.len()], "datatype": "FP64", "data": encode(&inputs, header, &[r])}]}))
            .send()
            .await
            .expect("infer")
            .json()
            .await
            .expect("json");
        assert_eq!(
            (
                v["parameters"]["variant"].as_str(),
                v["model_version"].as_str()
            ),
            (Some("champion"), Some("1")),
            "the shadow is never seen: {v}"
        );
        let actual: f64 = r[target].parse().expect("cnt");
        let s = http
            .post(format!("{url}/v2/models/bikes/feedback"))
            .json(&json!({"id": format!("s{i}"), "labels": [actual]}))
            .send()
            .await
            .expect("feedback");
        assert_eq!(s.status().as_u16(), 200);
    }
    // The server writes its prediction log every second.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_promotes_a_challenger_that_is_better_on_the_same_requests() {
    let home = tempfile::tempdir().expect("home");
    let h = home.path();
    let (header, rows) = shadow_home(h);
    let server = start(h, &[]);
    // Summer: what the spring-trained challenger knows better than the winter champion.
    shadow_traffic(&server.url, &header, &rows, "2011-07-01", "2011-07-07").await;
    let out = cli_ok(h, &["worker", "--once", "--kinds", "rollout-check"]);
    assert!(out.contains("(rollout-check) succeeded"), "{out}");
    let job: Value = serde_json::from_str(&cli_ok(h, &["jobs", "show", "2"])).expect("job");
    let r = &job["result"];
    assert_eq!(r["outcome"], "promoted", "{job}");
    assert_eq!(
        r["labelled_rows"], 168,
        "a week of hours, each predicted by both: {job}"
    );
    assert_eq!(
        (
            r["champion_requests"].as_u64(),
            r["challenger_requests"].as_u64()
        ),
        (Some(168), Some(168))
    );
    let (champion, challenger) = (
        r["champion_loss"].as_f64().expect("loss"),
        r["challenger_loss"].as_f64().expect("loss"),
    );
    assert!(challenger < champion, "{challenger} vs {champion}");
    let history = cli_ok(h, &["retrain", "history", "bikes"]);
    assert!(
        history.contains("shadow check 1 of bikes-shadow"),
        "{history}"
    );
    let models = cli_ok(h, &["models", "show", "bikes"]);
    assert!(
        holds(&models, '2', "champion")
            && holds(&models, '1', "previous")
            && !models.contains("challenger"),
        "{models}"
    );
    assert_closed(&server.url, "bikes-shadow").await;
}

/// The candidate beat the champion on spring's newest weeks, but the live traffic is winter's,
/// which the champion was trained on: the shadow shows it worse on the same requests and rolls
/// it back; no client ever saw it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_rolls_back_a_challenger_that_is_worse_on_live_traffic() {
    let home = tempfile::tempdir().expect("home");
    let h = home.path();
    let (header, rows) = shadow_home(h);
    let server = start(h, &[]);
    shadow_traffic(&server.url, &header, &rows, "2011-02-01", "2011-02-07").await;
    cli_ok(h, &["worker", "--once", "--kinds", "rollout-check"]);
    let job: Value = serde_json::from_str(&cli_ok(h, &["jobs", "show", "2"])).expect("job");
    assert_eq!(job["result"]["outcome"], "rolled-back", "{job}");
    assert!(
        job["result"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("worse"),
        "{job}"
    );
    let models = cli_ok(h, &["models", "show", "bikes"]);
    assert!(
        holds(&models, '1', "champion") && !models.contains("challenger"),
        "{models}"
    );
    assert_closed(&server.url, "bikes-shadow").await;
}

/// A new version of the policy's data (`capstan data add` that changed it) queues a retraining
/// of the model that trains on it; adding it again unchanged queues nothing.
#[test]
fn a_new_data_version_queues_a_retraining() {
    let home = tempfile::tempdir().expect("home");
    let h = home.path();
    winter_champion(h, "");
    let repo = h.to_str().expect("utf8");
    let labelled = h.join("labelled.csv");
    let labelled = labelled.to_str().expect("utf8");
    cli_ok(h, &["data", "-C", repo, "init"]);
    let out = cli_ok(h, &["data", "-C", repo, "add", labelled]);
    assert!(
        out.contains("new data version for bikes's retraining policy: job 1 (retrain) queued"),
        "{out}"
    );
    let job: Value = serde_json::from_str(&cli_ok(h, &["jobs", "show", "1"])).expect("job");
    assert!(
        job["payload"]["reason"].as_str().is_some_and(
            |r| r.starts_with("new data version of ") && r.contains("labelled.csv (md5 ")
        ),
        "{job}"
    );
    let out = cli_ok(h, &["data", "-C", repo, "add", labelled]);
    assert!(!out.contains("new data version"), "unchanged: {out}");
    // One more labelled hour: a new version, and the pending retraining absorbs it.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(h.join("labelled.csv"))
        .expect("open");
    let (_, rows) = rows_in_time_order();
    let next = rows
        .iter()
        .find(|r| r[0].as_str() > "2011-06-30")
        .expect("July");
    writeln!(f, "{}", next.join(",")).expect("append");
    let out = cli_ok(h, &["data", "-C", repo, "add", labelled]);
    assert!(out.contains("job 1 (retrain) queued"), "{out}");
    let out = cli_ok(h, &["worker", "--once", "--kinds", "retrain"]);
    assert!(out.contains("(retrain) succeeded"), "{out}");
    let history = cli_ok(h, &["retrain", "history", "bikes"]);
    assert!(history.contains("new data version of"), "{history}");
}
