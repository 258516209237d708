//! Start `capstan server --port 0`, read the printed address, talk to it; run CLI commands.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct Running {
    pub child: Child,
    pub url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn capstan(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_capstan"));
    c.arg("--home").arg(home).env("CAPSTAN_LOG", "error");
    c
}

/// Links the machine's model cache (`$CAPSTAN_CACHE/models`, else `~/.cache/capstan/models`)
/// into a test home, so MiniLM is fetched once per machine, not once per test.
pub fn link_models(home: &Path) {
    let cache = std::env::var_os("CAPSTAN_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/capstan")
        });
    std::os::unix::fs::symlink(cache.join("models"), home.join("models")).expect("link models");
}

/// Runs `capstan <args>` to completion: exit code, stdout, stderr.
pub fn cli<S: AsRef<std::ffi::OsStr>>(home: &Path, args: &[S]) -> (Option<i32>, String, String) {
    let out = capstan(home).args(args).output().expect("cli");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `capstan <args>`, which must succeed; its stdout.
pub fn cli_ok<S: AsRef<std::ffi::OsStr>>(home: &Path, args: &[S]) -> String {
    let (code, out, err) = cli(home, args);
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    assert_eq!(code, Some(0), "{shown:?}: {err}");
    out
}

/// Starts the server on a free port and returns once it printed its address.
pub fn start(home: &Path, extra: &[&str]) -> Running {
    start_cmd(home, &["server", "--port", "0"], extra)
}

/// Runs `capstan <args> <extra>` and waits for the address it prints.
pub fn start_cmd(home: &Path, args: &[&str], extra: &[&str]) -> Running {
    let mut child = capstan(home)
        .args(args)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn capstan server");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read address");
    let url = line.trim().rsplit(' ').next().expect("address").to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    Running { child, url }
}

#[tokio::test]
async fn server_prints_address_and_answers_health() {
    let home = tempfile::tempdir().expect("tempdir");
    let s = start(home.path(), &[]);
    let r = reqwest::get(format!("{}/health", s.url))
        .await
        .expect("health");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.expect("text"), "OK");
    assert!(
        home.path().join("capstan.db").exists(),
        "embedded SQLite under --home"
    );
}

#[tokio::test]
async fn tokens_from_the_cli_guard_the_server() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = capstan(home.path())
        .args(["tokens", "create", "--name", "ci", "--scope", "write"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    assert!(token.starts_with("cap_"));
    let s = start(home.path(), &["--auth"]);
    let http = reqwest::Client::new();
    let url = format!("{}/api/2.0/mlflow/experiments/search", s.url);
    let body = serde_json::json!({"max_results": 10});
    assert_eq!(
        http.post(&url)
            .json(&body)
            .send()
            .await
            .expect("send")
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        http.post(&url)
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .expect("send")
            .status()
            .as_u16(),
        200
    );
    let listed = capstan(home.path())
        .args(["tokens", "list"])
        .output()
        .expect("list");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("ci"));
}

