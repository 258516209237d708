//! One request through the gateway: the model group, the cache, the deployments in the
//! router's order with retries and fallbacks by error class, the cost, the usage record and the
//! response headers that say which deployment answered and why. The live configuration is one
//! `Arc` swapped whole on reload, so a request finishes on the configuration it started with.

use crate::budget::{Holds, Ledger, MemoryLedger, budget_keys, rate_keys};
use crate::cache::{CachedAnswer, ExactCache};
use crate::config::{GatewayConfig, GroupConfig, ProviderKind};
use crate::error::{ErrorClass, GatewayError, Result};
use crate::metrics::GatewayMetrics;
use crate::pricing::Prices;
use crate::provider::{ChunkStream, LocalChat, OpenAiCompatible, Provider};
use crate::request::LlmRequest;
use crate::router::{Pick, Router, now_ms};
use crate::semantic::{PromptEmbedder, SemanticCache};
use crate::usage::{Usage, UsageRecord, UsageSink};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Who is calling, for usage records, budgets and cache scoping.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The API key's id (`anonymous` without authentication).
    pub key: String,
    pub user: Option<String>,
    pub team: Option<String>,
    pub tags: Vec<String>,
    /// The caller's tier (header `x-capstan-tier`), for routing rules.
    pub tier: Option<String>,
    /// `name@version` of the registered prompt the request was rendered from.
    pub prompt: Option<String>,
    /// The caller's trace and span (from a W3C `traceparent` header): the call's span joins it.
    pub trace: Option<(String, String)>,
}

pub enum Reply {
    /// An OpenAI response body.
    Whole(Value),
    /// OpenAI chunk objects, to send as server-sent events.
    Stream(ChunkStream),
}

pub struct Answer {
    pub reply: Reply,
    /// `x-capstan-*` headers: deployment, route, cache, cost, overhead, attempts.
    pub headers: Vec<(&'static str, String)>,
}

/// The configuration in force and what was built from it.
struct Live {
    config: GatewayConfig,
    rules: crate::rules::Rules,
    prices: Prices,
    providers: HashMap<(String, String), Arc<dyn Provider>>,
}

pub struct Gateway {
    live: RwLock<Arc<Live>>,
    router: Router,
    cache: Arc<ExactCache>,
    semantic: Arc<SemanticCache>,
    /// Embeds prompts for the semantic cache (the server's MiniLM).
    embedder: Option<Arc<dyn PromptEmbedder>>,
    local: Arc<LocalChat>,
    http: reqwest::Client,
    usage: crate::usage_log::UsageLog,
    pub metrics: Arc<GatewayMetrics>,
    /// Budgets and rate limits are counted here.
    ledger: Arc<dyn Ledger>,
}

fn key_from_env(var: &Option<String>) -> Option<String> {
    var.as_ref().and_then(|v| std::env::var(v).ok())
}

impl Gateway {
    pub fn new(
        config: GatewayConfig,
        local: LocalChat,
        sink: Option<Arc<dyn UsageSink>>,
    ) -> Result<Gateway> {
        config.validate()?;
        Ok(Gateway::start(config, local, sink))
    }

    /// A gateway serving only the in-process models (the default configuration).
    pub fn local_only(local: LocalChat, sink: Option<Arc<dyn UsageSink>>) -> Gateway {
        Gateway::start(GatewayConfig::default(), local, sink)
    }

    fn start(config: GatewayConfig, local: LocalChat, sink: Option<Arc<dyn UsageSink>>) -> Gateway {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let local = Arc::new(local);
        let live = Self::build(&config, &http, &local);
        Gateway {
            live: RwLock::new(Arc::new(live)),
            router: Router::default(),
            cache: Arc::new(ExactCache::new()),
            semantic: Arc::new(SemanticCache::default()),
            embedder: None,
            local,
            http,
            usage: crate::usage_log::UsageLog::start(sink),
            metrics: Arc::new(GatewayMetrics::default()),
            ledger: Arc::new(MemoryLedger::default()),
        }
    }

    /// Counts budgets and rate limits in `ledger` (the metadata database, or Redis shared by
    /// replicas) instead of this process's memory.
    pub fn with_ledger(mut self, ledger: Arc<dyn Ledger>) -> Gateway {
        self.ledger = ledger;
        self
    }

    /// Embeds prompts with `embedder` for the semantic cache.
    pub fn with_embedder(mut self, embedder: Arc<dyn PromptEmbedder>) -> Gateway {
        self.embedder = Some(embedder);
        self
    }

    /// (spent, reserved) of a ledger key (for the API and tests).
    pub async fn ledger_entry(&self, key: &str) -> std::result::Result<(f64, f64), String> {
        self.ledger.get(key).await
    }

