//! Lock-free operational counters for served models: histograms with fixed buckets (request
//! latency, batch size) and per-series request/error counts, rendered as Prometheus text by the
//! server.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A histogram with fixed upper bounds (Prometheus `le`), safe to observe from any thread.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum of observations × `scale` (integers keep the sum lock-free).
    sum: AtomicU64,
    scale: f64,
}

/// Request latency buckets, in seconds.
pub const LATENCY_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Batch size buckets, in rows.
pub const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

impl Histogram {
    pub fn new(bounds: &'static [f64], scale: f64) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            scale,
        }
    }

    pub fn observe(&self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum
            .fetch_add((v * self.scale).round() as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub fn sum(&self) -> f64 {
        self.sum.load(Ordering::Relaxed) as f64 / self.scale
    }

    /// Appends `name_bucket{labels,le=..}`, `name_sum` and `name_count` lines.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or("+Inf".to_owned(), |b| format!("{b}"));
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum());
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// Escapes a Prometheus label value.
pub fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Counters of one (model, version, variant) series.
#[derive(Debug)]
pub struct Series {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub rows: AtomicU64,
    pub latency: Histogram,
}

/// The key of a request series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub model: String,
    pub version: String,
    pub variant: String,
}

/// Request counts, errors and latency per model, version and variant. Lookups of an existing
/// series take a read lock and allocate nothing.
#[derive(Debug, Default, Clone)]
pub struct RequestMetrics {
    series: Arc<std::sync::RwLock<SeriesMap>>,
}

/// Series by a hash of their key (collisions share a bucket).
type SeriesMap = HashMap<u64, Vec<(SeriesKey, Arc<Series>)>>;

fn key_hash(model: &str, version: &str, variant: &str) -> u64 {
    // FNV-1a over the three parts with separators.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [model, version, variant] {
        for b in part.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl RequestMetrics {
    pub fn series(&self, model: &str, version: &str, variant: &str) -> Arc<Series> {
        let h = key_hash(model, version, variant);
        let matches =
            |k: &SeriesKey| k.model == model && k.version == version && k.variant == variant;
        {
            let map = self.series.read().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = map.get(&h).and_then(|v| v.iter().find(|(k, _)| matches(k))) {
                return s.1.clone();
            }
        }
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        let bucket = map.entry(h).or_default();
        if let Some((_, s)) = bucket.iter().find(|(k, _)| matches(k)) {
            return s.clone();
        }
        let s = Arc::new(Series {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            latency: Histogram::new(LATENCY_BOUNDS, 1e9),
        });
        bucket.push((
            SeriesKey {
                model: model.to_owned(),
                version: version.to_owned(),
                variant: variant.to_owned(),
            },
            s.clone(),
        ));
        s
    }

    /// Records one answered (or failed) request.
    pub fn observe(
        &self,
        model: &str,
        version: &str,
        variant: &str,
        rows: usize,
        latency: Duration,
        ok: bool,
    ) {
        let s = self.series(model, version, variant);
        s.requests.fetch_add(1, Ordering::Relaxed);
        if ok {
            s.rows.fetch_add(rows as u64, Ordering::Relaxed);
        } else {
            s.errors.fetch_add(1, Ordering::Relaxed);
        }
        s.latency.observe(latency.as_secs_f64());
    }

    /// Every series, sorted by key.
    pub fn snapshot(&self) -> Vec<(SeriesKey, Arc<Series>)> {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.values().flatten().cloned().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(BATCH_BOUNDS, 1.0);
        for v in [1.0, 3.0, 3.0, 600.0] {
            h.observe(v);
        }
        let mut s = String::new();
        h.render(&mut s, "b", "model=\"m\"");
        assert!(s.contains("b_bucket{model=\"m\",le=\"1\"} 1\n"), "{s}");
        assert!(s.contains("b_bucket{model=\"m\",le=\"4\"} 3\n"), "{s}");
        assert!(s.contains("b_bucket{model=\"m\",le=\"512\"} 3\n"), "{s}");
        assert!(s.contains("b_bucket{model=\"m\",le=\"+Inf\"} 4\n"), "{s}");
        assert!(s.contains("b_sum{model=\"m\"} 607\n"), "{s}");
        assert!(s.contains("b_count{model=\"m\"} 4\n"), "{s}");
        assert_eq!(label_value("a\"b\\c"), "a\\\"b\\\\c");
    }
}
