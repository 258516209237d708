//! Token usage as providers report it, and the record the gateway keeps of every call (who,
//! which group and deployment, tokens, cost, latency, the gateway's own overhead, cache outcome,
//! error). Records go to a [`UsageSink`] — the metadata database in the server — in batches off
//! the request path; a graceful shutdown flushes what is queued.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// All prompt tokens, cached ones included (OpenAI's convention).
    pub prompt_tokens: u64,
    /// All completion tokens, reasoning ones included.
    pub completion_tokens: u64,
    /// Prompt tokens read from the provider's prompt cache.
    pub cached_tokens: u64,
    /// Prompt tokens written to the provider's prompt cache.
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Reads OpenAI's `usage` object (and Anthropic's cache fields when a translating upstream
    /// passes them through); `None` when absent.
    pub fn from_openai(v: &Value) -> Option<Usage> {
        let n = |x: &Value| x.as_u64().unwrap_or(0);
        if !v.is_object() {
            return None;
        }
        Some(Usage {
            prompt_tokens: n(&v["prompt_tokens"]),
            completion_tokens: n(&v["completion_tokens"]),
            cached_tokens: n(&v["prompt_tokens_details"]["cached_tokens"])
                .max(n(&v["cache_read_input_tokens"])),
            cache_write_tokens: n(&v["cache_creation_input_tokens"]),
            reasoning_tokens: n(&v["completion_tokens_details"]["reasoning_tokens"]),
        })
    }

    /// OpenAI's `usage` object.
    pub fn to_openai(&self) -> Value {
        serde_json::json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UsageRecord {
    pub id: String,
    /// Milliseconds since the epoch.
    pub ts_ms: i64,
    /// The API key's id (`anonymous` without authentication).
    pub key: String,
    pub user: Option<String>,
    pub team: Option<String>,
    pub tags: Vec<String>,
    /// The group the client asked for.
    pub model: String,
    /// `group/deployment` that answered; empty when none did.
    pub deployment: String,
    /// The upstream's model name.
    pub provider_model: String,
    pub usage: Usage,
    /// Dollars; 0 for a cache hit; `None` when the model has no price.
    pub cost_usd: Option<f64>,
    pub price_version: String,
    pub latency_ms: f64,
    pub overhead_ms: f64,
    /// `hit`, `miss` or `off`.
    pub cache: String,
    pub stream: bool,
    /// HTTP status returned to the client.
    pub status: u16,
    pub error: Option<String>,
    pub attempts: u32,
    /// The upstream reported no usage: the tokens were counted here (see `tokens`).
    #[serde(default)]
    pub estimated: bool,
    /// `name@version` of the registered prompt the request used.
    #[serde(default)]
    pub prompt: Option<String>,
    /// The provider kind that answered (`openai`, `anthropic`, `local`); empty when none did.
    #[serde(default)]
    pub provider: String,
    /// The call's span: the caller's trace (W3C `traceparent`) or a new one.
    #[serde(default)]
    pub trace_id: String,
    #[serde(default)]
    pub span_id: String,
    /// The caller's span, when the request carried a `traceparent`.
    #[serde(default)]
    pub parent_span_id: String,
}

/// Where usage records go.
#[async_trait::async_trait]
pub trait UsageSink: Send + Sync {
    async fn write(&self, records: &[UsageRecord]) -> Result<(), String>;
    /// Records from `since_ms`, newest first, at most `limit`.
    async fn list(&self, since_ms: i64, limit: usize) -> Result<Vec<UsageRecord>, String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_openai_and_anthropic_usage() {
        let u = Usage::from_openai(&serde_json::json!({
            "prompt_tokens": 100, "completion_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 64},
            "completion_tokens_details": {"reasoning_tokens": 5}
        }))
        .unwrap();
        assert_eq!(
            (
                u.prompt_tokens,
                u.completion_tokens,
                u.cached_tokens,
                u.reasoning_tokens
            ),
            (100, 20, 64, 5)
        );
        let a = Usage::from_openai(
            &serde_json::json!({"prompt_tokens": 9, "cache_creation_input_tokens": 4}),
        )
        .unwrap();
        assert_eq!(a.cache_write_tokens, 4);
        assert_eq!(Usage::from_openai(&Value::Null), None);
        assert_eq!(u.to_openai()["total_tokens"], 120);
    }
}
