//! The semantic cache: a request whose last user message *means* the same as an earlier one gets
//! the earlier answer. The message is embedded (MiniLM, in-process) and looked up among earlier
//! ones in an HNSW graph; a neighbour at cosine similarity ≥ the threshold is a hit.
//!
//! Only like is compared with like: every entry lives in a *scope* — the tenant, the model group,
//! the endpoint, every earlier message of the conversation (system prompt and previous turns,
//! verbatim) and every parameter — so an answer is never replayed into a different conversation,
//! to another tenant, or for other sampling settings. Entries expire after a TTL; past
//! `max_entries` the least recently used go first; a scope's graph is rebuilt when dead entries
//! outnumber live ones.

use crate::cache::CachedAnswer;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use vector::{Hnsw, HnswParams, Metric};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SemanticConfig {
    pub enabled: bool,
    /// Cosine similarity at or above which a cached answer is served (see `capstan bench
    /// semantic-cache` for precision and recall at each threshold).
    pub threshold: f32,
    pub ttl_s: u64,
    pub max_entries: usize,
}

impl Default for SemanticConfig {
    fn default() -> SemanticConfig {
        SemanticConfig {
            enabled: false,
            threshold: 0.95,
            ttl_s: 3600,
            max_entries: 100_000,
        }
    }
}

/// Turns a prompt into a unit vector (the server's in-process MiniLM).
#[async_trait::async_trait]
pub trait PromptEmbedder: Send + Sync {
    async fn embed(&self, text: &str) -> Result<Vec<f32>, String>;
}

struct Slot {
    answer: CachedAnswer,
    expires: Instant,
    tick: u64,
}

struct Scope {
    index: Hnsw,
    /// By graph node; `None` once evicted.
    slots: Vec<Option<Slot>>,
    live: usize,
}

#[derive(Default)]
struct Inner {
    scopes: HashMap<String, Scope>,
    /// tick → (scope, node), oldest first.
    lru: BTreeMap<u64, (String, u32)>,
    tick: u64,
    live: usize,
}

#[derive(Default)]
pub struct SemanticCache {
    inner: Mutex<Inner>,
}

const EF: usize = 64;

fn params() -> HnswParams {
    HnswParams {
        m: 16,
        ef_construction: 100,
        seed: 7,
    }
}

