//! Scalar (int8) quantization: every component becomes one byte, `x ≈ offset + scale · code`,
//! with one range for the whole collection (the 0.5 % and 99.5 % quantiles of a sample, so a few
//! outliers do not waste the 256 levels). Dot products between codes run in integers and are
//! corrected back to floats with the per-vector code sums; the index uses them to walk the graph
//! and rescoring with the original vectors fixes the final order.

use crate::Metric;

#[derive(Clone, Debug)]
pub struct Scalar {
    dim: usize,
    offset: f32,
    scale: f32,
    codes: Vec<u8>,
    sums: Vec<u32>,
}

/// A query encoded once per search.
pub struct QueryCodes {
    codes: Vec<u8>,
    sum: u32,
}

impl Scalar {
    /// Learns the range from the vectors given (all of them or a sample).
    pub fn train<'a>(dim: usize, vectors: impl Iterator<Item = &'a [f32]>) -> Scalar {
        let mut values: Vec<f32> = Vec::new();
        for v in vectors {
            values.extend_from_slice(v);
            if values.len() > 4_000_000 {
                break;
            }
        }
        let (lo, hi) = if values.is_empty() {
            (-1.0, 1.0)
        } else {
            values.sort_unstable_by(f32::total_cmp);
            let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
            (at(0.005), at(0.995))
        };
        let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
        Scalar {
            dim,
            offset: lo,
            scale,
            codes: Vec::new(),
            sums: Vec::new(),
        }
    }

    pub fn range(&self) -> (f32, f32) {
        (self.offset, self.scale)
    }

    pub fn with_range(dim: usize, offset: f32, scale: f32) -> Scalar {
        Scalar {
            dim,
            offset,
            scale,
            codes: Vec::new(),
            sums: Vec::new(),
        }
    }

    fn encode_into(&self, v: &[f32], out: &mut Vec<u8>) -> u32 {
        let mut sum = 0u32;
        for &x in v {
            let c = ((x - self.offset) / self.scale).round().clamp(0.0, 255.0) as u8;
            sum += c as u32;
            out.push(c);
        }
        sum
    }

    /// Appends the codes of the next vector (index `len()`).
    pub fn push(&mut self, v: &[f32]) {
        let mut codes = std::mem::take(&mut self.codes);
        let sum = self.encode_into(v, &mut codes);
        self.codes = codes;
        self.sums.push(sum);
    }

    /// Where vector `i`'s codes start (for prefetching).
    pub fn codes_ptr(&self, i: usize) -> *const u8 {
        self.codes[i * self.dim..].as_ptr()
    }

    pub fn len(&self) -> usize {
        self.sums.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    pub fn query(&self, q: &[f32]) -> QueryCodes {
        let mut codes = Vec::with_capacity(self.dim);
        let sum = self.encode_into(q, &mut codes);
        QueryCodes { codes, sum }
    }

    /// The approximate index distance between a query and stored vector `i`.
    #[inline]
    pub fn distance(&self, metric: Metric, q: &QueryCodes, i: usize) -> f32 {
        let codes = &self.codes[i * self.dim..(i + 1) * self.dim];
        match metric {
            Metric::Cosine | Metric::Dot => {
                let raw = dot_u8(&q.codes, codes) as f32;
                let d = self.dim as f32;
                let dot = d * self.offset * self.offset
                    + self.offset * self.scale * (q.sum + self.sums[i]) as f32
                    + self.scale * self.scale * raw;
                -dot
            }
            Metric::Euclid => self.scale * self.scale * l2_u8(&q.codes, codes) as f32,
        }
    }
}

type U8Kernel = fn(&[u8], &[u8]) -> u32;

#[cfg(target_arch = "x86_64")]
mod x86 {
    #[target_feature(enable = "avx2")]
    pub fn dot_avx2(a: &[u8], b: &[u8]) -> u32 {
        super::dot_u8_plain(a, b)
    }
    #[target_feature(enable = "avx2")]
    pub fn l2_avx2(a: &[u8], b: &[u8]) -> u32 {
        super::l2_u8_plain(a, b)
    }
    #[target_feature(enable = "avx512f,avx512bw")]
    pub fn dot_avx512(a: &[u8], b: &[u8]) -> u32 {
        super::dot_u8_plain(a, b)
    }
    #[target_feature(enable = "avx512f,avx512bw")]
    pub fn l2_avx512(a: &[u8], b: &[u8]) -> u32 {
        super::l2_u8_plain(a, b)
    }
}

fn pick() -> (U8Kernel, U8Kernel) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has the features these functions are compiled for.
            return (
                |a, b| unsafe { x86::dot_avx512(a, b) },
                |a, b| unsafe { x86::l2_avx512(a, b) },
            );
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return (
                |a, b| unsafe { x86::dot_avx2(a, b) },
                |a, b| unsafe { x86::l2_avx2(a, b) },
            );
        }
    }
    (dot_u8_plain, l2_u8_plain)
}

static KERNELS: std::sync::OnceLock<(U8Kernel, U8Kernel)> = std::sync::OnceLock::new();

#[inline]
fn dot_u8(a: &[u8], b: &[u8]) -> u32 {
    (KERNELS.get_or_init(pick).0)(a, b)
}

#[inline]
fn l2_u8(a: &[u8], b: &[u8]) -> u32 {
    (KERNELS.get_or_init(pick).1)(a, b)
}

#[inline(always)]
fn dot_u8_plain(a: &[u8], b: &[u8]) -> u32 {
    let mut acc = [0u32; 16];
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] as u32 * y[i] as u32;
        }
    }
    let mut sum: u32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        sum += *x as u32 * *y as u32;
    }
    sum
}

#[inline(always)]
fn l2_u8_plain(a: &[u8], b: &[u8]) -> u32 {
    let mut acc = [0u32; 16];
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            let d = x[i] as i32 - y[i] as i32;
            acc[i] += (d * d) as u32;
        }
    }
    let mut sum: u32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        let d = *x as i32 - *y as i32;
        sum += (d * d) as u32;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_distances_track_the_exact_ones() {
        let dim = 64;
        let vecs: Vec<Vec<f32>> = (0..50)
            .map(|j| {
                (0..dim)
                    .map(|i| ((i * 7 + j * 13) as f32 * 0.1).sin() * 0.2)
                    .collect()
            })
            .collect();
        let mut s = Scalar::train(dim, vecs.iter().map(|v| v.as_slice()));
        for v in &vecs {
            s.push(v);
        }
        let q = &vecs[3];
        let qc = s.query(q);
        for (i, v) in vecs.iter().enumerate() {
            let exact = Metric::Dot.distance(q, v);
            let approx = s.distance(Metric::Dot, &qc, i);
            assert!(
                (exact - approx).abs() < 0.01,
                "dot {i}: {exact} vs {approx}"
            );
            let exact = Metric::Euclid.distance(q, v);
            let approx = s.distance(Metric::Euclid, &qc, i);
            assert!((exact - approx).abs() < 0.01, "l2 {i}: {exact} vs {approx}");
        }
    }
}
