//! `capstan bench features`: point-in-time historical retrieval, Capstan beside the real Feast
//! (file offline store) on the same generated tables, same run: time, ratio, and whether every
//! joined value agrees.

use crate::platform::Error;
use data::frame::{ColumnData, Frame};
use std::collections::HashMap;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::time::Instant;

fn peer(python: &str, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>, Error> {
    crate::bench::run_peer(python, "features_peer.py", args)
}

fn numbers(f: &Frame, c: &str) -> Result<Vec<f64>, Error> {
    match f.column(c).map(|c| &c.data) {
        Some(ColumnData::Numeric(v)) => Ok(v.clone()),
        _ => Err(Error::Other(format!("no numeric column {c}"))),
    }
}

pub async fn run(
    python: &str,
    entities: usize,
    source: usize,
    online_seconds: u64,
    redis: Option<String>,
    out: Option<PathBuf>,
) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    eprintln!("generating {source} source rows and {entities} entity rows");
    peer(
        python,
        &[
            "gen".as_ref(),
            "--entities".as_ref(),
            entities.to_string().as_ref(),
            "--source".as_ref(),
            source.to_string().as_ref(),
            "--out".as_ref(),
            d.as_os_str(),
        ],
    )?;
    let defs = features::Definitions::from_yaml(
        "entities:\n  - {name: driver, join_keys: [driver_id]}\n\
         sources:\n  - {name: stats, path: source.parquet, timestamp: event_timestamp, created_timestamp: created}\n\
         feature_views:\n  - name: driver_stats\n    entities: [driver]\n    source: stats\n    ttl_seconds: 2592000\n    features:\n      - {name: conv_rate, type: float}\n      - {name: acc_rate, type: float}\n      - {name: avg_daily_trips, type: float}\n",
    )
    .map_err(Error::Other)?;
    let entity_frame = data::frame::read_frame(&d.join("entities.parquet"))
        .map_err(|e| Error::Other(e.to_string()))?;
    eprintln!("capstan: historical retrieval");
    let t = Instant::now();
    let ours = features::historical_features(
        &defs,
        d,
        &entity_frame,
        &features::Request {
            features: &[
                "driver_stats:conv_rate".into(),
                "driver_stats:acc_rate".into(),
                "driver_stats:avg_daily_trips".into(),
            ],
            timestamp: "event_timestamp",
            full_feature_names: false,
        },
    )
    .map_err(Error::Other)?;
    let ours_secs = t.elapsed().as_secs_f64();
    eprintln!("Feast: historical retrieval");
    let v: serde_json::Value =
        serde_json::from_slice(&peer(python, &["historical".as_ref(), d.as_os_str()])?)
            .map_err(|e| Error::Other(format!("peer output: {e}")))?;
    let feast_secs = v["seconds"].as_f64().unwrap_or(f64::NAN);
    // Agreement: Feast's rows keyed by (driver, timestamp in µs).
    let theirs = data::frame::read_frame(&d.join("feast_out.parquet"))
        .map_err(|e| Error::Other(e.to_string()))?;
    let key = |f: &Frame| -> Result<Vec<(i64, i64)>, Error> {
        let ids = numbers(f, "driver_id")?;
        let ts = numbers(f, "event_timestamp")?;
        Ok(ids
            .iter()
            .zip(&ts)
            .map(|(i, t)| (*i as i64, (t * 1e6).round() as i64))
            .collect())
    };
    let feast_by: HashMap<(i64, i64), f64> = key(&theirs)?
        .into_iter()
        .zip(numbers(&theirs, "conv_rate")?)
        .collect();
    let (mut same, mut differ, mut absent, mut absent_empty) = (0usize, 0usize, 0usize, 0usize);
    for (k, x) in key(&ours)?.into_iter().zip(numbers(&ours, "conv_rate")?) {
        match feast_by.get(&k) {
            None => {
                absent += 1;
                absent_empty += usize::from(x.is_nan());
            }
            Some(y) if (x.is_nan() && y.is_nan()) || x == *y => same += 1,
            Some(_) => differ += 1,
        }
    }
    let mut t = format!(
        "Historical retrieval: {entities} entity rows × 3 features against a {source}-row source \
         ({} drivers, TTL 30 days, created-timestamp tie-break), Feast {} file offline store.\n\n\
         | | seconds | rows returned |\n|---|---|---|\n",
        (source / 100).max(1),
        "0.67"
    );
    t += &format!("| capstan | {ours_secs:.2} | {} |\n", ours.rows());
    t += &format!(
        "| Feast | {feast_secs:.2} | {} |\n",
        v["rows"].as_u64().unwrap_or(0)
    );
    t += &format!(
        "\nCapstan is {:.1}× faster. Of Capstan's rows, {same} have the same conv_rate as Feast's row for the same (driver, timestamp), {differ} differ, {absent} have no Feast row ({absent_empty} of them have no value within the TTL: Capstan keeps such entity rows with empty features, this Feast version leaves them out).\n",
        feast_secs / ours_secs
    );
    if online_seconds > 0 {
        t += "\n";
        t += &online(python, redis.as_deref(), 8, online_seconds).await?;
    }
    println!("\n{t}");
    if let Some(p) = out {
        std::fs::write(p, &t)?;
    }
    Ok(())
}

