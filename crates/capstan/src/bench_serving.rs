//! `capstan bench serving`: `capstan serve` against a FastAPI + scikit-learn server with the same
//! model and JSON, loaded by the same generator at the same concurrency; then a hot swap under load.

use crate::platform::{Error, Platform};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The breast-cancer data (scikit-learn 1.9.1, BSD-3-Clause; see data/README.md).
const BREAST_CANCER_CSV: &str = include_str!("../../../data/breast_cancer.csv");

/// A child process killed (with its process group, when it leads one: servers such as
/// `feast serve --workers 2` fork workers that outlive their parent) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn breast_cancer() -> Result<learn::Dataset, Error> {
    learn::Dataset::from_csv(BREAST_CANCER_CSV, "diagnosis")
        .map_err(|e| Error::Other(format!("breast_cancer.csv: {e}")))
}

/// Registers `package` as a new version of `name` and points `champion` at it.
async fn register(p: &Platform, name: &str, package: &learn::ModelPackage) -> Result<i64, Error> {
    let run = p
        .tracking
        .create_run(tracking::NewRun {
            experiment_id: base::ExperimentId::DEFAULT,
            run_name: None,
            user_id: "bench".into(),
            start_time: base::now_millis(),
            tags: vec![],
        })
        .await?;
    p.log_package(&run.info, package).await?;
    let v = p
        .register_run_model(name, &run.info.run_id, "model")
        .await?;
    p.registry.set_alias(name, "champion", v.version).await?;
    Ok(v.version)
}

