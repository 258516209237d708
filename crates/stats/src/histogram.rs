//! Histograms exactly as numpy builds them: `np.histogram_bin_edges(.., bins="sturges")` edges and
//! `np.histogram(.., edges)` counts (half-open bins, the last one closed), so binned statistics
//! agree bin for bin with Evidently and scipy users' numbers.

/// Sturges bin edges over `values` (finite values only), as `numpy.histogram_bin_edges`.
pub fn sturges_edges(min: f64, max: f64, n: usize) -> Vec<f64> {
    let (mut first, mut last) = (min, max);
    if first == last {
        first -= 0.5;
        last += 0.5;
    }
    let width = (max - min) / ((n.max(1) as f64).log2() + 1.0);
    let bins = if width > 0.0 {
        ((last - first) / width).ceil() as usize
    } else {
        1
    };
    linspace(first, last, bins + 1)
}

/// `numpy.linspace(start, stop, num)` with its rounding: `start + i * step`, the last value `stop`.
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return Vec::new();
    }
    if num == 1 {
        return vec![start];
    }
    let div = (num - 1) as f64;
    let step = (stop - start) / div;
    let mut out: Vec<f64> = (0..num)
        .map(|i| {
            if step == 0.0 {
                (i as f64 / div) * (stop - start) + start
            } else {
                i as f64 * step + start
            }
        })
        .collect();
    out[num - 1] = stop;
    out
}

/// Counts per bin for explicit `edges` (len ≥ 2), as `numpy.histogram(values, edges)`: bin `i`
/// holds `edges[i] <= v < edges[i + 1]`, the last bin also holds `v == edges[last]`; values
/// outside the edges are not counted.
#[derive(Debug, Clone)]
pub struct Binner {
    edges: Vec<f64>,
    start: f64,
    inv_step: f64,
}

impl Binner {
    pub fn new(edges: Vec<f64>) -> Binner {
        let bins = edges.len().saturating_sub(1).max(1) as f64;
        let start = edges.first().copied().unwrap_or(0.0);
        let span = edges.last().copied().unwrap_or(1.0) - start;
        let inv_step = if span > 0.0 { bins / span } else { 0.0 };
        Binner {
            edges,
            start,
            inv_step,
        }
    }

    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    pub fn bins(&self) -> usize {
        self.edges.len().saturating_sub(1)
    }

    /// The bin of `v`, or `None` outside the edges.
    #[inline]
    pub fn bin(&self, v: f64) -> Option<usize> {
        let bins = self.bins();
        let (lo, hi) = (self.edges[0], self.edges[bins]);
        if !(v >= lo && v <= hi) {
            return None;
        }
        if v == hi {
            return Some(bins - 1);
        }
        // Guess from the uniform spacing, then settle against the real edges.
        let mut i = (((v - self.start) * self.inv_step) as usize).min(bins - 1);
        while i > 0 && v < self.edges[i] {
            i -= 1;
        }
        while i + 1 < bins && v >= self.edges[i + 1] {
            i += 1;
        }
        Some(i)
    }

    /// Counts per bin divided by the number of values (values outside the edges count in the
    /// denominator, as `np.histogram(v, edges)[0] / len(v)`).
    pub fn shares(&self, values: &[f64]) -> Vec<f64> {
        let n = values.len() as f64;
        self.counts(values)
            .into_iter()
            .map(|c| c as f64 / n)
            .collect()
    }

    pub fn counts(&self, values: &[f64]) -> Vec<u64> {
        let mut counts = vec![0u64; self.bins()];
        for &v in values {
            if let Some(i) = self.bin(v) {
                counts[i] += 1;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // numpy 2.x: np.histogram_bin_edges([0.5, 1.25, 3.0, 7.75, 10.0], bins="sturges")
    // -> [0.5, 2.875, 5.25, 7.625, 10.0]; np.histogram(.., edges)[0] -> [2, 1, 0, 2]
    #[test]
    fn matches_numpy() {
        let v = [0.5, 1.25, 3.0, 7.75, 10.0];
        let edges = sturges_edges(0.5, 10.0, v.len());
        assert_eq!(edges, vec![0.5, 2.875, 5.25, 7.625, 10.0]);
        assert_eq!(Binner::new(edges).counts(&v), vec![2, 1, 0, 2]);
        // A constant column gets one bin of width one around the value.
        assert_eq!(sturges_edges(3.0, 3.0, 10), vec![2.5, 3.5]);
        let b = Binner::new(vec![0.0, 1.0, 2.0]);
        assert_eq!(b.bin(-0.1), None);
        assert_eq!(b.bin(1.0), Some(1));
        assert_eq!(b.bin(2.0), Some(1));
        assert_eq!(b.bin(f64::NAN), None);
    }
}
