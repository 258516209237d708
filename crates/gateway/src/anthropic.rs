//! Anthropic's Messages API, both ways. As a provider, [`AnthropicProvider`] sends an OpenAI
//! chat request to `POST {base}/v1/messages` and turns the answer (or its event stream) back into
//! OpenAI's shapes. As a front, [`to_request`] and [`to_message`] / [`StreamTranslator`] let the
//! server answer `POST /v1/messages` from any deployment.
//!
//! Usage is where the two APIs differ most: Anthropic's `input_tokens` excludes the prompt-cache
//! tokens (`cache_read_input_tokens`, `cache_creation_input_tokens` come on top), OpenAI's
//! `prompt_tokens` includes them. Translating: prompt = input + cache read + cache write; cached
//! = cache read; cache write = cache creation — so each token is billed once, at its own price.

use crate::error::{ErrorClass, GatewayError, Result};
use crate::provider::{ChunkStream, Provider, classify, now_s, transport};
use crate::request::{Endpoint, LlmRequest};
use crate::usage::Usage;
use futures_util::StreamExt;
use serde_json::{Value, json};

pub const VERSION: &str = "2023-06-01";

/// Anthropic requires `max_tokens`; used when the request gives none.
const DEFAULT_MAX_TOKENS: usize = 4096;

/// The Messages request for an OpenAI chat request.
pub fn from_openai(req: &LlmRequest, model: &str) -> Result<Value> {
    if req.endpoint != Endpoint::Chat {
        return Err(GatewayError::invalid(
            "prompt",
            "Anthropic models take chat messages, not a raw prompt",
        ));
    }
    if req.uses_tools {
        return Err(GatewayError::invalid(
            "tools",
            "tool calls are not translated to Anthropic yet",
        ));
    }
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        match m.role.as_str() {
            "system" | "developer" => system.push(m.content.clone()),
            "user" | "assistant" => messages.push(json!({"role": m.role, "content": m.content})),
            other => {
                return Err(GatewayError::invalid(
                    &format!("messages[{i}].role"),
                    format!("role `{other}` has no Anthropic equivalent"),
                ));
            }
        }
    }
    if let Some(t) = req.temperature
        && t > 1.0
    {
        return Err(GatewayError::invalid(
            "temperature",
            "Anthropic models take a temperature from 0 to 1",
        ));
    }
    let mut body = json!({
        "model": model,
        "max_tokens": req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "messages": messages,
    });
    let o = body
        .as_object_mut()
        .ok_or_else(|| GatewayError::invalid("messages", "bad request"))?;
    if !system.is_empty() {
        o.insert("system".into(), json!(system.join("\n\n")));
    }
    if let Some(t) = req.temperature {
        o.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        o.insert("top_p".into(), json!(p));
    }
    if !req.stop.is_empty() {
        o.insert("stop_sequences".into(), json!(req.stop));
    }
    if req.stream {
        o.insert("stream".into(), json!(true));
    }
    if let Some(u) = &req.user {
        o.insert("metadata".into(), json!({"user_id": u}));
    }
    Ok(body)
}

/// OpenAI's usage for Anthropic's (see the module note on cache tokens).
pub fn usage_from(u: &Value) -> Usage {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let (input, read, write) = (
        n("input_tokens"),
        n("cache_read_input_tokens"),
        n("cache_creation_input_tokens"),
    );
    Usage {
        prompt_tokens: input + read + write,
        completion_tokens: n("output_tokens"),
        cached_tokens: read,
        cache_write_tokens: write,
        reasoning_tokens: 0,
    }
}

fn finish_reason(stop: &Value) -> Value {
    match stop.as_str() {
        Some("max_tokens") => json!("length"),
        Some("tool_use") => json!("tool_calls"),
        Some("refusal") => json!("content_filter"),
        Some(_) => json!("stop"),
        None => Value::Null,
    }
}

fn usage_json(u: &Usage) -> Value {
    let mut v = u.to_openai();
    v["cache_creation_input_tokens"] = json!(u.cache_write_tokens);
    v
}

