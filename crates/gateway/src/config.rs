//! What the gateway routes to, as written in `capstan.toml` under `[gateway]` or sent to
//! `PUT /api/2.0/capstan/gateway/config`: model groups (the names clients ask for), each with
//! deployments, a strategy and fallbacks by error class; retries, breakers, timeouts, the cache
//! and price overrides. A new config replaces the old atomically; requests in flight finish on
//! the one they started with.

use crate::budget::{BudgetConfig, RateLimitConfig};
use crate::error::{ErrorClass, GatewayError, Result};
use crate::pricing::Price;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Serve the in-process models (SmolLM2 for chat) as groups of their own names.
    pub local_models: bool,
    pub groups: Vec<GroupConfig>,
    pub retry: RetryConfig,
    pub breaker: BreakerConfig,
    pub cache: CacheConfig,
    /// Prices per provider model name, over the table shipped with the binary.
    pub prices: BTreeMap<String, Price>,
    pub budgets: Vec<BudgetConfig>,
    pub rate_limits: Vec<RateLimitConfig>,
    /// Routing rules, first match wins (see [`crate::rules`]).
    pub rules: Vec<crate::rules::RuleConfig>,
    /// Where budgets and rate limits are counted: empty = the metadata database, `redis://…` =
    /// Redis (shared by gateway replicas), `memory` = this process only.
    pub ledger: String,
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            local_models: true,
            groups: Vec::new(),
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
            cache: CacheConfig::default(),
            prices: BTreeMap::new(),
            budgets: Vec::new(),
            rate_limits: Vec::new(),
            rules: Vec::new(),
            ledger: String::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Random by weight.
    #[default]
    Weighted,
    /// Lowest moving-average latency first.
    LowestLatency,
    /// Cheapest price first.
    LowestCost,
    /// Fewest requests in flight first.
    LeastBusy,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// What clients put in `model`.
    pub name: String,
    #[serde(default)]
    pub strategy: Strategy,
    pub deployments: Vec<DeploymentConfig>,
    /// Where to go when every deployment failed, by error class (`context_window`,
    /// `rate_limit`, `timeout`, `upstream`, `unreachable`, `content_policy`, `auth`) or
    /// `default`.
    #[serde(default)]
    pub fallbacks: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OpenAI-compatible HTTP API (OpenAI, vLLM, Ollama, llama.cpp server, a Capstan).
    #[default]
    Openai,
    /// The in-process SmolLM2.
    Local,
    /// Anthropic's Messages API (`POST {base_url}/v1/messages`), translated both ways.
    Anthropic,
}

impl ProviderKind {
    /// The name in configuration files, and `gen_ai.provider.name` on the call's span.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Local => "local",
            ProviderKind::Anthropic => "anthropic",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// Unique within the group; named in the `x-capstan-deployment` header.
    pub id: String,
    #[serde(default)]
    pub provider: ProviderKind,
    /// The upstream's base URL up to `/v1` (e.g. `https://api.openai.com/v1`).
    #[serde(default)]
    pub base_url: String,
    /// Environment variable holding the upstream's API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The model name the upstream knows.
    pub model: String,
    #[serde(default = "one")]
    pub weight: f64,
    /// Prompt + completion tokens the model takes; a request over it skips this deployment.
    #[serde(default)]
    pub context_window: Option<usize>,
    /// Whole-request timeout.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Time to the first streamed token.
    #[serde(default = "default_ttft")]
    pub ttft_timeout_ms: u64,
}

