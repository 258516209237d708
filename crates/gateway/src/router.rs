//! Which deployment of a group to try, in what order. Each deployment's health is tracked across
//! requests (and across config reloads, by group and id): a moving average of latency, requests
//! in flight, and a circuit breaker that opens after `failures` consecutive faults, or when at
//! least `min_requests` in the last minute saw `failure_rate` of them fail, and keeps the
//! deployment out for `cooldown_ms`; then one request tries it again (half-open), and a success
//! closes it.

use crate::config::{BreakerConfig, DeploymentConfig, GroupConfig, Strategy};
use crate::error::ErrorClass;
use crate::pricing::Prices;
use base::rng::Rng;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const WINDOW_MS: i64 = 60_000;
/// Weight of the newest latency in the moving average.
const EWMA_ALPHA: f64 = 0.2;

#[derive(Debug, Default)]
struct Breaker {
    consecutive: u32,
    /// (time, was a fault) over the last minute.
    window: VecDeque<(i64, bool)>,
    open_until_ms: i64,
    /// A half-open trial is in flight.
    trial: bool,
}

#[derive(Debug, Default)]
pub struct Health {
    /// f64 bits; 0 until the first answer.
    ewma_ms: AtomicU64,
    in_flight: AtomicUsize,
    breaker: Mutex<Breaker>,
}

