//! Every statistic against scipy's value on the same data (`fixtures/gen_scipy.py` wrote the
//! fixture; it says how). Statistics to 1e-9 relative, p-values to 1e-6 (relative for small
//! ones, so a p-value of 1e-48 is checked as tightly as one of 0.3).

use serde_json::Value;
use stats::{chisq, distance, histogram, ks};

fn fixtures() -> Value {
    let text = include_str!("fixtures/scipy_fixtures.json");
    serde_json::from_str(text).unwrap()
}

fn lcg(seed: u64, n: usize) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / 2f64.powi(53)
        })
        .collect()
}

fn sample(spec: &Value) -> Vec<f64> {
    let s = spec.as_array().unwrap();
    let (seed, n) = (s[0].as_u64().unwrap(), s[1].as_u64().unwrap() as usize);
    let (scale, shift) = (s[2].as_f64().unwrap(), s[3].as_f64().unwrap());
    let (power, round_to) = (s[4].as_u64().unwrap(), s[5].as_f64().unwrap());
    lcg(seed, n)
        .into_iter()
        .map(|x| {
            let mut y = x;
            for _ in 1..power {
                y *= x;
            }
            y = y * scale + shift;
            if round_to > 0.0 {
                y = (y * round_to).floor() / round_to;
            }
            y
        })
        .collect()
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[track_caller]
fn close(ours: f64, theirs: f64, rel: f64, what: &str) {
    let tol = rel * theirs.abs();
    assert!(
        (ours - theirs).abs() <= tol || ours == theirs,
        "{what}: ours {ours:e} vs scipy {theirs:e}"
    );
}

#[test]
fn ks_2samp_matches_scipy() {
    for case in fixtures()["ks"].as_array().unwrap() {
        let (a, b) = (sorted(sample(&case["a"])), sorted(sample(&case["b"])));
        let r = ks::ks_2samp_sorted(&a, &b).unwrap();
        let what = format!("ks n1={} n2={}", a.len(), b.len());
        close(r.statistic, f(case, "statistic"), 1e-9, &what);
        close(r.p_value, f(case, "p_value"), 1e-6, &what);
        assert_eq!(r.exact, a.len().max(b.len()) <= ks::MAX_EXACT_N, "{what}");
    }
}

#[test]
fn kolmogorov_distribution_matches_scipy_kstwo() {
    for case in fixtures()["kstwo"].as_array().unwrap() {
        let (n, x) = (case["n"].as_u64().unwrap(), f(case, "x"));
        let sf = ks::kolmogorov_sf(n, x);
        close(sf, f(case, "sf"), 1e-6, &format!("kstwo.sf({x}, {n})"));
    }
}

#[test]
fn wasserstein_std_and_sturges_bins_match_scipy_and_numpy() {
    let fx = fixtures();
    for case in fx["wasserstein"].as_array().unwrap() {
        let (a, b) = (sample(&case["a"]), sample(&case["b"]));
        close(distance::std_population(&a), f(case, "std_a"), 1e-9, "std");
        let d = distance::wasserstein_sorted(&sorted(a), &sorted(b));
        close(d, f(case, "distance"), 1e-9, "wasserstein");
    }
    for case in fx["sturges"].as_array().unwrap() {
        let (a, b) = (sample(&case["a"]), sample(&case["b"]));
        let all: Vec<f64> = a.iter().chain(&b).copied().collect();
        let (lo, hi) = all
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        let edges = histogram::sturges_edges(lo, hi, all.len());
        assert_eq!(edges, floats(&case["edges"]));
        let binner = histogram::Binner::new(edges);
        let counts = |v: &[f64]| {
            binner
                .counts(v)
                .iter()
                .map(|&c| c as f64)
                .collect::<Vec<_>>()
        };
        assert_eq!(counts(&a), floats(&case["counts_a"]));
        assert_eq!(counts(&b), floats(&case["counts_b"]));
    }
}

#[test]
fn jensen_shannon_and_kl_match_scipy() {
    for case in fixtures()["shares"].as_array().unwrap() {
        let (p, q) = (floats(&case["p"]), floats(&case["q"]));
        close(
            distance::jensen_shannon(&p, &q),
            f(case, "jensenshannon"),
            1e-9,
            "js",
        );
        close(
            distance::kl_divergence(&p, &q),
            f(case, "entropy"),
            1e-9,
            "kl",
        );
        let js2 = distance::jensen_shannon_base(&p, &q, 2.0);
        close(js2, f(case, "jensenshannon_base2"), 1e-9, "js base 2");
    }
}

#[test]
fn chi_square_tests_match_scipy() {
    let fx = fixtures();
    for case in fx["chisquare"].as_array().unwrap() {
        let r = chisq::chisquare(&floats(&case["observed"]), &floats(&case["expected"]));
        close(r.statistic, f(case, "statistic"), 1e-9, "chisquare");
        close(r.p_value, f(case, "p_value"), 1e-6, "chisquare p");
    }
    for case in fx["chi2_contingency"].as_array().unwrap() {
        let rows: Vec<Vec<f64>> = case["table"]
            .as_array()
            .unwrap()
            .iter()
            .map(floats)
            .collect();
        let flat: Vec<f64> = rows.concat();
        let r = chisq::chi2_contingency(&flat, rows.len(), rows[0].len()).unwrap();
        close(r.statistic, f(case, "statistic"), 1e-9, "chi2_contingency");
        close(r.p_value, f(case, "p_value"), 1e-6, "chi2_contingency p");
        assert_eq!(r.dof, f(case, "dof"));
    }
    assert!(chisq::chi2_contingency(&[0.0, 0.0, 1.0, 2.0], 2, 2).is_none());
}