fn one() -> f64 {
    1.0
}
fn default_timeout() -> u64 {
    120_000
}
fn default_ttft() -> u64 {
    30_000
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Tries in all, across deployments and fallbacks.
    pub attempts: usize,
    /// Base of the jittered exponential backoff between tries on the same deployment.
    pub backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> RetryConfig {
        RetryConfig {
            attempts: 4,
            backoff_ms: 50,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive faults that open the breaker.
    pub failures: u32,
    /// Or: at least `min_requests` in the last minute and this share of them failed.
    pub failure_rate: f64,
    pub min_requests: u32,
    /// How long an open breaker keeps the deployment out before one trial request.
    pub cooldown_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            failures: 5,
            failure_rate: 0.5,
            min_requests: 10,
            cooldown_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Exact-match cache of answers (temperature-0 and seeded requests only: a sampled answer
    /// is not the answer to the same request).
    pub exact: bool,
    pub ttl_s: u64,
    pub max_entries: usize,
    /// The semantic cache (off unless enabled).
    pub semantic: crate::semantic::SemanticConfig,
}

impl Default for CacheConfig {
    fn default() -> CacheConfig {
        CacheConfig {
            exact: true,
            ttl_s: 3600,
            max_entries: 10_000,
            semantic: crate::semantic::SemanticConfig::default(),
        }
    }
}

const CLASSES: [ErrorClass; 7] = [
    ErrorClass::ContextWindow,
    ErrorClass::ContentPolicy,
    ErrorClass::RateLimit,
    ErrorClass::Timeout,
    ErrorClass::Upstream,
    ErrorClass::Unreachable,
    ErrorClass::Auth,
];

impl GatewayConfig {
    /// Parses TOML (the `[gateway]` table's content).
    pub fn from_toml(text: &str) -> Result<GatewayConfig> {
        let c: GatewayConfig = toml::from_str(text)
            .map_err(|e| GatewayError::invalid("config", format!("gateway config: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    /// Names unique, fallbacks pointing at groups that exist, no fallback cycle through
    /// `default`, sane numbers.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(GatewayError::invalid("config", m));
        let mut names = HashSet::new();
        for g in &self.groups {
            if g.name.is_empty() || !names.insert(g.name.as_str()) {
                return bad(format!("group name `{}` is empty or repeated", g.name));
            }
            if g.deployments.is_empty() {
                return bad(format!("group `{}` has no deployments", g.name));
            }
            let mut ids = HashSet::new();
            for d in &g.deployments {
                if !ids.insert(d.id.as_str()) {
                    return bad(format!("group `{}` repeats deployment `{}`", g.name, d.id));
                }
                if !(d.weight.is_finite() && d.weight >= 0.0) {
                    return bad(format!("deployment `{}`: weight must be ≥ 0", d.id));
                }
                if d.provider != ProviderKind::Local
                    && !(d.base_url.starts_with("http://") || d.base_url.starts_with("https://"))
                {
                    return bad(format!(
                        "deployment `{}`: base_url must be an http(s) URL",
                        d.id
                    ));
                }
                if d.timeout_ms == 0 || d.ttft_timeout_ms == 0 {
                    return bad(format!("deployment `{}`: timeouts must be > 0", d.id));
                }
            }
            for (class, target) in &g.fallbacks {
                if class != "default" && !CLASSES.iter().any(|c| c.as_str() == class) {
                    return bad(format!(
                        "group `{}`: `{class}` is not an error class (default, {})",
                        g.name,
                        CLASSES.map(|c| c.as_str()).join(", ")
                    ));
                }
                if target == &g.name {
                    return bad(format!("group `{}` falls back to itself", g.name));
                }
            }
        }
        for g in &self.groups {
            for target in g.fallbacks.values() {
                if !names.contains(target.as_str()) && !self.is_local_name(target) {
                    return bad(format!(
                        "group `{}` falls back to `{target}`, which is not a group",
                        g.name
                    ));
                }
            }
        }
        let mut budget_names = HashSet::new();
        for b in &self.budgets {
            if b.name.is_empty() || !budget_names.insert(b.name.as_str()) {
                return bad(format!("budget name `{}` is empty or repeated", b.name));
            }
            if !(b.limit_usd.is_finite() && b.limit_usd > 0.0) {
                return bad(format!("budget `{}`: limit_usd must be > 0", b.name));
            }
            if let Some(to) = &b.downgrade_to
                && !names.contains(to.as_str())
                && !self.is_local_name(to)
            {
                return bad(format!(
                    "budget `{}` downgrades to `{to}`, which is not a group",
                    b.name
                ));
            }
        }
        let mut rule_names = HashSet::new();
        for r in &self.rules {
            if r.name.is_empty() || !rule_names.insert(r.name.as_str()) {
                return bad(format!("rule name `{}` is empty or repeated", r.name));
            }
            if !names.contains(r.route_to.as_str()) && !self.is_local_name(&r.route_to) {
                return bad(format!(
                    "rule `{}` routes to `{}`, which is not a group",
                    r.name, r.route_to
                ));
            }
        }
        crate::rules::Rules::compile(&self.rules)?;
        let mut limit_names = HashSet::new();
        for l in &self.rate_limits {
            if l.name.is_empty() || !limit_names.insert(l.name.as_str()) {
                return bad(format!("rate limit name `{}` is empty or repeated", l.name));
            }
            if l.rpm.is_none() && l.tpm.is_none() || l.rpm == Some(0) || l.tpm == Some(0) {
                return bad(format!("rate limit `{}` needs rpm and/or tpm > 0", l.name));
            }
        }
        if !(self.ledger.is_empty()
            || self.ledger == "memory"
            || self.ledger.starts_with("redis://"))
        {
            return bad(format!(
                "ledger `{}` is not empty, `memory` or a redis:// URL",
                self.ledger
            ));
        }
        let t = self.cache.semantic.threshold;
        if !(t > 0.0 && t <= 1.0) {
            return bad("cache.semantic.threshold must be within (0, 1]".into());
        }
        if !(0.0..=1.0).contains(&self.breaker.failure_rate) {
            return bad("breaker.failure_rate must be within 0..1".into());
        }
        Ok(())
    }

    fn is_local_name(&self, name: &str) -> bool {
        self.local_models
            && (crate::provider::LOCAL_CHAT_NAMES.contains(&name)
                || crate::provider::is_adapter_ref(name))
    }

    /// The group clients reach as `name`, including the implicit local ones.
    pub fn group(&self, name: &str) -> Option<GroupConfig> {
        if let Some(g) = self.groups.iter().find(|g| g.name == name) {
            return Some(g.clone());
        }
        self.is_local_name(name).then(|| GroupConfig {
            name: name.to_owned(),
            strategy: Strategy::Weighted,
            deployments: vec![DeploymentConfig {
                id: "local".into(),
                provider: ProviderKind::Local,
                base_url: String::new(),
                api_key_env: None,
                // A registered adapter keeps its name: the local provider resolves it.
                model: if crate::provider::is_adapter_ref(name) {
                    name.to_owned()
                } else {
                    crate::provider::LOCAL_CHAT_NAMES[0].to_owned()
                },
                weight: 1.0,
                context_window: None,
                timeout_ms: default_timeout() * 5,
                ttft_timeout_ms: default_timeout(),
            }],
            fallbacks: BTreeMap::new(),
        })
    }

    /// Every name a client may use.
    pub fn model_names(&self) -> Vec<String> {
        let mut out: Vec<String> = self.groups.iter().map(|g| g.name.clone()).collect();
        if self.local_models {
            out.extend(
                crate::provider::LOCAL_CHAT_NAMES
                    .iter()
                    .filter(|n| !out.iter().any(|o| o == *n))
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>(),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_groups_and_rejects_broken_ones() {
        let c = GatewayConfig::from_toml(
            r#"
            [[groups]]
            name = "chat"
            strategy = "lowest-latency"
            fallbacks = { context_window = "big", default = "big" }
            deployments = [{ id = "a", base_url = "http://127.0.0.1:1/v1", model = "m", weight = 2 }]
            [[groups]]
            name = "big"
            deployments = [{ id = "l", provider = "local", model = "SmolLM2-135M-Instruct" }]
            [prices.m]
            input_per_mtok = 1.0
            output_per_mtok = 2.0
            "#,
        )
        .unwrap();
        assert_eq!(c.groups[0].strategy, Strategy::LowestLatency);
        assert_eq!(c.groups[0].deployments[0].weight, 2.0);
        assert_eq!(c.prices["m"].output_per_mtok, 2.0);
        assert!(
            c.group("smollm2").is_some(),
            "local names are implicit groups"
        );
        for broken in [
            r#"[[groups]]
               name = "a"
               deployments = []"#,
            r#"[[groups]]
               name = "a"
               fallbacks = { default = "nowhere" }
               deployments = [{ id = "x", base_url = "http://h/v1", model = "m" }]"#,
            r#"[[groups]]
               name = "a"
               fallbacks = { sunspots = "a" }
               deployments = [{ id = "x", base_url = "http://h/v1", model = "m" }]"#,
            r#"[[groups]]
               name = "a"
               deployments = [{ id = "x", base_url = "ftp://h", model = "m" }]"#,
            r#"colour = "blue""#,
        ] {
            let e = GatewayConfig::from_toml(broken).expect_err(broken);
            assert_eq!(e.status, 400);
        }
    }
}
