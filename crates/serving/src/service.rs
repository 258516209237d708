//! The set of served models and how each stays current.

use crate::batcher::Batcher;
use learn::{LearnError, ModelPackage, Prediction};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Which version of a registered model to serve.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    /// Follow an alias: the served version changes when the alias moves.
    Alias(String),
    Version(i64),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ServeError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadInput(String),
    #[error(
        "the model cannot answer within its latency budget (expected {expected_ms} ms, budget {budget_ms} ms); retry later"
    )]
    Overloaded { expected_ms: u64, budget_ms: u64 },
    #[error("model package could not be loaded: {0}")]
    Load(String),
    #[error("{0}")]
    Internal(String),
}

impl From<LearnError> for ServeError {
    fn from(e: LearnError) -> ServeError {
        match e {
            LearnError::BadPackage(m) => ServeError::Load(m),
            other => ServeError::BadInput(other.to_string()),
        }
    }
}

/// Where packages come from (the registry and artifact store, wired by the server).
#[async_trait::async_trait]
pub trait PackageSource: Send + Sync {
    /// The version `selector` points at now.
    async fn resolve(&self, name: &str, selector: &Selector) -> Result<i64, ServeError>;
    /// The package of one version.
    async fn load(&self, name: &str, version: i64) -> Result<ModelPackage, ServeError>;
}

#[derive(Debug, Clone)]
pub struct ServingConfig {
    pub max_batch: usize,
    pub max_wait: Duration,
    pub latency_budget: Duration,
    /// How often followed aliases are re-resolved.
    pub poll: Duration,
}

impl Default for ServingConfig {
    fn default() -> ServingConfig {
        ServingConfig {
            max_batch: 256,
            // Batches form from what queues while the previous batch runs; no added wait.
            max_wait: Duration::ZERO,
            latency_budget: Duration::from_millis(200),
            poll: Duration::from_millis(500),
        }
    }
}

/// One loaded version.
pub struct Served {
    pub name: String,
    pub version: i64,
    pub package: Arc<ModelPackage>,
    /// The package's input names, shared with every logged prediction.
    pub input_names: Arc<Vec<String>>,
    batcher: Batcher,
}

impl Served {
    pub async fn predict(&self, rows: Vec<Vec<f64>>) -> Result<Vec<Prediction>, ServeError> {
        // Validate here so one request's bad row never reaches a shared batch.
        let d = self.package.inputs.len();
        for (r, row) in rows.iter().enumerate() {
            if row.len() != d {
                return Err(ServeError::BadInput(format!(
                    "row {r} has {} values, the model expects {d} ({})",
                    row.len(),
                    self.package.input_names().join(", ")
                )));
            }
            if let Some((j, v)) = row.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(ServeError::BadInput(format!(
                    "input '{}' row {r} is {v}; the model needs finite numbers",
                    self.package.inputs[j].name
                )));
            }
        }
        self.batcher.predict(rows).await
    }

    /// Rows per batch this version predicted.
    pub fn batch_sizes(&self) -> &crate::metrics::Histogram {
        &self.batcher.batch_sizes
    }

    pub fn queue_depth(&self) -> usize {
        self.batcher.queue_depth()
    }
}

type Key = (String, Selector);

#[derive(Clone)]
pub struct Serving {
    source: Arc<dyn PackageSource>,
    config: ServingConfig,
    models: Arc<RwLock<HashMap<Key, Arc<Served>>>>,
}

