//! Monitors over HTTP and on a schedule: create / list / get / delete monitors, evaluate one now,
//! list alerts; the scheduler evaluates each monitor every `interval_seconds`; alerts go to the
//! store, to `/metrics` and to the monitor's webhook.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use monitor::monitors::{
    Alert, Evaluation, MonitorSpec, Window, carry_forward, evaluate, new_alerts,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// In-process view of monitors for `/metrics`: last evaluations and alerts raised.
#[derive(Default, Clone)]
pub struct MonitorGauges {
    pub last: Arc<Mutex<HashMap<String, Evaluation>>>,
    pub alerts: Arc<Mutex<HashMap<(String, String), u64>>>,
    /// Reference tables, read once per path.
    references: Arc<Mutex<HashMap<String, Arc<data::frame::Frame>>>>,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/2.0/capstan/monitors", get(list).post(create))
        .route("/api/2.0/capstan/monitors/{name}", get(show).delete(remove))
        .route(
            "/api/2.0/capstan/monitors/{name}/evaluate",
            post(evaluate_now),
        )
        .route("/api/2.0/capstan/alerts", get(alerts))
}

fn store_err(e: String) -> ApiError {
    ApiError::internal(e)
}

async fn create(
    State(s): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let spec: MonitorSpec = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("invalid monitor: {e}")))?;
    spec.validate().map_err(ApiError::invalid)?;
    if let Some(r) = &spec.reference {
        reference(&s, r).map_err(ApiError::invalid)?;
    }
    s.monitors.put_monitor(&spec).await.map_err(store_err)?;
    Ok(Json(json!({"monitor": spec})))
}

async fn list(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let all = s.monitors.list_monitors().await.map_err(store_err)?;
    let monitors: Vec<Value> = all
        .into_iter()
        .map(|(spec, last)| json!({"monitor": spec, "last_evaluation": last}))
        .collect();
    Ok(Json(json!({"monitors": monitors})))
}

async fn show(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (spec, last) = s
        .monitors
        .get_monitor(&name)
        .await
        .map_err(store_err)?
        .ok_or_else(|| ApiError::not_found(format!("no monitor {name}")))?;
    Ok(Json(json!({"monitor": spec, "last_evaluation": last})))
}

async fn remove(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !s.monitors.delete_monitor(&name).await.map_err(store_err)? {
        return Err(ApiError::not_found(format!("no monitor {name}")));
    }
    Ok(Json(json!({})))
}

async fn evaluate_now(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (eval, raised) = run_monitor(&s, &name).await?;
    Ok(Json(json!({"evaluation": eval, "alerts": raised})))
}

#[derive(serde::Deserialize)]
struct AlertQuery {
    monitor: Option<String>,
    limit: Option<i64>,
}

async fn alerts(
    State(s): State<AppState>,
    Query(q): Query<AlertQuery>,
) -> Result<Json<Value>, ApiError> {
    let list = s
        .monitors
        .list_alerts(q.monitor.as_deref(), q.limit.unwrap_or(100))
        .await
        .map_err(store_err)?;
    Ok(Json(json!({"alerts": list})))
}

fn reference(s: &AppState, path: &str) -> Result<Arc<data::frame::Frame>, String> {
    let mut cache = s
        .monitor_gauges
        .references
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(f) = cache.get(path) {
        return Ok(f.clone());
    }
    let f = Arc::new(
        monitor::profile::read_reference(std::path::Path::new(path))
            .map_err(|e| format!("reference: {e}"))?,
    );
    cache.insert(path.to_owned(), f.clone());
    Ok(f)
}

/// Request and error counts of `model` over every version and variant.
fn counters(s: &AppState, model: &str) -> (u64, u64) {
    s.metrics
        .snapshot()
        .iter()
        .filter(|(k, _)| k.model == model)
        .fold((0, 0), |(r, e), (_, v)| {
            (
                r + v.requests.load(Ordering::Relaxed),
                e + v.errors.load(Ordering::Relaxed),
            )
        })
}

