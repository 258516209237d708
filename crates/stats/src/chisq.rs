//! Chi-square tests as scipy computes them: the goodness-of-fit test `scipy.stats.chisquare`
//! (Evidently's categorical drift test) and the test of independence
//! `scipy.stats.chi2_contingency` (with Yates' correction when there is one degree of freedom).

use crate::special::chi_square_sf;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChiSquare {
    pub statistic: f64,
    pub p_value: f64,
    pub dof: f64,
}

/// Pearson's goodness of fit of `observed` to `expected` (same total), k − 1 degrees of freedom.
/// An expected count of zero with an observed count above zero gives an infinite statistic and
/// p = 0, as scipy does.
pub fn chisquare(observed: &[f64], expected: &[f64]) -> ChiSquare {
    let statistic: f64 = observed
        .iter()
        .zip(expected)
        .map(|(o, e)| {
            let d = o - e;
            if d == 0.0 { 0.0 } else { d * d / e }
        })
        .sum();
    let dof = observed.len().saturating_sub(1) as f64;
    ChiSquare {
        statistic,
        p_value: if statistic.is_infinite() {
            0.0
        } else {
            chi_square_sf(statistic, dof)
        },
        dof,
    }
}

/// Chi-square test of independence of a rows × cols table (row-major), as
/// `scipy.stats.chi2_contingency(table)`. `None` when a row or column sums to zero (scipy raises).
pub fn chi2_contingency(table: &[f64], rows: usize, cols: usize) -> Option<ChiSquare> {
    if rows == 0 || cols == 0 || table.len() != rows * cols {
        return None;
    }
    let row_sums: Vec<f64> = (0..rows)
        .map(|r| table[r * cols..(r + 1) * cols].iter().sum())
        .collect();
    let col_sums: Vec<f64> = (0..cols)
        .map(|c| (0..rows).map(|r| table[r * cols + c]).sum())
        .collect();
    if row_sums.iter().chain(&col_sums).any(|&s| s == 0.0) {
        return None;
    }
    let total: f64 = row_sums.iter().sum();
    let dof = ((rows - 1) * (cols - 1)) as f64;
    if dof == 0.0 {
        return Some(ChiSquare {
            statistic: 0.0,
            p_value: 1.0,
            dof,
        });
    }
    let mut statistic = 0.0;
    for r in 0..rows {
        for c in 0..cols {
            let e = row_sums[r] * col_sums[c] / total;
            let mut o = table[r * cols + c];
            if dof == 1.0 {
                let diff = e - o;
                o += diff.signum() * diff.abs().min(0.5);
            }
            statistic += (o - e) * (o - e) / e;
        }
    }
    Some(ChiSquare {
        statistic,
        p_value: chi_square_sf(statistic, dof),
        dof,
    })
}