pub fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub async fn wait_up(url: &str, child: &mut Child) -> Result<(), Error> {
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        if let Ok(Some(s)) = child.try_wait() {
            return Err(Error::Other(format!("{url}: the server exited with {s}")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(Error::Other(format!("{url} did not come up")))
}

#[derive(Clone, Copy, Default)]
pub struct Load {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub ok: u64,
    pub failed: u64,
}

/// `connections` keep-alive clients post `body` for `seconds`; `during` runs meanwhile.
pub async fn load(url: &str, body: &Value, connections: usize, seconds: u64) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (url, body, stop) = (url.to_owned(), body.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let (mut lat, mut failed) = (Vec::new(), 0u64);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = match http.post(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                if ok {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    failed += 1;
                }
            }
            (lat, failed)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut failed = 0;
    for t in tasks {
        if let Ok((lat, f)) = t.await {
            all.extend(lat);
            failed += f;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| crate::bench::percentile(&all, p);
    Load {
        rps: all.len() as f64 / elapsed,
        p50_ms: pct(50.0),
        p99_ms: pct(99.0),
        ok: all.len() as u64,
        failed,
    }
}

/// `capstan serve breast-cancer@champion` on a free port, with the prediction log on or off.
async fn start_serve(home: &Path, prediction_log: bool) -> Result<(Proc, String), Error> {
    let port = free_port()?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--home")
        .arg(home)
        .args([
            "serve",
            "breast-cancer@champion",
            "--port",
            &port.to_string(),
        ])
        .env("CAPSTAN_LOG", "error")
        .env("CAPSTAN_SERVING__POLL_MS", "200")
        .env(
            "CAPSTAN_SERVING__PREDICTION_LOG",
            if prediction_log { "true" } else { "false" },
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let url = format!("http://127.0.0.1:{port}");
    wait_up(&format!("{url}/v2/health/ready"), &mut child).await?;
    Ok((Proc(child), url))
}

pub async fn run(
    python: &str,
    connections: usize,
    seconds: u64,
    out: Option<PathBuf>,
) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("home");
    let data = breast_cancer()?;
    let options = learn::TrainOptions {
        learning_rate: 0.5,
        epochs: 300,
        seed: 42,
        ..Default::default()
    };
    let fit = learn::train_logistic_regression(&data, &options, |_| {})
        .map_err(|e| Error::Other(e.to_string()))?;
    eprintln!(
        "logistic regression on breast_cancer: test accuracy {:.3}",
        fit.test_accuracy.unwrap_or(f64::NAN)
    );
    {
        let p = Platform::open(&home, &crate::config::Config::default()).await?;
        register(&p, "breast-cancer", &fit.package).await?;
        p.db.close().await;
    }
    let row: serde_json::Map<String, Value> = data
        .features
        .iter()
        .zip(&data.x[0])
        .map(|(f, v)| (f.clone(), json!(v)))
        .collect();
    let body = json!({"dataframe_records": [row]});

    // Prediction logging off and on, alternated so drift in machine load hits both alike.
    let (mut rps_off, mut rps_on) = (Vec::new(), Vec::new());
    for round in 0..2 {
        for log in [false, true] {
            let (_p, url) = start_serve(&home, log).await?;
            eprintln!(
                "capstan serve, prediction log {}: round {}",
                if log { "on" } else { "off" },
                round + 1
            );
            let l = load(&format!("{url}/invocations"), &body, connections, seconds).await;
            if log {
                rps_on.push(l.rps)
            } else {
                rps_off.push(l.rps)
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (rps_off, rps_on) = (mean(&rps_off), mean(&rps_on));

    let (ours, ours_url) = start_serve(&home, true).await?;
    eprintln!("capstan serve: {connections} connections for {seconds}s");
    let capstan = load(
        &format!("{ours_url}/invocations"),
        &body,
        connections,
        seconds,
    )
    .await;

    // Hot swap under load: a second version is registered and the alias moves mid-run.
    let swap = {
        let url = format!("{ours_url}/invocations");
        let (b, c) = (body.clone(), connections);
        let loader = tokio::spawn(async move { load(&url, &b, c, seconds).await });
        tokio::time::sleep(Duration::from_secs(seconds / 2)).await;
        let p = Platform::open(&home, &crate::config::Config::default()).await?;
        let mut pkg = fit.package.clone();
        pkg.training.insert("note".into(), json!("swapped"));
        register(&p, "breast-cancer", &pkg).await?;
        loader.await.map_err(|e| Error::Other(e.to_string()))?
    };
    drop(ours);

    let peer = if python == "none" {
        None
    } else {
        let csv = dir.path().join("breast_cancer.csv");
        std::fs::write(&csv, BREAST_CANCER_CSV)?;
        let script = crate::bench::peer_script("serving_peer.py");
        let port = free_port()?;
        let mut child = Command::new(python)
            .arg(&script)
            .arg("--data")
            .arg(&csv)
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::Other(format!(
                    "cannot start {python} {} (pip install -r bench/requirements.txt): {e}",
                    script.display()
                ))
            })?;
        let url = format!("http://127.0.0.1:{port}");
        wait_up(&format!("{url}/health"), &mut child).await?;
        let _peer = Proc(child);
        eprintln!("FastAPI + scikit-learn: same load");
        Some(load(&format!("{url}/invocations"), &body, connections, seconds).await)
    };

    let p = peer.unwrap_or_default();
    let has = peer.is_some();
    let cell = |v: f64| if has { format!("{v:.1}") } else { "-".into() };
    let mut t = String::from(
        "| measure | capstan serve | FastAPI + scikit-learn | ratio |\n|---|---|---|---|\n",
    );
    t += &format!(
        "| requests/s ({connections} connections, 1 row each) | {:.0} | {} | {} |\n",
        capstan.rps,
        cell(p.rps),
        if has {
            format!("{:.1}× more", capstan.rps / p.rps)
        } else {
            "-".into()
        }
    );
    t += &format!(
        "| p50 latency (ms) | {:.2} | {} | {} |\n",
        capstan.p50_ms,
        cell(p.p50_ms),
        if has {
            format!("{:.1}× lower", p.p50_ms / capstan.p50_ms)
        } else {
            "-".into()
        }
    );
    t += &format!(
        "| p99 latency (ms) | {:.2} | {} | {} |\n",
        capstan.p99_ms,
        cell(p.p99_ms),
        if has {
            format!("{:.1}× lower", p.p99_ms / capstan.p99_ms)
        } else {
            "-".into()
        }
    );
    t += &format!(
        "| failed requests | {} of {} | {} | |\n",
        capstan.failed,
        capstan.ok + capstan.failed,
        if has {
            format!("{} of {}", p.failed, p.ok + p.failed)
        } else {
            "-".into()
        }
    );
    t += &format!(
        "| hot swap under load: failed requests | {} of {} | not applicable | |\n",
        swap.failed,
        swap.ok + swap.failed
    );
    t += &format!(
        "| prediction log on vs off (requests/s, mean of 2 alternated runs each) | {rps_on:.0} vs {rps_off:.0}: {:+.1}% | not applicable | |\n",
        (rps_on / rps_off - 1.0) * 100.0
    );
    println!("\n{t}");
    if let Some(path) = out {
        std::fs::write(&path, &t)?;
    }
    Ok(())
}
