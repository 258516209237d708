//! `capstan traces list | show | stats | expire`: the traces in the metadata database, the same
//! ones the server's `/api/2.0/capstan/traces` reads.

use crate::config::Config;
use crate::platform::{Error, Platform};
use crate::report::table;
use std::path::Path;
use traces::{GroupBy, Status, TraceFilter, TraceStore};

#[derive(clap::Subcommand, Debug)]
pub enum TracesCmd {
    /// Traces, newest first.
    List {
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        service: Option<String>,
        /// `ok` or `error`.
        #[arg(long)]
        status: Option<String>,
        /// Only traces at least this slow.
        #[arg(long)]
        min_ms: Option<f64>,
        /// Text in a span's name or attributes.
        #[arg(short, long)]
        query: Option<String>,
        /// Only the last this many hours.
        #[arg(long)]
        since_hours: Option<f64>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One trace as a span tree.
    Show { trace_id: String },
    /// Spans, errors, tokens, cost and latency per model, prompt, user, service or operation.
    Stats {
        #[arg(long, default_value = "model")]
        by: String,
        #[arg(long, default_value_t = 24.0)]
        since_hours: f64,
    },
    /// Delete traces older than N days (their counts, tokens and cost stay as hourly rollups).
    Expire {
        #[arg(long)]
        older_than_days: f64,
    },
}

fn now_ns() -> i64 {
    base::now_millis() * 1_000_000
}

fn hours_ago(h: f64) -> i64 {
    now_ns() - (h * 3.6e12) as i64
}

pub async fn run(home: &Path, config: &Config, cmd: TracesCmd) -> Result<(), Error> {
    let p = Platform::open(home, config).await?;
    let db = &p.db;
    match cmd {
        TracesCmd::List {
            model,
            user,
            service,
            status,
            min_ms,
            query,
            since_hours,
            limit,
        } => {
            let status = match status.as_deref() {
                None => None,
                Some("ok") => Some(Status::Ok),
                Some("error") => Some(Status::Error),
                Some(o) => {
                    return Err(Error::Other(format!(
                        "--status must be ok or error, not `{o}`"
                    )));
                }
            };
            let found = db
                .search_traces(&TraceFilter {
                    since_ns: since_hours.map(hours_ago),
                    model,
                    user,
                    service,
                    status,
                    min_duration_ms: min_ms,
                    text: query,
                    limit: limit.clamp(1, 1000),
                    ..Default::default()
                })
                .await?;
            let rows: Vec<Vec<String>> = found
                .iter()
                .map(|t| {
                    vec![
                        t.trace_id.clone(),
                        t.name.clone(),
                        t.service.clone(),
                        format!("{:.1}", t.duration_ms),
                        t.spans.to_string(),
                        if t.errors > 0 {
                            format!("error ({})", t.errors)
                        } else {
                            "ok".into()
                        },
                        t.model.clone(),
                        format!("{}/{}", t.input_tokens, t.output_tokens),
                        format!("{:.6}", t.cost_usd),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "trace",
                        "name",
                        "service",
                        "ms",
                        "spans",
                        "status",
                        "model",
                        "tokens in/out",
                        "cost $"
                    ],
                    &rows
                )
            );
        }
        TracesCmd::Show { trace_id } => {
            let spans = db.trace(&trace_id.to_ascii_lowercase()).await?;
            let t0 = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
            let mut rows = Vec::new();
            for (i, depth) in traces::tree_order(&spans) {
                let s = &spans[i];
                let g = s.genai();
                rows.push(vec![
                    format!("{}{}", "  ".repeat(depth), s.name),
                    format!("+{:.1}", (s.start_ns - t0) as f64 / 1e6),
                    format!("{:.1}", s.duration_ms()),
                    match s.status {
                        Status::Error => format!("error: {}", s.status_message),
                        _ => "ok".into(),
                    },
                    g.model.unwrap_or_default(),
                    match (g.input_tokens, g.output_tokens) {
                        (None, None) => String::new(),
                        (i, o) => format!("{}/{}", i.unwrap_or(0), o.unwrap_or(0)),
                    },
                ]);
            }
            print!(
                "{}",
                table(
                    &["span", "start ms", "ms", "status", "model", "tokens in/out"],
                    &rows
                )
            );
        }
        TracesCmd::Stats { by, since_hours } => {
            let group = GroupBy::parse(&by).ok_or_else(|| {
                Error::Other(format!(
                    "--by must be model, prompt, user, service or operation, not `{by}`"
                ))
            })?;
            let stats = db
                .trace_stats(group, hours_ago(since_hours), now_ns() + 60_000_000_000)
                .await?;
            let ms = |v: Option<f64>| v.map_or("—".into(), |x| format!("{x:.1}"));
            let rows: Vec<Vec<String>> = stats
                .iter()
                .map(|g| {
                    vec![
                        g.key.clone(),
                        g.spans.to_string(),
                        format!("{:.1} %", 100.0 * g.error_rate),
                        g.input_tokens.to_string(),
                        g.output_tokens.to_string(),
                        format!("{:.6}", g.cost_usd),
                        ms(g.latency_p50_ms),
                        ms(g.latency_p99_ms),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        &by,
                        "spans",
                        "errors",
                        "tokens in",
                        "tokens out",
                        "cost $",
                        "p50 ms",
                        "p99 ms"
                    ],
                    &rows
                )
            );
        }
        TracesCmd::Expire { older_than_days } => {
            if !(older_than_days.is_finite() && older_than_days >= 0.0) {
                return Err(Error::Other(
                    "--older-than-days must be a number ≥ 0".into(),
                ));
            }
            let done = db
                .expire(now_ns() - (older_than_days * 86_400e9) as i64)
                .await?;
            println!("expired {} traces ({} spans)", done.traces, done.spans);
        }
    }
    Ok(())
}