/// Evaluates one monitor now: stores the evaluation and the alerts it raised, and posts them to
/// the webhook.
pub async fn run_monitor(s: &AppState, name: &str) -> Result<(Evaluation, Vec<Alert>), ApiError> {
    let (spec, previous) = s
        .monitors
        .get_monitor(name)
        .await
        .map_err(store_err)?
        .ok_or_else(|| ApiError::not_found(format!("no monitor {name}")))?;
    let now = base::now_millis();
    let since = now - spec.window_seconds * 1000;
    let (inputs, predictions) = crate::monitoring::load_window(s, &spec.model, since).await?;
    let mut ids: Vec<String> = predictions.iter().map(|p| p.request_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let labels = s
        .labels
        .labels_for(&spec.model, &ids)
        .await
        .map_err(ApiError::internal)?;
    let reference = match &spec.reference {
        Some(r) => Some(reference(s, r).map_err(ApiError::invalid)?),
        None => None,
    };
    let w = Window {
        now_ms: now,
        inputs: Some(&inputs),
        predictions: &predictions,
        labels: &labels,
        reference: reference.as_deref(),
        counters: Some(counters(s, &spec.model)),
        previous_counters: previous.as_ref().and_then(|p| p.counters),
    };
    let mut eval = evaluate(&spec, &w);
    carry_forward(previous.as_ref(), &mut eval);
    let raised = new_alerts(previous.as_ref(), &eval);
    let Some(raised) = s
        .monitors
        .record_evaluation(&eval, &raised, previous.as_ref().map(|p| p.at_ms))
        .await
        .map_err(store_err)?
    else {
        // Another evaluator (a server's scheduler, a CLI) recorded one meanwhile: its verdict
        // and alerts stand.
        return Ok((eval, Vec::new()));
    };
    {
        let mut counts = s
            .monitor_gauges
            .alerts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for a in &raised {
            *counts
                .entry((a.monitor.clone(), a.check.clone()))
                .or_default() += 1;
        }
    }
    s.monitor_gauges
        .last
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.to_owned(), eval.clone());
    if let (Some(j), false) = (&spec.on_alert, raised.is_empty()) {
        // One pending job per monitor: a later alert of the same incident finds it queued or
        // running and starts nothing new.
        let mut payload = match &j.payload {
            serde_json::Value::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        payload.insert("alerts".into(), json!(raised));
        payload.insert("monitor".into(), json!(spec.name));
        let mut job = pipeline::NewJob::new(&j.kind, serde_json::Value::Object(payload));
        job.max_attempts = j.max_attempts.unwrap_or(3);
        job.dedupe_key = Some(format!("alert:{}", spec.name));
        match s.jobs.enqueue(job, now).await {
            Ok(job) => {
                tracing::info!(monitor = %spec.name, job = job.id, kind = %job.kind, "alert queued a job")
            }
            Err(e) => {
                tracing::error!(monitor = %spec.name, error = %e, "alert could not queue its job")
            }
        }
    }
    if let (Some(url), false) = (spec.webhook.clone(), raised.is_empty()) {
        let body = json!({"alerts": raised});
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build();
            let sent = match client {
                Ok(c) => c.post(&url).json(&body).send().await.map(|r| r.status()),
                Err(e) => Err(e),
            };
            match sent {
                Ok(st) if st.is_success() => {}
                Ok(st) => tracing::warn!(%url, status = %st, "alert webhook refused"),
                Err(e) => tracing::warn!(%url, error = %e, "alert webhook failed"),
            }
        });
    }
    Ok((eval, raised))
}

/// Evaluates every monitor whose interval has passed, forever (one tick per second).
pub async fn scheduler(s: AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Ok(all) = s.monitors.list_monitors().await else {
            continue;
        };
        let now = base::now_millis();
        for (spec, last) in all {
            let due = last.is_none_or(|l| now - l.at_ms >= spec.interval_seconds * 1000);
            if due && let Err(e) = run_monitor(&s, &spec.name).await {
                tracing::warn!(monitor = %spec.name, error = ?e.message, "monitor evaluation failed");
            }
        }
    }
}

/// Monitor gauges and alert counters in Prometheus text.
pub fn render_metrics(s: &AppState, out: &mut String) {
    use serving::metrics::label_value as lv;
    use std::fmt::Write;
    let last = s
        .monitor_gauges
        .last
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let mut names: Vec<&String> = last.keys().collect();
    names.sort();
    out.push_str("# HELP capstan_monitor_check_failing 1 when a monitor's check failed at its last evaluation.\n# TYPE capstan_monitor_check_failing gauge\n");
    for n in &names {
        for r in &last[*n].results {
            let _ = writeln!(
                out,
                "capstan_monitor_check_failing{{monitor=\"{}\",check=\"{}\"}} {}",
                lv(n),
                lv(&r.check),
                u8::from(r.failing == Some(true))
            );
        }
    }
    out.push_str("# HELP capstan_drift_score Per-column drift score at a monitor's last evaluation.\n# TYPE capstan_drift_score gauge\n");
    for n in &names {
        for c in &last[*n].drift_columns {
            let _ = writeln!(
                out,
                "capstan_drift_score{{monitor=\"{}\",column=\"{}\",method=\"{}\"}} {}",
                lv(n),
                lv(&c.column),
                lv(&c.method),
                c.score
            );
        }
    }
    out.push_str("# HELP capstan_drift_share Share of drifted columns at a monitor's last evaluation.\n# TYPE capstan_drift_share gauge\n");
    for n in &names {
        if let Some(v) = last[*n].drift_share {
            let _ = writeln!(out, "capstan_drift_share{{monitor=\"{}\"}} {v}", lv(n));
        }
    }
    let alerts = s
        .monitor_gauges
        .alerts
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let mut keys: Vec<&(String, String)> = alerts.keys().collect();
    keys.sort();
    out.push_str("# HELP capstan_alerts_total Alerts raised by this process.\n# TYPE capstan_alerts_total counter\n");
    for k in keys {
        let _ = writeln!(
            out,
            "capstan_alerts_total{{monitor=\"{}\",check=\"{}\"}} {}",
            lv(&k.0),
            lv(&k.1),
            alerts[k]
        );
    }
}
