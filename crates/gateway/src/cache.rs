//! The exact-match answer cache: the request's normalised hash (see
//! [`crate::LlmRequest::cache_key`]) → the answer, with a time to live and least-recently-used
//! eviction past `max_entries`. A streamed answer is kept as its chunks and replayed as a
//! stream; a whole answer is kept whole; either serves either kind of request.

use crate::usage::Usage;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct CachedAnswer {
    /// The whole response body, when the answer was not streamed.
    pub full: Option<Value>,
    /// The chunks, when it was.
    pub chunks: Option<Vec<Value>>,
    pub usage: Usage,
    /// What the original call cost (saved by each hit).
    pub cost_usd: f64,
    pub deployment: String,
    /// The upstream's model name.
    pub provider_model: String,
}

impl CachedAnswer {
    /// A whole (not streamed) answer with no usage, cost or origin — for code that only looks
    /// answers up (tests, benchmarks).
    pub fn whole(body: Value) -> CachedAnswer {
        CachedAnswer {
            full: Some(body),
            chunks: None,
            usage: Usage::default(),
            cost_usd: 0.0,
            deployment: String::new(),
            provider_model: String::new(),
        }
    }
}

struct Entry {
    answer: CachedAnswer,
    expires: Instant,
    tick: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Entry>,
    /// tick → key, oldest first.
    lru: BTreeMap<u64, String>,
    tick: u64,
}

pub struct ExactCache {
    inner: Mutex<Inner>,
}

impl Default for ExactCache {
    fn default() -> ExactCache {
        ExactCache::new()
    }
}

impl ExactCache {
    pub fn new() -> ExactCache {
        ExactCache {
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<CachedAnswer> {
        let mut g = self.lock();
        let inner = &mut *g;
        let now = Instant::now();
        let entry = inner.map.get_mut(key)?;
        if entry.expires <= now {
            let tick = entry.tick;
            inner.map.remove(key);
            inner.lru.remove(&tick);
            return None;
        }
        inner.tick += 1;
        inner.lru.remove(&entry.tick);
        entry.tick = inner.tick;
        inner.lru.insert(inner.tick, key.to_owned());
        Some(entry.answer.clone())
    }

    pub fn put(&self, key: String, answer: CachedAnswer, ttl: Duration, max_entries: usize) {
        if max_entries == 0 {
            return;
        }
        let mut g = self.lock();
        let inner = &mut *g;
        inner.tick += 1;
        let tick = inner.tick;
        if let Some(old) = inner.map.insert(
            key.clone(),
            Entry {
                answer,
                expires: Instant::now() + ttl,
                tick,
            },
        ) {
            inner.lru.remove(&old.tick);
        }
        inner.lru.insert(tick, key);
        while inner.map.len() > max_entries {
            let Some((_, oldest)) = inner.lru.pop_first() else {
                break;
            };
            inner.map.remove(&oldest);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
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

    #[test]
    fn evicts_least_recently_used_and_expires() {
        let c = ExactCache::new();
        let ttl = Duration::from_secs(60);
        c.put("a".into(), answer(1), ttl, 2);
        c.put("b".into(), answer(2), ttl, 2);
        assert!(c.get("a").is_some()); // a is now the most recent
        c.put("c".into(), answer(3), ttl, 2);
        assert!(c.get("b").is_none(), "b was least recently used");
        assert_eq!(c.get("a").unwrap().full.unwrap()["n"], 1);
        assert_eq!(c.len(), 2);
        c.put("d".into(), answer(4), Duration::ZERO, 2);
        assert!(c.get("d").is_none(), "expired at once");
    }
}
