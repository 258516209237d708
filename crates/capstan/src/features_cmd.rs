//! `capstan features apply | list | materialize | historical`: apply feature definitions (YAML) to
//! the metadata store, list them, load the online store, and build point-in-time correct training
//! sets to CSV or Parquet.

use crate::config::Config;
use crate::platform::{Error, Platform};
use crate::report::table;
use features::defs::{Applied, FeatureRegistry};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum FeaturesCmd {
    /// Validate definitions (and their sources' columns) and make them the applied ones.
    Apply { file: PathBuf },
    /// Entities, feature views and services as applied.
    List,
    /// Load each view's latest values as of END (default now) into the online store, replacing
    /// its previous snapshot atomically.
    Materialize {
        /// RFC 3339 time (e.g. 2013-06-01T00:00:00Z); default now.
        #[arg(long)]
        end: Option<String>,
        /// Only these views (comma-separated).
        #[arg(long, value_delimiter = ',')]
        views: Vec<String>,
    },
    /// Bring each view's online values from its last materialisation up to END (default now),
    /// reading only the source rows in between (a full materialisation the first time).
    MaterializeIncremental {
        #[arg(long)]
        end: Option<String>,
        #[arg(long, value_delimiter = ',')]
        views: Vec<String>,
    },
    /// A training set: the entity table with each feature as of each row's timestamp.
    Historical {
        /// The entity table (CSV or Parquet): join keys and a timestamp column.
        #[arg(long, required_unless_present = "as_of")]
        entities: Option<PathBuf>,
        /// Instead of an entity table: every entity's latest values as of this RFC 3339 time.
        #[arg(long, conflicts_with = "entities")]
        as_of: Option<String>,
        /// The entity table's timestamp column.
        #[arg(long, default_value = "event_timestamp")]
        timestamp: String,
        /// Features as view:feature (comma-separated).
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// Or a feature service.
        #[arg(long)]
        service: Option<String>,
        /// Name columns view__feature.
        #[arg(long)]
        full_names: bool,
        /// Output file (.csv or .parquet).
        #[arg(long, short)]
        out: PathBuf,
    },
}

