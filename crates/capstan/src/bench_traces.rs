//! `capstan bench traces`: OTLP/HTTP ingestion into the embedded store, and trace queries over
//! millions of spans in PostgreSQL.
//!
//! Ingestion: a `capstan server` on a fresh SQLite home; clients post protobuf
//! `ExportTraceServiceRequest`s of 512 spans (the OpenTelemetry SDK's default batch) shaped like
//! an instrumented RAG app (a root, a retrieval, three model calls with GenAI attributes); every
//! span is distinct, and the server's own counter must equal what was sent.
//!
//! Queries: a fresh PostgreSQL database filled inside PostgreSQL with synthetic traces (five
//! spans each, over 30 days) — the write path is measured above — then a `capstan server` on it
//! answers the searches a user runs from the UI and API, each repeated with varied values;
//! latency is measured at the client.

use crate::bench::percentile;
use crate::platform::Error;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;
use traces::{Span, Status};

const BATCH: usize = 512;
const MODELS: [&str; 8] = [
    "gpt-4o-mini",
    "gpt-4o",
    "claude-haiku",
    "claude-sonnet",
    "llama-3-8b",
    "mistral-small",
    "smollm2",
    "gemini-flash",
];

/// Span `i` of the ingestion workload (five per trace).
fn app_span(i: u64, now_ns: i64) -> Span {
    let t = i / 5;
    let k = i % 5;
    let h = (i.wrapping_mul(2_654_435_761)) % 1_000_003;
    let model = MODELS[(t % 8) as usize];
    let start = now_ns - 3_600_000_000_000 + (t as i64) * 1_000_000 + (k as i64) * 1_000_000;
    let mut attrs = serde_json::Map::new();
    attrs.insert("user.id".into(), json!(format!("user-{}", t % 1000)));
    if k >= 2 {
        for (key, v) in [
            ("gen_ai.operation.name", json!("chat")),
            ("gen_ai.provider.name", json!("openai")),
            ("gen_ai.request.model", json!(model)),
            ("gen_ai.usage.input_tokens", json!(200 + h % 2000)),
            ("gen_ai.usage.output_tokens", json!(20 + h % 300)),
            ("gen_ai.request.temperature", json!(0.2)),
            ("capstan.prompt", json!(format!("qa@{}", 1 + t % 3))),
        ] {
            attrs.insert(key.into(), v);
        }
    } else if k == 1 {
        attrs.insert("rag.collection".into(), json!("docs"));
        attrs.insert("rag.top_k".into(), json!(5));
    }
    Span {
        trace_id: format!("{:032x}", t + 1),
        span_id: format!("{:016x}", i + 1),
        parent_span_id: if k == 0 {
            String::new()
        } else {
            format!("{:016x}", t * 5 + 1)
        },
        name: match k {
            0 => "handle request".into(),
            1 => "retrieve".into(),
            _ => format!("chat {model}"),
        },
        kind: if k >= 2 { 3 } else { 1 },
        start_ns: start,
        end_ns: start + (20 + (h % 900) as i64) * 1_000_000,
        status: if h.is_multiple_of(50) { Status::Error } else { Status::Ok },
        service: "rag-app".into(),
        scope: "bench".into(),
        attributes: attrs,
        resource: json!({"service.name": "rag-app", "host.name": "bench", "telemetry.sdk.language": "python"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        ..Default::default()
    }
}

fn net(e: reqwest::Error) -> Error {
    Error::Other(format!("HTTP: {e}"))
}

struct Server {
    child: std::process::Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_server(home: &Path, db: Option<&str>) -> Result<Server, Error> {
    let port = crate::bench_serving::free_port()?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["server", "--port", &port.to_string(), "--home"])
        .arg(home)
        .env("CAPSTAN_LOG", "error")
        .stdout(Stdio::null());
    if let Some(db) = db {
        cmd.args(["--db", db]);
    }
    let mut child = cmd.spawn()?;
    let url = format!("http://127.0.0.1:{port}");
    crate::bench::wait_healthy(&url, &mut child).await?;
    Ok(Server { child, url })
}

struct Ingest {
    spans: u64,
    seconds: f64,
    counted: u64,
}

async fn ingest(url: &str, total: u64, clients: usize) -> Result<Ingest, Error> {
    let now_ns = base::now_millis() * 1_000_000;
    let bodies: Vec<Vec<u8>> = (0..total.div_ceil(BATCH as u64))
        .map(|b| {
            let spans: Vec<Span> = (b * BATCH as u64..((b + 1) * BATCH as u64).min(total))
                .map(|i| app_span(i, now_ns))
                .collect();
            traces::otlp::encode_protobuf(&spans)
        })
        .collect();
    let mb: usize = bodies.iter().map(Vec::len).sum::<usize>() / (1 << 20);
    eprintln!(
        "ingesting {total} spans ({} requests, {mb} MiB of protobuf) with {clients} clients …",
        bodies.len()
    );
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let http = reqwest::Client::new();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (bodies, next, http, url) =
            (bodies.clone(), next.clone(), http.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return Ok::<(), String>(());
                };
                let r = http
                    .post(format!("{url}/v1/traces"))
                    .header("content-type", "application/x-protobuf")
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if r.status() != 200 {
                    return Err(format!("POST /v1/traces answered {}", r.status()));
                }
            }
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| Error::Other(e.to_string()))?
            .map_err(Error::Other)?;
    }
    let seconds = t.elapsed().as_secs_f64();
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .map_err(net)?
        .text()
        .await
        .map_err(net)?;
    let counted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("capstan_otlp_spans_total{outcome=\"accepted\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(Ingest {
        spans: total,
        seconds,
        counted,
    })
}

