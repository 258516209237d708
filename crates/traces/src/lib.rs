//! LLM observability: spans as OpenTelemetry defines them, read from OTLP/HTTP (protobuf or
//! JSON) or made by the platform itself (every gateway call, RAG step and evaluation case), with
//! OpenTelemetry's GenAI attributes lifted into columns one can search and aggregate on
//! (operation, provider, model, tokens, cost, user, prompt version). The store behind
//! [`TraceStore`] is the metadata database — SQLite or PostgreSQL, nothing else to run.

pub mod genai;
pub mod otlp;
mod wire;

pub use genai::GenAi;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("malformed OTLP protobuf: {0}")]
    Protobuf(String),
    #[error("malformed OTLP JSON: {0}")]
    Json(String),
    #[error("{0}")]
    Invalid(String),
    #[error("trace {0} not found")]
    NotFound(String),
    #[error("trace store: {0}")]
    Store(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A span's status code, as OTLP numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Unset,
    Ok,
    Error,
}

impl Status {
    pub fn from_code(code: i64) -> Status {
        match code {
            1 => Status::Ok,
            2 => Status::Error,
            _ => Status::Unset,
        }
    }

    pub fn code(self) -> i64 {
        match self {
            Status::Unset => 0,
            Status::Ok => 1,
            Status::Error => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanEvent {
    pub time_ns: i64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanLink {
    pub trace_id: String,
    pub span_id: String,
}

/// One span. Ids are lowercase hex (32 digits for a trace, 16 for a span), times nanoseconds
/// since the epoch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a trace's root.
    #[serde(default)]
    pub parent_span_id: String,
    pub name: String,
    /// OTLP's SpanKind number: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    #[serde(default)]
    pub kind: i64,
    pub start_ns: i64,
    pub end_ns: i64,
    #[serde(default)]
    pub status: Status,
    #[serde(default)]
    pub status_message: String,
    /// The resource's `service.name`.
    #[serde(default)]
    pub service: String,
    /// The instrumentation scope's name.
    #[serde(default)]
    pub scope: String,
    /// The experiment the span belongs to (MLflow's `x-mlflow-experiment-id`).
    #[serde(default)]
    pub experiment_id: String,
    #[serde(default)]
    pub attributes: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub resource: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<SpanEvent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<SpanLink>,
}

impl Span {
    pub fn duration_ms(&self) -> f64 {
        (self.end_ns - self.start_ns) as f64 / 1e6
    }

    pub fn genai(&self) -> GenAi {
        GenAi::of(&self.attributes)
    }

    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_empty()
    }
}

/// A fresh random id of `bytes` (at most 16) bytes as lowercase hex, never all zeros (which OTLP
/// forbids).
pub fn random_id(bytes: usize) -> String {
    let mut raw = *uuid::Uuid::new_v4().as_bytes();
    let raw = &mut raw[..bytes.min(16)];
    if raw.iter().all(|&b| b == 0) {
        raw[0] = 1;
    }
    base::to_hex(raw)
}

/// Parses a W3C `traceparent` header (`00-<32 hex trace>-<16 hex parent>-<2 hex flags>`) into
/// (trace id, parent span id); `None` when it is absent or invalid (the caller starts a new trace).
pub fn parse_traceparent(h: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = h.trim().split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && s.bytes().any(|b| b != b'0')
    };
    match parts.as_slice() {
        [version, trace, parent, flags, ..]
            if version.len() == 2
                && *version != "ff"
                && hex(trace, 32)
                && hex(parent, 16)
                && flags.len() == 2 =>
        {
            Some(((*trace).to_owned(), (*parent).to_owned()))
        }
        _ => None,
    }
}

/// The spans of one trace in tree order — depth-first from the roots, children in the order
/// given (by start time when the spans are) — with each one's depth. A span whose parent is not
/// among them (not arrived yet, or in another service's store) counts as a root.
pub fn tree_order(spans: &[Span]) -> Vec<(usize, usize)> {
    use std::collections::{HashMap, HashSet};
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        if s.parent_span_id.is_empty() || !ids.contains(s.parent_span_id.as_str()) {
            roots.push(i);
        } else {
            children
                .entry(s.parent_span_id.as_str())
                .or_default()
                .push(i);
        }
    }
    let mut out = Vec::with_capacity(spans.len());
    let mut stack: Vec<(usize, usize)> = roots.into_iter().rev().map(|i| (i, 0)).collect();
    while let Some((i, depth)) = stack.pop() {
        out.push((i, depth));
        if let Some(kids) = children.get(spans[i].span_id.as_str()) {
            stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
        }
    }
    out
}