/// An OpenAI chat completion from an Anthropic message.
pub fn to_openai(msg: &Value) -> Value {
    let text: String = msg["content"]
        .as_array()
        .map(|blocks| blocks.iter().filter_map(|b| b["text"].as_str()).collect())
        .unwrap_or_default();
    json!({
        "id": format!("chatcmpl-{}", msg["id"].as_str().unwrap_or("anthropic")),
        "object": "chat.completion",
        "created": now_s(),
        "model": msg["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "logprobs": null, "finish_reason": finish_reason(&msg["stop_reason"])}],
        "usage": usage_json(&usage_from(&msg["usage"])),
    })
}

pub struct AnthropicProvider {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl AnthropicProvider {
    /// `base_url` is the API root without `/v1` or with it (`https://api.anthropic.com`).
    pub fn new(http: reqwest::Client, base_url: &str, key: Option<String>) -> AnthropicProvider {
        let base = base_url
            .trim_end_matches('/')
            .trim_end_matches("/v1")
            .to_owned();
        AnthropicProvider { http, base, key }
    }

    async fn send(&self, req: &LlmRequest, model: &str) -> Result<reqwest::Response> {
        let mut r = self
            .http
            .post(format!("{}/v1/messages", self.base))
            .header("anthropic-version", VERSION)
            .json(&from_openai(req, model)?);
        if let Some(k) = &self.key {
            r = r.header("x-api-key", k);
        }
        let resp = r.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        // 529 is Anthropic's "overloaded".
        Err(classify(if status == 529 { 503 } else { status }, &body))
    }
}

/// Turns Anthropic stream events into OpenAI chunks (one event may give none).
#[derive(Default)]
pub struct ChunkTranslator {
    id: String,
    model: Value,
    usage: Usage,
}

impl ChunkTranslator {
    fn chunk(&self, delta: Value, finish: Value) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": now_s(), "model": self.model,
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    }

    pub fn event(&mut self, e: &Value) -> Result<Vec<Value>> {
        Ok(match e["type"].as_str().unwrap_or("") {
            "message_start" => {
                let m = &e["message"];
                self.id = format!("chatcmpl-{}", m["id"].as_str().unwrap_or("anthropic"));
                self.model = m["model"].clone();
                self.usage = usage_from(&m["usage"]);
                vec![self.chunk(json!({"role": "assistant", "content": ""}), Value::Null)]
            }
            "content_block_delta" => match e["delta"]["text"].as_str() {
                Some(t) => vec![self.chunk(json!({"content": t}), Value::Null)],
                None => vec![],
            },
            "message_delta" => {
                if let Some(out) = e["usage"]["output_tokens"].as_u64() {
                    self.usage.completion_tokens = out;
                }
                vec![self.chunk(json!({}), finish_reason(&e["delta"]["stop_reason"]))]
            }
            "message_stop" => {
                let mut last = self.chunk(json!({}), Value::Null);
                last["choices"] = json!([]);
                last["usage"] = usage_json(&self.usage);
                vec![last]
            }
            "error" => return Err(classify(500, e)),
            _ => vec![], // ping, content_block_start/stop
        })
    }
}

#[async_trait::async_trait]
impl Provider for AnthropicProvider {
    async fn complete(&self, req: &LlmRequest, model: &str) -> Result<Value> {
        let resp = self.send(req, model).await?;
        let msg: Value = resp.json().await.map_err(|e| {
            GatewayError::new(
                ErrorClass::Upstream,
                502,
                format!("upstream answered something that is not JSON: {e}"),
            )
        })?;
        Ok(to_openai(&msg))
    }

    async fn stream(&self, req: &LlmRequest, model: &str) -> Result<ChunkStream> {
        let resp = self.send(req, model).await?;
        let events = crate::provider::sse_events(resp.bytes_stream());
        let mut t = ChunkTranslator::default();
        let chunks = events
            .map(move |e| match e {
                Ok(e) => t.event(&e),
                Err(err) => Err(err),
            })
            .flat_map(|r| {
                futures_util::stream::iter(match r {
                    Ok(chunks) => chunks.into_iter().map(Ok).collect::<Vec<_>>(),
                    Err(e) => vec![Err(e)],
                })
            });
        Ok(Box::pin(chunks))
    }
}

/// The OpenAI chat request for an Anthropic Messages body (the server's `/v1/messages`).
pub fn to_request(raw: &[u8]) -> Result<LlmRequest> {
    let b: Value = serde_json::from_slice(raw).map_err(|e| {
        GatewayError::new(
            ErrorClass::BadRequest,
            400,
            format!("the request body is not JSON: {e}"),
        )
    })?;
    let text = |c: &Value, field: &str| -> Result<String> {
        match c {
            Value::String(s) => Ok(s.clone()),
            Value::Array(blocks) => Ok(blocks
                .iter()
                .filter(|x| x["type"] == "text")
                .filter_map(|x| x["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")),
            _ => Err(GatewayError::invalid(
                field,
                format!("`{field}` must be a string or a list of blocks"),
            )),
        }
    };
    let mut messages = Vec::new();
    if !b["system"].is_null() {
        messages.push(json!({"role": "system", "content": text(&b["system"], "system")?}));
    }
    let list = b["messages"]
        .as_array()
        .ok_or_else(|| GatewayError::invalid("messages", "`messages` must be a list"))?;
    for (i, m) in list.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or_default();
        if role != "user" && role != "assistant" {
            return Err(GatewayError::invalid(
                &format!("messages.{i}.role"),
                "role must be user or assistant",
            ));
        }
        messages.push(json!({"role": role, "content": text(&m["content"], &format!("messages.{i}.content"))?}));
    }
    if b["max_tokens"].as_u64().is_none_or(|n| n == 0) {
        return Err(GatewayError::invalid(
            "max_tokens",
            "`max_tokens` is required (a positive integer)",
        ));
    }
    let mut openai =
        json!({"model": b["model"], "messages": messages, "max_tokens": b["max_tokens"]});
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("stop_sequences", "stop"),
        ("stream", "stream"),
    ] {
        if !b[from].is_null() {
            openai[to] = b[from].clone();
        }
    }
    if let Some(u) = b["metadata"]["user_id"].as_str() {
        openai["user"] = json!(u);
    }
    if openai["stream"] == true {
        openai["stream_options"] = json!({"include_usage": true});
    }
    LlmRequest::parse(Endpoint::Chat, openai.to_string().as_bytes())
}