#[test]
fn demo_tracks_runs_and_cli_reads_them() {
    let home = tempfile::tempdir().expect("tempdir");
    link_models(home.path());
    let out = capstan(home.path())
        .args(["demo", "--no-serve"])
        .output()
        .expect("demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("★ best"), "{stdout}");
    // Step 4: the shifted bmi is caught by the monitor and shown in the report.
    assert!(stdout.contains("1 of 10 columns drifted: bmi"), "{stdout}");
    assert!(stdout.contains("1 alert(s) raised"), "{stdout}");
    // Steps 5–7, as the closing summary tells them.
    let line = |step: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(step))
            .unwrap_or_else(|| panic!("no `{step}` line in:\n{stdout}"))
            .to_owned()
    };
    assert!(line("A/B test").contains("442 requests"), "{stdout}");
    // Step 6: features joined point in time lower the test error; the online store serves them.
    let features = line("feature store");
    let rmse: Vec<f64> = features
        .split("RMSE")
        .nth(1)
        .unwrap_or_default()
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|w| w.parse().ok())
        .take(2)
        .collect();
    assert!(
        features.contains("8645 hours") && rmse.len() == 2 && rmse[1] < rmse[0] * 0.9,
        "{features}"
    );
    // …built by a cached pipeline stage: ran, then skipped, then restored without running.
    assert!(
        features.contains("pipeline ran → skipped → restored")
            && stdout.contains("training_set restored from the run cache"),
        "{features}"
    );
    // The raw data was versioned and passed its expectations before anything used it.
    assert!(
        stdout.contains("versioned bike_sharing_hourly.csv: md5 ")
            && stdout.contains("data tests (bike_sharing_hourly): 10 of 10 expectations pass"),
        "{stdout}"
    );
    assert!(
        home.path()
            .join("bike-features/bike_sharing_hourly.csv.dvc")
            .exists()
    );
    assert!(
        stdout.contains("online rentals_last_24h") && stdout.contains("(PRESENT, PRESENT)"),
        "{stdout}"
    );
    assert!(
        line("monitoring").contains("retrain job queued"),
        "{stdout}"
    );
    assert!(line("retraining").contains("promoted"), "{stdout}");
    assert!(stdout.contains("; 3 of 3 model tests pass"), "{stdout}");
    assert!(line("zero downtime").ends_with(" 0 failed"), "{stdout}");
    let after = line("after");
    let rmse: Vec<f64> = after
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        rmse.len() >= 2 && rmse[rmse.len() - 1] < rmse[rmse.len() - 2],
        "{after}"
    );
    assert!(line("LLM gateway").contains("10 calls"), "{stdout}");
    assert!(line("LLM gateway").contains("4 exact"), "{stdout}");
    // The evaluation of the RAG answers, tracked with its HTML report.
    let eval = line("evaluation");
    assert!(
        eval.contains("4 cases") && eval.contains("context recall"),
        "{eval}"
    );
    let report =
        std::fs::read_to_string(home.path().join("reports/rust-book-eval.html")).expect("report");
    assert!(
        report.contains("token_f1") && report.contains("<svg"),
        "the report has its charts"
    );
    // Step 8: the LoRA fine-tune lowers the held-out perplexity and is served by its alias.
    let lora = line("LoRA fine-tune");
    let ppl: Vec<f64> = lora
        .split("perplexity")
        .nth(1)
        .unwrap_or_default()
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        lora.contains("rust-errors@production") && ppl.len() == 2 && ppl[1] < ppl[0],
        "{lora}"
    );
    assert!(
        stdout.contains("semantic-hit"),
        "a reworded question is served from the semantic cache: {stdout}"
    );
    let html = std::fs::read_to_string(home.path().join("reports/drift.html")).expect("report");
    assert!(html.contains("Dataset drift detected") && html.contains("<svg"));
    let list = capstan(home.path())
        .args([
            "runs",
            "list",
            "-e",
            "diabetes-demo",
            "--order-by",
            "metrics.test_rmse ASC",
        ])
        .output()
        .expect("list");
    let text = String::from_utf8_lossy(&list.stdout);
    let rows: Vec<&str> = text.lines().skip(2).collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows[0].contains("gd-lr0.05"),
        "the best learning rate sorts first: {text}"
    );
    let run_id = rows[0].split_whitespace().next().expect("id");
    let show = capstan(home.path())
        .args(["runs", "show", run_id])
        .output()
        .expect("show");
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("model/model.json") && text.contains("diabetes"),
        "{text}"
    );
    let html = home.path().join("cmp.html");
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r.split_whitespace().next().unwrap_or("").to_owned())
        .collect();
    let cmp = capstan(home.path())
        .args(["runs", "compare"])
        .args(&ids)
        .arg("--html")
        .arg(&html)
        .output()
        .expect("compare");
    assert!(cmp.status.success());
    let page = std::fs::read_to_string(&html).expect("html");
    assert_eq!(
        page.matches("<polyline").count(),
        6,
        "two metrics × three runs"
    );
    // The registry: the check kept the weakest candidate from becoming champion.
    let show = capstan(home.path())
        .args(["models", "show", "diabetes-regressor"])
        .output()
        .expect("models show");
    let text = String::from_utf8_lossy(&show.stdout);
    let champion_row = text
        .lines()
        .find(|l| l.contains("champion"))
        .unwrap_or_default();
    assert!(
        champion_row.contains(ids[0].as_str()),
        "the best run is champion: {text}"
    );
    let refused = capstan(home.path())
        .args([
            "models",
            "promote",
            "diabetes-regressor",
            "1",
            "--alias",
            "champion",
        ])
        .output()
        .expect("promote");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("failed check 'test_rmse'"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let lineage = capstan(home.path())
        .args(["models", "lineage", "diabetes-regressor", "3"])
        .output()
        .expect("lineage");
    let text = String::from_utf8_lossy(&lineage.stdout);
    assert!(
        text.contains("dataset  diabetes digest") && text.contains("learning_rate = 0.05"),
        "{text}"
    );
    let bad = capstan(home.path())
        .args(["runs", "show", "not-a-run"])
        .output()
        .expect("show");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid run id"));
}

#[test]
fn unknown_config_keys_are_refused() {
    let home = tempfile::tempdir().expect("tempdir");
    std::fs::write(home.path().join("capstan.toml"), "[server]\nprot = 1\n").expect("write");
    let out = capstan(home.path())
        .args(["experiments", "list"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown field `prot`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn serve_one_model_from_the_registry() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = capstan(home.path())
        .args(["demo", "--no-serve", "--until", "4"])
        .output()
        .expect("demo");
    assert!(out.status.success());
    let s = start_cmd(
        home.path(),
        &["serve", "diabetes-regressor@champion", "--port", "0"],
        &[],
    );
    let http = reqwest::Client::new();
    let row = serde_json::json!({"age": 59, "sex": 2, "bmi": 32.1, "bp": 101.0, "s1_tc": 157, "s2_ldl": 93.2, "s3_hdl": 38.0, "s4_tch": 4.0, "s5_ltg": 4.8598, "s6_glu": 87});
    let r = http
        .post(format!("{}/invocations", s.url))
        .json(&serde_json::json!({"dataframe_records": [row]}))
        .send()
        .await
        .expect("invocations");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()
            .get("x-model-version")
            .and_then(|v| v.to_str().ok()),
        Some("3")
    );
    let v: serde_json::Value = r.json().await.expect("json");
    let p = v["predictions"][0].as_f64().expect("prediction");
    assert!(
        (150.0..250.0).contains(&p),
        "row 0 (progression 151) predicted {p}"
    );
    let ready = http
        .get(format!("{}/v2/health/ready", s.url))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status().as_u16(), 200);

    let missing = capstan(home.path())
        .args(["serve", "nope@champion", "--port", "0"])
        .output()
        .expect("serve");
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("cannot serve nope"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

#[tokio::test]
async fn deploy_from_the_cli_and_read_ab_statistics() {
    let home = tempfile::tempdir().expect("tempdir");
    assert!(
        capstan(home.path())
            .args(["demo", "--no-serve", "--until", "4"])
            .output()
            .expect("demo")
            .status
            .success()
    );
    let create = capstan(home.path())
        .args([
            "deploy",
            "create",
            "diabetes-ab",
            "--variant",
            "A=diabetes-regressor@champion:50",
            "--variant",
            "B=diabetes-regressor/2:50",
        ])
        .output()
        .expect("create");
    assert!(
        create.status.success(),
        "{}",
        String::from_utf8_lossy(&create.stderr)
    );
    let s = start(home.path(), &[]);
    let http = reqwest::Client::new();
    for i in 0..60 {
        let body = serde_json::json!({"id": format!("r{i}"), "inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP64", "data": [59, 2, 32.1, 101.0, 157, 93.2, 38.0, 4.0, 4.8598, 87]}]});
        let r = http
            .post(format!("{}/deployments/diabetes-ab/infer", s.url))
            .header("x-capstan-key", format!("patient-{i}"))
            .json(&body)
            .send()
            .await
            .expect("infer");
        assert_eq!(r.status().as_u16(), 200);
        let variant = r
            .headers()
            .get("x-capstan-variant")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let outcome = if variant == "A" {
            10.0 + (i % 5) as f64
        } else {
            12.0 + (i % 5) as f64
        };
        let fb = http
            .post(format!("{}/deployments/diabetes-ab/feedback", s.url))
            .json(&serde_json::json!({"request_id": format!("r{i}"), "outcome": outcome}))
            .send()
            .await
            .expect("feedback");
        assert_eq!(fb.status().as_u16(), 200);
    }
    drop(s);
    let stats = capstan(home.path())
        .args(["deploy", "stats", "diabetes-ab"])
        .output()
        .expect("stats");
    let text = String::from_utf8_lossy(&stats.stdout);
    assert!(
        stats.status.success(),
        "{}",
        String::from_utf8_lossy(&stats.stderr)
    );
    assert!(
        text.contains("B vs A (continuous)") && text.contains("verdict: B beats A"),
        "{text}"
    );
    let list = capstan(home.path())
        .args(["deploy", "list"])
        .output()
        .expect("list");
    assert!(String::from_utf8_lossy(&list.stdout).contains("A=50% B=50%"));
    let bad = capstan(home.path())
        .args([
            "deploy",
            "create",
            "x",
            "--variant",
            "A=ghost@champion:1",
            "--variant",
            "B=ghost/1:1",
        ])
        .output()
        .expect("bad");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("variant 'A'"));
}

