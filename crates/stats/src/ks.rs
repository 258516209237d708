//! The two-sample Kolmogorov–Smirnov test, two-sided, as `scipy.stats.ks_2samp(a, b)` computes
//! it with `method="auto"`: the exact distribution of the statistic when both samples have at
//! most 10,000 values, otherwise the exact finite-n Kolmogorov distribution at
//! n = round(n₁n₂ / (n₁ + n₂)) (`scipy.stats.kstwo.sf`), following Simard & L'Ecuyer (2011) for
//! which method to use where.
//!
//! The exact two-sample p-value is the share of monotone lattice paths from (0, 0) to (n₁, n₂)
//! that touch the band |i/n₁ − j/n₂| ≥ D, computed as the probability that a uniformly random path
//! leaves the band — accumulated directly, so tiny p-values keep their relative precision.

use crate::special::ln_gamma;

/// Above this sample size scipy's `auto` switches from the exact to the asymptotic method.
pub const MAX_EXACT_N: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsResult {
    pub statistic: f64,
    pub p_value: f64,
    pub exact: bool,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Two-sided two-sample KS test on two **sorted** samples without NaNs. `None` when either is
/// empty.
pub fn ks_2samp_sorted(a: &[f64], b: &[f64]) -> Option<KsResult> {
    let (n1, n2) = (a.len() as u64, b.len() as u64);
    if n1 == 0 || n2 == 0 {
        return None;
    }
    // max |c1 n2 − c2 n1| over the merged values, in integers.
    let (mut i, mut j) = (0usize, 0usize);
    let mut dmax: u64 = 0;
    while i < a.len() || j < b.len() {
        let x = if j >= b.len() || (i < a.len() && a[i] <= b[j]) {
            a[i]
        } else {
            b[j]
        };
        while i < a.len() && a[i] == x {
            i += 1;
        }
        while j < b.len() && b[j] == x {
            j += 1;
        }
        let diff = (i as u64 * n2).abs_diff(j as u64 * n1);
        dmax = dmax.max(diff);
    }
    let statistic = dmax as f64 / (n1 as f64 * n2 as f64);
    if n1.max(n2) as usize <= MAX_EXACT_N {
        let g = gcd(n1, n2);
        let p = exact_outside_probability(n1, n2, dmax);
        // scipy reports D as h / lcm with h = D·lcm rounded; dmax / g is that h exactly.
        let lcm = (n1 / g) as f64 * n2 as f64;
        return Some(KsResult {
            statistic: (dmax / g) as f64 / lcm,
            p_value: p.clamp(0.0, 1.0),
            exact: true,
        });
    }
    let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
    let en = (m * n / (m + n)).round_ties_even();
    Some(KsResult {
        statistic,
        p_value: kolmogorov_sf(en as u64, statistic).clamp(0.0, 1.0),
        exact: false,
    })
}

/// P(D ≥ d) for the exact two-sample distribution, `dmax = d·n1·n2` (an integer). Paths are
/// (i, j) with i ≤ n1, j ≤ n2; a cell is outside when |i n2 − j n1| ≥ dmax.
fn exact_outside_probability(n1: u64, n2: u64, dmax: u64) -> f64 {
    if dmax == 0 {
        return 1.0;
    }
    let (m, n) = (n1 as i64, n2 as i64);
    let bound = dmax as i64;
    let inside = |i: i64, j: i64| (i * n - j * m).abs() < bound;
    let mut cur = vec![0.0f64; n as usize + 2];
    let mut next = vec![0.0f64; n as usize + 2];
    let mut out = 0.0f64;
    cur[0] = 1.0;
    // Columns j inside for row i: (i n − bound) / m < j < (i n + bound) / m.
    let range = |i: i64| {
        let lo = (i * n - bound).div_euclid(m) + 1;
        let hi_num = i * n + bound;
        let hi = if hi_num % m == 0 {
            hi_num / m - 1
        } else {
            hi_num / m
        };
        (lo.max(0), hi.min(n))
    };
    for i in 0..=m {
        let (lo, hi) = range(i);
        if i < m {
            let (nlo, nhi) = range(i + 1);
            for v in &mut next[nlo.max(0) as usize..=(nhi.max(nlo) as usize)] {
                *v = 0.0;
            }
        }
        for j in lo..=hi {
            let mass = cur[j as usize];
            if mass == 0.0 {
                continue;
            }
            let left_x = (m - i) as f64;
            let left_y = (n - j) as f64;
            let total = left_x + left_y;
            if total == 0.0 {
                continue; // (m, n): the end
            }
            let down = mass * (left_x / total);
            let right = mass * (left_y / total);
            if left_y > 0.0 {
                if inside(i, j + 1) {
                    cur[j as usize + 1] += right;
                } else {
                    out += right;
                }
            }
            if left_x > 0.0 {
                if inside(i + 1, j) {
                    next[j as usize] += down;
                } else {
                    out += down;
                }
            }
        }
        std::mem::swap(&mut cur, &mut next);
    }
    out
}

/// Survival function of the two-sided one-sample Kolmogorov statistic D_n at `x`
/// (`scipy.stats.kstwo.sf(x, n)`).
pub fn kolmogorov_sf(n: u64, x: f64) -> f64 {
    if n == 0 || x.is_nan() {
        return f64::NAN;
    }
    if x >= 1.0 {
        return 0.0;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let nf = n as f64;
    let t = nf * x;
    if t <= 1.0 {
        if t <= 0.5 {
            return 1.0;
        }
        // Ruben–Gambino: cdf = n!/n^n (2t − 1)^n.
        let cdf = if n <= 140 {
            (1..=n).fold(1.0, |p, i| p * (i as f64 / nf) * (2.0 * t - 1.0))
        } else {
            (ln_factorial_div_n_pow_n(nf) + nf * (2.0 * t - 1.0).ln()).exp()
        };
        return (1.0 - cdf).clamp(0.0, 1.0);
    }
    if t >= nf - 1.0 {
        return (2.0 * (1.0 - x).powf(nf)).clamp(0.0, 1.0);
    }
    if x >= 0.5 {
        return (2.0 * smirnov(n, x)).clamp(0.0, 1.0);
    }
    let nxx = t * x;
    if n <= 140 {
        if nxx <= 4.0 {
            // scipy uses Durbin's matrix below 0.754693 and Pomeranz's recursion above; both
            // are exact, and so is the matrix method over the whole range.
            return (1.0 - durbin_cdf(n, x)).clamp(0.0, 1.0);
        }
        return (2.0 * smirnov(n, x)).clamp(0.0, 1.0);
    }
    if nxx >= 370.0 {
        return 0.0;
    }
    if nxx >= 2.2 {
        return (2.0 * smirnov(n, x)).clamp(0.0, 1.0);
    }
    let cdf = if n <= 100_000 && nf * x.powf(1.5) <= 1.4 {
        durbin_cdf(n, x)
    } else {
        return pelz_good_sf(nf, x).clamp(0.0, 1.0);
    };
    (1.0 - cdf).clamp(0.0, 1.0)
}

// B_{2j} / (2j(2j − 1)) for j = 8..1, written out exactly.
#[allow(clippy::excessive_precision)]
const STIRLING: [f64; 8] = [
    -2.955065359477124183e-2,
    6.4102564102564102564e-3,
    -1.9175269175269175269e-3,
    8.4175084175084175084e-4,
    -5.952380952380952381e-4,
    7.9365079365079365079e-4,
    -2.7777777777777777778e-3,
    8.3333333333333333333e-2,
];

/// ln(n! / nⁿ) by Stirling's series with n ln n removed up front.
fn ln_factorial_div_n_pow_n(n: f64) -> f64 {
    let rn = 1.0 / n;
    let x = rn / n;
    let poly = STIRLING.iter().fold(0.0, |acc, c| acc * x + c);
    n.ln() / 2.0 - n + (2.0 * std::f64::consts::PI).ln() / 2.0 + rn * poly
}

/// One-sided Smirnov survival P(D_n⁺ ≥ d), exact (Birnbaum–Tingey), summed in log space.
pub fn smirnov(n: u64, d: f64) -> f64 {
    if d <= 0.0 {
        return 1.0;
    }
    if d >= 1.0 {
        return 0.0;
    }
    let nf = n as f64;
    let last = (nf * (1.0 - d)).floor() as u64;
    let ln_n_fact = ln_gamma(nf + 1.0);
    let mut sum = 0.0;
    for j in 0..=last.min(n) {
        let jf = j as f64;
        let a = d + jf / nf;
        let b = 1.0 - d - jf / nf;
        if b <= 0.0 && j < n {
            continue;
        }
        let ln_c = ln_n_fact - ln_gamma(jf + 1.0) - ln_gamma(nf - jf + 1.0);
        let ln_term = ln_c + (jf - 1.0) * a.ln() + if j == n { 0.0 } else { (nf - jf) * b.ln() };
        sum += ln_term.exp();
    }
    (d * sum).clamp(0.0, 1.0)
}

/// P(D_n ≤ d) by Durbin's matrix method in Marsaglia–Tsang–Wang's form (exact).
fn durbin_cdf(n: u64, d: f64) -> f64 {
    let nd = n as f64 * d;
    if nd <= 0.5 {
        return 0.0;
    }
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let m = 2 * k - 1;
    let mut v = vec![0.0; m];
    let mut w = vec![0.0; m];
    let mut fac = 1.0;
    for j in 1..=m {
        w[j - 1] = fac;
        fac /= j as f64;
        v[j - 1] = (1.0 - h.powi(j as i32)) * fac;
    }
    let tt = (2.0 * h - 1.0).max(0.0).powi(m as i32) - 2.0 * h.powi(m as i32);
    v[m - 1] = (1.0 + tt) * fac;
    let mut hm = vec![0.0; m * m];
    for i in 1..m {
        for r in (i - 1)..m {
            hm[r * m + i] = w[r - (i - 1)];
        }
    }
    for r in 0..m {
        hm[r * m] = v[r];
    }
    for c in 0..m {
        hm[(m - 1) * m + c] = v[m - 1 - c];
    }
    let matmul = |a: &[f64], b: &[f64]| {
        let mut out = vec![0.0; m * m];
        for r in 0..m {
            for t in 0..m {
                let x = a[r * m + t];
                if x == 0.0 {
                    continue;
                }
                for c in 0..m {
                    out[r * m + c] += x * b[t * m + c];
                }
            }
        }
        out
    };
    const E: i32 = 128;
    let ep = 2f64.powi(E);
    let mut pw = vec![0.0; m * m];
    for i in 0..m {
        pw[i * m + i] = 1.0;
    }
    let (mut expnt, mut h_expnt) = (0i32, 0i32);
    let mut nn = n;
    while nn > 0 {
        if nn % 2 == 1 {
            pw = matmul(&pw, &hm);
            expnt += h_expnt;
        }
        hm = matmul(&hm, &hm);
        h_expnt *= 2;
        if hm[(k - 1) * m + (k - 1)].abs() > ep {
            for x in &mut hm {
                *x /= ep;
            }
            h_expnt += E;
        }
        nn /= 2;
    }
    let mut p = pw[(k - 1) * m + (k - 1)];
    let nf = n as f64;
    let em = 2f64.powi(-E);
    for i in 1..=n {
        p = i as f64 * p / nf;
        if p.abs() < em {
            p *= ep;
            expnt -= E;
        }
    }
    p * 2f64.powi(expnt)
}

/// Pelz–Good's approximation of P(D_n > x) (used by scipy for large n and small n x²).
fn pelz_good_sf(n: f64, x: f64) -> f64 {
    use std::f64::consts::PI;
    let z = n.sqrt() * x;
    let (z2, z3, z4, z6) = (z * z, z.powi(3), z.powi(4), z.powi(6));
    let qlog = -PI * PI / 8.0 / z2;
    if qlog < -708.0 {
        return 1.0;
    }
    let q = qlog.exp();
    let (pi2, pi4, pi6) = (PI * PI, PI.powi(4), PI.powi(6));
    let k1a = -z2;
    let k1b = pi2 / 4.0;
    let k2a = 6.0 * z6 + 2.0 * z4;
    let k2b = (2.0 * z4 - 5.0 * z2) * pi2 / 4.0;
    let k2c = pi4 * (1.0 - 2.0 * z2) / 16.0;
    let k3d = pi6 * (5.0 - 30.0 * z2) / 64.0;
    let k3c = pi4 * (-60.0 * z2 + 212.0 * z4) / 16.0;
    let k3b = pi2 * (135.0 * z4 - 96.0 * z6) / 4.0;
    let k3a = -30.0 * z6 - 90.0 * z.powi(8);
    let mut kk = [0.0f64; 4];
    let maxk = (16.0 * z / PI).ceil() as i64;
    for k in (1..=maxk).rev() {
        let mm = (2 * k - 1) as f64;
        let (m2, m4, m6) = (mm * mm, mm.powi(4), mm.powi(6));
        let qp = q.powf(8.0 * k as f64);
        let coeffs = [
            1.0,
            k1a + k1b * m2,
            k2a + k2b * m2 + k2c * m4,
            k3a + k3b * m2 + k3c * m4 + k3d * m6,
        ];
        for (acc, c) in kk.iter_mut().zip(coeffs) {
            *acc = *acc * qp + c;
        }
    }
    let sqrt2pi = (2.0 * PI).sqrt();
    let div = [z, 6.0 * z4, 72.0 * z.powi(7), 6480.0 * z.powi(10)];
    for (acc, d) in kk.iter_mut().zip(div) {
        *acc = *acc * q * sqrt2pi / d;
    }
    let q2 = (-pi2 / 2.0 / z2).exp();
    let sqrt3z = 3f64.sqrt() * z;
    let (mut k2extra, mut k3extra) = (0.0, 0.0);
    for k in (1..=maxk).rev() {
        let kf = k as f64;
        let ks2 = kf * kf;
        let qp = q2.powf(ks2);
        let kspi = PI * kf;
        k2extra += ks2 * qp;
        k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ks2 * qp;
    }
    kk[2] += k2extra * pi2 * sqrt2pi / (-36.0 * z3);
    kk[3] += k3extra * pi2 * sqrt2pi / (216.0 * z6);
    let mut sf = 1.0;
    for (i, acc) in kk.iter().enumerate() {
        sf -= acc / n.powf(i as f64 / 2.0);
    }
    sf
}
