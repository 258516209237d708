//! An [`Embedder`] backed by any OpenAI-compatible `POST /v1/embeddings` endpoint (OpenAI, vLLM,
//! Ollama, llama.cpp's server, another Capstan). The dimension is learnt from one probe at
//! connect time. Calls block on the runtime the embedder was created on, so they must run on a
//! blocking thread or a multi-threaded runtime's worker, like every `Embedder` call.

use crate::{Embedder, Error, Result};
use serde_json::{Value, json};

pub struct HttpEmbedder {
    http: reqwest::Client,
    url: String,
    key: Option<String>,
    model: String,
    name: String,
    dim: usize,
    handle: tokio::runtime::Handle,
}

impl HttpEmbedder {
    /// `base` is the API root (`https://api.openai.com/v1`, `http://127.0.0.1:5000/v1`).
    pub async fn connect(base: &str, key: Option<String>, model: &str) -> Result<HttpEmbedder> {
        let mut e = HttpEmbedder {
            http: reqwest::Client::new(),
            url: format!("{}/embeddings", base.trim_end_matches('/')),
            key,
            model: model.to_owned(),
            name: format!("{model}@{}", base.trim_end_matches('/')),
            dim: 0,
            handle: tokio::runtime::Handle::current(),
        };
        let probe = e.request(&["dimension probe"]).await?;
        e.dim = probe.first().map_or(0, Vec::len);
        if e.dim == 0 {
            return Err(Error::Fetch(format!(
                "{} answered an empty embedding",
                e.url
            )));
        }
        Ok(e)
    }

    async fn request(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut req = self
            .http
            .post(&self.url)
            .json(&json!({"model": self.model, "input": texts, "encoding_format": "float"}));
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Error::Fetch(format!("{}: {e}", self.url)))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .map_err(|e| Error::Fetch(format!("{}: answer is not JSON: {e}", self.url)))?;
        if !status.is_success() {
            let msg = body["error"]["message"].as_str().unwrap_or("no message");
            return Err(if status.is_client_error() {
                Error::BadInput(format!("{}: {status}: {msg}", self.url))
            } else {
                Error::Fetch(format!("{}: {status}: {msg}", self.url))
            });
        }
        let data = body["data"]
            .as_array()
            .ok_or_else(|| Error::Fetch(format!("{}: no `data` in the answer", self.url)))?;
        let mut out = vec![Vec::new(); texts.len()];
        for item in data {
            let i = item["index"].as_u64().unwrap_or(u64::MAX) as usize;
            let v: Vec<f32> = item["embedding"]
                .as_array()
                .map(|xs| {
                    xs.iter()
                        .filter_map(|x| x.as_f64().map(|f| f as f32))
                        .collect()
                })
                .unwrap_or_default();
            if let Some(slot) = out.get_mut(i) {
                *slot = v;
            }
        }
        if out.iter().any(Vec::is_empty) {
            return Err(Error::Fetch(format!(
                "{}: an input got no embedding",
                self.url
            )));
        }
        Ok(out)
    }
}

impl Embedder for HttpEmbedder {
    fn model_name(&self) -> &str {
        &self.name
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(256) {
            let got = tokio::task::block_in_place(|| self.handle.block_on(self.request(chunk)))?;
            if got.iter().any(|v| v.len() != self.dim) {
                return Err(Error::Fetch(format!(
                    "{}: embeddings changed dimension",
                    self.url
                )));
            }
            out.extend(got);
        }
        Ok(out)
    }
}