#[test]
fn pipeline_runs_are_tracked() {
    let home = tempfile::tempdir().expect("home");
    let proj = tempfile::tempdir().expect("project");
    let p = proj.path();
    std::fs::write(p.join("dvc.yaml"), "stages:\n  fit:\n    cmd: \"echo '{\\\"rmse\\\": 0.25, \\\"fold\\\": {\\\"n\\\": 3}}' > metrics.json\"\n    deps:\n    - data.csv\n    params:\n    - fit.alpha\n    metrics:\n    - metrics.json:\n        cache: false\n").expect("yaml");
    std::fs::write(p.join("params.yaml"), "fit:\n  alpha: 0.1\n").expect("params");
    std::fs::write(p.join("data.csv"), "x,y\n1,2\n").expect("data");
    let run = |args: &[&str]| {
        let out = capstan(home.path())
            .args(["data", "-C"])
            .arg(p)
            .args(args)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    run(&["init"]);
    let out = run(&["repro"]);
    assert!(
        out.contains("fit: ran") && out.contains("tracked as run"),
        "{out}"
    );
    let list = capstan(home.path())
        .args(["runs", "list", "-e", "pipelines"])
        .output()
        .expect("list");
    let text = String::from_utf8_lossy(&list.stdout);
    let id = text
        .lines()
        .nth(2)
        .and_then(|l| l.split_whitespace().next())
        .expect("a tracked run")
        .to_owned();
    let show = capstan(home.path())
        .args(["runs", "show", &id])
        .output()
        .expect("show");
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("fit.alpha") && !text.contains("fit.fit.alpha"),
        "{text}"
    );
    assert!(text.contains("fold.n") && text.contains("0.25"), "{text}");
    assert!(
        text.contains("data.csv") && text.contains(&data::md5_bytes(b"x,y\n1,2\n")),
        "{text}"
    );
}

#[tokio::test]
async fn train_register_and_serve_boosted_trees() {
    let home = tempfile::tempdir().expect("home");
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/breast_cancer.csv");
    let out = capstan(home.path())
        .args([
            "train",
            "--data",
            data,
            "--target",
            "diagnosis",
            "--classify",
            "--algorithm",
            "gbm",
            "--rounds",
            "60",
            "--register",
            "bc",
        ])
        .output()
        .expect("train");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acc: f64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("test_accuracy"))
        .and_then(|v| v.trim().parse().ok())
        .expect("accuracy line");
    assert!(acc >= 0.92, "{text}");
    assert!(text.contains("registered bc version 1"));
    let promote = capstan(home.path())
        .args(["models", "promote", "bc", "1", "--alias", "champion"])
        .output()
        .expect("promote");
    assert!(promote.status.success());
    let s = start(home.path(), &[]);
    let csv = std::fs::read_to_string(data).expect("csv");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let first: Vec<&str> = lines.next().expect("row").trim().split(',').collect();
    let label_at = header
        .iter()
        .position(|h| *h == "diagnosis")
        .expect("target");
    let row: Vec<f64> = first
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != label_at)
        .map(|(_, v)| v.parse().expect("number"))
        .collect();
    let body = serde_json::json!({"inputs": [{"name": "x", "shape": [1, row.len()], "datatype": "FP64", "data": row}]});
    let v: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v2/models/bc/infer", s.url))
        .json(&body)
        .send()
        .await
        .expect("infer")
        .json()
        .await
        .expect("json");
    assert_eq!(v["outputs"][0]["data"][0], first[label_at].trim(), "{v}");
    assert_eq!(v["outputs"][1]["shape"], serde_json::json!([1, 2]));
}

