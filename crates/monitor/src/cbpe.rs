//! Confidence-based performance estimation (NannyML's CBPE) for classifiers whose labels have not
//! arrived: the model's confidence is calibrated on predictions whose labels did arrive
//! (isotonic regression of correctness on confidence, pool-adjacent-violators), and the expected
//! accuracy of unlabelled predictions is the mean calibrated confidence.

/// A monotone step function from confidence to the probability of being right.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibrator {
    /// Upper confidence bound of each block, ascending, and the block's calibrated value.
    blocks: Vec<(f64, f64)>,
}

impl Calibrator {
    /// Fits isotonic regression of `correct` (1/0) on `confidence`. `None` without data.
    pub fn fit(confidence: &[f64], correct: &[bool]) -> Option<Calibrator> {
        let mut pts: Vec<(f64, f64)> = confidence
            .iter()
            .zip(correct)
            .filter(|(c, _)| c.is_finite())
            .map(|(c, ok)| (*c, f64::from(u8::from(*ok))))
            .collect();
        if pts.is_empty() {
            return None;
        }
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Pool adjacent violators: blocks of (upper x, sum y, count).
        let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
        for (x, y) in pts {
            // Equal confidences are one point (their mean correctness).
            match blocks.last_mut() {
                Some(last) if last.0 == x => {
                    last.1 += y;
                    last.2 += 1.0;
                }
                _ => blocks.push((x, y, 1.0)),
            }
            while blocks.len() > 1 {
                let n = blocks.len();
                let (a, b) = (blocks[n - 2], blocks[n - 1]);
                if a.1 / a.2 <= b.1 / b.2 {
                    break;
                }
                blocks.truncate(n - 2);
                blocks.push((b.0, a.1 + b.1, a.2 + b.2));
            }
        }
        Some(Calibrator {
            blocks: blocks.into_iter().map(|(x, s, n)| (x, s / n)).collect(),
        })
    }

    /// The calibrated probability of a prediction with this confidence being right.
    pub fn calibrate(&self, confidence: f64) -> f64 {
        let i = self.blocks.partition_point(|(x, _)| *x < confidence);
        self.blocks[i.min(self.blocks.len() - 1)].1
    }

    /// Expected accuracy of predictions with these confidences.
    pub fn expected_accuracy(&self, confidence: &[f64]) -> Option<f64> {
        let v: Vec<f64> = confidence
            .iter()
            .filter(|c| c.is_finite())
            .map(|c| self.calibrate(*c))
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pav_is_monotone_and_estimates_accuracy() {
        let conf = [0.55, 0.6, 0.65, 0.7, 0.8, 0.9, 0.95, 0.99];
        let ok = [false, true, false, true, true, true, true, true];
        let c = Calibrator::fit(&conf, &ok).unwrap();
        let mut last = 0.0;
        for x in [0.5, 0.6, 0.7, 0.8, 0.9, 1.0] {
            let v = c.calibrate(x);
            assert!(v >= last, "monotone");
            last = v;
        }
        assert_eq!(c.calibrate(0.55), 0.0);
        assert_eq!(
            c.calibrate(0.6),
            0.5,
            "0.6 and 0.65 pooled: one right, one wrong"
        );
        assert_eq!(c.calibrate(0.99), 1.0);
        assert_eq!(c.expected_accuracy(&[0.55, 0.99]), Some(0.5));
        assert!(Calibrator::fit(&[], &[]).is_none());
    }

    // A calibrated model: P(right | confidence c) = c. The estimate from unlabelled confidences
    // matches the accuracy the labels later show.
    #[test]
    fn estimate_matches_realised_accuracy_of_a_calibrated_model() {
        let mut s: u64 = 7;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / 2f64.powi(53)
        };
        let draw = |n: usize, next: &mut dyn FnMut() -> f64, shift: f64| {
            let mut conf = Vec::new();
            let mut ok = Vec::new();
            for _ in 0..n {
                let c = (0.5 + 0.5 * next()).min(1.0) * (1.0 - shift) + shift;
                conf.push(c);
                ok.push(next() < c);
            }
            (conf, ok)
        };
        let (rc, rok) = draw(20_000, &mut next, 0.0);
        let cal = Calibrator::fit(&rc, &rok).unwrap();
        // Current data is more confident (shifted), labels unknown to the estimator.
        let (cc, cok) = draw(20_000, &mut next, 0.3);
        let est = cal.expected_accuracy(&cc).unwrap();
        let real = cok.iter().filter(|x| **x).count() as f64 / cok.len() as f64;
        assert!(
            (est - real).abs() < 0.01,
            "estimated {est}, realised {real}"
        );
    }
}