    fn build(config: &GatewayConfig, http: &reqwest::Client, local: &Arc<LocalChat>) -> Live {
        let mut providers: HashMap<(String, String), Arc<dyn Provider>> = HashMap::new();
        for g in &config.groups {
            for d in &g.deployments {
                let p: Arc<dyn Provider> = match d.provider {
                    ProviderKind::Local => local.clone(),
                    ProviderKind::Anthropic => Arc::new(crate::anthropic::AnthropicProvider::new(
                        http.clone(),
                        &d.base_url,
                        key_from_env(&d.api_key_env),
                    )),
                    ProviderKind::Openai => Arc::new(OpenAiCompatible::new(
                        http.clone(),
                        &d.base_url,
                        key_from_env(&d.api_key_env),
                    )),
                };
                providers.insert((g.name.clone(), d.id.clone()), p);
            }
        }
        Live {
            // Validated with the config; an empty rule set only if that was skipped.
            rules: crate::rules::Rules::compile(&config.rules).unwrap_or_default(),
            prices: Prices::new(&config.prices),
            config: config.clone(),
            providers,
        }
    }

    fn snapshot(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the configuration; requests in flight keep the one they started with.
    pub fn reload(&self, config: GatewayConfig) -> Result<()> {
        config.validate()?;
        let live = Arc::new(Self::build(&config, &self.http, &self.local));
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = live;
        Ok(())
    }

    pub fn config(&self) -> GatewayConfig {
        self.snapshot().config.clone()
    }

    pub fn price_version(&self) -> String {
        self.snapshot().prices.version.clone()
    }

    /// Names clients may put in `model`.
    pub fn models(&self) -> Vec<String> {
        self.snapshot().config.model_names()
    }

    pub fn local(&self) -> &Arc<LocalChat> {
        &self.local
    }

    /// Writes out queued usage records (on shutdown).
    pub async fn flush(&self) {
        self.usage.flush().await;
    }

    pub async fn recent_usage(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> std::result::Result<Vec<UsageRecord>, String> {
        self.usage.list(since_ms, limit).await
    }

    /// Answers one request; on failure the error and the headers gathered so far.
    pub async fn handle(
        &self,
        mut req: LlmRequest,
        caller: Caller,
    ) -> std::result::Result<Answer, (GatewayError, Vec<(&'static str, String)>)> {
        let t0 = Instant::now();
        let live = self.snapshot();
        let mut rec = UsageRecord {
            id: uuid::Uuid::new_v4().simple().to_string(),
            ts_ms: now_ms(),
            key: caller.key.clone(),
            user: req.user.clone().or(caller.user.clone()),
            team: caller.team.clone(),
            tags: caller.tags.clone(),
            model: req.model.clone(),
            deployment: String::new(),
            provider_model: String::new(),
            usage: Usage::default(),
            cost_usd: None,
            price_version: live.prices.version.clone(),
            latency_ms: 0.0,
            overhead_ms: 0.0,
            cache: "off".into(),
            stream: req.stream,
            status: 200,
            error: None,
            attempts: 0,
            estimated: false,
            prompt: caller.prompt.clone(),
            provider: String::new(),
            trace_id: caller
                .trace
                .as_ref()
                .map_or_else(|| traces::random_id(16), |t| t.0.clone()),
            span_id: traces::random_id(8),
            parent_span_id: caller
                .trace
                .as_ref()
                .map(|t| t.1.clone())
                .unwrap_or_default(),
        };
        // Routing rules may send the request to another group than the one it names.
        let routed = live
            .rules
            .route(&req, &caller)
            .map(|(name, to)| (format!("rule {name}: {} -> {to}", req.model), to.to_owned()));
        let target = routed.as_ref().map_or(req.model.as_str(), |r| r.1.as_str());
        let Some(group) = live.config.group(target) else {
            let e = GatewayError {
                param: Some("model".into()),
                code: Some("model_not_found".into()),
                ..GatewayError::new(
                    ErrorClass::NotFound,
                    404,
                    format!(
                        "The model `{}` does not exist (this gateway serves: {})",
                        req.model,
                        live.config.model_names().join(", ")
                    ),
                )
            };
            return Err(self.fail(rec, e, t0, Duration::ZERO, Vec::new()));
        };

        // Rate limits, then budgets: reserved before the call, settled after it.
        let (group, settlement, mut notes) = match self.admit(&live, &caller, &mut req, group).await
        {
            Ok(x) => x,
            Err(e) => return Err(self.fail(rec, e, t0, Duration::ZERO, Vec::new())),
        };
        // Why the request went where it did (a rule, a downgrade), before what happened there.
        if let Some((note, _)) = routed {
            notes.insert(0, note);
        }
        let mut trail: Vec<String> = Vec::new();

        // The exact cache, for answers that are the answer to this request (greedy or seeded).
        // Scoped by tenant and by the group that will answer (a rule or a downgrade may have
        // changed it from the one the request names).
        let tenant = format!(
            "{}\u{0}{}",
            caller.team.as_deref().unwrap_or(&caller.key),
            group.name
        );
        let cacheable =
            live.config.cache.exact && (req.temperature == Some(0.0) || req.seed.is_some());
        let mut store = CacheWrite {
            exact: self.cache.clone(),
            semantic: self.semantic.clone(),
            exact_key: cacheable.then(|| req.cache_key(&tenant)),
            semantic_key: None,
            config: live.config.cache.clone(),
        };
        if let Some(key) = &store.exact_key {
            if let Some(hit) = self.cache.get(key) {
                self.metrics.cache("exact", true, hit.cost_usd, None);
                return Ok(self.serve_hit(rec, hit, &req, "hit", None, t0, settlement));
            }
            self.metrics.cache("exact", false, 0.0, None);
            rec.cache = "miss".into();
        }
        // The semantic cache: the last question matched by meaning within its scope.
        let semantic = &live.config.cache.semantic;
        if semantic.enabled
            && let Some(embedder) = &self.embedder
            && let Some((scope, question)) = req.semantic_key(&tenant)
        {
            match embedder.embed(&question).await {
                Ok(v) => {
                    if let Some((hit, similarity)) =
                        self.semantic.lookup(&scope, &v, semantic.threshold)
                    {
                        self.metrics
                            .cache("semantic", true, hit.cost_usd, Some(similarity));
                        return Ok(self.serve_hit(
                            rec,
                            hit,
                            &req,
                            "semantic-hit",
                            Some(similarity),
                            t0,
                            settlement,
                        ));
                    }
                    self.metrics.cache("semantic", false, 0.0, None);
                    rec.cache = "miss".into();
                    store.semantic_key = Some((scope, v));
                }
                // Without embeddings the request is simply not cached semantically.
                Err(e) => tracing::warn!("semantic cache: embedding the prompt failed: {e}"),
            }
        }

        let needed = req.prompt_chars() / 4 + req.max_tokens.unwrap_or(0);
        let mut upstream = Duration::ZERO;
        let mut visited = vec![group.name.clone()];
        let mut group: GroupConfig = group;
        let mut last: Option<GatewayError> = None;
        let retry = live.config.retry.clone();
        let breaker = live.config.breaker.clone();
        'groups: loop {
            let (picks, skipped) = self.router.order(&group, &live.prices, needed);
            trail.extend(skipped.into_iter().map(|s| format!("{}/{s}", group.name)));
            let mut failures_here = 0u32;
            let tried_here = !picks.is_empty();
            for pick in picks {
                if rec.attempts as usize >= retry.attempts.max(1) {
                    break 'groups;
                }
                if !self.router.admit(&pick) {
                    continue;
                }
                if failures_here > 0 {
                    tokio::time::sleep(backoff(retry.backoff_ms, failures_here, rec.attempts))
                        .await;
                }
                rec.attempts += 1;
                let Some(provider) = live
                    .providers
                    .get(&(group.name.clone(), pick.deployment.id.clone()))
                    .cloned()
                    .or_else(|| {
                        (pick.deployment.provider == ProviderKind::Local)
                            .then(|| self.local.clone() as Arc<dyn Provider>)
                    })
                else {
                    continue;
                };
                let started = Instant::now();
                let outcome = self.call(&*provider, &pick, &req).await;
                upstream += started.elapsed();
                match outcome {
                    Ok(reply) => {
                        pick.health
                            .report(Ok(ms(started.elapsed())), &breaker, now_ms());
                        let mut parts = notes.clone();
                        parts.push(pick.reason.clone());
                        if !trail.is_empty() {
                            parts.push(format!("after {}", trail.join(", ")));
                        }
                        let route = parts.join("; ");
                        rec.deployment = format!("{}/{}", group.name, pick.deployment.id);
                        rec.provider_model = pick.deployment.model.clone();
                        rec.provider = pick.deployment.provider.name().to_owned();
                        return Ok(self.finish(
                            rec,
                            reply,
                            &req,
                            &live.prices,
                            store,
                            route,
                            t0,
                            upstream,
                            settlement,
                        ));
                    }
                    Err(e) => {
                        pick.health.report(Err(e.class), &breaker, now_ms());
                        trail.push(format!(
                            "{}/{}: {}",
                            group.name,
                            pick.deployment.id,
                            e.class.as_str()
                        ));
                        failures_here += 1;
                        let class = e.class;
                        last = Some(e);
                        if class == ErrorClass::BadRequest {
                            break 'groups;
                        }
                        if class == ErrorClass::ContextWindow || class == ErrorClass::ContentPolicy
                        {
                            break; // other deployments of this group serve the same model
                        }
                    }
                }
            }
            // Every deployment failed (or none could be tried): the group's fallback. A group
            // whose every deployment is too small for the prompt counts as a context overflow.
            if !tried_here && last.is_none() && trail.iter().any(|t| t.contains("context window")) {
                last = Some(
                    GatewayError::invalid("messages", format!("the prompt needs about {needed} tokens, more than any deployment of `{}` takes", group.name))
                        .with_code("context_length_exceeded"),
                );
                if let Some(e) = last.as_mut() {
                    e.class = ErrorClass::ContextWindow;
                }
            }
            let class = last.as_ref().map(|e| e.class);
            let target = class
                .and_then(|c| group.fallbacks.get(c.as_str()))
                .or_else(|| group.fallbacks.get("default"))
                .cloned();
            if class == Some(ErrorClass::BadRequest) {
                break;
            }
            match target.and_then(|t| live.config.group(&t)) {
                Some(next) if !visited.contains(&next.name) => {
                    trail.push(format!("fallback {} -> {}", group.name, next.name));
                    visited.push(next.name.clone());
                    group = next;
                }
                _ => break,
            }
        }
        let e = last.unwrap_or_else(|| {
            GatewayError::new(
                ErrorClass::Unreachable,
                503,
                format!(
                    "no deployment of `{}` is available ({})",
                    req.model,
                    if trail.is_empty() {
                        "none configured".into()
                    } else {
                        trail.join(", ")
                    }
                ),
            )
        });
        // A client's mistake keeps its status; an upstream failure after all fallbacks is a 502
        // (bad answer), 503 (none reachable) or 504 (timed out).
        let mut e = e;
        e.status = match e.class {
            ErrorClass::Unreachable => 503,
            ErrorClass::Timeout => 504,
            ErrorClass::Upstream | ErrorClass::Auth => 502,
            _ => e.status,
        };
        notes.extend(trail);
        let headers = vec![("x-capstan-route", notes.join("; "))];
        Err(self.fail(rec, e, t0, upstream, headers))
    }

    /// One try on one deployment, within its timeouts. A stream counts as answered when its
    /// first chunk arrives (before that, a failure can still fall back).
    async fn call(&self, provider: &dyn Provider, pick: &Pick, req: &LlmRequest) -> Result<Reply> {
        let d = &pick.deployment;
        let _busy = pick.health.start();
        let total = Duration::from_millis(d.timeout_ms);
        let timeout = |what: &str, limit: Duration| {
            GatewayError::new(
                ErrorClass::Timeout,
                504,
                format!("{}: no {what} within {} ms", d.id, limit.as_millis()),
            )
        };
        if !req.stream {
            return tokio::time::timeout(total, provider.complete(req, &d.model))
                .await
                .map_err(|_| timeout("answer", total))?
                .map(Reply::Whole);
        }
        let ttft = Duration::from_millis(d.ttft_timeout_ms).min(total);
        let deadline = tokio::time::Instant::now() + total;
        let first = tokio::time::timeout(ttft, async {
            let mut s = provider.stream(req, &d.model).await?;
            match s.next().await {
                Some(Ok(chunk)) => Ok((chunk, s)),
                Some(Err(e)) => Err(e),
                None => Err(GatewayError::new(
                    ErrorClass::Upstream,
                    502,
                    format!("{}: the stream ended before any chunk", d.id),
                )),
            }
        })
        .await
        .map_err(|_| timeout("first token", ttft))??;
        let (chunk, rest) = first;
        let name = d.id.clone();
        let rest = rest
            .map(Some)
            .chain(futures_util::stream::once(async { None }));
        // The whole stream must end by the deadline.
        let bounded =
            futures_util::stream::unfold((Box::pin(rest), false), move |(mut s, done)| {
                let name = name.clone();
                async move {
                    if done {
                        return None;
                    }
                    match tokio::time::timeout_at(deadline, s.next()).await {
                        Ok(Some(Some(item))) => Some((item, (s, false))),
                        Ok(_) => None,
                        Err(_) => Some((
                            Err(GatewayError::new(
                                ErrorClass::Timeout,
                                504,
                                format!("{name}: the stream passed its total timeout"),
                            )),
                            (s, true),
                        )),
                    }
                }
            });
        Ok(Reply::Stream(Box::pin(
            futures_util::stream::once(async { Ok(chunk) }).chain(bounded),
        )))
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        mut rec: UsageRecord,
        reply: Reply,
        req: &LlmRequest,
        prices: &Prices,
        store: CacheWrite,
        route: String,
        t0: Instant,
        upstream: Duration,
        settlement: Settlement,
    ) -> Answer {
        let mut headers = vec![
            ("x-capstan-deployment", rec.deployment.clone()),
            ("x-capstan-route", route),
            ("x-capstan-cache", rec.cache.clone()),
            ("x-capstan-attempts", rec.attempts.to_string()),
            ("x-capstan-trace-id", rec.trace_id.clone()),
        ];
        match reply {
            Reply::Whole(body) => {
                rec.usage = match Usage::from_openai(&body["usage"]) {
                    Some(u) => u,
                    None => {
                        let choice = &body["choices"][0];
                        let text = choice["message"]["content"]
                            .as_str()
                            .or(choice["text"].as_str())
                            .unwrap_or("");
                        rec.estimated = true;
                        crate::tokens::usage_of(&rec.provider_model, req, text).0
                    }
                };
                rec.cost_usd = prices.cost(
                    crate::provider::price_name(&rec.provider, &rec.provider_model),
                    &rec.usage,
                );
                if let Some(c) = rec.cost_usd {
                    headers.push(("x-capstan-cost-usd", format!("{c:.8}")));
                }
                let overhead = t0.elapsed().saturating_sub(upstream);
                rec.latency_ms = ms(t0.elapsed());
                rec.overhead_ms = ms(overhead);
                headers.push(("x-capstan-overhead-ms", format!("{:.3}", ms(overhead))));
                self.metrics
                    .request(&rec.model, &rec.deployment, 200, overhead);
                self.metrics.spend(&rec);
                store.put(CachedAnswer {
                    full: Some(body.clone()),
                    chunks: None,
                    usage: rec.usage,
                    cost_usd: rec.cost_usd.unwrap_or(0.0),
                    deployment: rec.deployment.clone(),
                    provider_model: rec.provider_model.clone(),
                });
                settlement.settle(
                    rec.cost_usd.unwrap_or(0.0),
                    rec.usage.prompt_tokens + rec.usage.completion_tokens,
                );
                self.usage.push(rec);
                Answer {
                    reply: Reply::Whole(body),
                    headers,
                }
            }
            Reply::Stream(s) => {
                // Time to the first chunk, less the upstream's share of it.
                let overhead = t0.elapsed().saturating_sub(upstream);
                rec.overhead_ms = ms(overhead);
                headers.push(("x-capstan-overhead-ms", format!("{:.3}", ms(overhead))));
                self.metrics
                    .request(&rec.model, &rec.deployment, 200, overhead);
                let prompt_estimate = crate::tokens::usage_of(&rec.provider_model, req, "").0;
                let acct = StreamAccount {
                    inner: s,
                    text: String::new(),
                    prompt_estimate,
                    rec: Some(rec),
                    chunks: Vec::new(),
                    include_usage: req.include_usage,
                    prices: prices.clone(),
                    store: Some(store),
                    t0,
                    complete: false,
                    usage_log: self.usage.clone(),
                    metrics: self.metrics.clone(),
                    settlement: Some(settlement),
                };
                Answer {
                    reply: Reply::Stream(Box::pin(acct)),
                    headers,
                }
            }
        }
    }

    /// Answers from a cache: no upstream call, no cost; the headers say which cache and, for the
    /// semantic one, how similar the cached question was.
    #[allow(clippy::too_many_arguments)]
    fn serve_hit(
        &self,
        mut rec: UsageRecord,
        hit: CachedAnswer,
        req: &LlmRequest,
        kind: &str,
        similarity: Option<f32>,
        t0: Instant,
        settlement: Settlement,
    ) -> Answer {
        rec.cache = kind.into();
        rec.deployment = hit.deployment.clone();
        rec.provider_model = hit.provider_model.clone();
        rec.usage = hit.usage;
        rec.cost_usd = Some(0.0);
        let reply = replay(&hit, req);
        let overhead = t0.elapsed();
        rec.latency_ms = ms(overhead);
        rec.overhead_ms = ms(overhead);
        self.metrics
            .request(&req.model, &hit.deployment, 200, overhead);
        let mut headers = vec![
            ("x-capstan-deployment", hit.deployment.clone()),
            ("x-capstan-route", format!("cache {kind}")),
            ("x-capstan-cache", kind.to_string()),
            ("x-capstan-cost-usd", "0".to_string()),
            ("x-capstan-saved-usd", format!("{:.8}", hit.cost_usd)),
            ("x-capstan-overhead-ms", format!("{:.3}", ms(overhead))),
            ("x-capstan-trace-id", rec.trace_id.clone()),
        ];
        if let Some(sim) = similarity {
            headers.push(("x-capstan-cache-similarity", format!("{sim:.4}")));
        }
        self.usage.push(rec);
        settlement.settle(0.0, 0);
        Answer { reply, headers }
    }

    /// Rate limits and budgets for this request: reserves what it may use, and on an exhausted
    /// budget that names a downgrade, switches to that group (once). Returns the group to route,
    /// what to settle afterwards, and notes for the route header.
    async fn admit(
        &self,
        live: &Live,
        caller: &Caller,
        req: &mut LlmRequest,
        group: GroupConfig,
    ) -> Result<(GroupConfig, Settlement, Vec<String>)> {
        let cfg = &live.config;
        let mut settlement = Settlement {
            ledger: self.ledger.clone(),
            holds: Holds::default(),
            done: false,
        };
        let mut notes = Vec::new();
        if cfg.budgets.is_empty() && cfg.rate_limits.is_empty() {
            return Ok((group, settlement, notes));
        }
        let unavailable = |e: String| {
            GatewayError::new(
                ErrorClass::Upstream,
                503,
                format!("the budget ledger is unavailable: {e}"),
            )
        };
        if req.max_tokens.is_none() {
            // Reserving needs a bound on the answer; it goes upstream too, so the bound holds.
            req.max_tokens = Some(MAX_TOKENS_BOUND);
            if let Some(o) = req.body.as_object_mut() {
                o.insert("max_tokens".into(), json!(MAX_TOKENS_BOUND));
            }
        }
        let max_tokens = req.max_tokens.unwrap_or(MAX_TOKENS_BOUND) as u64;
        let prompt = req.prompt_bound() as u64;
        let now = now_ms();
        for (i, key, limit, tokens, expires) in rate_keys(&cfg.rate_limits, caller, now) {
            let amount = if tokens {
                (prompt + max_tokens) as f64
            } else {
                1.0
            };
            if !self
                .ledger
                .reserve(&key, amount, limit as f64, expires)
                .await
                .map_err(unavailable)?
            {
                let l = &cfg.rate_limits[i];
                return Err(GatewayError::new(
                    ErrorClass::Budget,
                    429,
                    format!(
                        "rate limit `{}` reached: {limit} {} per minute",
                        l.name,
                        if tokens { "tokens" } else { "requests" }
                    ),
                )
                .with_code("rate_limit_exceeded"));
            }
            if tokens {
                settlement.holds.tokens.push((key, amount));
            }
        }
        let mut group = group;
        let mut downgraded = false;
        loop {
            let worst = self.worst_case(live, &group, prompt, max_tokens);
            let mut exhausted = None;
            for (i, key, expires) in budget_keys(&cfg.budgets, caller, now) {
                let limit = cfg.budgets[i].limit_usd;
                if self
                    .ledger
                    .reserve(&key, worst, limit, expires)
                    .await
                    .map_err(unavailable)?
                {
                    settlement.holds.dollars.push((key, worst));
                } else {
                    exhausted = Some((i, key));
                    break;
                }
            }
            let Some((i, key)) = exhausted else {
                return Ok((group, settlement, notes));
            };
            settlement.release_dollars().await;
            let b = &cfg.budgets[i];
            if let (Some(to), false) = (&b.downgrade_to, downgraded)
                && let Some(g) = cfg.group(to)
            {
                notes.push(format!(
                    "budget {} exhausted: downgraded {} -> {}",
                    b.name, group.name, g.name
                ));
                group = g;
                downgraded = true;
                continue;
            }
            let (spent, reserved) = self.ledger.get(&key).await.unwrap_or_default();
            return Err(GatewayError::new(
                ErrorClass::Budget,
                429,
                format!(
                    "budget `{}` is exhausted: ${spent:.6} spent and ${reserved:.6} reserved of ${:.6} ({:?}); this call may cost up to ${worst:.6}",
                    b.name, b.limit_usd, b.window
                ),
            )
            .with_code("budget_exceeded"));
        }
    }

    /// The dearest this request can be on any deployment it may reach (the group and, through
    /// fallbacks, every group after it).
    fn worst_case(&self, live: &Live, group: &GroupConfig, prompt: u64, max_tokens: u64) -> f64 {
        let mut seen = vec![group.name.clone()];
        let mut queue = vec![group.clone()];
        let mut worst = 0.0f64;
        while let Some(g) = queue.pop() {
            for d in &g.deployments {
                worst = worst.max(
                    live.prices
                        .worst_case(
                            crate::provider::price_name(d.provider.name(), &d.model),
                            prompt,
                            max_tokens,
                        )
                        .unwrap_or(0.0),
                );
            }
            for t in g.fallbacks.values() {
                if !seen.contains(t)
                    && let Some(next) = live.config.group(t)
                {
                    seen.push(t.clone());
                    queue.push(next);
                }
            }
        }
        worst
    }

    fn fail(
        &self,
        mut rec: UsageRecord,
        e: GatewayError,
        t0: Instant,
        upstream: Duration,
        mut headers: Vec<(&'static str, String)>,
    ) -> (GatewayError, Vec<(&'static str, String)>) {
        let overhead = t0.elapsed().saturating_sub(upstream);
        rec.status = e.status;
        rec.error = Some(format!("{}: {}", e.class.as_str(), e.message));
        rec.latency_ms = ms(t0.elapsed());
        rec.overhead_ms = ms(overhead);
        self.metrics
            .request(&rec.model, &rec.deployment, e.status, overhead);
        headers.push(("x-capstan-overhead-ms", format!("{:.3}", ms(overhead))));
        self.usage.push(rec);
        (e, headers)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Jittered exponential backoff: base × 2^(n-1), times a factor in [0.5, 1.5).
fn backoff(base_ms: u64, n: u32, salt: u32) -> Duration {
    let mut r = base::rng::Rng::new(now_ms() as u64 ^ salt as u64);
    let factor = 0.5 + r.next_f64();
    Duration::from_micros(
        (base_ms as f64 * 1000.0 * 2f64.powi(n.min(10) as i32 - 1) * factor) as u64,
    )
}

/// A cached answer in the shape the request wants.
fn replay(hit: &CachedAnswer, req: &LlmRequest) -> Reply {
    let fresh_id = |v: &mut Value| {
        if let Some(o) = v.as_object_mut() {
            let prefix = if req.endpoint == crate::Endpoint::Chat {
                "chatcmpl"
            } else {
                "cmpl"
            };
            o.insert(
                "id".into(),
                json!(format!("{prefix}-{}", uuid::Uuid::new_v4().simple())),
            );
        }
    };
    if !req.stream {
        let mut body = match (&hit.full, &hit.chunks) {
            (Some(full), _) => full.clone(),
            (None, Some(chunks)) => assemble(chunks, req),
            (None, None) => json!({}),
        };
        fresh_id(&mut body);
        return Reply::Whole(body);
    }
    let mut chunks = match (&hit.chunks, &hit.full) {
        (Some(chunks), _) => chunks.clone(),
        (None, Some(full)) => split(full, req),
        (None, None) => Vec::new(),
    };
    if !req.include_usage {
        chunks.retain(|c| !is_usage_only(c));
    }
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    for c in &mut chunks {
        c["id"] = json!(id);
    }
    Reply::Stream(Box::pin(futures_util::stream::iter(
        chunks.into_iter().map(Ok),
    )))
}

fn is_usage_only(c: &Value) -> bool {
    c["choices"].as_array().is_some_and(|a| a.is_empty()) && c["usage"].is_object()
}

/// A whole response from streamed chunks.
fn assemble(chunks: &[Value], req: &LlmRequest) -> Value {
    let mut text = String::new();
    let mut finish = Value::Null;
    let mut usage = Value::Null;
    let mut head = json!({});
    for c in chunks {
        if head["model"].is_null() {
            head = c.clone();
        }
        if let Some(ch) = c["choices"].get(0) {
            if let Some(t) = ch["delta"]["content"].as_str().or(ch["text"].as_str()) {
                text.push_str(t);
            }
            if !ch["finish_reason"].is_null() {
                finish = ch["finish_reason"].clone();
            }
        }
        if c["usage"].is_object() {
            usage = c["usage"].clone();
        }
    }
    let (object, choice) = match req.endpoint {
        crate::Endpoint::Chat => (
            "chat.completion",
            json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": finish}),
        ),
        crate::Endpoint::Completions => (
            "text_completion",
            json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish}),
        ),
    };
    json!({"id": head["id"], "object": object, "created": head["created"], "model": head["model"],
           "choices": [choice], "usage": usage})
}

/// Chunks from a whole response.
fn split(full: &Value, req: &LlmRequest) -> Vec<Value> {
    let choice = &full["choices"][0];
    let text = choice["message"]["content"]
        .as_str()
        .or(choice["text"].as_str())
        .unwrap_or("");
    let (object, mk) = match req.endpoint {
        crate::Endpoint::Chat => ("chat.completion.chunk", true),
        crate::Endpoint::Completions => ("text_completion", false),
    };
    let base = |choices: Value| json!({"id": full["id"], "object": object, "created": full["created"], "model": full["model"], "choices": choices});
    let delta = |d: Value, finish: Value| {
        if mk {
            json!([{"index": 0, "delta": d, "logprobs": null, "finish_reason": finish}])
        } else {
            json!([{"index": 0, "text": d["content"].as_str().unwrap_or(""), "logprobs": null, "finish_reason": finish}])
        }
    };
    let mut out = vec![
        base(delta(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )),
        base(delta(json!({"content": text}), Value::Null)),
        base(delta(json!({}), choice["finish_reason"].clone())),
    ];
    let mut last = base(json!([]));
    last["usage"] = full["usage"].clone();
    out.push(last);
    out
}

/// Passes a stream through while keeping its accounts: the usage chunk (hidden from clients
/// that did not ask for it), the cost, the chunks for the cache. The usage record is written
/// when the stream ends or when the client goes away (drop).
struct StreamAccount {
    inner: ChunkStream,
    /// The text streamed so far, to count it when no usage chunk comes.
    text: String,
    /// The prompt's tokens as counted here, for the same case.
    prompt_estimate: Usage,
    rec: Option<UsageRecord>,
    chunks: Vec<Value>,
    include_usage: bool,
    prices: Prices,
    /// Where the complete answer is cached; `None` once stored (or when nothing caches it).
    store: Option<CacheWrite>,
    t0: Instant,
    complete: bool,
    usage_log: crate::usage_log::UsageLog,
    metrics: Arc<GatewayMetrics>,
    settlement: Option<Settlement>,
}

impl StreamAccount {
    fn close(&mut self) {
        let Some(mut rec) = self.rec.take() else {
            return;
        };
        rec.latency_ms = ms(self.t0.elapsed());
        if let Some(u) = self
            .chunks
            .iter()
            .rev()
            .find_map(|c| Usage::from_openai(&c["usage"]))
        {
            rec.usage = u;
        } else {
            // Cut short (or an upstream that reports nothing): bill what was streamed.
            rec.usage = Usage {
                completion_tokens: crate::tokens::count(&rec.provider_model, &self.text).0,
                ..self.prompt_estimate
            };
            rec.estimated = true;
        }
        rec.cost_usd = self.prices.cost(
            crate::provider::price_name(&rec.provider, &rec.provider_model),
            &rec.usage,
        );
        if !self.complete {
            rec.error = Some("stream ended early (client gone or upstream failed)".into());
            rec.status = 499;
        } else if let Some(store) = self.store.take() {
            store.put(CachedAnswer {
                full: None,
                chunks: Some(std::mem::take(&mut self.chunks)),
                usage: rec.usage,
                cost_usd: rec.cost_usd.unwrap_or(0.0),
                deployment: rec.deployment.clone(),
                provider_model: rec.provider_model.clone(),
            });
        }
        self.metrics.spend(&rec);
        if let Some(settlement) = self.settlement.take() {
            settlement.settle(
                rec.cost_usd.unwrap_or(0.0),
                rec.usage.prompt_tokens + rec.usage.completion_tokens,
            );
        }
        self.usage_log.push(rec);
    }
}

impl Stream for StreamAccount {
    type Item = Result<Value>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match self.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Some(choice) = chunk["choices"].get(0) {
                        let piece = choice["delta"]["content"]
                            .as_str()
                            .or(choice["text"].as_str());
                        if let Some(piece) = piece {
                            self.text.push_str(piece);
                        }
                    }
                    if self.store.as_ref().is_some_and(CacheWrite::wanted)
                        || chunk["usage"].is_object()
                    {
                        self.chunks.push(chunk.clone());
                    }
                    if !self.include_usage && is_usage_only(&chunk) {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Poll::Ready(Some(Err(e))) => {
                    self.close();
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    self.complete = true;
                    self.close();
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for StreamAccount {
    fn drop(&mut self) {
        self.close();
    }
}

/// `max_tokens` set on requests that give none when a budget or token limit applies.
const MAX_TOKENS_BOUND: usize = 4096;

/// What one request holds in the ledger. Settled with the actual cost and tokens when the
/// answer is complete; dropped unsettled (an error, a client gone), it gives everything back.
struct Settlement {
    ledger: Arc<dyn Ledger>,
    holds: Holds,
    done: bool,
}

impl Settlement {
    async fn release_dollars(&mut self) {
        for (key, amount) in std::mem::take(&mut self.holds.dollars) {
            let _ = self.ledger.settle(&key, amount, 0.0).await;
        }
    }

    fn settle(mut self, cost: f64, tokens: u64) {
        self.done = true;
        self.spawn(cost, tokens as f64);
    }

    fn spawn(&mut self, cost: f64, tokens: f64) {
        let holds = std::mem::take(&mut self.holds);
        if holds.dollars.is_empty() && holds.tokens.is_empty() {
            return;
        }
        let ledger = self.ledger.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for (key, amount) in holds.dollars {
                    if let Err(e) = ledger.settle(&key, amount, cost).await {
                        tracing::error!("settling {key}: {e}");
                    }
                }
                for (key, amount) in holds.tokens {
                    if let Err(e) = ledger.settle(&key, amount, tokens).await {
                        tracing::error!("settling {key}: {e}");
                    }
                }
            });
        }
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        if !self.done {
            self.spawn(0.0, 0.0);
        }
    }
}

/// Where a fresh answer is cached: under the exact key, the semantic scope and vector, both or
/// neither.
struct CacheWrite {
    exact: Arc<ExactCache>,
    semantic: Arc<SemanticCache>,
    exact_key: Option<String>,
    semantic_key: Option<(String, Vec<f32>)>,
    config: crate::config::CacheConfig,
}

impl CacheWrite {
    fn wanted(&self) -> bool {
        self.exact_key.is_some() || self.semantic_key.is_some()
    }

    fn put(self, answer: CachedAnswer) {
        if let Some((scope, v)) = self.semantic_key {
            let c = &self.config.semantic;
            self.semantic.insert(
                scope,
                v,
                answer.clone(),
                Duration::from_secs(c.ttl_s),
                c.max_entries,
            );
        }
        if let Some(key) = self.exact_key {
            self.exact.put(
                key,
                answer,
                Duration::from_secs(self.config.ttl_s),
                self.config.max_entries,
            );
        }
    }
}