struct QueryRow {
    name: &'static str,
    p50: f64,
    p99: f64,
    found: usize,
}

async fn time_queries(
    http: &reqwest::Client,
    url: &str,
    name: &'static str,
    queries: Vec<String>,
) -> Result<QueryRow, Error> {
    let mut ms = Vec::with_capacity(queries.len());
    let mut found = 0;
    for q in &queries {
        let t = Instant::now();
        let r = http.get(format!("{url}{q}")).send().await.map_err(net)?;
        let status = r.status();
        let body: Value = r.json().await.map_err(net)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        if !status.is_success() {
            return Err(Error::Other(format!("{q} answered {status}: {body}")));
        }
        found += body["traces"]
            .as_array()
            .or(body["groups"].as_array())
            .or(body["spans"].as_array())
            .map_or(0, Vec::len);
    }
    ms.sort_by(f64::total_cmp);
    Ok(QueryRow {
        name,
        p50: percentile(&ms, 50.0),
        p99: percentile(&ms, 99.0),
        found: found / queries.len().max(1),
    })
}

async fn query_bench(
    pg: &str,
    spans: i64,
    repeat: usize,
    reuse: bool,
    home: &Path,
) -> Result<Vec<QueryRow>, Error> {
    let spans = spans / 5 * 5;
    let (admin_base, _) = pg
        .rsplit_once('/')
        .ok_or_else(|| Error::Other(format!("--pg {pg} is not a postgres:// URL")))?;
    let name = "capstan_bench_traces";
    let url = format!("{admin_base}/{name}");
    let traces = spans / 5;
    let step_ns = 30 * 86_400_000_000_000 / traces.max(1);
    // The fill's end time is kept beside it, so a reused fill is queried where it lies.
    let stamp = std::env::temp_dir().join(format!("{name}-{spans}.end_ns"));
    let reused = if reuse {
        std::fs::read_to_string(&stamp)
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
    } else {
        None
    };
    let end_ns = match reused {
        Some(end) => {
            eprintln!("reusing the {spans} spans in {name}");
            end
        }
        None => {
            let end = base::now_millis() * 1_000_000;
            fill(pg, &url, name, spans, end, step_ns).await?;
            std::fs::write(&stamp, end.to_string())?;
            end
        }
    };
    let server = start_server(home, Some(&url)).await?;
    let http = reqwest::Client::new();
    let u = &server.url;
    let end_ms = end_ns / 1_000_000;
    let hour_ago = end_ms - 3_600_000;
    let pick = |i: usize, n: usize| (i * 7919) % n;
    let rows = vec![
        time_queries(&http, u, "latest 50 traces", (0..repeat).map(|_| "/api/2.0/capstan/traces?limit=50".to_string()).collect()).await?,
        time_queries(&http, u, "by model, last 24 h", (0..repeat).map(|i| format!("/api/2.0/capstan/traces?model={}&since_ms={}&limit=50", MODELS[i % 8], end_ms - 86_400_000)).collect()).await?,
        time_queries(&http, u, "by user", (0..repeat).map(|i| format!("/api/2.0/capstan/traces?user=user-{}&limit=50", pick(i, 1000))).collect()).await?,
        time_queries(&http, u, "errors only", (0..repeat).map(|_| "/api/2.0/capstan/traces?status=error&limit=50".to_string()).collect()).await?,
        time_queries(&http, u, "slower than 1 s", (0..repeat).map(|_| "/api/2.0/capstan/traces?min_duration_ms=1000&limit=50".to_string()).collect()).await?,
        time_queries(&http, u, "slower than 5 s (none are)", (0..repeat).map(|_| "/api/2.0/capstan/traces?min_duration_ms=5000&limit=50".to_string()).collect()).await?,
        time_queries(&http, u, "cost ≥ $0.001", (0..repeat).map(|_| "/api/2.0/capstan/traces?min_cost_usd=0.001&limit=50".to_string()).collect()).await?,
        time_queries(&http, u, "cost ≥ $0.01 (none are)", (0..repeat).map(|_| "/api/2.0/capstan/traces?min_cost_usd=0.01&limit=50".to_string()).collect()).await?,
        time_queries(&http, u, "a page deep (page 20)", (0..repeat).map(|i| format!("/api/2.0/capstan/traces?limit=50&page_token={}:{:032x}", end_ns - (1000 + i as i64) * step_ns, traces - 1000 - i as i64)).collect()).await?,
        time_queries(&http, u, "text in the last hour", (0..repeat).map(|i| format!("/api/2.0/capstan/traces?q=synthetic%20span%20{}&since_ms={hour_ago}&limit=50", spans - 1 - pick(i, 500) as i64)).collect()).await?,
        time_queries(&http, u, "one trace's span tree", (0..repeat).map(|i| format!("/api/2.0/capstan/traces/{:032x}", 1 + pick(i, traces as usize))).collect()).await?,
        time_queries(&http, u, "stats by model, last hour", (0..repeat).map(|_| format!("/api/2.0/capstan/traces/stats?by=model&since_ms={hour_ago}")).collect()).await?,
    ];
    Ok(rows)
}

