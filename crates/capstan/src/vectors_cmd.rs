//! `capstan vectors …`: the embedded vector store under `CAPSTAN_HOME/vectors`, from the command
//! line — create collections, load points from JSON lines (with vectors or with texts that the
//! collection's embedding model turns into vectors), search, delete, snapshot and restore. The
//! store admits one process at a time: while `capstan server` runs, use its collections API.

use crate::config::Config;
use crate::platform::Error;
use crate::report::table;
use neural::Embedder;
use serde_json::Value;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vector::{
    CollectionConfig, Collections, Filter, HnswParams, Metric, Point, PointId, SearchRequest,
    VectorCollection, VectorStore,
};

#[derive(clap::Subcommand, Debug)]
pub enum VectorsCmd {
    /// Create a collection: raw vectors (--dim, --distance) or texts (--model).
    Create {
        name: String,
        #[arg(long)]
        dim: Option<usize>,
        /// cosine, dot or euclid.
        #[arg(long, default_value = "cosine")]
        distance: String,
        /// Embed texts with this model (all-MiniLM-L6-v2); sets the dimension.
        #[arg(long)]
        model: Option<String>,
        #[arg(long, default_value_t = 16)]
        m: usize,
        #[arg(long, default_value_t = 200)]
        ef_construct: usize,
        /// Walk the graph on int8 codes, rescore with the original vectors.
        #[arg(long)]
        quantize: bool,
    },
    /// Collections with their sizes.
    List,
    /// Upsert points from a JSON-lines file: {"id", "vector" | "text", "payload"} per line.
    Upsert {
        name: String,
        file: PathBuf,
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// Nearest points to a text or a vector.
    Search {
        name: String,
        #[arg(long, conflicts_with = "vector")]
        text: Option<String>,
        /// A JSON list of numbers.
        #[arg(long)]
        vector: Option<String>,
        #[arg(long, default_value_t = 5)]
        limit: usize,
        /// A filter in Qdrant's JSON grammar.
        #[arg(long)]
        filter: Option<String>,
        #[arg(long)]
        ef: Option<usize>,
        #[arg(long)]
        exact: bool,
    },
    /// Delete points by id.
    Delete { name: String, ids: Vec<String> },
    /// Drop a collection.
    Drop { name: String },
    /// Export a snapshot file (a backup `restore` reads).
    Snapshot { name: String, out: PathBuf },
    /// Create a collection from a snapshot file.
    Restore { name: String, file: PathBuf },
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}

pub(crate) async fn embedder(
    home: &Path,
    config: &Config,
    model: &str,
) -> Result<neural::MiniLm, Error> {
    if model != "all-MiniLM-L6-v2" {
        return Err(err(format!(
            "unknown embedding model `{model}` (all-MiniLM-L6-v2)"
        )));
    }
    let explicit =
        (!config.models.minilm_dir.is_empty()).then(|| home.join(&config.models.minilm_dir));
    let dir = neural::MINILM
        .resolve(explicit.as_deref(), home, &config.models.index_url)
        .await
        .map_err(err)?;
    neural::MiniLm::load(&dir).map_err(err)
}

fn parse_id(s: &str) -> PointId {
    s.parse::<u64>()
        .map(PointId::Num)
        .unwrap_or_else(|_| PointId::Str(s.to_owned()))
}

/// The configured vector store: pgvector when `store.vectors` is a PostgreSQL URL, else the
/// embedded one under `CAPSTAN_HOME/vectors`.
pub(crate) async fn open_store(
    home: &Path,
    config: &Config,
) -> Result<Arc<dyn VectorStore>, Error> {
    match config.store.vectors.trim() {
        "" => Ok(Arc::new(
            Collections::open(&home.join("vectors")).map_err(err)?,
        )),
        url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Arc::new(store::PgVectors::connect(url).await.map_err(err)?))
        }
        other => Err(err(format!(
            "store.vectors '{other}' is neither empty (embedded) nor postgres://…"
        ))),
    }
}

fn model_of(c: &dyn VectorCollection) -> Result<String, Error> {
    c.config().text_model().ok_or_else(|| {
        err(format!(
            "collection `{}` names no embedding model; give vectors",
            c.name()
        ))
    })
}

