//! `capstan bench gateway`: the latency the gateway adds. A fast OpenAI-compatible upstream runs
//! on loopback (a fixed chat completion over keep-alive HTTP/1.1); the same requests go to it
//! directly, through `capstan server` (a separate process, one model group on that upstream) and
//! through LiteLLM's proxy (PyPI) on the same upstream. Overhead = latency through the gateway −
//! latency direct, at each percentile: one client in a loop, then open-loop load at fixed rates.

use crate::bench::percentile;
use crate::bench_serving::{Proc, free_port, wait_up};
use crate::platform::Error;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":2,"total_tokens":16}}"#;

/// The upstream: reads each request (head + Content-Length body) and answers [`ANSWER`].
async fn upstream() -> Result<String, Error> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", l.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            let _ = sock.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf: Vec<u8> = Vec::with_capacity(4096);
                let mut tmp = [0u8; 8192];
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{ANSWER}",
                    ANSWER.len()
                );
                loop {
                    // A complete request in the buffer?
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            buf.drain(..end + 4 + len);
                            if sock.write_all(response.as_bytes()).await.is_err() {
                                return;
                            }
                            continue;
                        }
                    }
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
            });
        }
    });
    Ok(url)
}

fn body() -> serde_json::Value {
    json!({"model": "bench", "max_tokens": 8,
           "messages": [{"role": "user", "content": "What is the capital of France?"}]})
}

#[derive(Default, Clone)]
struct Lat {
    /// Milliseconds, sorted.
    ms: Vec<f64>,
    /// The gateway's own `x-capstan-overhead-ms`, sorted.
    reported: Vec<f64>,
    failed: usize,
    achieved_rps: f64,
}

