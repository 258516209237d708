//! The data half of the demo's bike story: the raw data versioned in DVC's formats and checked by
//! its expectations (they gate everything after), rentals by hour of week as feature views
//! applied with `capstan features apply`, the point-in-time training set built by a cached
//! pipeline stage (`dvc.yaml`: ran, then unchanged, then restored from the run cache), a model
//! trained with and without the features (both tracked), and the features materialised into the
//! online store and read back through Feast's `POST /get-online-features`.
//!
//! Each hour's count becomes a feature row stamped one hour later — when the count is known — so
//! a training row at hour `t` can only see counts of earlier hours: the as-of join never reads the
//! future.

use crate::client::Client;
use crate::config::Config;
use crate::demo_story::{BIKES, Line, bike_rows, hour24};
use crate::features_cmd::FeaturesCmd;
use crate::platform::{Error, Platform};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::Path;

const SERVICE: &str = "bike_demand";

/// The bike data's expectations (`capstan test data`), the same suite as `data/expectations`.
const EXPECTATIONS: &str = include_str!("../../../data/expectations/bike_sharing.yaml");

fn other(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}

/// The raw data into the DVC-format repository `dir` (a pointer file for git, the content in
/// its cache), then its expectations, which must pass for the demo to go on.
fn version_and_check(dir: &Path) -> Result<(), Error> {
    let raw = dir.join("bike_sharing_hourly.csv");
    std::fs::write(&raw, BIKES)?;
    let mut repo = if dir.join(".dvc").is_dir() {
        data::Repo::open(dir)
    } else {
        data::Repo::init(dir)
    }
    .map_err(other)?;
    let out = repo.add(&raw).map_err(other)?;
    println!(
        "  versioned bike_sharing_hourly.csv: md5 {} ({} bytes), pointer bike_sharing_hourly.csv.dvc",
        out.md5, out.size
    );
    let suite_path = dir.join("expectations.yaml");
    std::fs::write(&suite_path, EXPECTATIONS)?;
    let suite = monitor::expect::Suite::load(&suite_path).map_err(other)?;
    let frame = data::frame::read_frame(&raw).map_err(other)?;
    let r = monitor::expect::run(&suite, &frame, dir);
    println!(
        "  data tests ({}): {} of {} expectations pass",
        r.suite,
        r.passed,
        r.passed + r.failed
    );
    if !r.success {
        return Err(Error::Other(format!(
            "the bike data fails {} of its expectations: the demo stops here",
            r.failed
        )));
    }
    Ok(())
}

/// `dvc.yaml`'s one stage: the point-in-time training set, built by this binary.
fn pipeline(dir: &Path, home: &Path) -> Result<(), Error> {
    let exe = std::env::current_exe()?;
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    let cmd = format!(
        "{} --home {} features historical --entities hours_2011.csv --timestamp event_timestamp --service {SERVICE} -o training_set.csv",
        quote(&exe),
        quote(home)
    );
    let yaml = format!(
        "stages:\n  training_set:\n    cmd: {}\n    deps: [hours_2011.csv, rentals_by_hour_of_week.csv, rentals_recent.csv, features.yaml]\n    outs: [training_set.csv]\n",
        serde_json::to_string(&cmd).map_err(other)?
    );
    std::fs::write(dir.join("dvc.yaml"), yaml)?;
    Ok(())
}

/// `capstan data repro` of `dir` in a blocking task: what each stage did (in full, and in a word
/// for the summary), and how long it took.
async fn repro(dir: &Path) -> Result<(String, &'static str, f64), Error> {
    let dir = dir.to_owned();
    let t = std::time::Instant::now();
    let runs =
        tokio::task::spawn_blocking(move || data::Repo::open(&dir).and_then(|mut r| r.repro(None)))
            .await
            .map_err(other)?
            .map_err(other)?;
    let said: Vec<String> = runs
        .iter()
        .map(|r| match r {
            data::StageRun::Unchanged(s) => format!("{s} unchanged"),
            data::StageRun::Restored(s) => format!("{s} restored from the run cache"),
            data::StageRun::Ran(s) => format!("{s} ran"),
        })
        .collect();
    let word = match runs.first() {
        Some(data::StageRun::Ran(_)) => "ran",
        Some(data::StageRun::Unchanged(_)) => "skipped",
        Some(data::StageRun::Restored(_)) => "restored",
        None => "nothing",
    };
    Ok((said.join(", "), word, t.elapsed().as_secs_f64()))
}

