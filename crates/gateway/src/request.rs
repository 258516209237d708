//! OpenAI request bodies, checked field by field so a mistake comes back as a 400 naming the
//! field. The validated body is kept whole: an OpenAI-compatible upstream gets it as sent (tools,
//! response formats and all), with only `model` (and the stream options) replaced.

use crate::error::{GatewayError, Result};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`
    Chat,
    /// `/v1/completions` (a raw prompt, no chat template)
    Completions,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
        }
    }
}

/// Plain text of one message (text parts joined), as a local model and the cache see it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone)]
pub struct LlmRequest {
    pub endpoint: Endpoint,
    /// The model (group) the client asked for.
    pub model: String,
    /// Chat messages; for `/v1/completions` one `user` message holding the prompt.
    pub messages: Vec<Message>,
    pub max_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub stop: Vec<String>,
    pub seed: Option<u64>,
    pub stream: bool,
    /// `stream_options.include_usage`: the client wants the final usage chunk.
    pub include_usage: bool,
    pub user: Option<String>,
    /// `metadata` (string values), for routing rules and tags.
    pub metadata: Map<String, Value>,
    /// Tools or other features only some providers have.
    pub uses_tools: bool,
    /// The validated body, for passing through.
    pub body: Value,
}

/// Most messages one request may carry.
const MAX_MESSAGES: usize = 2048;
const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

fn text_of(content: &Value, field: &str) -> Result<String> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut out = String::new();
            for (i, p) in parts.iter().enumerate() {
                match (p["type"].as_str(), p["text"].as_str()) {
                    (Some("text"), Some(t)) => {
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        out.push_str(t);
                    }
                    (Some("text"), None) => {
                        return Err(GatewayError::invalid(
                            &format!("{field}[{i}].text"),
                            "a text part needs `text`",
                        ));
                    }
                    // Images and audio pass through to upstreams that take them.
                    (Some(_), _) => {}
                    (None, _) => {
                        return Err(GatewayError::invalid(
                            &format!("{field}[{i}].type"),
                            "each content part needs a `type`",
                        ));
                    }
                }
            }
            Ok(out)
        }
        _ => Err(GatewayError::invalid(
            field,
            "`content` must be a string or a list of parts",
        )),
    }
}

fn number(body: &Value, field: &str, lo: f64, hi: f64) -> Result<Option<f64>> {
    match &body[field] {
        Value::Null => Ok(None),
        v => match v.as_f64() {
            Some(x) if (lo..=hi).contains(&x) => Ok(Some(x)),
            _ => Err(GatewayError::invalid(
                field,
                format!("`{field}` must be a number from {lo} to {hi}"),
            )),
        },
    }
}

impl LlmRequest {
    /// Parses and checks a request body for `endpoint`.
    pub fn parse(endpoint: Endpoint, raw: &[u8]) -> Result<LlmRequest> {
        let body: Value = serde_json::from_slice(raw).map_err(|e| {
            GatewayError::new(
                crate::ErrorClass::BadRequest,
                400,
                format!("the request body is not JSON: {e}"),
            )
        })?;
        if !body.is_object() {
            return Err(GatewayError::new(
                crate::ErrorClass::BadRequest,
                400,
                "the request body must be a JSON object",
            ));
        }
        let model = match &body["model"] {
            Value::String(m) if !m.is_empty() => m.clone(),
            _ => return Err(GatewayError::invalid("model", "`model` is required")),
        };
        let messages = match endpoint {
            Endpoint::Chat => {
                let list = body["messages"].as_array().ok_or_else(|| {
                    GatewayError::invalid("messages", "`messages` must be a list of messages")
                })?;
                if list.is_empty() {
                    return Err(GatewayError::invalid("messages", "`messages` is empty"));
                }
                if list.len() > MAX_MESSAGES {
                    return Err(GatewayError::invalid(
                        "messages",
                        format!("at most {MAX_MESSAGES} messages"),
                    ));
                }
                let mut out = Vec::with_capacity(list.len());
                for (i, m) in list.iter().enumerate() {
                    let role = m["role"].as_str().ok_or_else(|| {
                        GatewayError::invalid(
                            &format!("messages[{i}].role"),
                            "each message needs a `role`",
                        )
                    })?;
                    if !ROLES.contains(&role) {
                        return Err(GatewayError::invalid(
                            &format!("messages[{i}].role"),
                            format!("unknown role `{role}` (one of {})", ROLES.join(", ")),
                        ));
                    }
                    let has_tool_calls = m["tool_calls"].is_array();
                    if m.get("content").is_none() && !has_tool_calls {
                        return Err(GatewayError::invalid(
                            &format!("messages[{i}].content"),
                            "each message needs `content`",
                        ));
                    }
                    out.push(Message {
                        role: role.to_owned(),
                        content: text_of(&m["content"], &format!("messages[{i}].content"))?,
                    });
                }
                out
            }
            Endpoint::Completions => match &body["prompt"] {
                Value::String(p) => vec![Message {
                    role: "user".into(),
                    content: p.clone(),
                }],
                Value::Array(a) if a.len() == 1 && a[0].is_string() => vec![Message {
                    role: "user".into(),
                    content: a[0].as_str().unwrap_or_default().to_owned(),
                }],
                _ => {
                    return Err(GatewayError::invalid(
                        "prompt",
                        "`prompt` must be a string (one prompt per request)",
                    ));
                }
            },
        };
        let max_tokens = match (&body["max_completion_tokens"], &body["max_tokens"]) {
            (Value::Null, Value::Null) => None,
            (v, Value::Null) | (Value::Null, v) => match v.as_u64() {
                Some(n) if n >= 1 => Some(n as usize),
                _ => {
                    return Err(GatewayError::invalid(
                        "max_tokens",
                        "`max_tokens` must be a positive integer",
                    ));
                }
            },
            _ => {
                return Err(GatewayError::invalid(
                    "max_tokens",
                    "give `max_tokens` or `max_completion_tokens`, not both",
                ));
            }
        };
        let temperature = number(&body, "temperature", 0.0, 2.0)?.map(|x| x as f32);
        let top_p = number(&body, "top_p", 0.0, 1.0)?.map(|x| x as f32);
        number(&body, "presence_penalty", -2.0, 2.0)?;
        number(&body, "frequency_penalty", -2.0, 2.0)?;
        match &body["n"] {
            Value::Null => {}
            v if v.as_u64() == Some(1) => {}
            _ => {
                return Err(GatewayError::invalid(
                    "n",
                    "`n` must be 1 (ask again for more choices)",
                ));
            }
        }
        let stop = match &body["stop"] {
            Value::Null => Vec::new(),
            Value::String(s) => vec![s.clone()],
            Value::Array(a)
                if a.len() <= 4 && a.iter().all(|s| s.as_str().is_some_and(|s| !s.is_empty())) =>
            {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            }
            _ => {
                return Err(GatewayError::invalid(
                    "stop",
                    "`stop` must be a string or a list of up to 4 non-empty strings",
                ));
            }
        };
        let seed = match &body["seed"] {
            Value::Null => None,
            v => Some(
                v.as_i64()
                    .ok_or_else(|| GatewayError::invalid("seed", "`seed` must be an integer"))?
                    as u64,
            ),
        };
        let stream = match &body["stream"] {
            Value::Null => false,
            Value::Bool(b) => *b,
            _ => {
                return Err(GatewayError::invalid(
                    "stream",
                    "`stream` must be true or false",
                ));
            }
        };
        let include_usage = match &body["stream_options"] {
            Value::Null => false,
            o if !stream => {
                let _ = o;
                return Err(GatewayError::invalid(
                    "stream_options",
                    "`stream_options` is only allowed with `stream: true`",
                ));
            }
            o => o["include_usage"].as_bool().unwrap_or(false),
        };
        let user = match &body["user"] {
            Value::Null => None,
            Value::String(u) => Some(u.clone()),
            _ => return Err(GatewayError::invalid("user", "`user` must be a string")),
        };
        let metadata = match &body["metadata"] {
            Value::Null => Map::new(),
            Value::Object(m) if m.values().all(Value::is_string) => m.clone(),
            _ => {
                return Err(GatewayError::invalid(
                    "metadata",
                    "`metadata` must be an object of string values",
                ));
            }
        };
        let uses_tools =
            body["tools"].as_array().is_some_and(|t| !t.is_empty()) || !body["functions"].is_null();
        Ok(LlmRequest {
            endpoint,
            model,
            messages,
            max_tokens,
            temperature,
            top_p,
            stop,
            seed,
            stream,
            include_usage,
            user,
            metadata,
            uses_tools,
            body,
        })
    }

    /// An upper bound on the prompt's tokens for byte-level tokenizers (a token is at least one
    /// byte), with room for each message's template tokens and a default system prompt.
    pub fn prompt_bound(&self) -> usize {
        self.messages
            .iter()
            .map(|m| m.content.len() + 16)
            .sum::<usize>()
            + 64
    }

    /// All message text, for token estimates and routing rules.
    pub fn prompt_chars(&self) -> usize {
        self.messages.iter().map(|m| m.content.len()).sum()
    }

    /// The exact-cache key: everything that changes the answer (the model group, the endpoint,
    /// every message, the sampling parameters, tools and formats) and nothing that does not
    /// (`stream`, `stream_options`, `user`, `metadata`). `scope` separates tenants.
    pub fn cache_key(&self, scope: &str) -> String {
        self.digest(b"", scope, |_| {})
    }

    /// SHA-256 of `prefix`, `scope`, the endpoint and the body without the fields that never
    /// change an answer (`stream`, `stream_options`, `user`, `metadata`) and whatever `edit`
    /// takes out. serde_json's map is sorted (no preserve_order), so equal bodies hash equally.
    fn digest(
        &self,
        prefix: &[u8],
        scope: &str,
        edit: impl FnOnce(&mut Map<String, Value>),
    ) -> String {
        let mut b = self.body.clone();
        if let Some(o) = b.as_object_mut() {
            for k in ["stream", "stream_options", "user", "metadata"] {
                o.remove(k);
            }
            edit(o);
        }
        let mut h = Sha256::new();
        h.update(prefix);
        h.update(scope.as_bytes());
        h.update([0]);
        h.update(format!("{:?}", self.endpoint).as_bytes());
        h.update([0]);
        h.update(b.to_string().as_bytes());
        base::to_hex(&h.finalize())
    }

    /// The semantic cache's scope and the text it compares: the last message must be the user's;
    /// everything else — the tenant, endpoint, model group, every earlier message verbatim and
    /// every parameter — goes into the scope, so only the last question is matched by meaning.
    pub fn semantic_key(&self, tenant: &str) -> Option<(String, String)> {
        let last = self.messages.last()?;
        if last.role != "user" || last.content.trim().is_empty() {
            return None;
        }
        let endpoint = self.endpoint;
        let scope = self.digest(b"semantic\0", tenant, |o| match endpoint {
            Endpoint::Chat => {
                if let Some(Value::Array(m)) = o.get_mut("messages") {
                    m.pop();
                }
            }
            Endpoint::Completions => {
                o.remove("prompt");
            }
        });
        Some((scope, last.content.clone()))
    }

    /// The body for an upstream: the deployment's model name, and usage always asked for when
    /// streaming (costs need it; the client sees the usage chunk only if it asked).
    pub fn upstream_body(&self, model: &str) -> Value {
        let mut b = self.body.clone();
        if let Some(o) = b.as_object_mut() {
            o.insert("model".into(), Value::String(model.to_owned()));
            if self.stream {
                o.insert(
                    "stream_options".into(),
                    serde_json::json!({"include_usage": true}),
                );
            }
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<LlmRequest> {
        LlmRequest::parse(Endpoint::Chat, body.as_bytes())
    }

    #[test]
    fn mistakes_name_their_field() {
        let cases = [
            (r#"{"messages":[{"role":"user","content":"hi"}]}"#, "model"),
            (r#"{"model":"m","messages":[]}"#, "messages"),
            (
                r#"{"model":"m","messages":[{"role":"wizard","content":"hi"}]}"#,
                "messages[0].role",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}]}"#,
                "messages[0].content",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3}"#,
                "temperature",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}"#,
                "n",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}"#,
                "stop",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}"#,
                "stream_options",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":[{"text":"x"}]}]}"#,
                "messages[0].content[0].type",
            ),
        ];
        for (body, field) in cases {
            let e = chat(body).expect_err(body);
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(field), "{body}: {}", e.message);
        }
        assert_eq!(chat("not json").unwrap_err().status, 400);
    }

    #[test]
    fn parses_parts_stops_and_stream_options() {
        let r = chat(
            r#"{"model":"m","messages":[{"role":"system","content":"be brief"},
                {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
                "stop":"\n\n","max_completion_tokens":7,"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert_eq!(r.messages[1].content, "a\nb");
        assert_eq!(r.stop, vec!["\n\n".to_string()]);
        assert_eq!(r.max_tokens, Some(7));
        assert!(r.stream && r.include_usage);
        let up = r.upstream_body("gpt-x");
        assert_eq!(up["model"], "gpt-x");
        assert_eq!(up["stream_options"]["include_usage"], true);
        let c = LlmRequest::parse(
            Endpoint::Completions,
            br#"{"model":"m","prompt":"once upon"}"#,
        )
        .unwrap();
        assert_eq!(c.messages[0].content, "once upon");
    }

    #[test]
    fn semantic_scope_holds_the_conversation_and_parameters_but_not_the_question() {
        let a = chat(r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"How tall is Everest?"}]}"#).unwrap();
        let b = chat(r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"What is the height of Everest?"}],"stream":true}"#).unwrap();
        let (sa, qa) = a.semantic_key("t").unwrap();
        let (sb, qb) = b.semantic_key("t").unwrap();
        assert_eq!(sa, sb);
        assert_eq!(
            (qa.as_str(), qb.as_str()),
            ("How tall is Everest?", "What is the height of Everest?")
        );
        // Another system prompt, an earlier turn, another parameter or tenant: another scope.
        let c = chat(r#"{"model":"m","messages":[{"role":"system","content":"t"},{"role":"user","content":"How tall is Everest?"}]}"#).unwrap();
        let d = chat(r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"How tall is Everest?"}]}"#).unwrap();
        let e = chat(r#"{"model":"m","temperature":0.2,"messages":[{"role":"system","content":"s"},{"role":"user","content":"How tall is Everest?"}]}"#).unwrap();
        for other in [&c, &d, &e] {
            assert_ne!(other.semantic_key("t").unwrap().0, sa);
        }
        assert_ne!(a.semantic_key("u").unwrap().0, sa);
        let f = chat(r#"{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}]}"#).unwrap();
        assert!(
            f.semantic_key("t").is_none(),
            "the last message must be the user's"
        );
    }

    #[test]
    fn cache_key_ignores_stream_and_user_but_not_parameters_or_scope() {
        let a = chat(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":0}"#)
            .unwrap();
        let b = chat(r#"{"temperature":0,"user":"u","stream":true,"model":"m","messages":[{"content":"x","role":"user"}]}"#).unwrap();
        let c = chat(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":1}"#)
            .unwrap();
        assert_eq!(a.cache_key("t"), b.cache_key("t"));
        assert_ne!(a.cache_key("t"), c.cache_key("t"));
        assert_ne!(a.cache_key("t"), a.cache_key("u"));
    }
}
