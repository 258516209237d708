//! Budgets and rate limits, enforced so concurrent requests cannot overspend: before a call the
//! gateway *reserves* its worst-case cost (the prompt's upper bound at the input price plus
//! `max_tokens` at the dearest output price, over every deployment the request may reach) in a
//! [`Ledger`], which grants it only if spent + reserved + this ≤ limit, atomically; after the
//! call it *settles* — the reservation is released and the actual cost added. (Checking, then
//! adding after the call, lets N concurrent requests all pass the check and overspend N-fold.)
//!
//! A budget covers one scope — an API key, a user, a team, a tag or everything — per day, per
//! month or in total, and when exhausted either refuses (429 naming it) or downgrades the request
//! to a cheaper model group. Rate limits (requests and tokens per minute) are ledgers too.
//! Ledgers: in memory, the metadata database, or Redis shared by several gateway replicas.

use crate::gateway::Caller;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Key,
    User,
    Team,
    Tag,
    Global,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Daily,
    Monthly,
    Total,
}

fn every() -> String {
    "*".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    pub name: String,
    pub scope: Scope,
    /// Which key/user/team/tag; `*` gives each its own budget of this size.
    #[serde(default = "every", rename = "match")]
    pub matches: String,
    pub window: Window,
    pub limit_usd: f64,
    /// When exhausted, send the request to this (cheaper) group instead of refusing it.
    #[serde(default)]
    pub downgrade_to: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub name: String,
    pub scope: Scope,
    #[serde(default = "every", rename = "match")]
    pub matches: String,
    /// Requests per minute.
    #[serde(default)]
    pub rpm: Option<u64>,
    /// Tokens (prompt + completion) per minute.
    #[serde(default)]
    pub tpm: Option<u64>,
}

/// The values of `scope` the caller has (a caller may carry several tags).
fn subjects(scope: Scope, caller: &Caller) -> Vec<String> {
    match scope {
        Scope::Key => vec![caller.key.clone()],
        Scope::User => caller.user.iter().cloned().collect(),
        Scope::Team => caller.team.iter().cloned().collect(),
        Scope::Tag => caller.tags.clone(),
        Scope::Global => vec!["*".into()],
    }
}

fn applies(matches: &str, scope: Scope, caller: &Caller) -> Vec<String> {
    subjects(scope, caller)
        .into_iter()
        .filter(|s| scope == Scope::Global || matches == "*" || matches == s)
        .collect()
}

/// (ledger key, limit, expiry in ms) of every budget that covers this caller now.
pub fn budget_keys(
    budgets: &[BudgetConfig],
    caller: &Caller,
    now_ms: i64,
) -> Vec<(usize, String, i64)> {
    let day = now_ms.div_euclid(86_400_000);
    let (y, m, d) = base::civil(day);
    let mut out = Vec::new();
    for (i, b) in budgets.iter().enumerate() {
        let (window, expires) = match b.window {
            Window::Daily => (format!("d{y:04}{m:02}{d:02}"), (day + 2) * 86_400_000),
            Window::Monthly => (format!("m{y:04}{m:02}"), (day + 33) * 86_400_000),
            Window::Total => ("all".to_string(), i64::MAX),
        };
        for s in applies(&b.matches, b.scope, caller) {
            out.push((i, format!("budget:{}:{s}:{window}", b.name), expires));
        }
    }
    out
}

/// (ledger key, limit, is tokens, expiry) of every rate limit that covers this caller now.
pub fn rate_keys(
    limits: &[RateLimitConfig],
    caller: &Caller,
    now_ms: i64,
) -> Vec<(usize, String, u64, bool, i64)> {
    let minute = now_ms.div_euclid(60_000);
    let expires = (minute + 2) * 60_000;
    let mut out = Vec::new();
    for (i, l) in limits.iter().enumerate() {
        for s in applies(&l.matches, l.scope, caller) {
            if let Some(rpm) = l.rpm {
                out.push((
                    i,
                    format!("rate:{}:{s}:req:{minute}", l.name),
                    rpm,
                    false,
                    expires,
                ));
            }
            if let Some(tpm) = l.tpm {
                out.push((
                    i,
                    format!("rate:{}:{s}:tok:{minute}", l.name),
                    tpm,
                    true,
                    expires,
                ));
            }
        }
    }
    out
}

/// Atomic reserve-and-settle counters.
#[async_trait::async_trait]
pub trait Ledger: Send + Sync {
    /// Adds `amount` to `key`'s reservation if spent + reserved + amount ≤ `limit`; false if not.
    /// `expires_ms`: when the key may be forgotten (after its window).
    async fn reserve(
        &self,
        key: &str,
        amount: f64,
        limit: f64,
        expires_ms: i64,
    ) -> Result<bool, String>;
    /// Releases `reserved` and adds `actual` to what was spent.
    async fn settle(&self, key: &str, reserved: f64, actual: f64) -> Result<(), String>;
    /// (spent, reserved).
    async fn get(&self, key: &str) -> Result<(f64, f64), String>;
}