/// A fresh database `name` holding `spans` synthetic spans ending at `end_ns`.
async fn fill(
    pg: &str,
    url: &str,
    name: &str,
    spans: i64,
    end_ns: i64,
    step_ns: i64,
) -> Result<(), Error> {
    let admin = store::Db::open(pg).await?;
    admin.recreate_database(name).await?;
    admin.close().await;
    let db = store::Db::open(url).await?;
    let chunk = 1_000_000i64;
    let mut bar = crate::progress::Progress::new("generating spans in PostgreSQL", spans as u64);
    let mut first = 0;
    while first < spans {
        let n = chunk.min(spans - first);
        db.fill_synthetic_spans(first, n, end_ns, step_ns, spans)
            .await?;
        first += n;
        bar.inc(n as u64);
    }
    bar.finish();
    db.analyze().await?;
    db.close().await;
    Ok(())
}

/// What `capstan bench traces` was asked.
pub struct Opts {
    pub spans: u64,
    pub clients: usize,
    pub pg: String,
    pub pg_spans: i64,
    pub repeat: usize,
    pub reuse: bool,
}

pub async fn run(o: Opts, out: Option<PathBuf>, home: &Path) -> Result<(), Error> {
    let Opts {
        spans,
        clients,
        pg,
        pg_spans,
        repeat,
        reuse,
    } = o;
    let work = home.join("bench-traces");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let server = start_server(&work.join("sqlite-home"), None).await?;
    let ing = ingest(&server.url, spans, clients).await?;
    drop(server);
    if ing.counted != ing.spans {
        return Err(Error::Other(format!(
            "the server counted {} spans of the {} sent",
            ing.counted, ing.spans
        )));
    }
    let rate = ing.spans as f64 / ing.seconds;
    let mut table = format!(
        "## OTLP/HTTP ingestion (SQLite, {clients} clients, {BATCH} spans per request)\n\n\
         | spans | seconds | spans/s | target |\n|---|---|---|---|\n\
         | {} | {:.2} | {:.0} | ≥ 20,000 spans/s: {} |\n",
        ing.spans,
        ing.seconds,
        rate,
        if rate >= 20_000.0 { "met" } else { "NOT met" }
    );
    if pg != "none" && pg_spans > 0 {
        let rows = query_bench(&pg, pg_spans, repeat, reuse, &work.join("pg-home")).await?;
        let worst = rows.iter().map(|r| r.p99).fold(0.0, f64::max);
        table.push_str(&format!(
            "\n## Trace queries over {pg_spans} spans ({} traces) in PostgreSQL, {repeat} runs each\n\n\
             | query | p50 (ms) | p99 (ms) | rows returned |\n|---|---|---|---|\n",
            pg_spans / 5
        ));
        for r in &rows {
            table.push_str(&format!(
                "| {} | {:.1} | {:.1} | {} |\n",
                r.name, r.p50, r.p99, r.found
            ));
        }
        table.push_str(&format!(
            "\nWorst p99: {worst:.1} ms (target ≤ 100 ms: {}).\n",
            if worst <= 100.0 { "met" } else { "NOT met" }
        ));
    }
    println!("{table}");
    if let Some(out) = out {
        std::fs::write(&out, &table)?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}
