//! Distances between two samples or two distributions, each computed the way scipy does:
//! `wasserstein_distance` (first Wasserstein / earth mover's on empirical CDFs),
//! `spatial.distance.jensenshannon` (natural log), `stats.entropy` (Kullback–Leibler), plus PSI
//! and the Hellinger distance on binned shares.

/// First Wasserstein distance between the empirical distributions of two **sorted** samples,
/// as `scipy.stats.wasserstein_distance(u, v)`: ∫ |F_u − F_v| over the merged support.
pub fn wasserstein_sorted(u: &[f64], v: &[f64]) -> f64 {
    if u.is_empty() || v.is_empty() {
        return f64::NAN;
    }
    let (nu, nv) = (u.len() as f64, v.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    // Walk the merged sorted values; between consecutive merged values x_k and x_{k+1} the CDFs
    // are (#u ≤ x_k)/nu and (#v ≤ x_k)/nv.
    let mut prev = u[0].min(v[0]);
    let mut total = 0.0;
    while i < u.len() || j < v.len() {
        let x = if j >= v.len() || (i < u.len() && u[i] <= v[j]) {
            u[i]
        } else {
            v[j]
        };
        let (fu, fv) = (i as f64 / nu, j as f64 / nv);
        total += (fu - fv).abs() * (x - prev);
        prev = x;
        while i < u.len() && u[i] == x {
            i += 1;
        }
        while j < v.len() && v[j] == x {
            j += 1;
        }
    }
    total
}

/// `sum(rel_entr(p, q))` for already-normalised shares.
fn rel_entr_sum(p: &[f64], q: &[f64]) -> f64 {
    p.iter()
        .zip(q)
        .map(|(&x, &y)| {
            if x > 0.0 && y > 0.0 {
                x * (x / y).ln()
            } else if x == 0.0 && y >= 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        })
        .sum()
}

fn normalised(p: &[f64]) -> Vec<f64> {
    let s: f64 = p.iter().sum();
    p.iter().map(|x| x / s).collect()
}

/// Jensen–Shannon distance (natural log), as `scipy.spatial.distance.jensenshannon(p, q)`.
pub fn jensen_shannon(p: &[f64], q: &[f64]) -> f64 {
    jensen_shannon_base(p, q, std::f64::consts::E)
}

/// Jensen–Shannon distance with logarithms in `base` (`jensenshannon(p, q, base)`; Evidently
/// uses base 2, which bounds the distance by 1).
pub fn jensen_shannon_base(p: &[f64], q: &[f64], base: f64) -> f64 {
    let (p, q) = (normalised(p), normalised(q));
    let m: Vec<f64> = p.iter().zip(&q).map(|(a, b)| (a + b) / 2.0).collect();
    let mut js = (rel_entr_sum(&p, &m) + rel_entr_sum(&q, &m)) / 2.0;
    if base != std::f64::consts::E {
        js /= base.ln();
    }
    js.sqrt()
}

/// Kullback–Leibler divergence KL(p ‖ q), as `scipy.stats.entropy(p, q)`.
pub fn kl_divergence(p: &[f64], q: &[f64]) -> f64 {
    rel_entr_sum(&normalised(p), &normalised(q))
}

/// Population stability index Σ (p − q) ln(p / q) on shares with no zeros (Evidently's PSI).
pub fn psi(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(a, b)| (a - b) * (a / b).ln()).sum()
}

/// Hellinger distance √(1 − Σ √(p q)) between two share vectors (the Bhattacharyya
/// coefficient clipped to [0, 1], as Evidently computes it).
pub fn hellinger(p: &[f64], q: &[f64]) -> f64 {
    let bc: f64 = p.iter().zip(q).map(|(a, b)| (a * b).sqrt()).sum();
    (1.0 - bc.clamp(0.0, 1.0)).sqrt()
}

/// Population standard deviation (`numpy.std`, ddof = 0).
pub fn std_population(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt()
}
