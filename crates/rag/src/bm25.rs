//! Okapi BM25 keyword search (k1 = 1.2, b = 0.75, Lucene's non-negative idf) over lowercase
//! alphanumeric terms, with English stop words removed and a light suffix stemmer so
//! "borrowing"/"borrowed"/"borrows" meet.

use std::collections::HashMap;

const STOP: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "did", "do", "does", "for", "from", "had",
    "has", "have", "how", "i", "in", "is", "it", "its", "of", "on", "or", "that", "the", "their",
    "there", "this", "to", "was", "were", "what", "when", "where", "which", "who", "whom", "why",
    "will", "with", "you", "your",
];

fn stem(w: &str) -> &str {
    for suffix in ["ing", "ed", "es", "s"] {
        if let Some(base) = w.strip_suffix(suffix)
            && base.len() >= 3
            && !(suffix == "s" && base.ends_with('s'))
        {
            return base;
        }
    }
    w
}

/// The terms of a text as the index sees them.
pub fn terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOP.contains(&w.as_str()))
        .map(|w| stem(&w).to_owned())
        .collect()
}

#[derive(Default)]
pub struct Bm25 {
    postings: HashMap<String, Vec<(u32, u32)>>,
    lengths: Vec<u32>,
    total_len: u64,
}

impl Bm25 {
    pub fn new() -> Bm25 {
        Bm25::default()
    }

    /// Adds the next document; its number is the count of documents before it.
    pub fn add(&mut self, text: &str) -> u32 {
        let doc = self.lengths.len() as u32;
        let t = terms(text);
        self.lengths.push(t.len() as u32);
        self.total_len += t.len() as u64;
        let mut tf: HashMap<String, u32> = HashMap::new();
        for term in t {
            *tf.entry(term).or_default() += 1;
        }
        for (term, n) in tf {
            self.postings.entry(term).or_default().push((doc, n));
        }
        doc
    }

    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// The `k` best documents for a query, best first, with their scores; documents `allow`
    /// refuses are skipped.
    pub fn search(&self, query: &str, k: usize, allow: &dyn Fn(u32) -> bool) -> Vec<(u32, f32)> {
        let n = self.lengths.len() as f32;
        if n == 0.0 {
            return Vec::new();
        }
        let avgdl = self.total_len as f32 / n;
        let (k1, b) = (1.2f32, 0.75f32);
        let mut scores: HashMap<u32, f32> = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for term in terms(query) {
            if !seen.insert(term.clone()) {
                continue;
            }
            let Some(list) = self.postings.get(&term) else {
                continue;
            };
            let df = list.len() as f32;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for &(doc, tf) in list {
                let tf = tf as f32;
                let len = self.lengths[doc as usize] as f32;
                let s = idf * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * len / avgdl));
                *scores.entry(doc).or_default() += s;
            }
        }
        let mut ranked: Vec<(u32, f32)> = scores.into_iter().filter(|(d, _)| allow(*d)).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(k);
        ranked
    }
}

/// Reciprocal rank fusion (Cormack et al. 2009): Σ 1 / (k + rank) over the lists an item is in.
pub fn rrf<T: Clone + Eq + std::hash::Hash>(lists: &[Vec<T>], k: f32) -> Vec<(T, f32)> {
    let mut score: HashMap<T, f32> = HashMap::new();
    let mut first_seen: HashMap<T, usize> = HashMap::new();
    let mut order = 0;
    for list in lists {
        for (rank, item) in list.iter().enumerate() {
            *score.entry(item.clone()).or_default() += 1.0 / (k + rank as f32 + 1.0);
            first_seen.entry(item.clone()).or_insert_with(|| {
                order += 1;
                order
            });
        }
    }
    let mut out: Vec<(T, f32)> = score.into_iter().collect();
    out.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then(first_seen[&a.0].cmp(&first_seen[&b.0]))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bm25_ranks_rare_matching_terms_first() {
        let mut idx = Bm25::new();
        idx.add("The borrow checker checks references.");
        idx.add("Cargo builds crates and downloads dependencies.");
        idx.add("References are borrowed; borrowing rules prevent data races.");
        idx.add("The book explains ownership.");
        let hits = idx.search("how does borrowing work?", 3, &|_| true);
        assert_eq!(hits[0].0, 2, "{hits:?}");
        assert_eq!(hits.len(), 2, "only documents with a query term");
        assert!(
            idx.search("the of", 3, &|_| true).is_empty(),
            "stop words only"
        );
        let filtered = idx.search("borrowing", 3, &|d| d != 2);
        assert_eq!(filtered[0].0, 0);
        // Scores by hand: one term, tf=1 in doc 1 of length 4 (crates/cargo/builds/…).
        let one = idx.search("cargo", 1, &|_| true);
        let n = 4.0f32;
        let idf = (1.0 + (n - 1.0 + 0.5) / 1.5f32).ln();
        let avgdl = idx.total_len as f32 / n;
        let len = idx.lengths[1] as f32;
        let want = idf * 2.2 / (1.0 + 1.2 * (0.25 + 0.75 * len / avgdl));
        assert!((one[0].1 - want).abs() < 1e-6);
    }

    #[test]
    fn rrf_rewards_agreement() {
        let fused = rrf(&[vec!["a", "b", "c"], vec!["d", "b", "e"]], 60.0);
        let names: Vec<&str> = fused.iter().map(|x| x.0).collect();
        assert_eq!(
            names,
            vec!["b", "a", "d", "c", "e"],
            "second in both beats first in one"
        );
        assert!((fused[0].1 - 2.0 / 62.0).abs() < 1e-6);
    }
}
