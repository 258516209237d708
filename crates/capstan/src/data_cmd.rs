//! `capstan data …`: dataset and model versioning in DVC's formats from the command line.

use crate::config::Config;
use crate::platform::Error;
use clap::Subcommand;
use data::{Repo, Status};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Subcommand)]
pub enum DataCmd {
    /// Create `.dvc/` here (like `dvc init --no-scm`); existing DVC projects need no init.
    Init,
    /// Version files or directories: content into the cache, a `.dvc` pointer file beside each.
    Add { paths: Vec<PathBuf> },
    /// What changed in the workspace since the pointers were written.
    Status,
    /// Make the workspace match the pointers.
    Checkout {
        /// Hard-link from the cache instead of copying (read-only data).
        #[arg(long)]
        link: bool,
    },
    /// Upload cached objects to a remote (a directory or s3://bucket/prefix).
    Push {
        #[arg(long)]
        remote: String,
    },
    /// Download what the pointers need from a remote, verify every object, then check out.
    Pull {
        #[arg(long)]
        remote: String,
    },
    /// Delete cache objects that no pointer references.
    Gc,
    /// Run the `dvc.yaml` stages whose inputs changed, in dependency order (run cache included).
    Repro { stage: Option<String> },
    /// Show the pipeline's stages and edges.
    Dag,
}

fn data_err(e: data::DataError) -> Error {
    Error::Other(e.to_string())
}

fn remote(target: &str, config: &Config) -> Result<Arc<dyn data::Remote>, Error> {
    let s3 = &config.s3;
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let cfg = store::S3Config {
        bucket: String::new(),
        prefix: String::new(),
        endpoint: opt(&s3.endpoint),
        region: s3.region.clone(),
        access_key_id: opt(&s3.access_key_id),
        secret_access_key: opt(&s3.secret_access_key),
        allow_http: s3.allow_http,
    };
    Ok(Arc::new(
        store::ObjectRemote::open(target, &cfg).map_err(data_err)?,
    ))
}

pub async fn run(
    repo_dir: &std::path::Path,
    home: &std::path::Path,
    config: &Config,
    cmd: DataCmd,
) -> Result<(), Error> {
    if let DataCmd::Init = cmd {
        Repo::init(repo_dir).map_err(data_err)?;
        println!("initialised a data repository in {}", repo_dir.display());
        return Ok(());
    }
    let mut repo = Repo::open(repo_dir).map_err(data_err)?;
    match cmd {
        DataCmd::Init => {}
        DataCmd::Add { paths } => {
            // A new version of a retraining policy's data retrains its model — only where a
            // platform home exists (a pure data repository stays one); opened at the first one.
            let has_platform = !config.store.db.is_empty() || home.join("capstan.db").exists();
            let mut platform = None;
            for p in paths {
                let t = Instant::now();
                let pointer = {
                    let mut name = p.clone().into_os_string();
                    name.push(".dvc");
                    std::path::PathBuf::from(name)
                };
                let before = std::fs::read(&pointer).ok();
                let out = repo.add(&p).map_err(data_err)?;
                let changed = std::fs::read(&pointer).ok() != before;
                let what = match out.nfiles {
                    Some(n) => format!("{n} files, {} bytes", out.size),
                    None => format!("{} bytes", out.size),
                };
                println!(
                    "added {} ({what}; {} hashed, {:.2}s) → {}.dvc",
                    out.path,
                    repo.last_hashed,
                    t.elapsed().as_secs_f64(),
                    p.display()
                );
                if changed && has_platform && platform.is_none() {
                    platform = Some(crate::platform::Platform::open(home, config).await?);
                }
                if let (true, Some(pf)) = (changed, &platform) {
                    for (model, job) in
                        crate::retrain::on_new_data_version(pf, &p, &out.md5).await?
                    {
                        println!(
                            "  new data version for {model}'s retraining policy: job {} (retrain) {}",
                            job.id,
                            job.state.as_str()
                        );
                    }
                }
            }
        }
        DataCmd::Status => {
            let t = Instant::now();
            let statuses = repo.status().map_err(data_err)?;
            let changed: Vec<String> = statuses
                .iter()
                .filter_map(|s| match s {
                    Status::Unchanged(_) => None,
                    Status::Modified(p) => Some(format!("  modified:      {p}")),
                    Status::Deleted(p) => Some(format!("  deleted:       {p}")),
                    Status::NotInCache(p) => Some(format!("  not in cache:  {p}")),
                })
                .collect();
            if changed.is_empty() {
                println!(
                    "Data is up to date ({} outputs, {} files hashed, {:.0} ms).",
                    statuses.len(),
                    repo.last_hashed,
                    t.elapsed().as_secs_f64() * 1000.0
                );
            } else {
                println!("{}", changed.join("\n"));
            }
        }
        DataCmd::Checkout { link } => {
            let n = repo.checkout(link).map_err(data_err)?;
            println!("checked out {n} outputs");
        }
        DataCmd::Push { remote: r } => {
            let report = repo.push(remote(&r, config)?).await.map_err(data_err)?;
            println!(
                "pushed {} objects ({} already on the remote)",
                report.transferred, report.skipped
            );
        }
        DataCmd::Pull { remote: r } => {
            let report = repo.pull(remote(&r, config)?).await.map_err(data_err)?;
            println!(
                "pulled {} objects ({} already cached), workspace checked out",
                report.transferred, report.skipped
            );
        }
        DataCmd::Repro { stage } => {
            let t = Instant::now();
            for r in repo.repro(stage.as_deref()).map_err(data_err)? {
                match r {
                    data::StageRun::Unchanged(s) => println!("  {s}: unchanged, skipped"),
                    data::StageRun::Restored(s) => println!("  {s}: restored from the run cache"),
                    data::StageRun::Ran(s) => println!("  {s}: ran"),
                }
            }
            println!("dvc.lock updated ({:.2}s)", t.elapsed().as_secs_f64());
            let run_id = track_repro(repo_dir, home, config).await?;
            println!("tracked as run {run_id} in experiment 'pipelines'");
        }
        DataCmd::Dag => {
            let stages = data::read_stages(repo_dir).map_err(data_err)?;
            let order = data::order(&stages).map_err(data_err)?;
            println!(
                "stages in run order: {}",
                order
                    .iter()
                    .map(|&i| stages[i].name.as_str())
                    .collect::<Vec<_>>()
                    .join(" → ")
            );
            for (a, b) in data::dag(&stages) {
                println!("  {a} ──▶ {b}");
            }
        }
        DataCmd::Gc => {
            let n = repo.gc().map_err(data_err)?;
            println!("removed {n} unreferenced objects");
        }
    }
    Ok(())
}