/// Feature definitions: two entities (the hour of week, the whole system), a view of each, an
/// on-demand feature, and the service the model uses. Every count is known one hour after its
/// hour began.
const DEFINITIONS: &str = "\
entities:
  - name: hour_of_week
    join_keys: [hour_of_week]
    description: weekday × 24 + hour (0 = Sunday 0:00 … 167 = Saturday 23:00)
  - name: system
    join_keys: [system]
    description: the bike-sharing system as a whole
sources:
  - name: rentals_by_hour_of_week
    path: rentals_by_hour_of_week.csv
    timestamp: event_timestamp
  - name: rentals_recent
    path: rentals_recent.csv
    timestamp: event_timestamp
feature_views:
  - name: rentals
    entities: [hour_of_week]
    source: rentals_by_hour_of_week
    features:
      - {name: last_rentals, type: float}
      - {name: mean_rentals_4w, type: float}
  - name: recent
    entities: [system]
    source: rentals_recent
    features:
      - {name: rentals_last_hour, type: float}
      - {name: rentals_last_24h, type: float}
on_demand_views:
  - name: rentals_trend
    sources: [rentals]
    features:
      - {name: change, expr: \"last_rentals - mean_rentals_4w\"}
feature_services:
  - name: bike_demand
    features: [rentals:last_rentals, rentals:mean_rentals_4w, rentals_trend:change, recent:rentals_last_hour, recent:rentals_last_24h]
";

fn weekday(name: &str) -> u32 {
    ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        .iter()
        .position(|d| *d == name)
        .unwrap_or(0) as u32
}

/// The feature sources (by hour of week; the system's last hour and day), one row per observed
/// hour each, and the entity table of 2011's hours (the original columns plus `event_timestamp`,
/// `hour_of_week` and `system`).
fn tables() -> Result<(String, String, String, usize), Error> {
    let (header, rows) = bike_rows();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| Error::Other(format!("bike data has no column {name}")))
    };
    let (day_col, hr, wd, cnt) = (col("dteday")?, col("hr")?, col("weekday")?, col("cnt")?);
    let mut source = String::from("hour_of_week,event_timestamp,last_rentals,mean_rentals_4w\n");
    let mut system = String::from("system,event_timestamp,rentals_last_hour,rentals_last_24h\n");
    let mut entities = format!("{},event_timestamp,hour_of_week,system\n", header.join(","));
    let mut recent: Vec<VecDeque<f64>> = vec![VecDeque::new(); 168];
    let mut day: VecDeque<(i64, f64)> = VecDeque::new();
    let mut n = 0;
    for r in &rows {
        let hour = hour24(&r[hr]);
        let how = weekday(&r[wd]) * 24 + hour;
        let start = format!("{}T{hour:02}:00:00Z", r[day_col]);
        let known = features::time::parse(&start).map_err(Error::Other)?.micros + 3_600_000_000;
        let count: f64 = r[cnt].parse().unwrap_or(f64::NAN);
        let window = &mut recent[how as usize];
        window.push_back(count);
        if window.len() > 4 {
            window.pop_front();
        }
        let mean = window.iter().sum::<f64>() / window.len() as f64;
        let known_at = features::time::format_micros(known);
        let _ = writeln!(source, "{how},{known_at},{count},{mean}");
        // The 24 hours that end with this one (hours missing from the data count as none).
        day.push_back((known, count));
        while day
            .front()
            .is_some_and(|(t, _)| *t <= known - 86_400_000_000)
        {
            day.pop_front();
        }
        let last_day: f64 = day.iter().map(|(_, c)| c).sum();
        let _ = writeln!(system, "dc,{known_at},{count},{last_day}");
        if r[day_col].starts_with("2011") {
            let _ = writeln!(entities, "{},{start},{how},dc", r.join(","));
            n += 1;
        }
    }
    Ok((source, system, entities, n))
}

