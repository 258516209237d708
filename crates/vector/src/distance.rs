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

// The kernels are written once, portably, with 16 independent lanes; the compiler vectorises
// them for whatever instruction set the enclosing function enables. At run time the widest
// set the CPU has (AVX-512, else AVX2 + FMA, else the baseline) is picked once.

macro_rules! kernel_bodies {
    ($dot:ident, $l2:ident, $fma:expr) => {
        // 64 lanes: four AVX-512 (eight AVX2) accumulators, so consecutive multiply-adds do not
        // wait on each other; the tail runs 16 lanes, then scalar.
        #[inline(always)]
        fn $dot(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len().min(b.len());
            let (a, b) = (&a[..n], &b[..n]);
            let mut acc = [0.0f32; 64];
            let (ca, cb) = (a.chunks_exact(64), b.chunks_exact(64));
            let (ra, rb) = (ca.remainder(), cb.remainder());
            for (x, y) in ca.zip(cb) {
                for i in 0..64 {
                    acc[i] = if $fma {
                        x[i].mul_add(y[i], acc[i])
                    } else {
                        acc[i] + x[i] * y[i]
                    };
                }
            }
            let mut acc16 = [0.0f32; 16];
            let (ca, cb) = (ra.chunks_exact(16), rb.chunks_exact(16));
            let (ra, rb) = (ca.remainder(), cb.remainder());
            for (x, y) in ca.zip(cb) {
                for i in 0..16 {
                    acc16[i] += x[i] * y[i];
                }
            }
            let mut sum = 0.0;
            for i in 0..16 {
                sum += acc16[i] + acc[i] + acc[i + 16] + acc[i + 32] + acc[i + 48];
            }
            for (x, y) in ra.iter().zip(rb) {
                sum += x * y;
            }
            sum
        }

        #[inline(always)]
        fn $l2(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len().min(b.len());
            let (a, b) = (&a[..n], &b[..n]);
            let mut acc = [0.0f32; 64];
            let (ca, cb) = (a.chunks_exact(64), b.chunks_exact(64));
            let (ra, rb) = (ca.remainder(), cb.remainder());
            for (x, y) in ca.zip(cb) {
                for i in 0..64 {
                    let d = x[i] - y[i];
                    acc[i] = if $fma {
                        d.mul_add(d, acc[i])
                    } else {
                        acc[i] + d * d
                    };
                }
            }
            let mut acc16 = [0.0f32; 16];
            let (ca, cb) = (ra.chunks_exact(16), rb.chunks_exact(16));
            let (ra, rb) = (ca.remainder(), cb.remainder());
            for (x, y) in ca.zip(cb) {
                for i in 0..16 {
                    let d = x[i] - y[i];
                    acc16[i] += d * d;
                }
            }
            let mut sum = 0.0;
            for i in 0..16 {
                sum += acc16[i] + acc[i] + acc[i + 16] + acc[i + 32] + acc[i + 48];
            }
            for (x, y) in ra.iter().zip(rb) {
                let d = x - y;
                sum += d * d;
            }
            sum
        }
    };
}

kernel_bodies!(dot_plain, l2_plain, false);
kernel_bodies!(dot_fused, l2_fused, true);

#[cfg(target_arch = "x86_64")]
mod x86 {
    #[target_feature(enable = "avx2,fma")]
    pub fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        super::dot_fused(a, b)
    }
    #[target_feature(enable = "avx2,fma")]
    pub fn l2_avx2(a: &[f32], b: &[f32]) -> f32 {
        super::l2_fused(a, b)
    }
    #[target_feature(enable = "avx512f,fma")]
    pub fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        super::dot_fused(a, b)
    }
    #[target_feature(enable = "avx512f,fma")]
    pub fn l2_avx512(a: &[f32], b: &[f32]) -> f32 {
        super::l2_fused(a, b)
    }
}

type Kernel = fn(&[f32], &[f32]) -> f32;

fn pick() -> (Kernel, Kernel, &'static str) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features these functions are compiled for.
            return (
                |a, b| unsafe { x86::dot_avx512(a, b) },
                |a, b| unsafe { x86::l2_avx512(a, b) },
                "avx512",
            );
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return (
                |a, b| unsafe { x86::dot_avx2(a, b) },
                |a, b| unsafe { x86::l2_avx2(a, b) },
                "avx2",
            );
        }
    }
    (dot_plain, l2_plain, "baseline")
}

static KERNELS: std::sync::OnceLock<(Kernel, Kernel, &'static str)> = std::sync::OnceLock::new();

/// The instruction set the distance kernels use on this CPU.
pub fn kernel_name() -> &'static str {
    KERNELS.get_or_init(pick).2
}

#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    (KERNELS.get_or_init(pick).0)(a, b)
}

#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    (KERNELS.get_or_init(pick).1)(a, b)
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
    fn every_instruction_set_gives_the_same_answer() {
        let a: Vec<f32> = (0..385).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..385).map(|i| (i as f32 * 0.11).cos()).collect();
        let (d0, l0) = (dot_plain(&a, &b), l2_plain(&a, &b));
        assert!((dot_fused(&a, &b) - d0).abs() < 1e-4);
        assert!((l2_fused(&a, &b) - l0).abs() < 1e-4);
        assert!((dot(&a, &b) - d0).abs() < 1e-4, "{}", kernel_name());
        assert!((l2_squared(&a, &b) - l0).abs() < 1e-4, "{}", kernel_name());
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
