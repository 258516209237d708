//! The gateway's numbers for `/metrics` (Prometheus text): requests by group, deployment and
//! status; the gateway's own overhead (request time minus time waiting on upstreams) as a
//! histogram; tokens and dollars by group; exact-cache hits, misses and dollars saved.

use crate::usage::UsageRecord;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Overhead bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
];

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    overhead_buckets: [u64; BUCKETS.len()],
    overhead_count: u64,
    overhead_sum: f64,
    tokens: BTreeMap<(String, &'static str), u64>,
    spend: BTreeMap<String, f64>,
    /// (cache kind, hit) → count.
    cache: BTreeMap<(&'static str, bool), u64>,
    saved_usd: f64,
    /// Semantic hits by similarity bucket.
    similarity_buckets: [u64; SIMILARITY.len()],
    similarity_count: u64,
    similarity_sum: f64,
}

/// Similarity bucket bounds of semantic-cache hits.
const SIMILARITY: [f64; 7] = [0.8, 0.85, 0.9, 0.95, 0.97, 0.99, 1.0];

#[derive(Default)]
pub struct GatewayMetrics {
    inner: Mutex<Inner>,
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl GatewayMetrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn request(&self, model: &str, deployment: &str, status: u16, overhead: Duration) {
        let mut g = self.lock();
        *g.requests
            .entry((model.to_owned(), deployment.to_owned(), status))
            .or_default() += 1;
        let s = overhead.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                g.overhead_buckets[i] += 1;
            }
        }
        g.overhead_count += 1;
        g.overhead_sum += s;
    }

    /// A cache lookup: `kind` is `exact` or `semantic`; a semantic hit gives its similarity.
    pub fn cache(&self, kind: &'static str, hit: bool, saved_usd: f64, similarity: Option<f32>) {
        let mut g = self.lock();
        *g.cache.entry((kind, hit)).or_default() += 1;
        if hit {
            g.saved_usd += saved_usd;
        }
        if let Some(sim) = similarity {
            let sim = sim as f64;
            for (i, b) in SIMILARITY.iter().enumerate() {
                if sim <= *b {
                    g.similarity_buckets[i] += 1;
                }
            }
            g.similarity_count += 1;
            g.similarity_sum += sim;
        }
    }

    pub fn spend(&self, r: &UsageRecord) {
        let mut g = self.lock();
        *g.tokens.entry((r.model.clone(), "prompt")).or_default() += r.usage.prompt_tokens;
        *g.tokens.entry((r.model.clone(), "completion")).or_default() += r.usage.completion_tokens;
        *g.spend.entry(r.model.clone()).or_default() += r.cost_usd.unwrap_or(0.0);
    }

    /// (hits, misses) of one cache kind, and the dollars all hits saved.
    pub fn cache_counts(&self, kind: &str) -> (u64, u64, f64) {
        let g = self.lock();
        let n = |hit: bool| -> u64 {
            g.cache
                .iter()
                .filter(|((k, h), _)| *k == kind && *h == hit)
                .map(|(_, n)| *n)
                .sum()
        };
        (n(true), n(false), g.saved_usd)
    }

    pub fn render(&self, out: &mut String) {
        let g = self.lock();
        let _ = writeln!(
            out,
            "# HELP capstan_gateway_requests_total LLM gateway requests by model group, deployment and status.\n# TYPE capstan_gateway_requests_total counter"
        );
        for ((m, d, s), n) in &g.requests {
            let _ = writeln!(
                out,
                "capstan_gateway_requests_total{{model=\"{}\",deployment=\"{}\",status=\"{s}\"}} {n}",
                esc(m),
                esc(d)
            );
        }
        let _ = writeln!(
            out,
            "# HELP capstan_gateway_overhead_seconds Time the gateway adds to a request (total minus upstream).\n# TYPE capstan_gateway_overhead_seconds histogram"
        );
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "capstan_gateway_overhead_seconds_bucket{{le=\"{b}\"}} {}",
                g.overhead_buckets[i]
            );
        }
        let _ = writeln!(
            out,
            "capstan_gateway_overhead_seconds_bucket{{le=\"+Inf\"}} {}",
            g.overhead_count
        );
        let _ = writeln!(
            out,
            "capstan_gateway_overhead_seconds_sum {}",
            g.overhead_sum
        );
        let _ = writeln!(
            out,
            "capstan_gateway_overhead_seconds_count {}",
            g.overhead_count
        );
        let _ = writeln!(
            out,
            "# HELP capstan_gateway_tokens_total Tokens by model group and kind.\n# TYPE capstan_gateway_tokens_total counter"
        );
        for ((m, k), n) in &g.tokens {
            let _ = writeln!(
                out,
                "capstan_gateway_tokens_total{{model=\"{}\",kind=\"{k}\"}} {n}",
                esc(m)
            );
        }
        let _ = writeln!(
            out,
            "# HELP capstan_gateway_cost_usd_total Dollars spent by model group.\n# TYPE capstan_gateway_cost_usd_total counter"
        );
        for (m, c) in &g.spend {
            let _ = writeln!(
                out,
                "capstan_gateway_cost_usd_total{{model=\"{}\"}} {c}",
                esc(m)
            );
        }
        let _ = writeln!(
            out,
            "# HELP capstan_gateway_cache_requests_total Cache lookups by outcome.\n# TYPE capstan_gateway_cache_requests_total counter"
        );
        for kind in ["exact", "semantic"] {
            for (hit, outcome) in [(true, "hit"), (false, "miss")] {
                let n = g.cache.get(&(kind, hit)).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "capstan_gateway_cache_requests_total{{cache=\"{kind}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP capstan_gateway_semantic_similarity Similarity of semantic-cache hits.\n# TYPE capstan_gateway_semantic_similarity histogram"
        );
        for (i, b) in SIMILARITY.iter().enumerate() {
            let _ = writeln!(
                out,
                "capstan_gateway_semantic_similarity_bucket{{le=\"{b}\"}} {}",
                g.similarity_buckets[i]
            );
        }
        let _ = writeln!(
            out,
            "capstan_gateway_semantic_similarity_bucket{{le=\"+Inf\"}} {}",
            g.similarity_count
        );
        let _ = writeln!(
            out,
            "capstan_gateway_semantic_similarity_sum {}",
            g.similarity_sum
        );
        let _ = writeln!(
            out,
            "capstan_gateway_semantic_similarity_count {}",
            g.similarity_count
        );
        let _ = writeln!(
            out,
            "# HELP capstan_gateway_cache_saved_usd_total Dollars cache hits saved.\n# TYPE capstan_gateway_cache_saved_usd_total counter"
        );
        let _ = writeln!(out, "capstan_gateway_cache_saved_usd_total {}", g.saved_usd);
    }
}