impl Health {
    pub fn latency_ms(&self) -> f64 {
        f64::from_bits(self.ewma_ms.load(Ordering::Relaxed))
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Whether the breaker lets a request through now (claiming the half-open trial).
    fn admit(&self, now: i64) -> bool {
        let Ok(mut b) = self.breaker.lock() else {
            return true;
        };
        if b.open_until_ms == 0 {
            return true;
        }
        if now < b.open_until_ms || b.trial {
            return false;
        }
        b.trial = true;
        true
    }

    pub fn is_open(&self, now: i64) -> bool {
        self.breaker
            .lock()
            .map(|b| b.open_until_ms != 0 && (now < b.open_until_ms || b.trial))
            .unwrap_or(false)
    }

    /// Records an outcome: a latency on success, a class on failure.
    pub fn report(&self, outcome: Result<f64, ErrorClass>, cfg: &BreakerConfig, now: i64) {
        if let Ok(ms) = outcome {
            let old = self.latency_ms();
            let new = if old == 0.0 {
                ms
            } else {
                old + EWMA_ALPHA * (ms - old)
            };
            self.ewma_ms.store(new.to_bits(), Ordering::Relaxed);
        }
        let fault = matches!(outcome, Err(c) if c.is_fault() || c == ErrorClass::RateLimit);
        let Ok(mut b) = self.breaker.lock() else {
            return;
        };
        b.window.push_back((now, fault));
        while b.window.front().is_some_and(|(t, _)| *t < now - WINDOW_MS) {
            b.window.pop_front();
        }
        b.trial = false;
        if !fault {
            b.consecutive = 0;
            b.open_until_ms = 0;
            return;
        }
        b.consecutive += 1;
        let n = b.window.len() as u32;
        let faults = b.window.iter().filter(|(_, f)| *f).count() as f64;
        let rate_trips = n >= cfg.min_requests && faults / n as f64 >= cfg.failure_rate;
        if b.consecutive >= cfg.failures || rate_trips || b.open_until_ms != 0 {
            b.open_until_ms = now + cfg.cooldown_ms as i64;
        }
    }
}

pub struct InFlight(Arc<Health>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A deployment to try and why it was chosen.
#[derive(Clone)]
pub struct Pick {
    pub deployment: DeploymentConfig,
    pub health: Arc<Health>,
    pub reason: String,
}

#[derive(Default)]
pub struct Router {
    health: Mutex<HashMap<(String, String), Arc<Health>>>,
    seq: AtomicU64,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Router {
    pub fn health(&self, group: &str, id: &str) -> Arc<Health> {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        h.entry((group.to_owned(), id.to_owned()))
            .or_default()
            .clone()
    }

    /// The group's deployments in the order to try them. Deployments whose context window is
    /// smaller than `needed_tokens` and those behind an open breaker are left out; the reasons
    /// name the strategy and the number it went by.
    pub fn order(
        &self,
        group: &GroupConfig,
        prices: &Prices,
        needed_tokens: usize,
    ) -> (Vec<Pick>, Vec<String>) {
        let now = now_ms();
        let mut skipped = Vec::new();
        let mut picks: Vec<Pick> = Vec::new();
        for d in &group.deployments {
            if d.context_window.is_some_and(|w| w < needed_tokens) {
                skipped.push(format!(
                    "{}: context window {} < {needed_tokens}",
                    d.id,
                    d.context_window.unwrap_or(0)
                ));
                continue;
            }
            let health = self.health(&group.name, &d.id);
            if health.is_open(now) {
                skipped.push(format!("{}: circuit open", d.id));
                continue;
            }
            picks.push(Pick {
                deployment: d.clone(),
                health,
                reason: String::new(),
            });
        }
        let seed = self.seq.fetch_add(1, Ordering::Relaxed) ^ now as u64;
        let mut rng = Rng::new(seed);
        match group.strategy {
            Strategy::Weighted => {
                // Weighted sampling without replacement (Efraimidis–Spirakis keys).
                let mut keyed: Vec<(f64, Pick)> = picks
                    .into_iter()
                    .map(|p| {
                        let w = p.deployment.weight;
                        let key = if w > 0.0 {
                            rng.next_f64().max(1e-300).ln() / w
                        } else {
                            f64::NEG_INFINITY
                        };
                        (key, p)
                    })
                    .collect();
                keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
                picks = keyed
                    .into_iter()
                    .map(|(_, mut p)| {
                        p.reason = format!("weighted (weight {})", p.deployment.weight);
                        p
                    })
                    .collect();
            }
            Strategy::LowestLatency => {
                // Unmeasured deployments first, so each gets measured.
                picks.sort_by(|a, b| a.health.latency_ms().total_cmp(&b.health.latency_ms()));
                for p in &mut picks {
                    p.reason = format!("lowest-latency (ewma {:.1} ms)", p.health.latency_ms());
                }
            }
            Strategy::LowestCost => {
                let cost = |d: &DeploymentConfig| {
                    prices
                        .get(&d.model)
                        .map(|p| p.input_per_mtok + p.output_per_mtok)
                        .unwrap_or(f64::INFINITY)
                };
                picks.sort_by(|a, b| cost(&a.deployment).total_cmp(&cost(&b.deployment)));
                for p in &mut picks {
                    p.reason = format!("lowest-cost (${:.3}/Mtok in+out)", cost(&p.deployment));
                }
            }
            Strategy::LeastBusy => {
                picks.sort_by_key(|p| p.health.in_flight());
                for p in &mut picks {
                    p.reason = format!("least-busy ({} in flight)", p.health.in_flight());
                }
            }
        }
        (picks, skipped)
    }

    /// Claims a pick for one request: false when its breaker closed the door meanwhile.
    pub fn admit(&self, pick: &Pick) -> bool {
        pick.health.admit(now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;

    fn group(strategy: Strategy, weights: &[f64]) -> GroupConfig {
        GroupConfig {
            name: "g".into(),
            strategy,
            deployments: weights
                .iter()
                .enumerate()
                .map(|(i, w)| DeploymentConfig {
                    id: format!("d{i}"),
                    provider: ProviderKind::Openai,
                    base_url: "http://x/v1".into(),
                    api_key_env: None,
                    model: ["gpt-4o", "gpt-4o-mini", "gpt-4.1-nano"][i % 3].into(),
                    weight: *w,
                    context_window: if i == 2 { Some(100) } else { None },
                    timeout_ms: 1000,
                    ttft_timeout_ms: 1000,
                })
                .collect(),
            fallbacks: Default::default(),
        }
    }

    #[test]
    fn weighted_follows_weights() {
        let r = Router::default();
        let g = group(Strategy::Weighted, &[3.0, 1.0]);
        let prices = Prices::new(&Default::default());
        let firsts = (0..4000)
            .filter(|_| r.order(&g, &prices, 10).0[0].deployment.id == "d0")
            .count();
        assert!(
            (2800..3200).contains(&firsts),
            "{firsts} of 4000, expected ~3000"
        );
    }

    #[test]
    fn cost_latency_busy_and_context_window() {
        let r = Router::default();
        let prices = Prices::new(&Default::default());
        let (p, skipped) = r.order(&group(Strategy::LowestCost, &[1.0, 1.0, 1.0]), &prices, 500);
        assert_eq!(
            p.iter()
                .map(|p| p.deployment.id.as_str())
                .collect::<Vec<_>>(),
            ["d1", "d0"]
        );
        assert!(skipped[0].contains("context window"), "{skipped:?}");
        let (p, _) = r.order(&group(Strategy::LowestCost, &[1.0, 1.0, 1.0]), &prices, 50);
        assert_eq!(
            p[0].deployment.id, "d2",
            "nano is cheapest when the prompt fits"
        );
        let g = group(Strategy::LowestLatency, &[1.0, 1.0]);
        let cfg = BreakerConfig::default();
        r.health("g", "d0").report(Ok(50.0), &cfg, now_ms());
        r.health("g", "d1").report(Ok(5.0), &cfg, now_ms());
        assert_eq!(r.order(&g, &prices, 1).0[0].deployment.id, "d1");
        let g = group(Strategy::LeastBusy, &[1.0, 1.0]);
        let _busy = r.health("g", "d1").start();
        assert_eq!(r.order(&g, &prices, 1).0[0].deployment.id, "d0");
    }

    #[test]
    fn breaker_opens_cools_down_and_closes_on_success() {
        let h = Health::default();
        let cfg = BreakerConfig {
            failures: 3,
            cooldown_ms: 1000,
            ..Default::default()
        };
        let t = 1_000_000;
        for i in 0..3 {
            assert!(!h.is_open(t + i));
            h.report(Err(ErrorClass::Upstream), &cfg, t + i);
        }
        assert!(h.is_open(t + 10) && !h.admit(t + 10));
        // Client mistakes are not the deployment's fault.
        let h2 = Health::default();
        for i in 0..10 {
            h2.report(Err(ErrorClass::BadRequest), &cfg, t + i);
        }
        assert!(!h2.is_open(t + 20));
        // After the cooldown one trial goes through, a second waits for its outcome.
        assert!(h.admit(t + 1500));
        assert!(!h.admit(t + 1500));
        h.report(Err(ErrorClass::Timeout), &cfg, t + 1600);
        assert!(h.is_open(t + 1700), "a failed trial re-opens");
        assert!(h.admit(t + 2700));
        h.report(Ok(10.0), &cfg, t + 2710);
        assert!(!h.is_open(t + 2720) && h.admit(t + 2720));
        // The failure-rate rule: 10 requests in a minute, half failed, never 3 in a row.
        let h3 = Health::default();
        for i in 0..11 {
            let outcome = if i % 2 == 0 {
                Err(ErrorClass::Upstream)
            } else {
                Ok(1.0)
            };
            h3.report(outcome, &cfg, t + i);
        }
        assert!(h3.is_open(t + 20));
    }
}