/// Loads the ten-feature view into a fresh home's online store (`online`: "" for the metadata
/// database, or a Redis URL), starts `capstan server` on it and puts `connections` clients on
/// `POST /get-online-features` for `seconds`.
async fn serve_ours(
    d: &std::path::Path,
    name: &str,
    online: &str,
    body: &serde_json::Value,
    (connections, seconds): (usize, u64),
) -> Result<(crate::bench_serving::Load, crate::bench_serving::Load), Error> {
    use crate::bench_serving::{Proc, free_port, wait_up};
    let home = d.join(name);
    let mut config = crate::config::Config::default();
    config.store.online = online.to_owned();
    {
        let p = crate::platform::Platform::open(&home, &config).await?;
        let mut yaml = String::from(
            "entities:\n  - {name: driver, join_keys: [driver_id]}\nsources:\n  - {name: s, path: online_source.parquet, timestamp: event_timestamp}\nfeature_views:\n  - name: stats\n    entities: [driver]\n    source: s\n    features:\n",
        );
        for i in 0..10 {
            yaml += &format!("      - {{name: f{i}, type: float}}\n");
        }
        let defs = features::Definitions::from_yaml(&yaml).map_err(Error::Other)?;
        let rows = features::online::snapshot(&defs, &defs.feature_views[0], d, i64::MAX / 4)
            .map_err(Error::Other)?;
        p.online
            .replace_view("stats", &rows)
            .await
            .map_err(Error::Other)?;
        features::defs::FeatureRegistry::apply(
            &p.db,
            &features::defs::Applied {
                definitions: defs,
                base_dir: d.to_string_lossy().into_owned(),
                applied_ms: base::now_millis(),
            },
        )
        .await
        .map_err(Error::Other)?;
        p.db.close().await;
    }
    let port = free_port()?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("--home")
        .arg(&home)
        .args(["server", "--port", &port.to_string()])
        .env("CAPSTAN_LOG", "error")
        .env("CAPSTAN_STORE__ONLINE", online)
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let url = format!("http://127.0.0.1:{port}");
    wait_up(&format!("{url}/health"), &mut child).await?;
    let _server = Proc(child);
    eprintln!(
        "capstan ({}): online lookups, {connections} connections for {seconds}s",
        if online.is_empty() { "SQLite" } else { online }
    );
    Ok(both_loads(
        &format!("{url}/get-online-features"),
        body,
        connections,
        seconds,
    )
    .await)
}

/// The saturating load (`connections` clients), then one client alone for half as long: the
/// latency a lookup takes when it does not queue behind the others (load generator and server
/// share the machine's cores).
async fn both_loads(
    url: &str,
    body: &serde_json::Value,
    connections: usize,
    seconds: u64,
) -> (crate::bench_serving::Load, crate::bench_serving::Load) {
    let busy = crate::bench_serving::load(url, body, connections, seconds).await;
    let alone = crate::bench_serving::load(url, body, 1, seconds.div_ceil(2)).await;
    (busy, alone)
}

/// Online lookups of one entity with ten features over HTTP: `capstan server` (SQLite online
/// store, and Redis when `redis` names one) against `feast serve` (SQLite online store), same
/// load generator, same run.
pub async fn online(
    python: &str,
    redis: Option<&str>,
    connections: usize,
    seconds: u64,
) -> Result<String, Error> {
    use crate::bench_serving::{Proc, free_port, wait_up};
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    peer(python, &["gen-online".as_ref(), d.as_os_str()])?;
    let features: Vec<String> = (0..10).map(|i| format!("stats:f{i}")).collect();
    let body = serde_json::json!({"features": features, "entities": {"driver_id": [4242]}});
    let ours = serve_ours(d, "home", "", &body, (connections, seconds)).await?;
    let on_redis = match redis {
        Some(url) => Some(serve_ours(d, "home-redis", url, &body, (connections, seconds)).await?),
        None => None,
    };
    let fport = free_port()?;
    let mut child = std::process::Command::new(python)
        .arg(crate::bench::peer_script("features_peer.py"))
        .args([
            "serve-online".as_ref(),
            d.as_os_str(),
            fport.to_string().as_ref(),
        ])
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let furl = format!("http://127.0.0.1:{fport}");
    wait_up(&format!("{furl}/health"), &mut child).await?;
    let feast_proc = Proc(child);
    eprintln!("Feast: online lookups, same load");
    let theirs = both_loads(
        &format!("{furl}/get-online-features"),
        &body,
        connections,
        seconds,
    )
    .await;
    drop(feast_proc);
    let mut t = format!(
        "Online lookups: one entity, 10 features, POST /get-online-features; SQLite online stores on both sides (10,000 entities){}. Saturated: {connections} keep-alive connections for {seconds} s; alone: one connection for {} s (no queueing behind other clients; the load generator shares the cores).\n\n| | requests/s (saturated) | p50 (ms) | p99 (ms) | failed | p50 alone (ms) | p99 alone (ms) |\n|---|---|---|---|---|---|---|\n",
        if on_redis.is_some() {
            ", and Capstan again on Redis"
        } else {
            ""
        },
        seconds.div_ceil(2)
    );
    let row =
        |name: &str, (busy, alone): &(crate::bench_serving::Load, crate::bench_serving::Load)| {
            format!(
                "| {name} | {:.0} | {:.2} | {:.2} | {} | {:.2} | {:.2} |\n",
                busy.rps,
                busy.p50_ms,
                busy.p99_ms,
                busy.failed + alone.failed,
                alone.p50_ms,
                alone.p99_ms
            )
        };
    t += &row("capstan server", &ours);
    if let Some(r) = &on_redis {
        t += &row("capstan server, Redis online store", r);
    }
    t += &row("feast serve", &theirs);
    t += &format!(
        "\nCapstan serves {:.1}× the requests per second; p99 {:.1}× lower saturated, {:.1}× lower alone.\n",
        ours.0.rps / theirs.0.rps,
        theirs.0.p99_ms / ours.0.p99_ms,
        theirs.1.p99_ms / ours.1.p99_ms
    );
    Ok(t)
}
