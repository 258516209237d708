//! Wiring: open the configured backends and build the server state.

use crate::config::{Config, ConfigError};
use registry::Registry;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::{BlobConfig, Blobs, Db, S3Config};
use tracking::Tracking;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Db(#[from] store::DbError),
    #[error("artifact store: {0}")]
    Blobs(#[from] store::BlobError),
    #[error(transparent)]
    Tracking(#[from] tracking::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Traces(#[from] traces::Error),
    #[error("{0}")]
    Other(String),
    #[error("dataset drift detected")]
    DriftDetected,
    #[error("checks failed")]
    ChecksFailed,
}

pub struct Platform {
    /// CAPSTAN_HOME: the embedded stores, vectors and models live under it.
    pub home: std::path::PathBuf,
    pub db: Db,
    pub blobs: Blobs,
    pub tracking: Tracking,
    pub registry: Registry,
    /// The online feature store (the metadata database unless `store.online` names Redis).
    pub online: Arc<dyn features::online::OnlineStore>,
    /// The scale-out vector store when `store.vectors` names one (the embedded store otherwise
    /// opens lazily, when a server first needs it).
    pub vectors: Option<Arc<dyn vector::VectorStore>>,
    /// Where the gateway counts budgets and rate limits (`gateway.ledger`).
    pub ledger: Arc<dyn gateway::budget::Ledger>,
    /// The configuration file a running server re-reads `[gateway]` from on SIGHUP.
    pub config_file: Option<std::path::PathBuf>,
}

impl Platform {
    pub async fn open(home: &Path, config: &Config) -> Result<Platform, Error> {
        std::fs::create_dir_all(home)?;
        let db_url = if config.store.db.is_empty() {
            format!("sqlite://{}", home.join("capstan.db").display())
        } else {
            config.store.db.clone()
        };
        let db = Db::open(&db_url).await?;
        let blob_config = blob_config(home, config)?;
        let blobs = Blobs::open(&blob_config, home.join("tmp"))?;
        let tracking = Tracking::new(Arc::new(db.clone()));
        let registry = Registry::new(Arc::new(db.clone()), tracking.clone());
        let online: Arc<dyn features::online::OnlineStore> = match config.store.online.trim() {
            "" => Arc::new(db.clone()),
            url if url.starts_with("redis://") => Arc::new(
                store::Redis::connect(url, "capstan:online")
                    .await
                    .map_err(Error::Other)?,
            ),
            other => {
                return Err(Error::Other(format!(
                    "store.online '{other}' is neither empty (the metadata database) nor redis://…"
                )));
            }
        };
        let ledger: Arc<dyn gateway::budget::Ledger> = match config.gateway.ledger.trim() {
            "" => Arc::new(db.clone()),
            "memory" => Arc::new(gateway::budget::MemoryLedger::default()),
            url => Arc::new(
                store::Redis::connect(url, "capstan:ledger")
                    .await
                    .map_err(Error::Other)?,
            ),
        };
        let vectors: Option<Arc<dyn vector::VectorStore>> = match config.store.vectors.trim() {
            "" => None,
            _ => Some(crate::vectors_cmd::open_store(home, config).await?),
        };
        Ok(Platform {
            home: home.to_owned(),
            vectors,
            db,
            blobs,
            tracking,
            registry,
            online,
            ledger,
            config_file: None,
        })
    }

    /// The id of experiment `name`, created when it does not exist yet.
    pub async fn experiment_id(&self, name: &str) -> Result<base::ExperimentId, Error> {
        Ok(match self.tracking.get_experiment_by_name(name).await {
            Ok(e) => e.id,
            Err(_) => self.tracking.create_experiment(name, None, &[]).await?,
        })
    }

    /// Ends run `id` now with `status`.
    pub async fn end_run(
        &self,
        id: &base::RunId,
        status: tracking::RunStatus,
    ) -> Result<(), Error> {
        self.tracking
            .update_run(
                id,
                tracking::RunUpdate {
                    status: Some(status),
                    end_time: Some(base::now_millis()),
                    run_name: None,
                },
            )
            .await?;
        Ok(())
    }

    /// Uploads a model package as the run's `model/model.json` artifact (where serving finds it).
    pub async fn log_package(
        &self,
        run: &tracking::RunInfo,
        package: &learn::ModelPackage,
    ) -> Result<(), Error> {
        self.log_artifact(
            run,
            &format!("model/{}", learn::PACKAGE_FILE),
            package.to_json(),
        )
        .await
    }

    /// Uploads `bytes` as the run's artifact at `rel` (e.g. `eval/results.json`).
    pub async fn log_artifact(
        &self,
        run: &tracking::RunInfo,
        rel: &str,
        bytes: Vec<u8>,
    ) -> Result<(), Error> {
        use tracking::ArtifactIndex;
        let root = run
            .artifact_uri
            .trim_start_matches("mlflow-artifacts:")
            .trim_start_matches('/');
        let path =
            base::ArtifactPath::parse(&format!("{root}/{rel}")).map_err(tracking::Error::from)?;
        let (hash, size) = self.blobs.put_bytes(bytes.into()).await?;
        self.db
            .put_artifact(&tracking::ArtifactEntry { path, hash, size })
            .await?;
        Ok(())
    }

    /// Registers `runs:/<run>/<path>` as a new version of `model`, creating the model if needed.
    pub async fn register_run_model(
        &self,
        model: &str,
        run_id: &base::RunId,
        path: &str,
    ) -> Result<registry::ModelVersion, Error> {
        self.register_run_model_tagged(model, run_id, path, Vec::new())
            .await
    }

    /// [`Platform::register_run_model`] with version tags.
    pub async fn register_run_model_tagged(
        &self,
        model: &str,
        run_id: &base::RunId,
        path: &str,
        tags: Vec<tracking::Tag>,
    ) -> Result<registry::ModelVersion, Error> {
        if self.registry.get_model(model).await.is_err() {
            self.registry.create_model(model, "", &[]).await?;
        }
        let new = registry::NewVersion {
            source: format!("runs:/{run_id}/{path}"),
            run_id: Some(run_id.to_string()),
            tags,
            ..Default::default()
        };
        Ok(self.registry.create_version(model, new).await?)
    }

    /// Registered LoRA adapters, as the gateway's local provider finds them.
    pub fn adapters(&self) -> Arc<dyn gateway::provider::AdapterSource> {
        Arc::new(server::model_source::RegistryAdapters {
            source: server::model_source::RegistrySource {
                registry: self.registry.clone(),
                tracking: self.tracking.clone(),
                artifacts: Arc::new(self.db.clone()),
                blobs: self.blobs.clone(),
            },
            cache: self.home.join("cache/adapters"),
        })
    }

    /// The LLM gateway with this home's local models and usage records in the metadata store.
    pub fn gateway(
        &self,
        config: &Config,
        embeddings: Arc<server::embedding::EmbeddingModels>,
    ) -> Arc<gateway::Gateway> {
        let local = gateway::provider::LocalChat::new(
            self.home.clone(),
            (!config.models.smollm2_dir.is_empty())
                .then(|| self.home.join(&config.models.smollm2_dir)),
            config.models.index_url.clone(),
        )
        .with_adapters(self.adapters());
        // Every call is a usage record and a span.
        let sink: Arc<dyn gateway::UsageSink> = Arc::new(gateway::spans::TracedUsage::new(
            Arc::new(self.db.clone()),
            Arc::new(self.db.clone()),
        ));
        match gateway::Gateway::new(config.gateway.clone(), local, Some(sink.clone())) {
            Ok(g) => Arc::new(g.with_ledger(self.ledger.clone()).with_embedder(embeddings)),
            Err(e) => {
                // Config loading validates the gateway section, so this is a config changed
                // underneath; keep serving the local models rather than nothing.
                tracing::error!("gateway config: {e}; serving the local models only");
                let local = gateway::provider::LocalChat::new(
                    self.home.clone(),
                    None,
                    config.models.index_url.clone(),
                );
                Arc::new(gateway::Gateway::local_only(local, Some(sink)))
            }
        }
    }

    pub fn state(
        &self,
        config: &Config,
        default_model: Option<(String, serving::Selector)>,
    ) -> server::AppState {
        let sv = &config.serving;
        let embeddings = Arc::new(server::embedding::EmbeddingModels::new(
            self.home.clone(),
            (!config.models.minilm_dir.is_empty())
                .then(|| self.home.join(&config.models.minilm_dir)),
            config.models.index_url.clone(),
        ));
        server::AppState::new(
            self.tracking.clone(),
            self.registry.clone(),
            server::Backends {
                artifacts: Arc::new(self.db.clone()),
                tokens: Arc::new(self.db.clone()),
                blobs: self.blobs.clone(),
                deployments: Arc::new(self.db.clone()),
                labels: Arc::new(self.db.clone()),
                monitors: Arc::new(self.db.clone()),
                features: Arc::new(self.db.clone()),
                online: self.online.clone(),
                jobs: Arc::new(self.db.clone()),
                vectors: Arc::new(match &self.vectors {
                    Some(pg) => server::vector_routes::LazyVectors::Ready(pg.clone()),
                    None => server::vector_routes::LazyVectors::embedded(self.home.join("vectors")),
                }),
                embeddings: embeddings.clone(),
                gateway: self.gateway(config, embeddings),
                prompts: Arc::new(self.db.clone()),
                traces: Arc::new(self.db.clone()),
                prediction_log: sv.prediction_log.then(|| monitor::predlog::LogConfig {
                    queue: sv.log_queue.max(1),
                    rotate: std::time::Duration::from_secs(sv.log_rotate_secs.max(1)),
                    max_rows: sv.log_max_rows.max(1),
                }),
            },
            server::ServerConfig {
                auth: config.server.auth,
                max_json_bytes: config.server.max_json_bytes,
                max_artifact_bytes: config.server.max_artifact_bytes,
                serving_alias: sv.alias.clone(),
                default_model,
                max_infer_rows: sv.max_rows,
                monitor_scheduler: true,
                trace_retention_days: (config.server.trace_retention_days > 0.0)
                    .then_some(config.server.trace_retention_days),
            },
            serving::ServingConfig {
                max_batch: sv.max_batch,
                max_wait: std::time::Duration::from_micros(sv.max_wait_us),
                latency_budget: std::time::Duration::from_millis(sv.latency_budget_ms),
                poll: std::time::Duration::from_millis(sv.poll_ms),
            },
        )
    }

    /// Binds, prints the address, serves until Ctrl-C. `ready` learns the bound address.
    pub async fn serve(
        &self,
        config: &Config,
        ready: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
        default_model: Option<(String, serving::Selector)>,
    ) -> Result<(), Error> {
        let state = self.state(config, default_model.clone());
        if let Some((name, sel)) = &default_model {
            // A single-model process refuses to start without its model.
            let served = state
                .serving
                .get(name, sel)
                .await
                .map_err(|e| Error::Other(format!("cannot serve {name}: {e}")))?;
            eprintln!(
                "serving {name} version {} ({} inputs)",
                served.version,
                served.package.inputs.len()
            );
        }
        // The SIGHUP handler is in place before the address is printed (a HUP before it would
        // end the process).
        if let Some(file) = self.config_file.clone() {
            reload_on_hangup(state.gateway.clone(), file);
        }
        let listener =
            tokio::net::TcpListener::bind((config.server.host.as_str(), config.server.port))
                .await?;
        let addr = listener.local_addr()?;
        println!("capstan listening on http://{addr}");
        if let Some(tx) = ready {
            let _ = tx.send(addr);
        }
        if config.server.auth {
            tracing::info!("API tokens required (create one with `capstan tokens create`)");
        }
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let predictions = state.predictions.clone();
        server::serve(listener, state, shutdown).await?;
        // Predictions still buffered reach the log before the process exits.
        if let Some(log) = predictions {
            log.flush().await;
        }
        Ok(())
    }
}

/// On SIGHUP, re-reads the configuration file and swaps in its `[gateway]` section (routing,
/// prices, budgets, caches) without a restart; requests in flight finish on the old one. A file
/// that does not load is logged and changes nothing.
fn reload_on_hangup(gateway: Arc<gateway::Gateway>, file: std::path::PathBuf) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match Config::load(&file, std::env::vars()) {
                Ok(c) => match gateway.reload(c.gateway) {
                    Ok(()) => eprintln!("gateway configuration reloaded from {}", file.display()),
                    Err(e) => eprintln!("not reloading the gateway: {e}"),
                },
                Err(e) => eprintln!("not reloading the gateway: {e}"),
            }
        }
    });
}

fn blob_config(home: &Path, config: &Config) -> Result<BlobConfig, Error> {
    let a = config.store.artifacts.trim();
    if a.is_empty() {
        return Ok(BlobConfig::Local(home.join("objects")));
    }
    if let Some(rest) = a.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Other(format!(
                "artifact store '{a}' names no bucket"
            )));
        }
        let s3 = &config.s3;
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        return Ok(BlobConfig::S3(S3Config {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            endpoint: opt(&s3.endpoint),
            region: s3.region.clone(),
            access_key_id: opt(&s3.access_key_id),
            secret_access_key: opt(&s3.secret_access_key),
            allow_http: s3.allow_http,
        }));
    }
    Ok(BlobConfig::Local(PathBuf::from(
        a.strip_prefix("file://").unwrap_or(a),
    )))
}
