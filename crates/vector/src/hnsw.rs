//! A hierarchical navigable small-world graph (Malkov & Yashunin), laid out for the cache: all
//! vectors in one `Vec<f32>`, level-0 links in one flat `Vec<u32>` (a count, then `2·M` slots per
//! node), the sparse upper levels per node. Neighbours are chosen with the paper's heuristic, as
//! hnswlib does. Nodes are never removed: the owner marks deleted or replaced nodes as not
//! allowed, and a search walks through them without returning them.
//!
//! A search may carry a predicate over node numbers (payload filter, tombstones). It is applied
//! inside the level-0 beam search: every node is still a stepping stone, only allowed nodes
//! enter the result set, and the beam does not stop until it holds `ef` allowed nodes or runs
//! out of candidates — so a filter costs extra hops, not recall.

use crate::quant::{QueryCodes, Scalar};
use crate::{Error, Metric, Result};
use serde::{Deserialize, Serialize};
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::io::{Read, Write};
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    /// Links per node on the upper levels; level 0 keeps twice as many.
    pub m: usize,
    pub ef_construction: usize,
    /// Seed of the level generator: the same inserts in the same order build the same graph.
    #[serde(default)]
    pub seed: u64,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            seed: 100,
        }
    }
}

impl HnswParams {
    pub fn validate(&self) -> Result<()> {
        if !(2..=128).contains(&self.m) {
            return Err(Error::BadRequest(format!(
                "hnsw m must be between 2 and 128, not {}",
                self.m
            )));
        }
        if !(1..=4096).contains(&self.ef_construction) {
            return Err(Error::BadRequest(format!(
                "hnsw ef_construct must be between 1 and 4096, not {}",
                self.ef_construction
            )));
        }
        Ok(())
    }
}

/// A distance with a total order (NaN never occurs for finite inputs; `total_cmp` keeps the
/// heap sound if it did).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Dist(f32);
impl Eq for Dist {}
impl PartialOrd for Dist {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Dist {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Visited marks by generation, so clearing is O(1) between searches.
struct Visited {
    marks: Vec<u16>,
    generation: u16,
    /// The beam's heaps, kept between searches so a search allocates nothing.
    candidates: BinaryHeap<Reverse<(Dist, u32)>>,
    results: BinaryHeap<(Dist, u32)>,
}

impl Visited {
    fn reset(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.fill(0);
            self.generation = 1;
        }
    }
    /// Marks `i`; true when it was not marked yet.
    #[inline]
    fn insert(&mut self, i: u32) -> bool {
        let slot = &mut self.marks[i as usize];
        if *slot == self.generation {
            false
        } else {
            *slot = self.generation;
            true
        }
    }
}

pub struct Hnsw {
    dim: usize,
    metric: Metric,
    params: HnswParams,
    vectors: Vec<f32>,
    levels: Vec<u8>,
    links0: Vec<u32>,
    upper: Vec<Vec<u32>>,
    entry: Option<u32>,
    max_level: usize,
    rng: u64,
    quant: Option<Scalar>,
    visited: Mutex<Vec<Visited>>,
}

/// A prepared query: the vector, and its codes when the index is quantized.
struct Query<'a> {
    v: &'a [f32],
    codes: Option<QueryCodes>,
}

pub type Allow<'a> = Option<&'a dyn Fn(u32) -> bool>;