pub async fn run(home: &Path, config: &Config, cmd: VectorsCmd) -> Result<(), Error> {
    let store = open_store(home, config).await?;
    match cmd {
        VectorsCmd::Create {
            name,
            dim,
            distance,
            model,
            m,
            ef_construct,
            quantize,
        } => {
            let metric = Metric::parse(&distance)
                .ok_or_else(|| err(format!("unknown distance `{distance}`")))?;
            let dim = match (dim, &model) {
                (Some(d), _) => d,
                (None, Some(m)) => embedder(home, config, m).await?.dim(),
                (None, None) => return Err(err("give --dim or --model")),
            };
            let c = CollectionConfig {
                dim,
                metric,
                hnsw: HnswParams {
                    m,
                    ef_construction: ef_construct,
                    ..Default::default()
                },
                quantize,
                embedder: model,
            };
            store.create(&name, c).map_err(err)?;
            println!("created collection {name} ({dim}-d, {distance})");
        }
        VectorsCmd::List => {
            let mut rows: Vec<Vec<String>> = Vec::new();
            for name in store.list().map_err(err)? {
                let i = store.get(&name).and_then(|c| c.info()).map_err(err)?;
                rows.push(vec![
                    i.name,
                    i.points_count.to_string(),
                    i.config.dim.to_string(),
                    format!("{:?}", i.config.metric),
                    i.config.embedder.unwrap_or_default(),
                ]);
            }
            print!(
                "{}",
                table(&["collection", "points", "dim", "distance", "model"], &rows)
            );
        }
        VectorsCmd::Upsert { name, file, batch } => {
            let c = store.get(&name).map_err(err)?;
            let reader = std::io::BufReader::new(std::fs::File::open(&file)?);
            let mut model: Option<neural::MiniLm> = None;
            let mut pending: Vec<(Point, Option<String>)> = Vec::new();
            let mut total = 0usize;
            let flush = |pending: &mut Vec<(Point, Option<String>)>,
                         model: &Option<neural::MiniLm>|
             -> Result<usize, Error> {
                let texts: Vec<&str> = pending.iter().filter_map(|(_, t)| t.as_deref()).collect();
                if !texts.is_empty() {
                    let m = model
                        .as_ref()
                        .ok_or_else(|| err("internal: texts seen before the model was loaded"))?;
                    let mut vectors = m.embed(&texts).map_err(err)?.into_iter();
                    for (p, t) in pending.iter_mut() {
                        if t.is_some() {
                            p.vector = vectors.next().unwrap_or_default();
                        }
                    }
                }
                let n = pending.len();
                c.upsert(pending.drain(..).map(|(p, _)| p).collect())
                    .map_err(err)?;
                Ok(n)
            };
            for (lineno, line) in reader.lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(&line)
                    .map_err(|e| err(format!("{}:{}: {e}", file.display(), lineno + 1)))?;
                let at = |m: String| err(format!("{}:{}: {m}", file.display(), lineno + 1));
                let id = PointId::from_json(&v["id"]).map_err(|e| at(e.to_string()))?;
                let payload = v["payload"].as_object().cloned().unwrap_or_default();
                let (vector, text) = match (&v["vector"], &v["text"]) {
                    (Value::Array(xs), _) => (
                        xs.iter()
                            .map(|x| x.as_f64().map(|f| f as f32))
                            .collect::<Option<Vec<f32>>>()
                            .ok_or_else(|| at("vector must be numbers".into()))?,
                        None,
                    ),
                    (_, Value::String(t)) => {
                        if model.is_none() {
                            model = Some(embedder(home, config, &model_of(c.as_ref())?).await?);
                        }
                        (Vec::new(), Some(t.clone()))
                    }
                    _ => return Err(at("each line needs a `vector` or a `text`".into())),
                };
                pending.push((
                    Point {
                        id,
                        vector,
                        payload,
                    },
                    text,
                ));
                if pending.len() >= batch {
                    total += flush(&mut pending, &model)?;
                }
            }
            total += flush(&mut pending, &model)?;
            println!(
                "upserted {total} points into {name} ({} in all)",
                c.count(None).map_err(err)?
            );
        }
        VectorsCmd::Search {
            name,
            text,
            vector,
            limit,
            filter,
            ef,
            exact,
        } => {
            let c = store.get(&name).map_err(err)?;
            let query = match (text, vector) {
                (Some(t), _) => {
                    let m = embedder(home, config, &model_of(c.as_ref())?).await?;
                    m.embed(&[t.as_str()])
                        .map_err(err)?
                        .pop()
                        .unwrap_or_default()
                }
                (None, Some(v)) => {
                    serde_json::from_str(&v).map_err(|e| err(format!("--vector: {e}")))?
                }
                (None, None) => return Err(err("give --text or --vector")),
            };
            let mut req = SearchRequest::new(query, limit);
            req.filter = match filter {
                Some(f) => Some(
                    Filter::parse(
                        &serde_json::from_str(&f).map_err(|e| err(format!("--filter: {e}")))?,
                    )
                    .map_err(err)?,
                ),
                None => None,
            };
            req.ef = ef;
            req.exact = exact;
            let found = c.search(&req).map_err(err)?;
            let rows: Vec<Vec<String>> = found
                .iter()
                .map(|p| {
                    let payload = p
                        .payload
                        .as_ref()
                        .map(|m| Value::Object(m.clone()).to_string())
                        .unwrap_or_default();
                    let short: String = payload.chars().take(100).collect();
                    vec![p.id.to_string(), format!("{:.4}", p.score), short]
                })
                .collect();
            print!("{}", table(&["id", "score", "payload"], &rows));
        }
        VectorsCmd::Delete { name, ids } => {
            let c = store.get(&name).map_err(err)?;
            let n = ids.len();
            c.delete(ids.iter().map(|s| parse_id(s)).collect())
                .map_err(err)?;
            println!(
                "deleted {n} ids from {name} ({} points left)",
                c.count(None).map_err(err)?
            );
        }
        VectorsCmd::Drop { name } => {
            store.delete(&name).map_err(err)?;
            println!("dropped {name}");
        }
        VectorsCmd::Snapshot { name, out } => {
            store
                .get(&name)
                .map_err(err)?
                .export_snapshot(&out)
                .map_err(err)?;
            println!("wrote {}", out.display());
        }
        VectorsCmd::Restore { name, file } => {
            if !config.store.vectors.trim().is_empty() {
                return Err(err(
                    "snapshots restore into the embedded store only (store.vectors is set)",
                ));
            }
            drop(store);
            let embedded = Collections::open(&home.join("vectors")).map_err(err)?;
            let c = embedded.restore(&name, &file).map_err(err)?;
            println!("restored {name} ({} points)", c.count(None));
        }
    }
    Ok(())
}
