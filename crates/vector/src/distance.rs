//! Distance kernels. Every index distance is "smaller is closer": cosine and dot use `-dot`
//! (cosine vectors are normalised once, on the way in), L2 the squared Euclidean distance. The
//! loops accumulate in eight independent lanes so the compiler turns them into SIMD without
//! `unsafe` or target-specific code.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Metric {
    Cosine,
    Dot,
    /// Euclidean distance (Qdrant's name for it).
    #[serde(alias = "L2", alias = "l2", alias = "euclid")]
    Euclid,
}

impl Metric {
    pub fn parse(s: &str) -> Option<Metric> {
        match s.to_ascii_lowercase().as_str() {
            "cosine" | "cos" => Some(Metric::Cosine),
            "dot" | "ip" | "inner_product" => Some(Metric::Dot),
            "euclid" | "l2" | "euclidean" => Some(Metric::Euclid),
            _ => None,
        }
    }

    /// The index distance between two stored (already prepared) vectors.
    #[inline]
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Cosine | Metric::Dot => -dot(a, b),
            Metric::Euclid => l2_squared(a, b),
        }
    }

    /// Turns an index distance into the score users see: similarity for cosine and dot (higher
    /// is closer), the Euclidean distance for L2 (lower is closer).
    pub fn score(self, distance: f32) -> f32 {
        match self {
            Metric::Cosine | Metric::Dot => -distance,
            Metric::Euclid => distance.max(0.0).sqrt(),
        }
    }

    /// Whether a score passes a threshold given in score units.
    pub fn passes(self, score: f32, threshold: f32) -> bool {
        match self {
            Metric::Cosine | Metric::Dot => score >= threshold,
            Metric::Euclid => score <= threshold,
        }
    }

    /// Prepares a vector for storage or as a query: cosine vectors are L2-normalised.
    pub fn prepare(self, v: &mut [f32]) {
        if self == Metric::Cosine {
            normalize(v);
        }
    }
}

pub fn normalize(v: &mut [f32]) {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        for x in v {
            *x /= norm;
        }
    }
}

#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let chunks_a = a.chunks_exact(8);
    let chunks_b = b.chunks_exact(8);
    let (ra, rb) = (chunks_a.remainder(), chunks_b.remainder());
    for (x, y) in chunks_a.zip(chunks_b) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let chunks_a = a.chunks_exact(8);
    let chunks_b = b.chunks_exact(8);
    let (ra, rb) = (chunks_a.remainder(), chunks_b.remainder());
    for (x, y) in chunks_a.zip(chunks_b) {
        for i in 0..8 {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        let d = x - y;
        sum += d * d;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_the_naive_sums_for_every_remainder() {
        for n in [1usize, 7, 8, 9, 17, 384] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive_dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let naive_l2: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
            let close = |x: f32, y: f32| (x - y).abs() <= 1e-5 * y.abs().max(1.0);
            assert!(close(dot(&a, &b), naive_dot), "dot n={n}");
            assert!(close(l2_squared(&a, &b), naive_l2), "l2 n={n}");
        }
    }

    #[test]
    fn scores_are_in_user_units() {
        let mut a = vec![3.0, 4.0];
        Metric::Cosine.prepare(&mut a);
        assert_eq!(a, vec![0.6, 0.8]);
        let d = Metric::Cosine.distance(&a, &a);
        assert!((Metric::Cosine.score(d) - 1.0).abs() < 1e-6);
        let d = Metric::Euclid.distance(&[0.0, 0.0], &[3.0, 4.0]);
        assert_eq!(Metric::Euclid.score(d), 5.0);
        assert!(Metric::Euclid.passes(5.0, 5.5) && !Metric::Euclid.passes(5.0, 4.0));
        assert_eq!(Metric::parse("L2"), Some(Metric::Euclid));
    }
}