/// Tolerance for floating-point sums of dollars.
pub const EPSILON: f64 = 1e-9;

#[derive(Default)]
pub struct MemoryLedger {
    map: Mutex<HashMap<String, (f64, f64)>>,
}

#[async_trait::async_trait]
impl Ledger for MemoryLedger {
    async fn reserve(
        &self,
        key: &str,
        amount: f64,
        limit: f64,
        _expires_ms: i64,
    ) -> Result<bool, String> {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(key.to_owned()).or_default();
        if e.0 + e.1 + amount > limit + EPSILON {
            return Ok(false);
        }
        e.1 += amount;
        Ok(true)
    }

    async fn settle(&self, key: &str, reserved: f64, actual: f64) -> Result<(), String> {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(key.to_owned()).or_default();
        e.1 = (e.1 - reserved).max(0.0);
        e.0 += actual;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<(f64, f64), String> {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        Ok(m.get(key).copied().unwrap_or_default())
    }
}

/// What one request holds in ledgers, to settle when it ends.
#[derive(Debug, Default, Clone)]
pub struct Holds {
    /// (key, amount reserved) in dollars.
    pub dollars: Vec<(String, f64)>,
    /// (key, tokens reserved).
    pub tokens: Vec<(String, f64)>,
}

/// Runs the conformance checks every ledger must pass: reservations never exceed the limit under
/// concurrency, settling moves reserved to spent, windows are separate keys.
pub async fn conformance(ledger: std::sync::Arc<dyn Ledger>, prefix: &str) {
    let key = format!("{prefix}:conc");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (l, k) = (ledger.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            l.reserve(&k, 0.01, 0.2, i64::MAX).await
        }));
    }
    let mut granted = 0;
    for t in tasks {
        if matches!(t.await, Ok(Ok(true))) {
            granted += 1;
        }
    }
    assert_eq!(
        granted, 20,
        "exactly limit / amount reservations are granted"
    );
    let (spent, reserved) = ledger.get(&key).await.unwrap_or_default();
    assert!(
        (reserved - 0.2).abs() < 1e-9 && spent == 0.0,
        "{spent} {reserved}"
    );
    ledger.settle(&key, 0.01, 0.004).await.unwrap_or_default();
    let (spent, reserved) = ledger.get(&key).await.unwrap_or_default();
    assert!(
        (spent - 0.004).abs() < 1e-9 && (reserved - 0.19).abs() < 1e-9,
        "{spent} {reserved}"
    );
    // The settled difference is free again: 0.006 fits, 0.007 does not.
    assert_eq!(ledger.reserve(&key, 0.006, 0.2, i64::MAX).await, Ok(true));
    assert_eq!(ledger.reserve(&key, 0.001, 0.2, i64::MAX).await, Ok(false));
    assert_eq!(ledger.get(&format!("{prefix}:other")).await, Ok((0.0, 0.0)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller {
            key: "k1".into(),
            user: Some("alice".into()),
            team: Some("research".into()),
            tags: vec!["a".into(), "b".into()],
            tier: None,
            prompt: None,
            trace: None,
        }
    }

    #[tokio::test]
    async fn memory_ledger_passes_the_conformance_suite() {
        conformance(std::sync::Arc::new(MemoryLedger::default()), "t").await;
    }

    #[test]
    fn budgets_pick_their_subjects_and_windows() {
        let b = |scope, matches: &str, window| BudgetConfig {
            name: "b".into(),
            scope,
            matches: matches.into(),
            window,
            limit_usd: 1.0,
            downgrade_to: None,
        };
        // 2026-11-27T12:00:00Z
        let now = 1_795_780_800_000;
        let keys = budget_keys(
            &[
                b(Scope::Team, "research", Window::Daily),
                b(Scope::User, "bob", Window::Daily),
                b(Scope::Tag, "*", Window::Monthly),
                b(Scope::Global, "*", Window::Total),
            ],
            &caller(),
            now,
        );
        let names: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
        assert_eq!(
            names,
            [
                "budget:b:research:d20261127",
                "budget:b:a:m202611",
                "budget:b:b:m202611",
                "budget:b:*:all"
            ]
        );
        let limits = [RateLimitConfig {
            name: "r".into(),
            scope: Scope::Key,
            matches: "*".into(),
            rpm: Some(10),
            tpm: Some(1000),
        }];
        let r = rate_keys(&limits, &caller(), now);
        assert_eq!(r.len(), 2);
        assert!(r[0].1.starts_with("rate:r:k1:req:") && !r[0].3 && r[1].3);
    }
}