impl SemanticCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The closest live entry of `scope` at similarity ≥ `threshold`, and its similarity.
    pub fn lookup(&self, scope: &str, v: &[f32], threshold: f32) -> Option<(CachedAnswer, f32)> {
        let mut g = self.lock();
        let inner = &mut *g;
        let s = inner.scopes.get_mut(scope)?;
        if s.index.dim() != v.len() {
            return None;
        }
        let now = Instant::now();
        let slots = &s.slots;
        let alive = |i: u32| slots[i as usize].as_ref().is_some_and(|x| x.expires > now);
        let (dist, node) = *s.index.search(v, 1, EF, Some(&alive)).first()?;
        let similarity = Metric::Cosine.score(dist);
        if similarity < threshold {
            return None;
        }
        inner.tick += 1;
        let tick = inner.tick;
        let slot = s.slots[node as usize].as_mut()?;
        inner.lru.remove(&slot.tick);
        slot.tick = tick;
        inner.lru.insert(tick, (scope.to_owned(), node));
        Some((slot.answer.clone(), similarity))
    }

    /// Stores an answer under a prompt's vector (unit length, as MiniLM gives).
    pub fn insert(
        &self,
        scope: String,
        v: Vec<f32>,
        answer: CachedAnswer,
        ttl: Duration,
        max_entries: usize,
    ) {
        if max_entries == 0 || v.is_empty() {
            return;
        }
        let mut g = self.lock();
        let inner = &mut *g;
        inner.tick += 1;
        let tick = inner.tick;
        let s = inner.scopes.entry(scope.clone()).or_insert_with(|| Scope {
            index: Hnsw::new(v.len(), Metric::Cosine, params()),
            slots: Vec::new(),
            live: 0,
        });
        if s.index.dim() != v.len() {
            return;
        }
        let node = s.index.insert(&v);
        if s.slots.len() <= node as usize {
            s.slots.resize_with(node as usize + 1, || None);
        }
        s.slots[node as usize] = Some(Slot {
            answer,
            expires: Instant::now() + ttl,
            tick,
        });
        s.live += 1;
        inner.live += 1;
        inner.lru.insert(tick, (scope, node));
        while inner.live > max_entries {
            let Some((_, (scope, node))) = inner.lru.pop_first() else {
                break;
            };
            Self::evict(inner, &scope, node);
        }
    }

    fn evict(inner: &mut Inner, scope: &str, node: u32) {
        let Some(s) = inner.scopes.get_mut(scope) else {
            return;
        };
        if s.slots
            .get_mut(node as usize)
            .and_then(Option::take)
            .is_some()
        {
            s.live -= 1;
            inner.live -= 1;
        }
        if s.live == 0 {
            inner.scopes.remove(scope);
        } else if s.slots.len() > 2 * s.live + 64 {
            // Rebuild the graph from the live entries (ticks keep their LRU places).
            let mut index = Hnsw::new(s.index.dim(), Metric::Cosine, params());
            let mut slots = Vec::with_capacity(s.live);
            for (old, slot) in s.slots.iter_mut().enumerate() {
                if let Some(slot) = slot.take() {
                    let new = index.insert(s.index.vector(old as u32));
                    inner.lru.insert(slot.tick, (scope.to_owned(), new));
                    if slots.len() <= new as usize {
                        slots.resize_with(new as usize + 1, || None);
                    }
                    slots[new as usize] = Some(slot);
                }
            }
            s.index = index;
            s.slots = slots;
        }
    }

    /// Live entries in all scopes.
    pub fn len(&self) -> usize {
        self.lock().live
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(n: u64) -> CachedAnswer {
        CachedAnswer::whole(serde_json::json!({"n": n}))
    }

    fn unit(seed: u64) -> Vec<f32> {
        let mut r = base::rng::Rng::new(seed);
        let mut v: Vec<f32> = (0..32).map(|_| r.next_f64() as f32 - 0.5).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }

    #[test]
    fn hits_near_neighbours_in_the_same_scope_only() {
        let c = SemanticCache::default();
        let ttl = Duration::from_secs(60);
        for i in 0..200 {
            c.insert("s".into(), unit(i), answer(i), ttl, 1000);
        }
        let (a, sim) = c.lookup("s", &unit(17), 0.99).expect("hit");
        assert_eq!(a.full.unwrap()["n"], 17);
        assert!(sim > 0.999);
        // A slightly moved vector still hits; an unrelated one does not; another scope never.
        let mut near = unit(42);
        near[0] += 0.05;
        let n = near.iter().map(|x| x * x).sum::<f32>().sqrt();
        near.iter_mut().for_each(|x| *x /= n);
        assert_eq!(c.lookup("s", &near, 0.95).unwrap().0.full.unwrap()["n"], 42);
        assert!(c.lookup("s", &unit(10_000), 0.95).is_none());
        assert!(c.lookup("other", &unit(17), 0.5).is_none());
    }

    #[test]
    fn evicts_least_recently_used_expires_and_compacts() {
        let c = SemanticCache::default();
        let ttl = Duration::from_secs(60);
        for i in 0..100 {
            c.insert("s".into(), unit(i), answer(i), ttl, 50);
        }
        assert_eq!(c.len(), 50);
        assert!(c.lookup("s", &unit(10), 0.99).is_none(), "evicted");
        assert!(c.lookup("s", &unit(60), 0.99).is_some());
        // Touching 60 keeps it through the next wave; the graph was rebuilt on the way.
        for i in 100..149 {
            c.insert("s".into(), unit(i), answer(i), ttl, 50);
        }
        assert!(c.lookup("s", &unit(60), 0.99).is_some());
        assert!(c.lookup("s", &unit(61), 0.99).is_none());
        assert!(c.lock().scopes["s"].slots.len() < 200);
        c.insert("t".into(), unit(1), answer(1), Duration::ZERO, 50);
        assert!(c.lookup("t", &unit(1), 0.5).is_none(), "expired");
    }
}