/// The demo's feature-store step; its summary line carries both test RMSEs and the online
/// lookup's latency.
pub async fn features_step(home: &Path, config: &Config, c: &Client) -> Result<Line, Error> {
    let dir = home.join("bike-features");
    std::fs::create_dir_all(&dir)?;
    version_and_check(&dir)?;
    let (source, system, entities, hours) = tables()?;
    std::fs::write(dir.join("rentals_by_hour_of_week.csv"), source)?;
    std::fs::write(dir.join("rentals_recent.csv"), system)?;
    let entity_table = dir.join("hours_2011.csv");
    std::fs::write(&entity_table, entities)?;
    let defs = dir.join("features.yaml");
    std::fs::write(&defs, DEFINITIONS)?;
    crate::features_cmd::run(home, config, FeaturesCmd::Apply { file: defs }).await?;

    // The training set is a cached pipeline stage: built once, skipped while nothing changed,
    // restored from the run cache when its output is lost.
    pipeline(&dir, home)?;
    let mut said = Vec::new();
    for round in 0..3 {
        if round == 2 {
            std::fs::remove_file(dir.join("training_set.csv"))?;
        }
        let (what, word, secs) = repro(&dir).await?;
        println!("  capstan data repro: {what} ({secs:.1} s)");
        said.push(word);
    }
    let pipeline_run = crate::data_cmd::track_repro(&dir, home, config).await?;
    println!("  pipeline run {pipeline_run} in experiment 'pipelines' (params, data versions)");

    // The same model on the same hours, without and with the service's features (the entity
    // table and the pipeline's training set hold the same rows in the same order).
    let p = Platform::open(home, config).await?;
    let args = |with: bool| crate::train::TrainArgs {
        data: if with {
            dir.join("training_set.csv")
        } else {
            entity_table.clone()
        },
        target: "cnt".into(),
        drop: [
            "dteday",
            "casual",
            "registered",
            "system",
            "event_timestamp",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect(),
        algorithm: "gbm".into(),
        classify: false,
        rounds: 100,
        learning_rate: 0.1,
        l2: 0.0,
        max_depth: 6,
        seed: 42,
        cv: None,
        experiment: "bike-features".into(),
        register: None,
        feature_service: None,
        entity_timestamp: "event_timestamp".into(),
    };
    let without = crate::train::run(&p, args(false)).await?;
    let with = crate::train::run(&p, args(true)).await?;
    let rmse = |t: &crate::train::Trained| t.metric("test_rmse").unwrap_or(f64::NAN);
    println!(
        "  test RMSE on 2011's hours: {:.1} without the feature service, {:.1} with {SERVICE} (runs {} and {})",
        rmse(&without),
        rmse(&with),
        without.run_id,
        with.run_id
    );

    // Online: the latest values as of the end of 2012, served the way Feast serves them.
    crate::features_cmd::run(
        home,
        config,
        FeaturesCmd::Materialize {
            end: Some("2013-01-01T00:00:00Z".into()),
            views: vec![],
        },
    )
    .await?;
    let request = json!({"feature_service": SERVICE, "entities": {"hour_of_week": [32, 113], "system": ["dc", "dc"]}});
    let mut times = Vec::new();
    let mut answer = Value::Null;
    for _ in 0..50 {
        let t = std::time::Instant::now();
        answer = c.post("/get-online-features", &request).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let p50 = times[times.len() / 2];
    let names: Vec<&str> = answer["metadata"]["feature_names"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (i, name) in names.iter().enumerate() {
        let values: Vec<String> = answer["results"][i]["values"]
            .as_array()
            .map(|a| a.iter().map(Value::to_string).collect())
            .unwrap_or_default();
        let statuses: Vec<&str> = answer["results"][i]["statuses"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!(
            "  online {name:<18} Mon 8:00, Thu 17:00 → {} ({})",
            values.join(", "),
            statuses.join(", ")
        );
    }
    println!("  POST /get-online-features: median {p50:.2} ms over 50 lookups");
    Ok((
        "feature store".into(),
        format!(
            "by hour of week, point in time, {hours} hours; pipeline {}",
            said.join(" → ")
        ),
        format!(
            "test RMSE {:.1} → {:.1} with features; online p50 {p50:.2} ms",
            rmse(&without),
            rmse(&with)
        ),
    ))
}