/// Records a pipeline run in experiment tracking: params, metrics, input data versions, commit.
pub(crate) async fn track_repro(
    repo_dir: &std::path::Path,
    home: &std::path::Path,
    config: &Config,
) -> Result<String, Error> {
    use tracking::{Dataset, DatasetInput, Metric, NewRun, RunStatus, Tag};
    let rec = data::run_record(repo_dir).map_err(data_err)?;
    let p = crate::platform::Platform::open(home, config).await?;
    let exp = p.experiment_id("pipelines").await?;
    let name = std::fs::canonicalize(repo_dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().to_string()))
        .unwrap_or_else(|| "pipeline".into());
    let mut tags = vec![Tag::new("mlflow.source.name", "capstan data repro")];
    let commit = std::process::Command::new("git")
        .arg("-C")
        .arg(repo_dir)
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success());
    if let Some(c) = commit {
        tags.push(Tag::new(
            "mlflow.source.git.commit",
            String::from_utf8_lossy(&c.stdout).trim(),
        ));
    }
    let run = p
        .tracking
        .create_run(NewRun {
            experiment_id: exp,
            run_name: Some(format!("repro-{name}")),
            user_id: String::new(),
            start_time: base::now_millis(),
            tags,
        })
        .await?;
    let id = run.info.run_id;
    let now = base::now_millis();
    let metrics: Vec<Metric> = rec
        .metrics
        .iter()
        .map(|(k, v)| Metric {
            key: k.clone(),
            value: *v,
            timestamp: now,
            step: 0,
        })
        .collect();
    let params: Vec<Tag> = rec
        .params
        .iter()
        .map(|(k, v)| Tag::new(k.clone(), v.clone()))
        .collect();
    p.tracking.log_batch(&id, &metrics, &params, &[]).await?;
    let inputs: Vec<DatasetInput> = rec
        .inputs
        .iter()
        .map(|(path, md5)| DatasetInput {
            dataset: Dataset {
                name: path.clone(),
                digest: md5.clone(),
                source_type: "dvc".into(),
                source: path.clone(),
                schema: None,
                profile: None,
            },
            tags: vec![Tag::new("mlflow.data.context", "pipeline")],
        })
        .collect();
    if !inputs.is_empty() {
        p.tracking.log_inputs(&id, &inputs).await?;
    }
    p.end_run(&id, RunStatus::Finished).await?;
    Ok(id.to_string())
}
