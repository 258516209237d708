//! Starting the server on a fresh embedded store.

use serde_json::Value;
use std::sync::Arc;
use store::{BlobConfig, Blobs, Db};

pub struct TestServer {
    pub url: String,
    pub http: reqwest::Client,
    pub db: Db,
    pub dir: tempfile::TempDir,
}

/// Where models are cached across test runs (fetched once per machine).
pub fn models_home() -> std::path::PathBuf {
    std::env::var_os("CAPSTAN_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/capstan")
        })
}

pub async fn start(config: server::ServerConfig) -> TestServer {
    start_with(
        config,
        serving::ServingConfig {
            poll: std::time::Duration::from_millis(50),
            ..Default::default()
        },
    )
    .await
}

pub async fn start_with(
    config: server::ServerConfig,
    serving_config: serving::ServingConfig,
) -> TestServer {
    start_full(
        config,
        serving_config,
        gateway::GatewayConfig::default(),
        None,
    )
    .await
}

/// A server whose LLM gateway routes by `gateway_config`.
pub async fn start_gateway(gateway_config: gateway::GatewayConfig) -> TestServer {
    start_full(
        server::ServerConfig::default(),
        serving::ServingConfig::default(),
        gateway_config,
        None,
    )
    .await
}

/// A gateway server whose budgets are counted in `ledger` (e.g. Redis shared with another).
pub async fn start_gateway_with(
    gateway_config: gateway::GatewayConfig,
    ledger: Arc<dyn gateway::budget::Ledger>,
) -> TestServer {
    start_full(
        server::ServerConfig::default(),
        serving::ServingConfig::default(),
        gateway_config,
        Some(ledger),
    )
    .await
}

pub async fn start_full(
    config: server::ServerConfig,
    serving_config: serving::ServingConfig,
    gateway_config: gateway::GatewayConfig,
    ledger: Option<Arc<dyn gateway::budget::Ledger>>,
) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(&format!("sqlite://{}", dir.path().join("m.db").display()))
        .await
        .expect("db");
    let blobs = Blobs::open(
        &BlobConfig::Local(dir.path().join("objects")),
        dir.path().join("tmp"),
    )
    .expect("blobs");
    let tracking = tracking::Tracking::new(Arc::new(db.clone()));
    let registry = registry::Registry::new(Arc::new(db.clone()), tracking.clone());
    let embeddings = Arc::new(server::embedding::EmbeddingModels::new(
        models_home(),
        None,
        "https://pypi.org".into(),
    ));
    let state = server::AppState::new(
        tracking,
        registry,
        server::Backends {
            artifacts: Arc::new(db.clone()),
            tokens: Arc::new(db.clone()),
            blobs,
            deployments: Arc::new(db.clone()),
            labels: Arc::new(db.clone()),
            monitors: Arc::new(db.clone()),
            features: Arc::new(db.clone()),
            online: Arc::new(db.clone()),
            jobs: Arc::new(db.clone()),
            vectors: Arc::new(server::vector_routes::LazyVectors::embedded(
                dir.path().join("vectors"),
            )),
            embeddings: embeddings.clone(),
            gateway: Arc::new(
                gateway::Gateway::new(
                    gateway_config,
                    gateway::provider::LocalChat::new(
                        models_home(),
                        None,
                        "https://pypi.org".into(),
                    ),
                    Some(Arc::new(gateway::spans::TracedUsage::new(
                        Arc::new(db.clone()),
                        Arc::new(db.clone()),
                    ))),
                )
                .expect("gateway")
                .with_ledger(ledger.unwrap_or_else(|| Arc::new(db.clone())))
                .with_embedder(embeddings),
            ),
            prompts: Arc::new(db.clone()),
            traces: Arc::new(db.clone()),
            prediction_log: Some(monitor::predlog::LogConfig {
                rotate: std::time::Duration::from_millis(100),
                ..Default::default()
            }),
        },
        config,
        serving_config,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(server::serve(listener, state, std::future::pending()));
    TestServer {
        url,
        http: reqwest::Client::new(),
        db,
        dir,
    }
}

impl TestServer {
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `/metrics` as text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .query(query)
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn new_run(&self) -> String {
        let (s, v) = self
            .post(
                "/api/2.0/mlflow/runs/create",
                serde_json::json!({"experiment_id": "0"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["run"]["info"]["run_id"]
            .as_str()
            .expect("run_id")
            .to_owned()
    }
}

/// Asserts an MLflow error: status and `error_code`, and that the message mentions `needle`.
pub fn check_error((status, body): (u16, Value), want_status: u16, want_code: &str, needle: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error_code"], want_code, "{body}");
    let msg = body["message"].as_str().unwrap_or("");
    assert!(
        msg.contains(needle),
        "message {msg:?} should mention {needle:?}"
    );
}
