//! Evaluation metrics, as scikit-learn defines them.

use std::collections::BTreeMap;

/// RMSE, MAE and R² of predictions against truth.
pub fn regression_metrics(y: &[f64], pred: &[f64]) -> BTreeMap<String, f64> {
    let n = y.len().max(1) as f64;
    let mean = y.iter().sum::<f64>() / n;
    let sse: f64 = y.iter().zip(pred).map(|(a, b)| (a - b).powi(2)).sum();
    let sst: f64 = y.iter().map(|a| (a - mean).powi(2)).sum();
    let mut m = BTreeMap::new();
    m.insert("rmse".into(), (sse / n).sqrt());
    m.insert(
        "mae".into(),
        y.iter().zip(pred).map(|(a, b)| (a - b).abs()).sum::<f64>() / n,
    );
    m.insert("r2".into(), if sst > 0.0 { 1.0 - sse / sst } else { 0.0 });
    m
}

/// Accuracy, precision/recall/F1 (the positive class for two classes, macro averages otherwise),
/// ROC-AUC (two classes) and log-loss, from true class indices and class probabilities.
pub fn classification_metrics(labels: &[usize], probs: &[Vec<f64>]) -> BTreeMap<String, f64> {
    let n = labels.len().max(1) as f64;
    let k = probs.first().map_or(2, Vec::len);
    let predicted: Vec<usize> = probs
        .iter()
        .map(|p| {
            p.iter()
                .enumerate()
                .fold(0, |b, (i, v)| if *v > p[b] { i } else { b })
        })
        .collect();
    let mut m = BTreeMap::new();
    m.insert(
        "accuracy".into(),
        labels
            .iter()
            .zip(&predicted)
            .filter(|(a, b)| a == b)
            .count() as f64
            / n,
    );
    let prf = |c: usize| {
        let tp = labels
            .iter()
            .zip(&predicted)
            .filter(|(a, b)| **a == c && **b == c)
            .count() as f64;
        let fp = labels
            .iter()
            .zip(&predicted)
            .filter(|(a, b)| **a != c && **b == c)
            .count() as f64;
        let fneg = labels
            .iter()
            .zip(&predicted)
            .filter(|(a, b)| **a == c && **b != c)
            .count() as f64;
        let p = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
        let r = if tp + fneg > 0.0 {
            tp / (tp + fneg)
        } else {
            0.0
        };
        (
            p,
            r,
            if p + r > 0.0 {
                2.0 * p * r / (p + r)
            } else {
                0.0
            },
        )
    };
    let classes: Vec<usize> = if k == 2 { vec![1] } else { (0..k).collect() };
    let scores: Vec<(f64, f64, f64)> = classes.iter().map(|c| prf(*c)).collect();
    let avg =
        |f: fn(&(f64, f64, f64)) -> f64| scores.iter().map(f).sum::<f64>() / scores.len() as f64;
    m.insert("precision".into(), avg(|s| s.0));
    m.insert("recall".into(), avg(|s| s.1));
    m.insert("f1".into(), avg(|s| s.2));
    m.insert(
        "log_loss".into(),
        labels
            .iter()
            .zip(probs)
            .map(|(l, p)| -p[*l].clamp(1e-15, 1.0).ln())
            .sum::<f64>()
            / n,
    );
    if k == 2 {
        // AUC = P(score of a positive > score of a negative), ties counted half (Mann–Whitney).
        let mut scored: Vec<(f64, usize)> = probs
            .iter()
            .map(|p| p[1])
            .zip(labels.iter().copied())
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (mut rank_sum, mut i) = (0.0, 0);
        while i < scored.len() {
            let mut j = i;
            while j + 1 < scored.len() && scored[j + 1].0 == scored[i].0 {
                j += 1;
            }
            let avg_rank = (i + j) as f64 / 2.0 + 1.0;
            rank_sum += avg_rank * scored[i..=j].iter().filter(|s| s.1 == 1).count() as f64;
            i = j + 1;
        }
        let pos = labels.iter().filter(|l| **l == 1).count() as f64;
        let neg = labels.len() as f64 - pos;
        if pos > 0.0 && neg > 0.0 {
            m.insert(
                "roc_auc".into(),
                (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg),
            );
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_their_definitions() {
        let m = regression_metrics(&[1.0, 2.0, 3.0], &[1.0, 2.0, 5.0]);
        assert!((m["rmse"] - (4.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((m["r2"] - (1.0 - 4.0 / 2.0)).abs() < 1e-12);
        // sklearn: roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.75
        let probs: Vec<Vec<f64>> = [0.1, 0.4, 0.35, 0.8]
            .iter()
            .map(|p| vec![1.0 - p, *p])
            .collect();
        let c = classification_metrics(&[0, 0, 1, 1], &probs);
        assert!((c["roc_auc"] - 0.75).abs() < 1e-12);
        assert!(
            (c["accuracy"] - 0.75).abs() < 1e-12,
            "0.1, 0.4, 0.35 → class 0; 0.8 → class 1"
        );
    }
}