async fn one(
    http: &reqwest::Client,
    url: &str,
    key: Option<&str>,
) -> Result<(f64, Option<f64>), ()> {
    let t = Instant::now();
    let mut r = http.post(url).json(&body());
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let resp = r.send().await.map_err(|_| ())?;
    let ok = resp.status().is_success();
    let reported = resp
        .headers()
        .get("x-capstan-overhead-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let _ = resp.bytes().await.map_err(|_| ())?;
    if !ok {
        return Err(());
    }
    Ok((t.elapsed().as_secs_f64() * 1000.0, reported))
}

fn finish(mut l: Lat) -> Lat {
    l.ms.sort_by(f64::total_cmp);
    l.reported.sort_by(f64::total_cmp);
    l
}

/// One client, one request at a time.
async fn sequential(url: &str, key: Option<&str>, n: usize) -> Lat {
    let http = reqwest::Client::new();
    let mut l = Lat::default();
    for _ in 0..n / 10 {
        let _ = one(&http, url, key).await; // warm-up
    }
    let t = Instant::now();
    for _ in 0..n {
        match one(&http, url, key).await {
            Ok((ms, rep)) => {
                l.ms.push(ms);
                l.reported.extend(rep);
            }
            Err(()) => l.failed += 1,
        }
    }
    l.achieved_rps = n as f64 / t.elapsed().as_secs_f64();
    finish(l)
}

/// Requests started at a fixed rate whatever the answers do (open loop), for `seconds`.
async fn open_loop(url: &str, key: Option<&str>, rate: u64, seconds: f64) -> Lat {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .tcp_nodelay(true)
        .build()
        .unwrap_or_default();
    let total = (rate as f64 * seconds) as usize;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let url: Arc<str> = url.into();
    let key: Option<Arc<str>> = key.map(Into::into);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    for i in 0..total {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let (http, url, key, tx) = (http.clone(), url.clone(), key.clone(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(one(&http, &url, key.as_deref()).await);
        });
    }
    drop(tx);
    let mut l = Lat::default();
    while let Some(r) = rx.recv().await {
        match r {
            Ok((ms, rep)) => {
                l.ms.push(ms);
                l.reported.extend(rep);
            }
            Err(()) => l.failed += 1,
        }
    }
    l.achieved_rps = l.ms.len() as f64 / start.elapsed().as_secs_f64();
    finish(l)
}

async fn start_capstan(home: &Path, upstream: &str) -> Result<(Proc, String), Error> {
    let port = free_port()?;
    std::fs::create_dir_all(home)?;
    std::fs::write(
        home.join("capstan.toml"),
        format!(
            "[gateway]\nlocal_models = false\n[gateway.cache]\nexact = false\n[[gateway.groups]]\nname = \"bench\"\ndeployments = [{{ id = \"up\", base_url = \"{upstream}/v1\", model = \"bench-model\" }}]\n"
        ),
    )?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--home")
        .arg(home)
        .args(["server", "--port", &port.to_string()])
        .env("CAPSTAN_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let url = format!("http://127.0.0.1:{port}");
    wait_up(&format!("{url}/health"), &mut child).await?;
    Ok((Proc(child), url))
}

async fn start_litellm(exe: &str, dir: &Path, upstream: &str) -> Result<(Proc, String), Error> {
    let port = free_port()?;
    let cfg = dir.join("litellm.yaml");
    std::fs::write(
        &cfg,
        format!(
            "model_list:\n  - model_name: bench\n    litellm_params:\n      model: openai/bench-model\n      api_base: {upstream}/v1\n      api_key: unused\nlitellm_settings:\n  telemetry: false\n"
        ),
    )?;
    let mut child = Command::new(exe)
        .arg("--config")
        .arg(&cfg)
        .args(["--port", &port.to_string(), "--num_workers", "1"])
        .env("LITELLM_MASTER_KEY", "sk-bench")
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_LOG", "ERROR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let url = format!("http://127.0.0.1:{port}");
    wait_up(&format!("{url}/health/liveliness"), &mut child).await?;
    Ok((Proc(child), url))
}

struct Row {
    scenario: String,
    /// Offered requests/s (0 for the one-client run).
    rate: u64,
    direct: Lat,
    capstan: Lat,
    litellm: Option<Lat>,
}

fn over(via: &Lat, direct: &Lat, p: f64) -> f64 {
    (percentile(&via.ms, p) - percentile(&direct.ms, p)).max(0.0)
}

pub async fn run(
    litellm: Option<String>,
    requests: usize,
    rates: Vec<u64>,
    seconds: f64,
    out: Option<PathBuf>,
    home: &Path,
) -> Result<(), Error> {
    let work = home.join("bench-gateway");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let up = upstream().await?;
    let (_capstan, cap) = start_capstan(&work.join("capstan-home"), &up).await?;
    let peer = match &litellm {
        Some(exe) if exe != "none" => Some(start_litellm(exe, &work, &up).await?),
        _ => None,
    };
    let direct_url = format!("{up}/v1/chat/completions");
    let cap_url = format!("{cap}/v1/chat/completions");
    let peer_url = peer
        .as_ref()
        .map(|(_, u)| format!("{u}/v1/chat/completions"));
    let mut rows = Vec::new();
    eprintln!("one client, {requests} requests each …");
    rows.push(Row {
        scenario: "1 client, sequential".into(),
        rate: 0,
        direct: sequential(&direct_url, None, requests).await,
        capstan: sequential(&cap_url, None, requests).await,
        litellm: match &peer_url {
            Some(u) => Some(sequential(u, Some("sk-bench"), requests.min(1000)).await),
            None => None,
        },
    });
    for rate in rates {
        eprintln!("open loop at {rate} requests/s for {seconds} s …");
        rows.push(Row {
            scenario: format!("{rate} req/s"),
            rate,
            direct: open_loop(&direct_url, None, rate, seconds).await,
            capstan: open_loop(&cap_url, None, rate, seconds).await,
            litellm: match &peer_url {
                // LiteLLM's proxy is far from 1,000 req/s on 2 cores; a short run shows where it is.
                Some(u) => Some(open_loop(u, Some("sk-bench"), rate, seconds.min(5.0)).await),
                None => None,
            },
        });
    }
    let mut table = String::from(
        "| load | direct p50 / p99 (ms) | capstan overhead p50 / p99 (ms) | capstan self-reported p50 / p99 (ms) | capstan achieved req/s (failed) | litellm overhead p50 / p99 (ms) | litellm achieved req/s (failed) | p99 overhead ratio |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        let lite = r.litellm.as_ref();
        // A peer that could not keep up (failures, or under 90 % of the offered rate) has no
        // overhead worth dividing: say so instead of printing a meaningless ratio.
        let ratio = match lite {
            None => "—".into(),
            Some(l) if l.failed > 0 || (r.rate > 0 && l.achieved_rps < 0.9 * r.rate as f64) => {
                format!(
                    "LiteLLM saturated ({} of {} failed)",
                    l.failed,
                    l.failed + l.ms.len()
                )
            }
            Some(l) => format!(
                "{:.0}× lower",
                over(l, &r.direct, 99.0) / over(&r.capstan, &r.direct, 99.0).max(0.001)
            ),
        };
        table.push_str(&format!(
            "| {} | {:.3} / {:.3} | {:.3} / {:.3} | {:.3} / {:.3} | {:.0} ({}) | {} | {} | {} |\n",
            r.scenario,
            percentile(&r.direct.ms, 50.0),
            percentile(&r.direct.ms, 99.0),
            over(&r.capstan, &r.direct, 50.0),
            over(&r.capstan, &r.direct, 99.0),
            percentile(&r.capstan.reported, 50.0),
            percentile(&r.capstan.reported, 99.0),
            r.capstan.achieved_rps,
            r.capstan.failed,
            lite.map(|l| format!(
                "{:.2} / {:.2}",
                over(l, &r.direct, 50.0),
                over(l, &r.direct, 99.0)
            ))
            .unwrap_or_else(|| "—".into()),
            lite.map(|l| format!("{:.0} ({})", l.achieved_rps, l.failed))
                .unwrap_or_else(|| "—".into()),
            ratio,
        ));
    }
    println!("{table}");
    if let Some(path) = out {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, &table)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