#[test]
fn drift_cli_prints_table_writes_json_and_html_and_gates() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitor/tests/fixtures");
    let (reference, current) = (
        fixtures.join("large_reference.csv"),
        fixtures.join("large_current.csv"),
    );
    let (json_path, html_path) = (dir.path().join("drift.json"), dir.path().join("drift.html"));
    let out = capstan(dir.path())
        .arg("drift")
        .args([&reference, &current])
        .arg("--json")
        .arg(&json_path)
        .arg("--html")
        .arg(&html_path)
        .args(["--column-threshold", "stable=0.01"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("shifted     numeric      wasserstein"),
        "{table}"
    );
    assert!(table.contains("DATASET DRIFT: 5 of 7"), "{table}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    let stable = report["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["column"] == "stable")
        .unwrap();
    assert_eq!(stable["threshold"], 0.01);
    assert_eq!(stable["drifted"], true);
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("<svg") && html.contains("Dataset drift detected"));
    assert_eq!(html.matches("<section").count(), 7, "one chart per column");

    // The same verdicts against a stored profile of the reference.
    let profile = dir.path().join("reference.profile.json");
    let out = capstan(dir.path())
        .arg("profile")
        .arg(&reference)
        .arg("-o")
        .arg(&profile)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = capstan(dir.path())
        .arg("drift")
        .arg(&profile)
        .arg(&current)
        .args(["--column-threshold", "stable=0.01"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("DATASET DRIFT: 5 of 7"));

    // A CI gate: exit status 3 on dataset drift, 0 without.
    let gate = |args: &[&str]| {
        capstan(dir.path())
            .arg("drift")
            .args([&reference, &current])
            .args(args)
            .output()
            .unwrap()
    };
    assert_eq!(gate(&["--fail-on-drift"]).status.code(), Some(3));
    let same = capstan(dir.path())
        .args(["drift", "--fail-on-drift"])
        .args([&reference, &reference])
        .output()
        .unwrap();
    assert_eq!(same.status.code(), Some(0));
    // Mistakes are explained.
    let bad = gate(&["--method", "nope"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown drift test \"nope\""));
    let missing = capstan(dir.path())
        .args(["drift", "/nonexistent.csv"])
        .arg(&current)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent.csv"));
}