impl Hnsw {
    pub fn new(dim: usize, metric: Metric, params: HnswParams) -> Hnsw {
        Hnsw {
            dim,
            metric,
            params,
            vectors: Vec::new(),
            levels: Vec::new(),
            links0: Vec::new(),
            upper: Vec::new(),
            entry: None,
            max_level: 0,
            rng: params.seed ^ 0x9E37_79B9_7F4A_7C15,
            quant: None,
            visited: Mutex::new(Vec::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    pub fn params(&self) -> HnswParams {
        self.params
    }

    pub fn vector(&self, i: u32) -> &[f32] {
        let i = i as usize;
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }

    pub fn is_quantized(&self) -> bool {
        self.quant.is_some()
    }

    /// Learns an int8 range from the vectors so far and encodes them all; later inserts are
    /// encoded as they come.
    pub fn quantize(&mut self) {
        let sample_every = (self.len() / 20_000).max(1);
        let mut q = Scalar::train(
            self.dim,
            (0..self.len() as u32)
                .step_by(sample_every)
                .map(|i| self.vector(i)),
        );
        for i in 0..self.len() as u32 {
            q.push(self.vector(i));
        }
        self.quant = Some(q);
    }

    fn m0(&self) -> usize {
        self.params.m * 2
    }

    fn next_level(&mut self) -> usize {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let u = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64; // (0, 1]
        let mult = 1.0 / (self.params.m as f64).ln();
        ((-u.ln() * mult) as usize).min(24)
    }

    #[inline]
    fn links(&self, i: u32, level: usize) -> &[u32] {
        if level == 0 {
            let stride = self.m0() + 1;
            let base = i as usize * stride;
            let n = self.links0[base] as usize;
            &self.links0[base + 1..base + 1 + n]
        } else {
            let stride = self.params.m + 1;
            let block = &self.upper[i as usize];
            let base = (level - 1) * stride;
            let n = block[base] as usize;
            &block[base + 1..base + 1 + n]
        }
    }

    /// Appends one link to a list known to have room.
    fn push_link(&mut self, i: u32, level: usize, to: u32) {
        let (slots, base) = if level == 0 {
            let stride = self.m0() + 1;
            (&mut self.links0, i as usize * stride)
        } else {
            let stride = self.params.m + 1;
            (&mut self.upper[i as usize], (level - 1) * stride)
        };
        let n = slots[base] as usize;
        slots[base + 1 + n] = to;
        slots[base] = n as u32 + 1;
    }

    fn set_links(&mut self, i: u32, level: usize, links: &[u32]) {
        let (slots, base) = if level == 0 {
            let stride = self.m0() + 1;
            (&mut self.links0, i as usize * stride)
        } else {
            let stride = self.params.m + 1;
            (&mut self.upper[i as usize], (level - 1) * stride)
        };
        slots[base] = links.len() as u32;
        slots[base + 1..base + 1 + links.len()].copy_from_slice(links);
    }

    #[inline]
    fn dist_to(&self, q: &Query, i: u32) -> f32 {
        match (&q.codes, &self.quant) {
            (Some(codes), Some(quant)) => quant.distance(self.metric, codes, i as usize),
            _ => self.metric.distance(q.v, self.vector(i)),
        }
    }

    /// Asks the CPU to start loading node `i`'s vector (or codes) while the current one is
    /// scored: a graph walk is a chain of cache misses otherwise.
    #[inline(always)]
    fn prefetch(&self, i: u32, q: &Query) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let ptr = match (&q.codes, &self.quant) {
                (Some(_), Some(quant)) => quant.codes_ptr(i as usize) as *const i8,
                _ => self.vectors[i as usize * self.dim..].as_ptr() as *const i8,
            };
            // SAFETY: SSE is part of the x86_64 baseline, and a prefetch is only a hint: it
            // never faults and never reads into the program, whatever the address.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(ptr);
                _mm_prefetch::<_MM_HINT_T0>(ptr.wrapping_add(64));
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (i, q);
    }

    /// Starts loading node `i`'s level-0 link list.
    #[inline(always)]
    fn prefetch_links(&self, i: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let ptr = self.links0[i as usize * (self.m0() + 1)..].as_ptr() as *const i8;
            // SAFETY: SSE is part of the x86_64 baseline; a prefetch never faults.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(ptr);
                _mm_prefetch::<_MM_HINT_T0>(ptr.wrapping_add(64));
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
    }

    fn take_visited(&self) -> Visited {
        let mut v = self
            .visited
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or(Visited {
                marks: Vec::new(),
                generation: 0,
                candidates: BinaryHeap::new(),
                results: BinaryHeap::new(),
            });
        v.reset(self.len());
        v
    }

    fn give_visited(&self, v: Visited) {
        self.visited
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(v);
    }

    /// Greedy walk on one upper level: the closest node reachable from `start`.
    fn greedy(&self, q: &Query, mut best: (f32, u32), level: usize) -> (f32, u32) {
        loop {
            let mut changed = false;
            for &nb in self.links(best.1, level) {
                let d = self.dist_to(q, nb);
                if d < best.0 {
                    best = (d, nb);
                    changed = true;
                }
            }
            if !changed {
                return best;
            }
        }
    }

    /// The beam search of one level: up to `ef` allowed nodes, closest first.
    fn search_level(
        &self,
        q: &Query,
        start: (f32, u32),
        ef: usize,
        level: usize,
        allow: Allow,
        visited: &mut Visited,
    ) -> Vec<(f32, u32)> {
        let mut candidates = std::mem::take(&mut visited.candidates);
        let mut results = std::mem::take(&mut visited.results);
        candidates.clear();
        results.clear();
        visited.insert(start.1);
        candidates.push(Reverse((Dist(start.0), start.1)));
        if allow.is_none_or(|f| f(start.1)) {
            results.push((Dist(start.0), start.1));
        }
        let mut bound = if results.len() >= ef {
            start.0
        } else {
            f32::INFINITY
        };
        while let Some(Reverse((Dist(d), c))) = candidates.pop() {
            if d > bound {
                break;
            }
            let links = self.links(c, level);
            // The next candidate's link list, and this one's first neighbour, start loading now.
            if level == 0
                && let Some(Reverse((_, next))) = candidates.peek()
            {
                self.prefetch_links(*next);
            }
            if let Some(&first) = links.first() {
                self.prefetch(first, q);
            }
            for (at, &nb) in links.iter().enumerate() {
                if let Some(&next) = links.get(at + 1) {
                    self.prefetch(next, q);
                }
                if !visited.insert(nb) {
                    continue;
                }
                let dn = self.dist_to(q, nb);
                if results.len() < ef || dn < bound {
                    candidates.push(Reverse((Dist(dn), nb)));
                    if allow.is_none_or(|f| f(nb)) {
                        results.push((Dist(dn), nb));
                        if results.len() > ef {
                            results.pop();
                        }
                        if results.len() >= ef {
                            bound = results.peek().map_or(f32::INFINITY, |r| r.0.0);
                        }
                    }
                }
            }
        }
        let mut out: Vec<(f32, u32)> = results.drain().map(|(d, i)| (d.0, i)).collect();
        out.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        visited.candidates = candidates;
        visited.results = results;
        out
    }

    /// The paper's neighbour heuristic: keep a candidate only if it is closer to the new node
    /// than to every neighbour kept so far (spreads links across directions).
    fn select(&self, candidates: &[(f32, u32)], m: usize) -> Vec<u32> {
        if candidates.len() <= m {
            return candidates.iter().map(|c| c.1).collect();
        }
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        for &(d, c) in candidates {
            if kept.len() >= m {
                break;
            }
            let cv = self.vector(c);
            if kept
                .iter()
                .all(|&r| self.metric.distance(cv, self.vector(r)) >= d)
            {
                kept.push(c);
            }
        }
        kept
    }

    /// Inserts a prepared vector (see [`Metric::prepare`]); returns its node number.
    pub fn insert(&mut self, v: &[f32]) -> u32 {
        assert_eq!(v.len(), self.dim, "vector dimension checked by the caller");
        let id = self.len() as u32;
        let level = self.next_level();
        self.vectors.extend_from_slice(v);
        self.levels.push(level as u8);
        self.links0.resize(self.links0.len() + self.m0() + 1, 0);
        self.upper.push(vec![0; level * (self.params.m + 1)]);
        if let Some(q) = &mut self.quant {
            q.push(v);
        }
        let Some(entry) = self.entry else {
            self.entry = Some(id);
            self.max_level = level;
            return id;
        };
        // Construction walks the exact vectors: a better graph than the codes would give.
        let q = Query { v, codes: None };
        let mut best = (self.dist_to(&q, entry), entry);
        for l in (level + 1..=self.max_level).rev() {
            best = self.greedy(&q, best, l);
        }
        let mut visited = self.take_visited();
        for l in (0..=level.min(self.max_level)).rev() {
            visited.reset(self.len());
            let found =
                self.search_level(&q, best, self.params.ef_construction, l, None, &mut visited);
            let neighbours = self.select(&found, self.params.m);
            self.set_links(id, l, &neighbours);
            let cap = if l == 0 { self.m0() } else { self.params.m };
            for &nb in &neighbours {
                let current = self.links(nb, l);
                if current.len() < cap {
                    self.push_link(nb, l, id);
                } else {
                    let nv = self.vector(nb);
                    let mut cands: Vec<(f32, u32)> = current
                        .iter()
                        .map(|&x| (self.metric.distance(nv, self.vector(x)), x))
                        .collect();
                    cands.push((self.metric.distance(nv, v), id));
                    cands.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
                    let pruned = self.select(&cands, cap);
                    self.set_links(nb, l, &pruned);
                }
            }
            if let Some(&closest) = found.first() {
                best = closest;
            }
        }
        self.give_visited(visited);
        if level > self.max_level {
            self.max_level = level;
            self.entry = Some(id);
        }
        id
    }

    /// The `k` allowed nodes closest to a prepared query, closest first, as (index distance,
    /// node). With quantization the graph is walked on codes and the `max(ef, k)` candidates are
    /// rescored with the original vectors.
    pub fn search(&self, query: &[f32], k: usize, ef: usize, allow: Allow) -> Vec<(f32, u32)> {
        let Some(entry) = self.entry else {
            return Vec::new();
        };
        let q = Query {
            v: query,
            codes: self.quant.as_ref().map(|s| s.query(query)),
        };
        let mut best = (self.dist_to(&q, entry), entry);
        for l in (1..=self.max_level).rev() {
            best = self.greedy(&q, best, l);
        }
        let mut visited = self.take_visited();
        let mut found = self.search_level(&q, best, ef.max(k), 0, allow, &mut visited);
        self.give_visited(visited);
        if q.codes.is_some() {
            for f in &mut found {
                f.0 = self.metric.distance(query, self.vector(f.1));
            }
            found.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        }
        found.truncate(k);
        found
    }

    /// Exact search: every allowed node, scored with the original vectors.
    pub fn exact(&self, query: &[f32], k: usize, allow: Allow) -> Vec<(f32, u32)> {
        let mut heap: BinaryHeap<(Dist, u32)> = BinaryHeap::with_capacity(k + 1);
        for i in 0..self.len() as u32 {
            if !allow.is_none_or(|f| f(i)) {
                continue;
            }
            let d = self.metric.distance(query, self.vector(i));
            if heap.len() < k {
                heap.push((Dist(d), i));
            } else if heap.peek().is_some_and(|top| d < top.0.0) {
                heap.pop();
                heap.push((Dist(d), i));
            }
        }
        let mut out: Vec<(f32, u32)> = heap.into_iter().map(|(d, i)| (d.0, i)).collect();
        out.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        out
    }

    /// Writes the whole index (vectors and graph) so loading needs no rebuild.
    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let header = serde_json::json!({
            "dim": self.dim, "metric": self.metric, "params": self.params,
            "n": self.len(), "entry": self.entry, "max_level": self.max_level, "rng": self.rng,
            "quant": self.quant.as_ref().map(|q| q.range()),
        })
        .to_string();
        write_u64(w, header.len() as u64)?;
        w.write_all(header.as_bytes())?;
        w.write_all(&self.levels)?;
        write_u32s(w, &self.links0)?;
        for block in &self.upper {
            write_u32s(w, block)?;
        }
        for x in &self.vectors {
            w.write_all(&x.to_le_bytes())?;
        }
        Ok(())
    }

    pub fn read_from(r: &mut impl Read) -> std::io::Result<Hnsw> {
        let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_owned());
        let len = read_u64(r)? as usize;
        if len > 1 << 20 {
            return Err(bad("index header too long"));
        }
        let mut header = vec![0u8; len];
        r.read_exact(&mut header)?;
        #[derive(Deserialize)]
        struct Header {
            dim: usize,
            metric: Metric,
            params: HnswParams,
            n: usize,
            entry: Option<u32>,
            max_level: usize,
            rng: u64,
            quant: Option<(f32, f32)>,
        }
        let h: Header = serde_json::from_slice(&header).map_err(|_| bad("index header"))?;
        let mut index = Hnsw::new(h.dim, h.metric, h.params);
        index.levels = vec![0u8; h.n];
        r.read_exact(&mut index.levels)?;
        index.links0 = read_u32s(r, h.n * (index.m0() + 1))?;
        index.upper = Vec::with_capacity(h.n);
        for &level in &index.levels {
            index
                .upper
                .push(read_u32s(r, level as usize * (h.params.m + 1))?);
        }
        let mut bytes = vec![0u8; h.n * h.dim * 4];
        r.read_exact(&mut bytes)?;
        index.vectors = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        index.entry = h.entry;
        index.max_level = h.max_level;
        index.rng = h.rng;
        if let Some((offset, scale)) = h.quant {
            let mut q = Scalar::with_range(h.dim, offset, scale);
            for i in 0..h.n as u32 {
                q.push(index.vector(i));
            }
            index.quant = Some(q);
        }
        let n = h.n as u32;
        if index.entry.is_some_and(|e| e >= n)
            || index.links0.iter().any(|&x| x > n.max(index.m0() as u32))
        {
            return Err(bad("index links out of range"));
        }
        Ok(index)
    }
}