pub async fn run(home: &std::path::Path, config: &Config, cmd: FeaturesCmd) -> Result<(), Error> {
    let p = Platform::open(home, config).await?;
    let err = Error::Other;
    match cmd {
        FeaturesCmd::Apply { file } => {
            let text = std::fs::read_to_string(&file)?;
            let defs = features::Definitions::from_yaml(&text)
                .map_err(|e| Error::Other(format!("{}: {e}", file.display())))?;
            let base = std::fs::canonicalize(&file)?
                .parent()
                .map(PathBuf::from)
                .unwrap_or_default();
            defs.check_sources(&base).map_err(err)?;
            let applied = Applied {
                definitions: defs,
                base_dir: base.to_string_lossy().into_owned(),
                applied_ms: base::now_millis(),
            };
            p.db.apply(&applied).await.map_err(err)?;
            let d = &applied.definitions;
            println!(
                "applied {} entities, {} sources, {} feature views, {} feature services",
                d.entities.len(),
                d.sources.len(),
                d.feature_views.len(),
                d.feature_services.len()
            );
        }
        FeaturesCmd::List => {
            let Some(a) = p.db.applied().await.map_err(err)? else {
                println!("no feature definitions applied (capstan features apply FILE.yaml)");
                return Ok(());
            };
            let d = &a.definitions;
            let rows: Vec<Vec<String>> = d
                .feature_views
                .iter()
                .map(|v| {
                    vec![
                        v.name.clone(),
                        d.join_keys(v).join(", "),
                        v.source.clone(),
                        if v.ttl_seconds == 0 {
                            "none".into()
                        } else {
                            format!("{}s", v.ttl_seconds)
                        },
                        v.features
                            .iter()
                            .map(|f| f.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["feature view", "join keys", "source", "ttl", "features"],
                    &rows
                )
            );
            for s in &d.feature_services {
                println!("service {}: {}", s.name, s.features.join(", "));
            }
        }
        FeaturesCmd::Materialize { end, views } => materialize(&p, end, views, false).await?,
        FeaturesCmd::MaterializeIncremental { end, views } => {
            materialize(&p, end, views, true).await?
        }
        FeaturesCmd::Historical {
            entities,
            as_of,
            timestamp,
            features: refs,
            service,
            full_names,
            out,
        } => {
            let a =
                p.db.applied()
                    .await
                    .map_err(err)?
                    .ok_or_else(|| Error::Other("no feature definitions applied".into()))?;
            let list = a
                .definitions
                .feature_list(service.as_deref(), &refs)
                .map_err(err)?;
            let t = std::time::Instant::now();
            let base = std::path::Path::new(&a.base_dir);
            let (result, when) = match (&entities, &as_of) {
                (Some(path), _) => {
                    let frame =
                        data::frame::read_frame(path).map_err(|e| Error::Other(e.to_string()))?;
                    let joined = features::historical_features(
                        &a.definitions,
                        base,
                        &frame,
                        &features::Request {
                            features: &list,
                            timestamp: &timestamp,
                            full_feature_names: full_names,
                        },
                    )
                    .map_err(err)?;
                    (joined, format!("each row's {timestamp}"))
                }
                (None, Some(at)) => {
                    let micros = features::time::parse(at).map_err(err)?.micros;
                    let all = features::offline::all_entities_as_of(
                        &a.definitions,
                        base,
                        &list,
                        micros,
                        full_names,
                    )
                    .map_err(err)?;
                    (all, features::time::format_micros(micros))
                }
                (None, None) => return Err(Error::Other("give --entities or --as-of".into())),
            };
            let bytes = if out
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
            {
                data::frame::to_parquet(&result).map_err(err)?
            } else {
                data::frame::to_csv(&result).into_bytes()
            };
            crate::drift_cmd::write_atomic(&out, &bytes)?;
            println!(
                "{} rows × {} features as of {when} → {} ({:.2} s)",
                result.rows(),
                list.len(),
                out.display(),
                t.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// `materialize` (a full snapshot as of END) and `materialize-incremental` (from the view's last
/// materialisation to END); both record END as the view's materialisation time.
async fn materialize(
    p: &Platform,
    end: Option<String>,
    views: Vec<String>,
    incremental: bool,
) -> Result<(), Error> {
    let err = Error::Other;
    let a =
        p.db.applied()
            .await
            .map_err(err)?
            .ok_or_else(|| Error::Other("no feature definitions applied".into()))?;
    let end_us = match &end {
        Some(t) => features::time::parse(t).map_err(err)?.micros,
        None => base::now_millis() * 1000,
    };
    for v in &views {
        if a.definitions.view(v).is_none() {
            return Err(Error::Other(format!("unknown feature view {v}")));
        }
    }
    let base = std::path::Path::new(&a.base_dir);
    for view in a
        .definitions
        .feature_views
        .iter()
        .filter(|v| views.is_empty() || views.contains(&v.name))
    {
        let t = std::time::Instant::now();
        let since = if incremental {
            p.db.materialized(&view.name).await.map_err(err)?
        } else {
            None
        };
        // Chunked: memory follows the number of entities, not the source's length.
        let rows = match since {
            Some(start) if start >= end_us => {
                println!(
                    "{}: already materialised to {}",
                    view.name,
                    features::time::format_micros(start)
                );
                continue;
            }
            Some(start) => {
                let previous = p.online.read_all(&view.name).await.map_err(err)?;
                features::online::snapshot_incremental(
                    &a.definitions,
                    view,
                    base,
                    previous,
                    start,
                    end_us,
                    100_000,
                )
                .map_err(err)?
            }
            None => features::online::snapshot_chunked(&a.definitions, view, base, end_us, 100_000)
                .map_err(err)?,
        };
        p.online
            .replace_view(&view.name, &rows)
            .await
            .map_err(err)?;
        p.db.set_materialized(&view.name, end_us)
            .await
            .map_err(err)?;
        println!(
            "{}: {} entities as of {}{} ({:.2} s)",
            view.name,
            rows.len(),
            features::time::format_micros(end_us),
            since.map_or(String::new(), |s| format!(
                ", from {}",
                features::time::format_micros(s)
            )),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
