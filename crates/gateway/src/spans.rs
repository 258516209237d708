//! Every gateway call as an OpenTelemetry span with the GenAI attributes (operation, provider,
//! models, tokens — cached and reasoning ones too —, cost), joined to the caller's trace when the
//! request carried a `traceparent`. Spans are written with the usage records, in the same
//! batches, off the request path.

use crate::{UsageRecord, UsageSink};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use traces::genai as k;
use traces::{Span, Status, TraceStore};

/// The service name of the gateway's spans.
pub const SERVICE: &str = "capstan-gateway";

/// The span of one call.
pub fn call_span(r: &UsageRecord) -> Span {
    let start_ns = r.ts_ms.saturating_mul(1_000_000);
    let end_ns = start_ns + (r.latency_ms * 1e6).max(0.0) as i64;
    let mut a = Map::new();
    // Absent facts are left out rather than written as empty values; so are zero counts of the
    // optional token kinds (cache reads and writes, reasoning).
    let optional = [
        k::CACHE_READ_TOKENS,
        k::CACHE_WRITE_TOKENS,
        k::REASONING_TOKENS,
    ];
    let mut put = |key: &str, v: Value| {
        let zero = v == json!(0) && optional.contains(&key);
        if !(v.is_null() || v == json!("") || zero) {
            a.insert(key.to_owned(), v);
        }
    };
    put(k::OPERATION, json!("chat"));
    let provider = if r.provider.is_empty() {
        "capstan"
    } else {
        r.provider.as_str()
    };
    put(k::PROVIDER, json!(provider));
    put(k::REQUEST_MODEL, json!(r.model));
    put(k::RESPONSE_MODEL, json!(r.provider_model));
    put(k::INPUT_TOKENS, json!(r.usage.prompt_tokens));
    put(k::OUTPUT_TOKENS, json!(r.usage.completion_tokens));
    put(k::CACHE_READ_TOKENS, json!(r.usage.cached_tokens));
    put(k::CACHE_WRITE_TOKENS, json!(r.usage.cache_write_tokens));
    put(k::REASONING_TOKENS, json!(r.usage.reasoning_tokens));
    if let Some(c) = r.cost_usd {
        put(k::COST_USD, json!(c));
    }
    put("user.id", json!(r.user));
    put(k::PROMPT, json!(r.prompt));
    put("capstan.api_key", json!(r.key));
    put("capstan.team", json!(r.team));
    if !r.tags.is_empty() {
        put("capstan.tags", json!(r.tags));
    }
    put("capstan.deployment", json!(r.deployment));
    put("capstan.cache", json!(r.cache));
    put("capstan.attempts", json!(r.attempts));
    put("capstan.overhead_ms", json!(r.overhead_ms));
    put("capstan.stream", json!(r.stream));
    put("capstan.usage_id", json!(r.id));
    if r.estimated {
        put("capstan.tokens_estimated", json!(true));
    }
    put("http.response.status_code", json!(r.status));
    let failed = r.status >= 400;
    Span {
        trace_id: r.trace_id.clone(),
        span_id: r.span_id.clone(),
        parent_span_id: r.parent_span_id.clone(),
        name: format!("chat {}", r.model),
        // GenAI model calls are client spans.
        kind: 3,
        start_ns,
        end_ns,
        status: if failed { Status::Error } else { Status::Ok },
        status_message: if failed {
            r.error.clone().unwrap_or_default()
        } else {
            String::new()
        },
        service: SERVICE.to_owned(),
        scope: "capstan.gateway".to_owned(),
        attributes: a,
        ..Default::default()
    }
}

/// A usage sink that also writes each record's span.
pub struct TracedUsage {
    usage: Arc<dyn UsageSink>,
    spans: Arc<dyn TraceStore>,
}

impl TracedUsage {
    pub fn new(usage: Arc<dyn UsageSink>, spans: Arc<dyn TraceStore>) -> TracedUsage {
        TracedUsage { usage, spans }
    }
}

#[async_trait::async_trait]
impl UsageSink for TracedUsage {
    async fn write(&self, records: &[UsageRecord]) -> Result<(), String> {
        // Both writes are idempotent (records by id, spans by trace and span id): a batch retried
        // after the second failed is stored once.
        self.usage.write(records).await?;
        let spans: Vec<Span> = records
            .iter()
            .filter(|r| !r.trace_id.is_empty())
            .map(call_span)
            .collect();
        self.spans
            .write_spans(&spans)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    async fn list(&self, since_ms: i64, limit: usize) -> Result<Vec<UsageRecord>, String> {
        self.usage.list(since_ms, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Usage;

    #[test]
    fn a_call_becomes_a_genai_span() {
        let r = UsageRecord {
            id: "u1".into(),
            ts_ms: 1_700_000_000_000,
            key: "ci".into(),
            user: Some("ada".into()),
            team: None,
            tags: vec![],
            model: "chat".into(),
            deployment: "chat/local".into(),
            provider_model: "smollm2".into(),
            usage: Usage {
                prompt_tokens: 30,
                completion_tokens: 5,
                cached_tokens: 10,
                ..Default::default()
            },
            cost_usd: Some(0.25),
            price_version: "v".into(),
            latency_ms: 12.5,
            overhead_ms: 0.3,
            cache: "miss".into(),
            stream: false,
            status: 429,
            error: Some("budget".into()),
            attempts: 1,
            estimated: false,
            prompt: Some("qa@2".into()),
            provider: "local".into(),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
            parent_span_id: "1111111111111111".into(),
        };
        let s = call_span(&r);
        assert_eq!(s.duration_ms(), 12.5);
        assert_eq!(
            (s.status, s.status_message.as_str()),
            (Status::Error, "budget")
        );
        let g = s.genai();
        assert_eq!(g.provider.as_deref(), Some("local"));
        assert_eq!(g.model.as_deref(), Some("chat"));
        assert_eq!(
            (g.input_tokens, g.output_tokens, g.cache_read_tokens),
            (Some(30), Some(5), Some(10))
        );
        assert_eq!(
            g.reasoning_tokens, None,
            "zero cache and reasoning counts are left out"
        );
        assert_eq!(g.cost_usd, Some(0.25));
        assert_eq!(
            (g.user.as_deref(), g.prompt.as_deref()),
            (Some("ada"), Some("qa@2"))
        );
        assert_eq!(s.name, "chat chat");
        assert_eq!(s.parent_span_id, "1111111111111111");
    }
}
