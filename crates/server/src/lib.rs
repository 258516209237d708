//! The one HTTP server: every wire format Capstan speaks (today the MLflow tracking and registry
//! REST APIs and
//! its proxied artifacts, Capstan's admin API), authentication, body limits and error mapping. Only this crate knows
//! wire formats; handlers extract, make one domain call and map the result.

mod admin;
mod artifacts;
mod auth;
mod deployments;
pub mod embedding;
mod error;
mod feature_routes;
pub mod gateway_routes;
mod jobs_routes;
mod labelled_routes;
mod mlflow;
mod mlflow_registry;
pub mod model_source;
pub mod monitoring;
pub mod monitors;
mod oip;
mod openai;
mod openapi;
pub mod prompt_routes;
mod rag_routes;
pub mod trace_routes;
mod ui;
pub mod vector_routes;
mod wire;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use registry::Registry;
use serving::{Serving, ServingConfig};
use std::sync::Arc;
use store::Blobs;
use tracking::{ArtifactIndex, TokenStore, Tracking};

pub use auth::{hash_token, new_token};
pub use model_source::RegistrySource;

/// Limits and switches of the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// When true, every route but `/health` needs a bearer token with a sufficient scope.
    pub auth: bool,
    /// Largest JSON request body (MLflow's log-batch limit is 1 MB).
    pub max_json_bytes: usize,
    /// Largest artifact upload.
    pub max_artifact_bytes: u64,
    /// The alias `/v2/models/{name}` follows.
    pub serving_alias: String,
    /// A single-model server (`capstan serve MODEL@ALIAS`): the model `/invocations` scores.
    pub default_model: Option<(String, serving::Selector)>,
    /// Most rows one inference request may carry.
    pub max_infer_rows: usize,
    /// Evaluate monitors on their schedule while serving.
    pub monitor_scheduler: bool,
    /// Delete traces older than this many days (hourly, while serving); `None` keeps them.
    pub trace_retention_days: Option<f64>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            auth: false,
            max_json_bytes: 1024 * 1024,
            max_artifact_bytes: 16 * 1024 * 1024 * 1024,
            serving_alias: "champion".into(),
            default_model: None,
            max_infer_rows: 10_000,
            monitor_scheduler: true,
            trace_retention_days: None,
        }
    }
}

/// Everything a handler may touch.
#[derive(Clone)]
pub struct AppState {
    pub tracking: Tracking,
    pub registry: Registry,
    pub artifacts: Arc<dyn ArtifactIndex>,
    pub tokens: Arc<dyn TokenStore>,
    pub blobs: Blobs,
    pub config: Arc<ServerConfig>,
    pub serving: Serving,
    pub deployments: Arc<dyn serving::deploy::DeploymentStore>,
    /// Request counts and latency per model, version and variant (`/metrics`).
    pub metrics: serving::metrics::RequestMetrics,
    /// Where served predictions are logged; `None` turns logging off.
    pub predictions: Option<monitor::predlog::PredictionLog>,
    /// Feedback labels, joined to the prediction log for live performance.
    pub labels: Arc<dyn monitor::performance::LabelStore>,
    pub monitors: Arc<dyn monitor::monitors::MonitorStore>,
    pub monitor_gauges: monitors::MonitorGauges,
    pub features: Arc<dyn features::defs::FeatureRegistry>,
    pub online: Arc<dyn features::online::OnlineStore>,
    /// The applied feature definitions, re-read at most once a second.
    pub applied_features: feature_routes::AppliedCache,
    pub vectors: Arc<vector_routes::LazyVectors>,
    pub embeddings: Arc<embedding::EmbeddingModels>,
    /// RAG pipelines per collection (their keyword indexes).
    pub rag: rag_routes::RagCache,
    /// The job queue monitors' alerts feed.
    pub jobs: Arc<dyn pipeline::JobQueue>,
    /// The LLM gateway behind `/v1/chat/completions` and `/v1/completions`.
    pub gateway: Arc<gateway::Gateway>,
    /// The prompt registry.
    pub prompts: Arc<dyn gateway::prompts::PromptStore>,
    /// Spans and traces (OTLP ingestion, gateway calls, RAG steps).
    pub traces: Arc<dyn traces::TraceStore>,
    pub trace_metrics: Arc<trace_routes::TraceMetrics>,
}

