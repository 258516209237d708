//! A/B statistics: two-proportion z-test, Welch's t-test (both as scipy computes them), a
//! Bayesian P(B > A), confidence intervals, required sample size, a sample-ratio-mismatch check,
//! and an always-valid mixture SPRT (mSPRT, Johari et al. 2017) whose verdict stays valid when
//! people look every day. Pure functions over [`crate::special`].

use crate::special::*;

/// Summary of one arm's outcomes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arm {
    pub n: f64,
    pub mean: f64,
    /// Sample variance (n - 1 denominator).
    pub var: f64,
}

impl Arm {
    pub fn from_values(values: &[f64]) -> Arm {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n.max(1.0);
        let var = if n > 1.0 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Arm { n, mean, var }
    }

    /// A conversion arm: `successes` out of `n`.
    pub fn proportion(successes: f64, n: f64) -> Arm {
        let p = if n > 0.0 { successes / n } else { 0.0 };
        Arm {
            n,
            mean: p,
            var: if n > 1.0 {
                p * (1.0 - p) * n / (n - 1.0)
            } else {
                0.0
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestResult {
    pub statistic: f64,
    pub p_value: f64,
    /// Degrees of freedom (Welch) or infinity (z).
    pub df: f64,
    /// Difference B - A and its 95% confidence interval.
    pub diff: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// Two-sided two-proportion z-test with the pooled standard error (scipy/statsmodels' default);
/// the interval uses the unpooled standard error.
pub fn two_proportion_z(xa: f64, na: f64, xb: f64, nb: f64) -> TestResult {
    let (pa, pb) = (xa / na, xb / nb);
    let p = (xa + xb) / (na + nb);
    let se = (p * (1.0 - p) * (1.0 / na + 1.0 / nb)).sqrt();
    let z = (pb - pa) / se;
    let se_u = (pa * (1.0 - pa) / na + pb * (1.0 - pb) / nb).sqrt();
    let q = normal_quantile(0.975);
    TestResult {
        statistic: z,
        p_value: 2.0 * normal_sf(z.abs()),
        df: f64::INFINITY,
        diff: pb - pa,
        ci_low: pb - pa - q * se_u,
        ci_high: pb - pa + q * se_u,
    }
}

/// Welch's unequal-variance t-test of B against A (`scipy.stats.ttest_ind(b, a, equal_var=False)`).
pub fn welch_t(a: &Arm, b: &Arm) -> TestResult {
    let (va, vb) = (a.var / a.n, b.var / b.n);
    let se = (va + vb).sqrt();
    let t = (b.mean - a.mean) / se;
    let df = (va + vb).powi(2) / (va * va / (a.n - 1.0) + vb * vb / (b.n - 1.0));
    let q = student_t_quantile(0.975, df);
    let diff = b.mean - a.mean;
    TestResult {
        statistic: t,
        p_value: 2.0 * student_t_sf(t.abs(), df),
        df,
        diff,
        ci_low: diff - q * se,
        ci_high: diff + q * se,
    }
}

/// P(p_B > p_A) under uniform Beta(1, 1) priors, exactly (Evan Miller's sum over B's successes).
pub fn prob_b_beats_a(xa: f64, na: f64, xb: f64, nb: f64) -> f64 {
    let (aa, ba) = (xa + 1.0, na - xa + 1.0);
    let (ab, bb) = (xb + 1.0, nb - xb + 1.0);
    let mut total = 0.0;
    for i in 0..(ab as u64) {
        let i = i as f64;
        total +=
            (ln_beta(aa + i, ba + bb) - (bb + i).ln() - ln_beta(1.0 + i, bb) - ln_beta(aa, ba))
                .exp();
    }
    total.clamp(0.0, 1.0)
}

/// P(mean_B > mean_A) for continuous outcomes, from the normal approximation of the difference.
pub fn prob_b_beats_a_normal(a: &Arm, b: &Arm) -> f64 {
    let se = (a.var / a.n + b.var / b.n).sqrt();
    if se == 0.0 {
        return if b.mean > a.mean { 1.0 } else { 0.0 };
    }
    normal_cdf((b.mean - a.mean) / se)
}

/// Samples per arm needed to detect `effect` (difference of means) with variance `var` per
/// observation, two-sided α and the given power.
pub fn required_sample_size(effect: f64, var: f64, alpha: f64, power: f64) -> f64 {
    if effect == 0.0 {
        return f64::INFINITY;
    }
    let z = normal_quantile(1.0 - alpha / 2.0) + normal_quantile(power);
    (2.0 * var * z * z / (effect * effect)).ceil()
}

/// Sample-ratio mismatch: chi-square goodness of fit of the observed allocation to the weights
/// (`scipy.stats.chisquare`). A tiny p-value means the split itself is broken.
pub fn srm_p_value(observed: &[f64], weights: &[f64]) -> f64 {
    let total: f64 = observed.iter().sum();
    let wsum: f64 = weights.iter().sum();
    let chi2: f64 = observed
        .iter()
        .zip(weights)
        .map(|(o, w)| {
            let e = total * w / wsum;
            if e > 0.0 { (o - e).powi(2) / e } else { 0.0 }
        })
        .sum();
    chi_square_sf(chi2, (observed.len() - 1) as f64)
}

/// Always-valid p-value of the mixture SPRT for a difference of means with mixing variance `tau2`
/// (on the scale of the outcome). Rejecting whenever it falls below α, at any look, keeps the
/// false-positive rate at α (Ville's inequality).
pub fn msprt_p_value(a: &Arm, b: &Arm, tau2: f64) -> f64 {
    let v = a.var / a.n + b.var / b.n;
    if v.is_nan() || v <= 0.0 {
        return 1.0;
    }
    let theta = b.mean - a.mean;
    let log_lambda = 0.5 * (v / (v + tau2)).ln() + tau2 * theta * theta / (2.0 * v * (v + tau2));
    (-log_lambda).exp().min(1.0)
}

/// The always-valid p-value of paired differences (each request scored under both models, say):
/// the one-sample mSPRT on their mean — the two-sample test against a constant-zero arm — with τ²
/// a quarter of their variance.
pub fn paired_msprt_p_value(diffs: &[f64]) -> f64 {
    let d = Arm::from_values(diffs);
    let zero = Arm {
        n: d.n,
        mean: 0.0,
        var: 0.0,
    };
    msprt_p_value(&zero, &d, default_tau2(&d, false))
}

/// The mSPRT mixing variance Capstan uses: effects on the order of half the control's conversion
/// rate (or half a standard deviation of a continuous outcome) are the ones it is tuned to find
/// early. Any τ² keeps the test valid; this one sets where its power is.
pub fn default_tau2(control: &Arm, conversion: bool) -> f64 {
    if conversion {
        (0.5 * control.mean.max(0.01)).powi(2)
    } else {
        0.25 * control.var.max(1e-24)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) {
        assert!((a - b).abs() <= rel * b.abs().max(1e-300), "{a} vs {b}");
    }

    // Reference values computed once with scipy 1.16 (scipy.stats.norm.sf, ttest_ind(equal_var=False),
    // chisquare, and scipy.integrate.quad of Beta pdf × cdf) on exactly these inputs.
    #[test]
    fn matches_scipy() {
        let z = two_proportion_z(120.0, 1000.0, 150.0, 1000.0);
        close(z.statistic, 1.963049807622355, 1e-12);
        close(z.p_value, 0.04964038686536878, 1e-9);
        let a = Arm::from_values(&[12.1, 14.3, 11.8, 13.9, 12.7, 15.2, 13.1, 12.4, 14.8, 13.3]);
        let b = Arm::from_values(&[14.2, 15.1, 13.8, 16.0, 15.4, 14.9, 16.3, 15.7]);
        let t = welch_t(&a, &b);
        close(t.statistic, 3.8091728301328747, 1e-12);
        close(t.df, 15.94590725431193, 1e-12);
        close(t.p_value, 0.0015509030867656458, 1e-8);
        assert!(t.ci_low > 0.0 && t.ci_low < t.diff && t.diff < t.ci_high);
        close(
            srm_p_value(&[5210.0, 4790.0], &[0.5, 0.5]),
            2.6691498031812692e-05,
            1e-8,
        );
        close(
            prob_b_beats_a(120.0, 1000.0, 150.0, 1000.0),
            0.9750678368121435,
            1e-9,
        );
    }

    #[test]
    fn special_functions() {
        close(normal_cdf(1.959963984540054), 0.975, 1e-12);
        close(normal_quantile(0.975), 1.959963984540054, 1e-12);
        close(ln_gamma(10.0), (362880f64).ln(), 1e-12);
        close(student_t_quantile(0.975, 10.0), 2.2281388519649385, 1e-9);
        close(chi_square_sf(3.841458820694124, 1.0), 0.05, 1e-9);
        // 16 per arm detect a one-sd difference at α = .05 with 80% power.
        assert_eq!(required_sample_size(1.0, 1.0, 0.05, 0.8), 16.0);
    }

    /// xorshift for reproducible simulations.
    struct Rng(u64);
    impl Rng {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// A/A tests looked at every day for 30 days: the naive z-test declares a false winner far
    /// more often than 5%; the always-valid mSPRT stays at or below it.
    #[test]
    fn peeking_every_day_keeps_msprt_valid() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (experiments, days, per_day, rate) = (400, 30, 200, 0.1);
        let (mut naive, mut msprt) = (0, 0);
        for _ in 0..experiments {
            let (mut xa, mut xb, mut n) = (0.0, 0.0, 0.0);
            let (mut naive_hit, mut msprt_hit) = (false, false);
            for _ in 0..days {
                for _ in 0..per_day {
                    xa += f64::from(u8::from(rng.uniform() < rate));
                    xb += f64::from(u8::from(rng.uniform() < rate));
                }
                n += per_day as f64;
                naive_hit |= two_proportion_z(xa, n, xb, n).p_value < 0.05;
                msprt_hit |= msprt_p_value(
                    &Arm::proportion(xa, n),
                    &Arm::proportion(xb, n),
                    0.01 * 0.01,
                ) < 0.05;
            }
            naive += usize::from(naive_hit);
            msprt += usize::from(msprt_hit);
        }
        let (naive, msprt) = (
            naive as f64 / experiments as f64,
            msprt as f64 / experiments as f64,
        );
        eprintln!("false winners after 30 daily looks: naive z-test {naive:.3}, mSPRT {msprt:.3}");
        assert!(
            naive > 0.18,
            "naive peeking should inflate false winners: {naive}"
        );
        assert!(msprt <= 0.06, "mSPRT false-winner rate {msprt}");
    }
}

#[cfg(test)]
mod power {
    use super::*;

    /// The always-valid test is not vacuous: a real lift (10% → 13%) is found within 30 days in
    /// nearly every simulated experiment.
    #[test]
    fn msprt_finds_real_effects() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (experiments, mut found) = (100, 0);
        for _ in 0..experiments {
            let (mut xa, mut xb, mut n, mut hit) = (0.0, 0.0, 0.0, false);
            for _ in 0..30 {
                for _ in 0..200 {
                    xa += f64::from(u8::from(uniform() < 0.10));
                    xb += f64::from(u8::from(uniform() < 0.13));
                }
                n += 200.0;
                let (a, b) = (Arm::proportion(xa, n), Arm::proportion(xb, n));
                hit |= msprt_p_value(&a, &b, default_tau2(&a, true)) < 0.05;
            }
            found += usize::from(hit);
        }
        assert!(found >= 90, "power {found}/{experiments}");
    }
}