fn write_u64(w: &mut impl Write, x: u64) -> std::io::Result<()> {
    w.write_all(&x.to_le_bytes())
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn write_u32s(w: &mut impl Write, xs: &[u32]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(xs.len() * 4);
    for x in xs {
        buf.extend_from_slice(&x.to_le_bytes());
    }
    w.write_all(&buf)
}

fn read_u32s(r: &mut impl Read, n: usize) -> std::io::Result<Vec<u32>> {
    let mut bytes = vec![0u8; n * 4];
    r.read_exact(&mut bytes)?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points on clustered directions: structure like real embeddings, unlike uniform noise.
    pub(crate) fn clustered(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut s = seed;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        };
        let centres: Vec<Vec<f32>> = (0..20)
            .map(|_| (0..dim).map(|_| next()).collect())
            .collect();
        (0..n)
            .map(|i| {
                let c = &centres[i % centres.len()];
                let mut v: Vec<f32> = c.iter().map(|x| x + 0.35 * next()).collect();
                Metric::Cosine.prepare(&mut v);
                v
            })
            .collect()
    }

    fn recall(index: &Hnsw, queries: &[Vec<f32>], k: usize, ef: usize, allow: Allow) -> f64 {
        let mut hits = 0;
        for q in queries {
            let truth: Vec<u32> = index.exact(q, k, allow).iter().map(|x| x.1).collect();
            let got = index.search(q, k, ef, allow);
            hits += got.iter().filter(|g| truth.contains(&g.1)).count();
        }
        hits as f64 / (queries.len() * k) as f64
    }

    #[test]
    fn graph_search_finds_the_exact_neighbours() {
        let data = clustered(2000, 32, 7);
        let mut index = Hnsw::new(32, Metric::Cosine, HnswParams::default());
        for v in &data {
            index.insert(v);
        }
        let queries = clustered(50, 32, 99);
        let r = recall(&index, &queries, 10, 64, None);
        assert!(r >= 0.97, "recall@10 {r}");
        // The point itself is its own nearest neighbour.
        let hit = index.search(&data[123], 1, 32, None);
        assert_eq!(hit[0].1, 123);
        assert!((Metric::Cosine.score(hit[0].0) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn filters_keep_recall_inside_the_search() {
        let data = clustered(2000, 32, 11);
        let mut index = Hnsw::new(32, Metric::Cosine, HnswParams::default());
        for v in &data {
            index.insert(v);
        }
        let queries = clustered(50, 32, 5);
        // One node in ten passes: a post-filter of the top 64 would return ~6 of 10.
        let allow = |i: u32| i % 10 == 3;
        let r = recall(&index, &queries, 10, 64, Some(&allow));
        assert!(r >= 0.95, "filtered recall@10 {r}");
        for q in &queries {
            assert!(
                index
                    .search(q, 10, 64, Some(&allow))
                    .iter()
                    .all(|x| x.1 % 10 == 3)
            );
        }
    }

    #[test]
    fn quantized_search_rescoring_keeps_recall_and_exact_scores() {
        let data = clustered(2000, 32, 3);
        let mut index = Hnsw::new(32, Metric::Dot, HnswParams::default());
        for v in &data[..1000] {
            index.insert(v);
        }
        index.quantize();
        for v in &data[1000..] {
            index.insert(v);
        }
        let queries = clustered(50, 32, 8);
        let r = recall(&index, &queries, 10, 64, None);
        assert!(r >= 0.9, "quantized recall@10 {r}");
        let top = index.search(&queries[0], 1, 64, None)[0];
        let exact = Metric::Dot.distance(&queries[0], index.vector(top.1));
        assert_eq!(top.0, exact, "scores are rescored with the original vector");
    }

    #[test]
    fn an_index_reads_back_identical() {
        let data = clustered(300, 16, 1);
        let mut index = Hnsw::new(
            16,
            Metric::Euclid,
            HnswParams {
                m: 8,
                ..Default::default()
            },
        );
        for v in &data {
            index.insert(v);
        }
        index.quantize();
        let mut buf = Vec::new();
        index.write_to(&mut buf).unwrap();
        let back = Hnsw::read_from(&mut buf.as_slice()).unwrap();
        assert_eq!(back.len(), 300);
        assert!(back.is_quantized());
        for q in data.iter().take(20) {
            assert_eq!(index.search(q, 5, 32, None), back.search(q, 5, 32, None));
        }
        assert!(Hnsw::read_from(&mut &buf[..buf.len() / 2]).is_err());
    }
}