/// What searches filter on. Every field is optional; results are newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TraceFilter {
    pub since_ns: Option<i64>,
    pub until_ns: Option<i64>,
    pub model: Option<String>,
    pub user: Option<String>,
    pub service: Option<String>,
    pub prompt: Option<String>,
    pub experiment_id: Option<String>,
    /// `ok` or `error`.
    pub status: Option<Status>,
    pub min_cost_usd: Option<f64>,
    pub min_duration_ms: Option<f64>,
    pub max_duration_ms: Option<f64>,
    /// A substring of the root span's name or of any span's attributes.
    pub text: Option<String>,
    pub limit: usize,
    /// Continue after this trace (start time, trace id) from the previous page.
    pub before: Option<(i64, String)>,
}

/// One trace as a search returns it: its spans rolled up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceSummary {
    pub trace_id: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub duration_ms: f64,
    /// The root span's name (the first span's until the root arrives).
    pub name: String,
    pub service: String,
    pub spans: i64,
    pub errors: i64,
    pub status: Status,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
    pub model: String,
    pub user: String,
    pub prompt: String,
    pub experiment_id: String,
}

/// What aggregates group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Model,
    Prompt,
    User,
    Service,
    Operation,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "model" => GroupBy::Model,
            "prompt" => GroupBy::Prompt,
            "user" => GroupBy::User,
            "service" => GroupBy::Service,
            "operation" => GroupBy::Operation,
            _ => return None,
        })
    }

    /// The span column holding the key.
    pub fn column(self) -> &'static str {
        match self {
            GroupBy::Model => "model",
            GroupBy::Prompt => "prompt",
            GroupBy::User => "user_name",
            GroupBy::Service => "service",
            GroupBy::Operation => "operation",
        }
    }
}

/// Aggregates of the spans in one group over a window. Latency percentiles cover the spans still
/// stored; counts, tokens and cost include what retention compacted into hourly rollups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupStats {
    pub key: String,
    pub spans: i64,
    pub errors: i64,
    pub error_rate: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

/// What a retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expired {
    pub spans: u64,
    pub traces: u64,
}

/// Where spans live.
#[async_trait::async_trait]
pub trait TraceStore: Send + Sync {
    /// Stores spans in one transaction; a span already stored (same trace and span id) is kept as
    /// it is and not counted twice. Returns how many were new.
    async fn write_spans(&self, spans: &[Span]) -> Result<u64>;
    async fn search_traces(&self, filter: &TraceFilter) -> Result<Vec<TraceSummary>>;
    /// A trace's spans ordered by start time; `NotFound` when there are none.
    async fn trace(&self, trace_id: &str) -> Result<Vec<Span>>;
    async fn trace_stats(
        &self,
        by: GroupBy,
        since_ns: i64,
        until_ns: i64,
    ) -> Result<Vec<GroupStats>>;
    /// Deletes the spans and traces that ended before `before_ns`, keeping their counts, tokens
    /// and cost as hourly rollups per model, prompt, user, service and operation.
    async fn expire(&self, before_ns: i64) -> Result<Expired>;
    /// Keeps MLflow's `TraceInfo` (JSON) of a trace, replacing an earlier one.
    async fn put_trace_info(&self, trace_id: &str, experiment_id: &str, info: &Value)
    -> Result<()>;
    async fn trace_info(&self, trace_id: &str) -> Result<Option<Value>>;
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_parsed_or_refused() {
        let (t, p) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(t, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p, "00f067aa0ba902b7");
        assert!(
            parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none()
        );
        assert!(
            parse_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_none()
        );
        assert!(
            parse_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_none()
        );
        assert!(parse_traceparent("garbage").is_none());
    }

    #[test]
    fn random_ids_have_the_right_length_and_differ() {
        let a = random_id(16);
        let b = random_id(16);
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert_eq!(random_id(8).len(), 16);
    }

    #[test]
    fn tree_order_is_depth_first_with_orphans_as_roots() {
        let s = |id: &str, parent: &str| Span {
            trace_id: "t".into(),
            span_id: id.into(),
            parent_span_id: parent.into(),
            name: id.into(),
            start_ns: 1,
            end_ns: 2,
            ..Default::default()
        };
        let spans = [
            s("a", ""),
            s("b", "a"),
            s("c", "a"),
            s("d", "b"),
            s("e", "gone"),
        ];
        assert_eq!(tree_order(&spans), [(0, 0), (1, 1), (3, 2), (2, 1), (4, 0)]);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
