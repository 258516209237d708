//! A small client for Capstan's (and MLflow's) tracking REST API, used by the demo and benchmarks.

use crate::platform::Error;
use serde_json::Value;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    async fn answer(resp: Result<reqwest::Response, reqwest::Error>) -> Result<Value, Error> {
        let resp = resp.map_err(|e| Error::Other(format!("request failed: {e}")))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| Error::Other(format!("reading response: {e}")))?;
        if !status.is_success() {
            // Show the protocol's own message when the answer is an MLflow-style error.
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or(text);
            return Err(Error::Other(format!("HTTP {status}: {message}")));
        }
        if text.trim().is_empty() {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_str(&text).map_err(|e| Error::Other(format!("bad JSON answer: {e}")))
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, Error> {
        Self::answer(
            self.http
                .post(format!("{}{path}", self.base))
                .json(body)
                .send()
                .await,
        )
        .await
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, Error> {
        Self::answer(
            self.http
                .get(format!("{}{path}", self.base))
                .query(query)
                .send()
                .await,
        )
        .await
    }

    pub async fn put(&self, path: &str, bytes: Vec<u8>) -> Result<Value, Error> {
        Self::answer(
            self.http
                .put(format!("{}{path}", self.base))
                .body(bytes)
                .send()
                .await,
        )
        .await
    }
}
