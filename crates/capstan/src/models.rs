//! `capstan models …`: the registry from the command line.

use crate::platform::{Error, Platform};
use crate::report::table;
use clap::Subcommand;
use tracking::Tag;

#[derive(Subcommand)]
pub enum ModelsCmd {
    /// List registered models with their aliases.
    List,
    /// Show a model's versions, stages, aliases and checks.
    Show { name: String },
    /// Register a run's model as a new version (creating the model if needed).
    Register {
        name: String,
        #[arg(long)]
        run: String,
        /// Artifact path of the model inside the run.
        #[arg(long, default_value = "model")]
        path: String,
    },
    /// Declare a promotion check: a clause of the run search grammar the version's run must pass.
    SetCheck {
        name: String,
        /// Check name, e.g. `rmse`.
        key: String,
        /// e.g. "metrics.test_rmse < 60"
        clause: String,
    },
    /// Point an alias (e.g. champion) at a version, if it passes the model's checks.
    Promote {
        name: String,
        version: i64,
        #[arg(long, default_value = "champion")]
        alias: String,
    },
    /// Trace a version to its run, dataset versions and code commit.
    Lineage { name: String, version: i64 },
}

pub async fn run(p: &Platform, cmd: ModelsCmd) -> Result<(), Error> {
    let r = &p.registry;
    match cmd {
        ModelsCmd::List => {
            let models = r.search_models("", &[], 50_000, 0).await?.items;
            let rows: Vec<Vec<String>> = models
                .iter()
                .map(|m| {
                    let aliases: Vec<String> =
                        m.aliases.iter().map(|(a, v)| format!("{a}→v{v}")).collect();
                    let latest = m
                        .latest_versions
                        .iter()
                        .map(|v| v.version)
                        .max()
                        .map(|v| v.to_string())
                        .unwrap_or_default();
                    vec![
                        m.name.clone(),
                        latest,
                        aliases.join(" "),
                        m.description.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["name", "latest", "aliases", "description"], &rows)
            );
        }
        ModelsCmd::Show { name } => {
            let m = r.get_model(&name).await?;
            println!("model {}  {}", m.name, m.description);
            for t in m
                .tags
                .iter()
                .filter(|t| t.key.starts_with(registry::CHECK_TAG_PREFIX))
            {
                println!(
                    "  check {}: {}",
                    &t.key[registry::CHECK_TAG_PREFIX.len()..],
                    t.value
                );
            }
            let versions = r
                .search_versions(&format!("name = '{}'", name.replace('\'', "''")), 50_000, 0)
                .await?
                .items;
            let rows: Vec<Vec<String>> = versions
                .iter()
                .map(|v| {
                    vec![
                        v.version.to_string(),
                        v.stage.as_str().into(),
                        v.aliases.join(" "),
                        v.run_id.clone().unwrap_or_default(),
                        v.source.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["version", "stage", "aliases", "run", "source"], &rows)
            );
        }
        ModelsCmd::Register { name, run, path } => {
            let run_id = base::RunId::parse(&run).map_err(tracking::Error::from)?;
            p.tracking.get_run(&run_id).await?;
            let v = p.register_run_model(&name, &run_id, &path).await?;
            println!("registered {name} version {}", v.version);
        }
        ModelsCmd::SetCheck { name, key, clause } => {
            r.set_model_tag(
                &name,
                &Tag::new(format!("{}{key}", registry::CHECK_TAG_PREFIX), clause),
            )
            .await?;
            println!("check '{key}' set on {name}");
        }
        ModelsCmd::Promote {
            name,
            version,
            alias,
        } => {
            let checks = r.check_promotion(&name, version).await?;
            r.set_alias(&name, &alias, version).await?;
            println!(
                "{name}@{alias} → version {version} ({} check(s) passed)",
                checks.len()
            );
        }
        ModelsCmd::Lineage { name, version } => {
            let l = r.lineage(&name, version).await?;
            println!("{name} version {version}\n  source   {}", l.version.source);
            match &l.run {
                Some(run) => {
                    println!(
                        "  run      {} ({}) in experiment {}",
                        run.info.run_id, run.info.run_name, run.info.experiment_id
                    );
                    for d in &run.inputs {
                        println!(
                            "  dataset  {} digest {} ({})",
                            d.dataset.name, d.dataset.digest, d.dataset.source
                        );
                    }
                    for prm in &run.params {
                        println!("  param    {} = {}", prm.key, prm.value);
                    }
                }
                None => println!("  run      (none recorded)"),
            }
            println!(
                "  commit   {}",
                l.commit.as_deref().unwrap_or("(none recorded)")
            );
        }
    }
    Ok(())
}