/// The stores the server reads and writes besides tracking and the registry.
pub struct Backends {
    pub artifacts: Arc<dyn ArtifactIndex>,
    pub tokens: Arc<dyn TokenStore>,
    pub blobs: Blobs,
    pub deployments: Arc<dyn serving::deploy::DeploymentStore>,
    /// Prediction log settings; `None` turns logging off.
    pub prediction_log: Option<monitor::predlog::LogConfig>,
    pub labels: Arc<dyn monitor::performance::LabelStore>,
    pub monitors: Arc<dyn monitor::monitors::MonitorStore>,
    pub features: Arc<dyn features::defs::FeatureRegistry>,
    pub online: Arc<dyn features::online::OnlineStore>,
    pub vectors: Arc<vector_routes::LazyVectors>,
    pub embeddings: Arc<embedding::EmbeddingModels>,
    pub jobs: Arc<dyn pipeline::JobQueue>,
    pub gateway: Arc<gateway::Gateway>,
    pub prompts: Arc<dyn gateway::prompts::PromptStore>,
    pub traces: Arc<dyn traces::TraceStore>,
}

impl AppState {
    /// Wires the state; serving reads packages through the registry and the artifact store.
    pub fn new(
        tracking: Tracking,
        registry: Registry,
        b: Backends,
        config: ServerConfig,
        serving_config: ServingConfig,
    ) -> AppState {
        let source = model_source::RegistrySource {
            registry: registry.clone(),
            tracking: tracking.clone(),
            artifacts: b.artifacts.clone(),
            blobs: b.blobs.clone(),
        };
        let serving = Serving::new(Arc::new(source), serving_config);
        let predictions = b.prediction_log.map(|c| {
            monitor::predlog::PredictionLog::start(
                Arc::new(monitoring::BlobSink(b.blobs.clone())),
                c,
            )
        });
        AppState {
            tracking,
            registry,
            artifacts: b.artifacts,
            tokens: b.tokens,
            blobs: b.blobs,
            config: Arc::new(config),
            serving,
            deployments: b.deployments,
            metrics: serving::metrics::RequestMetrics::default(),
            predictions,
            labels: b.labels,
            monitors: b.monitors,
            monitor_gauges: monitors::MonitorGauges::default(),
            features: b.features,
            // Lookups from memory; a new materialisation (by any process) is seen within 1 s.
            online: Arc::new(features::online::CachedOnline::new(
                b.online,
                std::time::Duration::from_secs(1),
            )),
            applied_features: Default::default(),
            vectors: b.vectors,
            embeddings: b.embeddings,
            rag: Default::default(),
            jobs: b.jobs,
            gateway: b.gateway,
            prompts: b.prompts,
            traces: b.traces,
            trace_metrics: Default::default(),
        }
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let json_limit = state.config.max_json_bytes;
    let api = mlflow::routes()
        .merge(mlflow_registry::routes())
        .merge(admin::routes())
        .merge(monitors::routes())
        .merge(feature_routes::routes())
        .merge(jobs_routes::routes())
        .merge(labelled_routes::routes())
        .merge(prompt_routes::routes())
        .layer(DefaultBodyLimit::max(json_limit));
    Router::new()
        .merge(ui::routes())
        .route("/health", get(|| async { "OK" }))
        .route("/version", get(|| async { mlflow::COMPATIBLE_VERSION }))
        .route("/openapi.json", get(openapi::document))
        .route("/metrics", get(monitoring::metrics))
        .route(
            "/api/2.0/capstan/monitoring/performance",
            get(monitoring::performance),
        )
        .merge(api)
        .merge(artifacts::routes().layer(DefaultBodyLimit::disable()))
        .merge(trace_routes::routes().layer(DefaultBodyLimit::max(json_limit * 16)))
        .merge(
            oip::routes()
                .merge(deployments::routes())
                .layer(DefaultBodyLimit::max(json_limit * 8)),
        )
        .merge(
            vector_routes::routes()
                .merge(rag_routes::routes())
                .merge(openai::routes())
                .merge(gateway_routes::routes())
                .layer(DefaultBodyLimit::max(json_limit * 64)),
        )
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .with_state(state)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if state.config.monitor_scheduler {
        tokio::spawn(monitors::scheduler(state.clone()));
    }
    if let Some(days) = state.config.trace_retention_days {
        tokio::spawn(trace_routes::retention(state.clone(), days));
    }
    let gateway = state.gateway.clone();
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    // Usage records still queued are written before the process ends.
    gateway.flush().await;
    served
}