#[test]
fn data_tests_gate_promotion_through_the_registry() {
    let home = tempfile::tempdir().expect("home");
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/breast_cancer.csv");
    let out = capstan(home.path())
        .args([
            "train",
            "--data",
            data,
            "--target",
            "diagnosis",
            "--classify",
        ])
        .args(["--register", "bc"])
        .output()
        .expect("train");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let run_id = text
        .lines()
        .find_map(|l| l.strip_prefix("run "))
        .and_then(|l| l.split_whitespace().next())
        .expect("run id")
        .to_owned();
    let check = capstan(home.path())
        .args(["models", "set-check", "bc", "data"])
        .arg("metrics.`expectations.bc_data.passed` = 1")
        .output()
        .expect("set-check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let promote = || {
        capstan(home.path())
            .args(["models", "promote", "bc", "1"])
            .output()
            .expect("promote")
    };
    assert!(!promote().status.success(), "no data test logged yet");

    let suite = home.path().join("bc.yaml");
    let write_suite = |max_radius: f64| {
        std::fs::write(
            &suite,
            format!(
                "name: bc_data\nexpectations:\n  - {{expect: not_null, column: diagnosis}}\n  - {{expect: between, column: mean_radius, min: 0, max: {max_radius}}}\n"
            ),
        )
        .unwrap()
    };
    let test = || {
        capstan(home.path())
            .args(["test", "data"])
            .arg(&suite)
            .arg(data)
            .args(["--run", &run_id])
            .output()
            .expect("test data")
    };
    write_suite(10.0); // too strict: the data has larger tumours
    let failed = test();
    assert_eq!(
        failed.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    let out = String::from_utf8_lossy(&failed.stdout);
    assert!(
        out.contains("FAIL") && out.contains("1 passed, 1 failed"),
        "{out}"
    );
    assert!(
        !promote().status.success(),
        "a failed data test blocks promotion"
    );

    write_suite(100.0);
    let passed = test();
    assert!(
        passed.status.success(),
        "{}",
        String::from_utf8_lossy(&passed.stdout)
    );
    let p = promote();
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    assert!(String::from_utf8_lossy(&p.stdout).contains("1 check(s) passed"));
}

#[test]
fn model_tests_compare_with_the_champion_and_gate_promotion() {
    let home = tempfile::tempdir().expect("home");
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/breast_cancer.csv");
    let train = |rounds: &str| {
        let out = capstan(home.path())
            .args([
                "train",
                "--data",
                data,
                "--target",
                "diagnosis",
                "--classify",
            ])
            .args([
                "--algorithm",
                "logistic",
                "--learning-rate",
                "0.5",
                "--rounds",
                rounds,
            ])
            .args(["--register", "bc"])
            .output()
            .expect("train");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ok = |args: &[&str]| {
        cli_ok(home.path(), args);
    };
    train("1");
    ok(&["models", "promote", "bc", "1"]);
    train("300");
    ok(&[
        "models",
        "set-check",
        "bc",
        "tests",
        "metrics.`model_tests.bc_model.passed` = 1",
    ]);
    let suite = home.path().join("model.yaml");
    std::fs::write(
        &suite,
        "name: bc_model\ntarget: diagnosis\ntests:\n  - {test: metric, metric: accuracy, min: 0.9}\n  - {test: beats_champion, metric: accuracy, margin: 0.01}\n",
    )
    .unwrap();
    let test = |model: &str| {
        capstan(home.path())
            .args(["test", "model"])
            .arg(&suite)
            .args(["--model", model, "--data", data])
            .output()
            .expect("test model")
    };
    let promote2 = || {
        capstan(home.path())
            .args(["models", "promote", "bc", "2"])
            .output()
            .expect("promote")
    };
    assert!(!promote2().status.success(), "untested");
    let out = test("bc/2");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("champion 0."), "{text}");
    assert!(
        promote2().status.success(),
        "tested and better than the champion"
    );
    // Now version 1 is tested against the new champion, and loses.
    let out = test("bc/1");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL"));
}

#[tokio::test]
async fn monitors_from_the_cli_judge_what_the_server_served() {
    let home = tempfile::tempdir().expect("home");
    let out = capstan(home.path())
        .args(["demo", "--no-serve", "--until", "4"])
        .output()
        .expect("demo");
    assert!(out.status.success());
    // Segments every second, so the CLI sees what the server logged.
    std::fs::write(
        home.path().join("capstan.toml"),
        "[serving]\nlog_rotate_secs = 1\n",
    )
    .unwrap();
    let s = start_cmd(
        home.path(),
        &["serve", "diabetes-regressor@champion", "--port", "0"],
        &[],
    );
    let http = reqwest::Client::new();
    let row = serde_json::json!({"age": 59, "sex": 2, "bmi": 32.1, "bp": 101.0, "s1_tc": 157, "s2_ldl": 93.2, "s3_hdl": 38.0, "s4_tch": 4.0, "s5_ltg": 4.8598, "s6_glu": 87});
    for _ in 0..20 {
        let r = http
            .post(format!("{}/invocations", s.url))
            .json(&serde_json::json!({"dataframe_records": [row]}))
            .send()
            .await
            .expect("invocations");
        assert_eq!(r.status().as_u16(), 200);
    }
    let spec = home.path().join("monitor.yaml");
    std::fs::write(
        &spec,
        "name: diabetes-latency\nmodel: diabetes-regressor\nwindow_seconds: 600\nchecks:\n  - {check: latency_p99_above_ms, value: 0.000001}\n",
    )
    .unwrap();
    let run = |args: &[&str]| cli(home.path(), args);
    let (code, text, err) = run(&["monitors", "create", spec.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(text.contains("monitor diabetes-latency watches diabetes-regressor"));
    // Wait for the server to write its segment (rotation: 1 s).
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (code, text, err) = run(&["monitors", "evaluate", "diabetes-latency"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(text.contains("FAILING"), "{text}");
    // The demo's own monitoring step served the model too: at least our 20 are in the window.
    let n: usize = text
        .lines()
        .find(|l| l.contains("predictions in the window"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("prediction count");
    assert!(n >= 20, "{text}");
    // The running server's scheduler may have raised the alert first: either way, one incident
    // is one alert.
    let (_, text, _) = run(&["monitors", "alerts"]);
    assert_eq!(text.matches("latency_p99_above_ms").count(), 1, "{text}");
    let (_, text, _) = run(&["monitors", "list"]);
    assert!(text.contains("FAILING: latency_p99_above_ms"), "{text}");
    std::fs::write(&spec, "name: x\nmodel: m\nchecks: []\n").unwrap();
    let (code, _, err) = run(&["monitors", "create", spec.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("at least one check"), "{err}");
    drop(s);
}

#[test]
fn features_apply_list_and_build_a_point_in_time_training_set() {
    let home = tempfile::tempdir().expect("home");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let run = |args: &[&std::ffi::OsStr]| cli(home.path(), args);
    let defs = root.join("data/features/nyc_weather.yaml");
    let (code, text, err) = run(&["features".as_ref(), "apply".as_ref(), defs.as_os_str()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(text.contains("applied 1 entities, 1 sources, 1 feature views, 1 feature services"));
    let (_, text, _) = run(&["features".as_ref(), "list".as_ref()]);
    assert!(
        text.contains("weather") && text.contains("10800s"),
        "{text}"
    );
    let out = home.path().join("training.parquet");
    let flights = root.join("data/nyc_flights_2013_ewr_head20k.csv");
    let (code, text, err) = run(&[
        "features".as_ref(),
        "historical".as_ref(),
        "--entities".as_ref(),
        flights.as_os_str(),
        "--timestamp".as_ref(),
        "time_hour".as_ref(),
        "--service".as_ref(),
        "delay_model".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        text.contains("20000 rows × 4 features as of each row's time_hour"),
        "{text}"
    );
    let t = data::frame::read_frame(&out).expect("parquet");
    assert_eq!(t.rows(), 20_000);
    // The first flight left EWR at 2013-01-01T10:00:00Z: the 10:00Z observation, 39.02 °F.
    match &t.column("temp").expect("temp").data {
        data::frame::ColumnData::Numeric(v) => assert_eq!(v[0], 39.02),
        other => panic!("{other:?}"),
    }
    assert!(t.column("arr_delay").is_some(), "entity columns are kept");
    // Every airport as of one instant, without an entity table.
    let all = home.path().join("all.csv");
    let (code, text, err) = run(&[
        "features".as_ref(),
        "historical".as_ref(),
        "--as-of".as_ref(),
        "2013-07-04T16:00:00Z".as_ref(),
        "--features".as_ref(),
        "weather:temp,weather:humid".as_ref(),
        "-o".as_ref(),
        all.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        text.contains("3 rows × 2 features as of 2013-07-04T16:00:00Z"),
        "{text}"
    );
    let csv = std::fs::read_to_string(&all).unwrap();
    assert!(csv.starts_with("origin,temp,humid\nEWR,"), "{csv}");

    // Train on the joined set: the run records the feature service and the entity table's md5.
    let entities = home.path().join("delays.csv");
    let text = std::fs::read_to_string(&flights).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n).unwrap();
    let (o, th, d) = (col("origin"), col("time_hour"), col("dep_delay"));
    let mut csv = String::from("origin,time_hour,dep_delay\n");
    for l in text.lines().skip(1).take(3000) {
        let f: Vec<&str> = l.split(',').collect();
        if !f[d].is_empty() {
            csv += &format!("{},{},{}\n", f[o], f[th], f[d]);
        }
    }
    std::fs::write(&entities, csv).unwrap();
    let (code, text, err) = run(&[
        "train".as_ref(),
        "--data".as_ref(),
        entities.as_os_str(),
        "--target".as_ref(),
        "dep_delay".as_ref(),
        "--algorithm".as_ref(),
        "gbm".as_ref(),
        "--rounds".as_ref(),
        "20".as_ref(),
        "--feature-service".as_ref(),
        "delay_model".as_ref(),
        "--entity-timestamp".as_ref(),
        "time_hour".as_ref(),
        "--drop".as_ref(),
        "origin".as_ref(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("joined feature service delay_model (4 features)"),
        "{err}"
    );
    let run_id = text
        .lines()
        .find_map(|l| l.strip_prefix("run "))
        .and_then(|l| l.split_whitespace().next())
        .expect("run id")
        .to_owned();
    let (_, shown, _) = run(&["runs".as_ref(), "show".as_ref(), run_id.as_ref()]);
    assert!(
        shown.contains("feature_service") && shown.contains("delay_model"),
        "{shown}"
    );
    let (code, _, err) = run(&[
        "features".as_ref(),
        "historical".as_ref(),
        "--entities".as_ref(),
        flights.as_os_str(),
        "--features".as_ref(),
        "weather:nope".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("feature view weather has no feature nope"),
        "{err}"
    );
}

#[tokio::test]
async fn materialized_features_are_served_in_feasts_shape() {
    let home = tempfile::tempdir().expect("home");
    let root = std::fs::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")).unwrap();
    let weather = root.join("data/nyc_weather_2013.csv");
    let defs = home.path().join("features.yaml");
    std::fs::write(
        &defs,
        format!(
            "entities:\n  - {{name: airport, join_keys: [origin]}}\nsources:\n  - {{name: w, path: {}, timestamp: time_hour}}\nfeature_views:\n  - name: weather\n    entities: [airport]\n    source: w\n    features: [{{name: temp, type: float}}, {{name: wind_gust, type: float}}]\n  - name: weather_fresh\n    entities: [airport]\n    source: w\n    ttl_seconds: 3600\n    features: [{{name: temp, type: float}}]\non_demand_views:\n  - {{name: comfort, sources: [weather], request: [offset], features: [{{name: temp_c, expr: \"(temp - 32) * 5 / 9 + offset\"}}]}}\n",
            weather.display()
        ),
    )
    .unwrap();
    let ok = |args: &[&str]| cli_ok(home.path(), args);
    ok(&["features", "apply", defs.to_str().unwrap()]);
    let text = ok(&["features", "materialize", "--end", "2013-03-01T00:00:00Z"]);
    assert!(
        text.contains("weather: 3 entities as of 2013-03-01T00:00:00Z"),
        "{text}"
    );
    // Forward to June: only the rows in between are read, the rest comes from the store.
    let text = ok(&[
        "features",
        "materialize-incremental",
        "--end",
        "2013-06-01T12:00:00Z",
    ]);
    assert!(text.contains("from 2013-03-01T00:00:00Z"), "{text}");
    let again = ok(&[
        "features",
        "materialize-incremental",
        "--end",
        "2013-06-01T12:00:00Z",
    ]);
    assert!(again.contains("already materialised"), "{again}");
    assert!(
        text.contains("weather: 3 entities as of 2013-06-01T12:00:00Z"),
        "{text}"
    );
    // A model whose one input is the temp feature: y = 2·temp + 1.
    let train_csv = home.path().join("wx.csv");
    let rows: String = (0..30).map(|i| format!("{i},{}\n", 2 * i + 1)).collect();
    std::fs::write(&train_csv, format!("temp,y\n{rows}")).unwrap();
    ok(&[
        "train",
        "--data",
        train_csv.to_str().unwrap(),
        "--target",
        "y",
        "--algorithm",
        "linear",
        "--register",
        "wx",
    ]);
    ok(&["models", "promote", "wx", "1"]);
    let s = start(home.path(), &[]);
    let http = reqwest::Client::new();
    let r: serde_json::Value = http
        .post(format!("{}/get-online-features", s.url))
        .json(&serde_json::json!({
            "features": ["weather:temp", "weather:wind_gust", "weather_fresh:temp"],
            "entities": {"origin": ["EWR", "JFK", "XXX"]}
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["metadata"]["feature_names"],
        serde_json::json!(["origin", "temp", "wind_gust", "temp"])
    );
    // The latest observation at or before 12:00Z on 1 June 2013, read from the file itself.
    let w = data::frame::read_frame(&weather).unwrap();
    let expected = |origin: &str| -> f64 {
        let (o, t, temp) = (
            w.column("origin").unwrap(),
            w.column("time_hour").unwrap(),
            w.column("temp").unwrap(),
        );
        let text = |c: &data::frame::Column, i: usize| match &c.data {
            data::frame::ColumnData::Categorical { codes, levels } => {
                levels[codes[i] as usize].clone()
            }
            other => panic!("{other:?}"),
        };
        let mut best: Option<(String, f64)> = None;
        for i in 0..w.rows() {
            let ts = text(t, i);
            if text(o, i) == origin
                && ts.as_str() <= "2013-06-01T12:00:00Z"
                && best.as_ref().is_none_or(|b| ts >= b.0)
                && let data::frame::ColumnData::Numeric(v) = &temp.data
            {
                best = Some((ts, v[i]));
            }
        }
        best.unwrap().1
    };
    let temps = &r["results"][1];
    assert_eq!(temps["values"][0].as_f64(), Some(expected("EWR")), "{r}");
    assert_eq!(temps["values"][1].as_f64(), Some(expected("JFK")), "{r}");
    assert_eq!(
        temps["statuses"],
        serde_json::json!(["PRESENT", "PRESENT", "NOT_FOUND"])
    );
    assert_eq!(temps["event_timestamps"][0], "2013-06-01T12:00:00Z");
    // wind_gust is often not reported: a present row with a null value.
    let gust_status = r["results"][2]["statuses"][0].as_str().unwrap();
    assert!(["PRESENT", "NULL_VALUE"].contains(&gust_status), "{r}");
    // A one-hour TTL: a 2013 value is far outside its max age today.
    assert_eq!(
        r["results"][3]["statuses"],
        serde_json::json!(["OUTSIDE_MAX_AGE", "OUTSIDE_MAX_AGE", "NOT_FOUND"])
    );
    // A prediction request with entity keys only: the model's input comes from the online store.
    let p: serde_json::Value = http
        .post(format!("{}/v2/models/wx/infer", s.url))
        .json(&serde_json::json!({"inputs": [], "parameters": {"entities": {"origin": ["EWR", "JFK"]}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let got: Vec<f64> = p["outputs"][0]["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{p}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (g, origin) in got.iter().zip(["EWR", "JFK"]) {
        let want = 2.0 * expected(origin) + 1.0;
        assert!(
            (g - want).abs() < 1e-6 * want.abs(),
            "{origin}: {g} vs {want}"
        );
    }
    // An on-demand feature: from a request field and a stored feature, computed at lookup.
    let od: serde_json::Value = http
        .post(format!("{}/get-online-features", s.url))
        .json(&serde_json::json!({
            "features": ["comfort:temp_c"],
            "entities": {"origin": ["EWR", "XXX"], "offset": [1.0, 1.0]}
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let temp_c = od["results"][2]["values"][0]
        .as_f64()
        .unwrap_or_else(|| panic!("{od}"));
    let want = (expected("EWR") - 32.0) * 5.0 / 9.0 + 1.0;
    assert!((temp_c - want).abs() < 1e-9, "{temp_c} vs {want}");
    assert_eq!(od["results"][2]["statuses"][1], "NULL_VALUE", "{od}");
    // A model whose input is the on-demand temp_c: the request carries the key and the offset.
    let train_csv = home.path().join("wxc.csv");
    let rows: String = (0..30).map(|i| format!("{i},{}\n", 3 * i)).collect();
    std::fs::write(&train_csv, format!("temp_c,y\n{rows}")).unwrap();
    let trained = capstan(home.path())
        .args([
            "train",
            "--data",
            train_csv.to_str().unwrap(),
            "--target",
            "y",
        ])
        .args(["--algorithm", "linear", "--register", "wxc"])
        .output()
        .unwrap();
    assert!(trained.status.success());
    assert!(
        capstan(home.path())
            .args(["models", "promote", "wxc", "1"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let mut served = None;
    for _ in 0..50 {
        let r = http
            .post(format!("{}/v2/models/wxc/infer", s.url))
            .json(&serde_json::json!({"parameters": {"entities": {"origin": ["EWR"], "offset": [0.0]}}}))
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 200 {
            served = Some(r.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let served = served.expect("wxc served");
    let got = served["outputs"][0]["data"][0].as_f64().unwrap();
    let want = 3.0 * (expected("EWR") - 32.0) * 5.0 / 9.0;
    assert!(
        (got - want).abs() < 1e-6 * want.abs().max(1.0),
        "{got} vs {want}"
    );
    let unknown = http
        .post(format!("{}/v2/models/wx/infer", s.url))
        .json(&serde_json::json!({"parameters": {"entities": {"origin": ["XXX"]}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 400);
    assert!(unknown.text().await.unwrap().contains("NOT_FOUND"));
    // Mistakes are 400s that name the problem.
    let bad = http
        .post(format!("{}/features/online", s.url))
        .json(&serde_json::json!({"features": ["weather:nope"], "entities": {"origin": ["EWR"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    assert!(bad.text().await.unwrap().contains("no feature nope"));
    let bad = http
        .post(format!("{}/features/online", s.url))
        .json(&serde_json::json!({"features": ["weather:temp"], "entities": {"airport_code": ["EWR"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("needs entity key origin")
    );
}

#[tokio::test]
async fn sighup_reloads_the_gateway_configuration() {
    let home = tempfile::tempdir().expect("tempdir");
    let s = start(home.path(), &[]);
    let models = || async {
        let v: serde_json::Value = reqwest::get(format!("{}/v1/models", s.url))
            .await
            .expect("models")
            .json()
            .await
            .expect("json");
        v["data"]
            .as_array()
            .expect("list")
            .iter()
            .map(|m| m["id"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    assert!(!models().await.contains(&"assistant".to_owned()));
    std::fs::write(
        home.path().join("capstan.toml"),
        "[[gateway.groups]]\nname = \"assistant\"\ndeployments = [{ id = \"l\", provider = \"local\", model = \"SmolLM2-135M-Instruct\" }]\n",
    )
    .expect("write config");
    let hup = Command::new("kill")
        .args(["-HUP", &s.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    let mut seen = false;
    for _ in 0..100 {
        if models().await.contains(&"assistant".to_owned()) {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seen, "the new group is served after SIGHUP");
    // A broken file changes nothing; the server keeps serving.
    std::fs::write(
        home.path().join("capstan.toml"),
        "[gateway]\nnonsense = 1\n",
    )
    .expect("write");
    Command::new("kill")
        .args(["-HUP", &s.child.id().to_string()])
        .status()
        .expect("kill");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(models().await.contains(&"assistant".to_owned()));
}

#[test]
fn prompts_cli_versions_labels_renders_and_diffs() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let write = |name: &str, system: &str| {
        let body = serde_json::json!({"template": {"messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": "{{ question }}"}]}});
        let path = h.join(name);
        std::fs::write(&path, body.to_string()).expect("write");
        path
    };
    let v1 = write("v1.json", "Answer using: {{ context }}");
    let v2 = write("v2.json", "Use only: {{ context }}");
    let out = cli_ok(
        h,
        &[
            "prompts".as_ref(),
            "create".as_ref(),
            "qa".as_ref(),
            v1.as_os_str(),
            "-m".as_ref(),
            "first".as_ref(),
        ],
    );
    assert!(out.contains("qa version 1"), "{out}");
    let out = cli_ok(
        h,
        &[
            "prompts".as_ref(),
            "create".as_ref(),
            "qa".as_ref(),
            v2.as_os_str(),
        ],
    );
    assert!(out.contains("qa version 2"), "{out}");
    cli_ok(h, &["prompts", "label", "qa", "production", "1"]);
    assert!(cli_ok(h, &["prompts", "list"]).contains("production→1"));
    let show = cli_ok(h, &["prompts", "show", "qa"]);
    assert!(
        show.contains("first") && show.contains("context, question"),
        "{show}"
    );
    let out = cli_ok(
        h,
        &[
            "prompts",
            "render",
            "qa",
            "--label",
            "production",
            "--var",
            "context=C",
            "--var",
            "question=Q?",
        ],
    );
    assert!(
        out.contains("[system]\nAnswer using: C") && out.contains("[user]\nQ?"),
        "{out}"
    );
    let (code, _, err) = cli(
        h,
        &[
            "prompts",
            "render",
            "qa",
            "--version",
            "1",
            "--var",
            "context=C",
        ],
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("question"), "{err}");
    let out = cli_ok(h, &["prompts", "diff", "qa", "1", "2"]);
    assert!(
        out.contains("- Answer using: {{ context }}") && out.contains("+ Use only: {{ context }}"),
        "{out}"
    );
    let bad = h.join("bad.json");
    std::fs::write(&bad, r#"{"template": {"text": "{{ oops"}}"#).expect("write");
    let (code, _, err) = cli(
        h,
        &[
            "prompts".as_ref(),
            "create".as_ref(),
            "bad".as_ref(),
            bad.as_os_str(),
        ],
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("does not parse"), "{err}");
    let (code, _, _) = cli(h, &["prompts", "label", "qa", "staging", "9"]);
    assert_ne!(code, Some(0));
}

#[tokio::test]
async fn usage_records_survive_a_restart() {
    let home = tempfile::tempdir().expect("tempdir");
    link_models(home.path());
    let s = start(home.path(), &[]);
    let body = serde_json::json!({"model": "smollm2", "max_tokens": 2, "temperature": 0,
                                  "messages": [{"role": "user", "content": "Hi"}]});
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/chat/completions", s.url))
        .json(&body)
        .send()
        .await
        .expect("chat");
    assert_eq!(r.status().as_u16(), 200);
    // Stop at once (Ctrl-C): the record still queued is written before the process exits.
    let mut s = s;
    Command::new("kill")
        .args(["-INT", &s.child.id().to_string()])
        .status()
        .expect("kill");
    let status = s.child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    let s = start(home.path(), &[]);
    let usage: serde_json::Value = http
        .get(format!("{}/api/2.0/capstan/gateway/usage", s.url))
        .send()
        .await
        .expect("usage")
        .json()
        .await
        .expect("json");
    let records = usage["records"].as_array().expect("records");
    assert_eq!(records.len(), 1, "{usage}");
    assert_eq!(records[0]["deployment"], "smollm2/local");
    assert_eq!(records[0]["usage"]["completion_tokens"], 2);
}

#[tokio::test]
async fn traces_sent_over_otlp_are_listed_shown_and_aggregated_by_the_cli() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let s = start(h, &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
        - 10_000_000_000; // ten seconds ago: the trace has ended by any clock when it is expired
    let span = |id: &str,
                parent: &str,
                name: &str,
                off_ms: i64,
                ms: i64,
                attrs: serde_json::Value| {
        serde_json::json!({"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": id, "parentSpanId": parent,
            "name": name, "startTimeUnixNano": (now + off_ms * 1_000_000).to_string(),
            "endTimeUnixNano": (now + (off_ms + ms) * 1_000_000).to_string(), "attributes": attrs})
    };
    let body = serde_json::json!({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "cli-app"}}]},
        "scopeSpans": [{"spans": [
            span("b7ad6b7169203331", "", "answer", 0, 80, serde_json::json!([])),
            span("b7ad6b7169203332", "b7ad6b7169203331", "chat gpt-4o-mini", 5, 60, serde_json::json!([
                {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "120"}},
                {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "9"}}]))]}]}]});
    let r = reqwest::Client::new()
        .post(format!("{}/v1/traces", s.url))
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200);
    drop(s);
    let list = cli_ok(h, &["traces", "list", "--since-hours", "1"]);
    assert!(
        list.contains("0af7651916cd43dd8448eb211c80319c")
            && list.contains("cli-app")
            && list.contains("120/9"),
        "{list}"
    );
    let show = cli_ok(h, &["traces", "show", "0af7651916cd43dd8448eb211c80319c"]);
    let lines: Vec<&str> = show.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains("  chat gpt-4o-mini")) && show.contains("answer"),
        "the child is indented under its parent: {show}"
    );
    let stats = cli_ok(h, &["traces", "stats", "--by", "model"]);
    assert!(
        stats.contains("gpt-4o-mini") && stats.contains("60.0"),
        "{stats}"
    );
    let (code, _, err) = cli(h, &["traces", "list", "--status", "meh"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("ok or error"), "{err}");
    assert!(
        cli_ok(h, &["traces", "expire", "--older-than-days", "0"])
            .contains("expired 1 traces (2 spans)")
    );
}

/// A linear model on a table with text columns: one-hot levels and the intercept are collinear,
/// so the error names the fix, and `--l2` applies it.
#[test]
fn linear_training_on_text_columns_needs_and_takes_a_ridge() {
    let home = tempfile::tempdir().expect("home");
    let data = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/bike_sharing_hourly.csv"
    );
    let args = [
        "train",
        "--data",
        data,
        "--target",
        "cnt",
        "--algorithm",
        "linear",
        "--drop",
        "dteday,casual,registered",
    ];
    let (code, _, err) = cli(home.path(), &args);
    assert_eq!(code, Some(1));
    assert!(err.contains("--l2 1e-6"), "{err}");
    let out = cli_ok(home.path(), &[&args[..], &["--l2", "1e-6"]].concat());
    let rmse: f64 = out
        .lines()
        .find(|l| l.trim_start().starts_with("test_rmse"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("test_rmse");
    assert!(
        rmse > 50.0 && rmse < 150.0,
        "a linear fit of hourly rentals: {rmse}"
    );
}