impl Serving {
    /// Starts the alias follower in the background.
    pub fn new(source: Arc<dyn PackageSource>, config: ServingConfig) -> Serving {
        let s = Serving {
            source,
            config,
            models: Arc::new(RwLock::new(HashMap::new())),
        };
        let follower = s.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(follower.config.poll);
            loop {
                tick.tick().await;
                follower.refresh().await;
            }
        });
        s
    }

    fn cached(&self, key: &Key) -> Option<Arc<Served>> {
        self.models.read().ok().and_then(|m| m.get(key).cloned())
    }

    async fn load(&self, name: &str, version: i64) -> Result<Arc<Served>, ServeError> {
        let package = Arc::new(self.source.load(name, version).await?);
        let batcher = Batcher::start(
            package.clone(),
            self.config.max_batch,
            self.config.max_wait,
            self.config.latency_budget,
        );
        Ok(Arc::new(Served {
            name: name.to_owned(),
            version,
            input_names: Arc::new(
                package
                    .input_names()
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
            package,
            batcher,
        }))
    }

    /// The served model for `name`/`selector`, loading it on first use.
    pub async fn get(&self, name: &str, selector: &Selector) -> Result<Arc<Served>, ServeError> {
        let key = (name.to_owned(), selector.clone());
        if let Some(s) = self.cached(&key) {
            return Ok(s);
        }
        let version = self.source.resolve(name, selector).await?;
        let served = self.load(name, version).await?;
        if let Ok(mut m) = self.models.write() {
            m.entry(key).or_insert(served.clone());
        }
        Ok(served)
    }

    /// Re-resolves every followed alias; a moved alias loads the new version and swaps it in only
    /// once it loaded. Requests in flight finish on the version they started with.
    pub async fn refresh(&self) {
        let followed: Vec<(Key, i64)> = match self.models.read() {
            Ok(m) => m
                .iter()
                .filter(|(k, _)| matches!(k.1, Selector::Alias(_)))
                .map(|(k, s)| (k.clone(), s.version))
                .collect(),
            Err(_) => return,
        };
        for ((name, selector), current) in followed {
            match self.source.resolve(&name, &selector).await {
                Ok(v) if v != current => match self.load(&name, v).await {
                    Ok(served) => {
                        tracing::info!(model = %name, from = current, to = v, "alias moved; serving the new version");
                        if let Ok(mut m) = self.models.write() {
                            m.insert((name.clone(), selector.clone()), served);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(model = %name, version = v, error = %e, "new version failed to load; keeping the served one")
                    }
                },
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(model = %name, error = %e, "cannot resolve the followed alias; keeping the served version")
                }
            }
        }
    }

    /// Every loaded model.
    pub fn loaded(&self) -> Vec<Arc<Served>> {
        self.models
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use learn::{Dataset, TrainOptions};

    /// Packages built in memory; the registry-backed source is exercised by the server's tests.
    struct Fixed(ModelPackage);

    #[async_trait::async_trait]
    impl PackageSource for Fixed {
        async fn resolve(&self, _: &str, _: &Selector) -> Result<i64, ServeError> {
            Ok(1)
        }
        async fn load(&self, _: &str, _: i64) -> Result<ModelPackage, ServeError> {
            Ok(self.0.clone())
        }
    }

    fn package() -> ModelPackage {
        let x: Vec<Vec<f64>> = (0..40).map(|i| vec![i as f64, (i % 5) as f64]).collect();
        let y = x.iter().map(|r| (2.0 * r[0] + r[1]).to_string()).collect();
        let d = Dataset {
            features: vec!["a".into(), "b".into()],
            target: "y".into(),
            x,
            y,
        };
        learn::train_linear_regression(
            &d,
            &TrainOptions {
                epochs: 50,
                ..Default::default()
            },
            |_| {},
        )
        .expect("fit")
        .package
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_batches_and_get_their_own_answers() {
        let p = package();
        let serving = Serving::new(
            Arc::new(Fixed(p.clone())),
            ServingConfig {
                max_batch: 16,
                ..Default::default()
            },
        );
        let served = serving
            .get("m", &Selector::Alias("champion".into()))
            .await
            .expect("load");
        let mut tasks = Vec::new();
        for i in 0..64usize {
            let served = served.clone();
            let rows: Vec<Vec<f64>> = (0..(i % 7 + 1))
                .map(|r| vec![(i * 10 + r) as f64, r as f64])
                .collect();
            tasks.push(tokio::spawn(async move {
                (rows.clone(), served.predict(rows).await)
            }));
        }
        for t in tasks {
            let (rows, got) = t.await.expect("join");
            assert_eq!(
                got.expect("predict"),
                p.predict(&rows).expect("direct"),
                "answers are split back per request"
            );
        }
        assert_eq!(served.queue_depth(), 0);
        let bad = served.predict(vec![vec![1.0]]).await.expect_err("width");
        assert!(matches!(bad, ServeError::BadInput(m) if m.contains("expects 2")));
    }
}