/// An Anthropic message from an OpenAI chat completion.
pub fn to_message(c: &Value) -> Value {
    let choice = &c["choices"][0];
    let u = Usage::from_openai(&c["usage"]).unwrap_or_default();
    let stop = match choice["finish_reason"].as_str() {
        Some("length") => "max_tokens",
        Some("tool_calls") => "tool_use",
        _ => "end_turn",
    };
    json!({
        "id": format!("msg_{}", c["id"].as_str().unwrap_or("").trim_start_matches("chatcmpl-")),
        "type": "message", "role": "assistant", "model": c["model"],
        "content": [{"type": "text", "text": choice["message"]["content"].as_str().unwrap_or("")}],
        "stop_reason": stop, "stop_sequence": null,
        "usage": anthropic_usage(&u),
    })
}

fn anthropic_usage(u: &Usage) -> Value {
    json!({"input_tokens": u.prompt_tokens.saturating_sub(u.cached_tokens + u.cache_write_tokens),
           "output_tokens": u.completion_tokens,
           "cache_read_input_tokens": u.cached_tokens,
           "cache_creation_input_tokens": u.cache_write_tokens})
}

/// Turns OpenAI chunks into Anthropic stream events (name, data) for the server's front.
#[derive(Default)]
pub struct StreamTranslator {
    started: bool,
    finish: Option<String>,
}

impl StreamTranslator {
    pub fn chunk(&mut self, c: &Value) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.push(("message_start", json!({"type": "message_start", "message": {
                "id": format!("msg_{}", c["id"].as_str().unwrap_or("").trim_start_matches("chatcmpl-")),
                "type": "message", "role": "assistant", "model": c["model"], "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}})));
            out.push((
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
            ));
        }
        if let Some(choice) = c["choices"].get(0) {
            if let Some(t) = choice["delta"]["content"]
                .as_str()
                .filter(|t| !t.is_empty())
            {
                out.push((
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": t}}),
                ));
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                self.finish = Some(f.to_owned());
            }
        }
        if let Some(u) = Usage::from_openai(&c["usage"]) {
            out.extend(self.end(Some(u)));
        }
        out
    }

    /// The closing events (once); `usage` when the stream carried it.
    pub fn end(&mut self, usage: Option<Usage>) -> Vec<(&'static str, Value)> {
        let Some(f) = self
            .finish
            .take()
            .or_else(|| self.started.then(|| "stop".into()))
        else {
            return Vec::new();
        };
        let stop = match f.as_str() {
            "length" => "max_tokens",
            _ => "end_turn",
        };
        let u = usage.unwrap_or_default();
        self.started = false;
        vec![
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": anthropic_usage(&u)}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_tokens_translate_so_each_is_billed_once() {
        let u = usage_from(&json!({"input_tokens": 100, "output_tokens": 20,
                                   "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 500}));
        assert_eq!(
            (u.prompt_tokens, u.cached_tokens, u.cache_write_tokens),
            (1600, 1000, 500)
        );
        let back = anthropic_usage(&u);
        assert_eq!(back["input_tokens"], 100);
        // Priced: 100 fresh + 1000 read + 500 written, never the 1000 again at the input price.
        let prices = crate::pricing::Prices::new(&Default::default());
        let c = prices.cost("claude-sonnet-4-20250514", &u).unwrap();
        assert!(
            (c - (100.0 * 3.0 + 1000.0 * 0.3 + 500.0 * 3.75 + 20.0 * 15.0) / 1e6).abs() < 1e-12
        );
    }

    #[test]
    fn requests_translate_both_ways() {
        let r = LlmRequest::parse(
            Endpoint::Chat,
            br#"{"model":"claude","max_tokens":5,"stop":"END","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        let a = from_openai(&r, "claude-x").unwrap();
        assert_eq!(a["system"], "be brief");
        assert_eq!(a["messages"], json!([{"role": "user", "content": "hi"}]));
        assert_eq!(a["stop_sequences"], json!(["END"]));
        let back = to_request(a.to_string().as_bytes()).unwrap();
        assert_eq!(back.messages, r.messages);
        assert_eq!(back.max_tokens, Some(5));
        let e =
            to_request(br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
    }
}
