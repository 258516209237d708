//! Trees on histograms: features are binned once (≤ 255 quantile bins), every split is found from
//! per-bin gradient/hessian sums. One builder serves gradient boosting (regression, binary and
//! multiclass log-loss), a single decision tree and random forests (bagged trees on one-hot
//! targets, whose variance reduction is Gini's).

use serde::{Deserialize, Serialize};

/// A node: `f < 0` is a leaf with value `v`; else rows with `x[f] <= t` go to `l`, others to `r`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub f: i32,
    pub t: f64,
    pub l: u32,
    pub r: u32,
    pub v: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    pub fn predict(&self, row: &[f64]) -> f64 {
        let mut i = 0usize;
        loop {
            let n = &self.nodes[i];
            if n.f < 0 {
                return n.v;
            }
            i = if row[n.f as usize] <= n.t {
                n.l as usize
            } else {
                n.r as usize
            };
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct TreeParams {
    pub max_depth: usize,
    pub min_samples_leaf: usize,
    /// L2 regularisation of leaf values.
    pub lambda: f64,
    /// Features tried per split (random forests); `None` = all.
    pub max_features: Option<usize>,
}

/// Features binned column-major; `edges[f][b]` is the upper edge of bin `b`.
pub struct Binned {
    pub edges: Vec<Vec<f64>>,
    pub bins: Vec<Vec<u8>>,
    /// The same bins row-major (`rows[i * d + f]`): histograms are built in one pass over rows.
    pub rows: Vec<u8>,
    /// Where feature `f`'s bins start in a histogram (features have as many bins as they need:
    /// a one-hot column has two, so histograms stay small).
    pub offsets: Vec<usize>,
    pub total_bins: usize,
    pub n: usize,
}

/// Bins every row of `x`, with edges learnt from `fit_rows` only (no leakage from test rows).
pub fn bin(x: &[Vec<f64>], fit_rows: &[usize], max_bins: usize) -> Binned {
    let n = x.len();
    let d = x.first().map_or(0, Vec::len);
    let mut edges = Vec::with_capacity(d);
    let mut bins: Vec<Vec<u8>> = Vec::with_capacity(d);
    for f in 0..d {
        let mut col: Vec<f64> = fit_rows.iter().map(|&i| x[i][f]).collect();
        col.sort_by(f64::total_cmp);
        col.dedup();
        // Edges halfway between distinct values at evenly spaced quantiles.
        let e: Vec<f64> = if col.len() <= max_bins {
            col.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect()
        } else {
            (1..max_bins)
                .map(|k| {
                    let i = k * col.len() / max_bins;
                    (col[i - 1] + col[i]) / 2.0
                })
                .collect()
        };
        bins.push(
            x.iter()
                .map(|r| e.partition_point(|edge| *edge < r[f]) as u8)
                .collect(),
        );
        edges.push(e);
    }
    let d = bins.len();
    let mut rows = vec![0u8; n * d];
    for (f, col) in bins.iter().enumerate() {
        for (i, v) in col.iter().enumerate() {
            rows[i * d + f] = *v;
        }
    }
    let mut offsets = Vec::with_capacity(d);
    let mut total_bins = 0;
    for e in &edges {
        offsets.push(total_bins);
        total_bins += e.len() + 1;
    }
    Binned {
        edges,
        bins,
        rows,
        offsets,
        total_bins,
        n,
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Per-feature histograms of (sum g, sum h, count), flat: `offsets[f] + bin`.
struct Hist {
    g: Vec<f64>,
    h: Vec<f64>,
    c: Vec<u32>,
}

impl Hist {
    fn build(b: &Binned, g: &[f64], h: &[f64], rows: &[usize]) -> Hist {
        // Large nodes are split across the cores and the partial histograms summed.
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8);
        if threads > 1 && rows.len() >= 8192 {
            let chunk = rows.len().div_ceil(threads);
            let parts: Vec<Hist> = std::thread::scope(|scope| {
                let handles: Vec<_> = rows
                    .chunks(chunk)
                    .map(|part| scope.spawn(move || Hist::build_serial(b, g, h, part)))
                    .collect();
                handles.into_iter().filter_map(|t| t.join().ok()).collect()
            });
            let mut it = parts.into_iter();
            let mut total = it
                .next()
                .unwrap_or_else(|| Hist::build_serial(b, g, h, &[]));
            for p in it {
                total.g.iter_mut().zip(&p.g).for_each(|(a, x)| *a += x);
                total.h.iter_mut().zip(&p.h).for_each(|(a, x)| *a += x);
                total.c.iter_mut().zip(&p.c).for_each(|(a, x)| *a += x);
            }
            return total;
        }
        Hist::build_serial(b, g, h, rows)
    }

    fn build_serial(b: &Binned, g: &[f64], h: &[f64], rows: &[usize]) -> Hist {
        let d = b.edges.len();
        let t = b.total_bins;
        let mut hist = Hist {
            g: vec![0.0; t],
            h: vec![0.0; t],
            c: vec![0; t],
        };
        for &i in rows {
            let (gi, hi) = (g[i], h[i]);
            let bins = &b.rows[i * d..(i + 1) * d];
            for (&bin, &off) in bins.iter().zip(&b.offsets) {
                let k = off + bin as usize;
                hist.g[k] += gi;
                hist.h[k] += hi;
                hist.c[k] += 1;
            }
        }
        hist
    }

    /// `self - other`: the sibling's histogram without another pass over its rows.
    fn minus(&self, other: &Hist) -> Hist {
        Hist {
            g: self.g.iter().zip(&other.g).map(|(a, b)| a - b).collect(),
            h: self.h.iter().zip(&other.h).map(|(a, b)| a - b).collect(),
            c: self.c.iter().zip(&other.c).map(|(a, b)| a - b).collect(),
        }
    }
}

/// Grows one tree on gradients `g` and hessians `h` of `rows`; leaves hold -G/(H + λ).
pub fn grow(b: &Binned, g: &[f64], h: &[f64], rows: Vec<usize>, p: &TreeParams, seed: u64) -> Tree {
    let mut nodes = Vec::new();
    let mut rng = Rng(seed.max(1));
    let hist = Hist::build(b, g, h, &rows);
    grow_node(b, g, h, rows, hist, p, 0, &mut nodes, &mut rng);
    Tree { nodes }
}

#[allow(clippy::too_many_arguments)]
fn grow_node(
    b: &Binned,
    g: &[f64],
    h: &[f64],
    rows: Vec<usize>,
    hist: Hist,
    p: &TreeParams,
    depth: usize,
    nodes: &mut Vec<Node>,
    rng: &mut Rng,
) -> u32 {
    let (gs, hs): (f64, f64) = rows
        .iter()
        .fold((0.0, 0.0), |(a, c), &i| (a + g[i], c + h[i]));
    let id = nodes.len() as u32;
    nodes.push(Node {
        f: -1,
        t: 0.0,
        l: 0,
        r: 0,
        v: -gs / (hs + p.lambda),
    });
    if depth >= p.max_depth || rows.len() < 2 * p.min_samples_leaf {
        return id;
    }
    let d = b.edges.len();
    let mut features: Vec<usize> = (0..d).collect();
    if let Some(k) = p.max_features.filter(|k| *k < d) {
        for i in 0..k {
            let j = i + (rng.next() as usize % (d - i));
            features.swap(i, j);
        }
        features.truncate(k);
    }
    let parent = gs * gs / (hs + p.lambda);
    let mut best: Option<(f64, usize, usize)> = None;
    for &f in &features {
        let nb = b.edges[f].len() + 1;
        if nb < 2 {
            continue;
        }
        let (mut gl, mut hl, mut cl) = (0.0, 0.0, 0usize);
        for k in 0..nb - 1 {
            let at = b.offsets[f] + k;
            gl += hist.g[at];
            hl += hist.h[at];
            cl += hist.c[at] as usize;
            let cr = rows.len() - cl;
            if cl < p.min_samples_leaf || cr < p.min_samples_leaf {
                continue;
            }
            let (gr, hr) = (gs - gl, hs - hl);
            let gain = gl * gl / (hl + p.lambda) + gr * gr / (hr + p.lambda) - parent;
            if gain > 1e-12 && best.is_none_or(|(bg, _, _)| gain > bg) {
                best = Some((gain, f, k));
            }
        }
    }
    let Some((_, f, k)) = best else { return id };
    let (left, right): (Vec<usize>, Vec<usize>) = rows
        .into_iter()
        .partition(|&i| (b.bins[f][i] as usize) <= k);
    // Build the smaller child's histogram; the larger one is the parent's minus it.
    let (lh, rh) = if left.len() <= right.len() {
        let lh = Hist::build(b, g, h, &left);
        let rh = hist.minus(&lh);
        (lh, rh)
    } else {
        let rh = Hist::build(b, g, h, &right);
        let lh = hist.minus(&rh);
        (lh, rh)
    };
    drop(hist);
    let l = grow_node(b, g, h, left, lh, p, depth + 1, nodes, rng);
    let r = grow_node(b, g, h, right, rh, p, depth + 1, nodes, rng);
    nodes[id as usize] = Node {
        f: f as i32,
        t: b.edges[f][k],
        l,
        r,
        v: nodes[id as usize].v,
    };
    id
}

/// Which kind of tree model, and how its outputs combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ensemble {
    /// Sum of `learning_rate ×` tree outputs on top of `base` (raw score / logit).
    Boosted,
    /// Mean of tree outputs (values, or class frequencies).
    Averaged,
}

/// A tree model: `trees[k]` are the trees of output `k` (one output for regression and binary
/// classification, one per class for multiclass).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forest {
    pub ensemble: Ensemble,
    pub base: Vec<f64>,
    pub learning_rate: f64,
    pub trees: Vec<Vec<Tree>>,
}

impl Forest {
    /// Raw output per class (regression: one value).
    pub fn raw(&self, row: &[f64]) -> Vec<f64> {
        self.trees
            .iter()
            .zip(&self.base)
            .map(|(ts, b)| match self.ensemble {
                Ensemble::Boosted => {
                    b + self.learning_rate * ts.iter().map(|t| t.predict(row)).sum::<f64>()
                }
                Ensemble::Averaged => {
                    b + ts.iter().map(|t| t.predict(row)).sum::<f64>() / ts.len().max(1) as f64
                }
            })
            .collect()
    }
}

/// Which tree model to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeKind {
    GradientBoosting,
    RandomForest,
    DecisionTree,
}

#[derive(Debug, Clone, Copy)]
pub struct TreeOptions {
    pub kind: TreeKind,
    /// Boosting rounds, or trees in a forest.
    pub rounds: usize,
    pub learning_rate: f64,
    pub max_depth: usize,
    pub min_samples_leaf: usize,
    pub lambda: f64,
    pub max_bins: usize,
    pub seed: u64,
    pub test_fraction: f64,
    /// Cross-validation: the last `n` rows are the test set.
    pub holdout: Option<usize>,
}

impl Default for TreeOptions {
    fn default() -> TreeOptions {
        TreeOptions {
            kind: TreeKind::GradientBoosting,
            rounds: 200,
            learning_rate: 0.1,
            max_depth: 6,
            min_samples_leaf: 20,
            lambda: 1.0,
            max_bins: 255,
            seed: 42,
            test_fraction: 0.2,
            holdout: None,
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Trains on the train split of `targets` (one row of per-output targets: the value, or one-hot
/// class indicators) and returns the forest — boosting on from `init` when given; `on_round`
/// sees each round or tree.
pub(crate) fn fit_forest(
    b: &Binned,
    x: &[Vec<f64>],
    targets: &[Vec<f64>],
    train: &[usize],
    classification: bool,
    (o, init): (&TreeOptions, Option<&Forest>),
    mut on_round: impl FnMut(usize, &Forest, Option<&[Vec<f64>]>),
) -> Forest {
    let k = targets.first().map_or(1, Vec::len);
    let n = x.len();
    let mut rng = Rng(o.seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    match o.kind {
        TreeKind::GradientBoosting => {
            let mean_k: Vec<f64> = (0..k)
                .map(|c| train.iter().map(|&i| targets[i][c]).sum::<f64>() / train.len() as f64)
                .collect();
            let base: Vec<f64> = if !classification {
                mean_k
            } else if k == 1 {
                let p = mean_k[0].clamp(1e-6, 1.0 - 1e-6);
                vec![(p / (1.0 - p)).ln()]
            } else {
                mean_k.iter().map(|p| p.max(1e-6).ln()).collect()
            };
            // A warm start keeps the given forest (its base, its learning rate, its trees: their
            // thresholds are in the inputs' own units) and adds rounds on this data's residuals.
            let (mut forest, mut raw) = match init.filter(|f| {
                f.ensemble == Ensemble::Boosted && f.trees.len() == k && f.base.len() == k
            }) {
                Some(f) => (f.clone(), x.iter().map(|row| f.raw(row)).collect()),
                None => (
                    Forest {
                        ensemble: Ensemble::Boosted,
                        base: base.clone(),
                        learning_rate: o.learning_rate,
                        trees: vec![Vec::new(); k],
                    },
                    vec![base; n],
                ),
            };
            let rate = forest.learning_rate;
            let params = TreeParams {
                max_depth: o.max_depth,
                min_samples_leaf: o.min_samples_leaf,
                lambda: o.lambda,
                max_features: None,
            };
            for round in 0..o.rounds {
                let mut g = vec![vec![0.0; n]; k];
                let mut h = vec![vec![0.0; n]; k];
                for &i in train {
                    if !classification {
                        g[0][i] = raw[i][0] - targets[i][0];
                        h[0][i] = 1.0;
                    } else if k == 1 {
                        let p = sigmoid(raw[i][0]);
                        g[0][i] = p - targets[i][0];
                        h[0][i] = (p * (1.0 - p)).max(1e-6);
                    } else {
                        let m = raw[i].iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        let e: Vec<f64> = raw[i].iter().map(|r| (r - m).exp()).collect();
                        let s: f64 = e.iter().sum();
                        for c in 0..k {
                            let p = e[c] / s;
                            g[c][i] = p - targets[i][c];
                            h[c][i] = (p * (1.0 - p)).max(1e-6);
                        }
                    }
                }
                for c in 0..k {
                    let tree = grow(b, &g[c], &h[c], train.to_vec(), &params, rng.next());
                    for (i, r) in raw.iter_mut().enumerate() {
                        r[c] += rate * tree.predict(&x[i]);
                    }
                    forest.trees[c].push(tree);
                }
                on_round(round, &forest, Some(&raw));
            }
            forest
        }
        TreeKind::RandomForest | TreeKind::DecisionTree => {
            let single = o.kind == TreeKind::DecisionTree;
            let d = b.edges.len();
            let params = TreeParams {
                max_depth: o.max_depth,
                min_samples_leaf: o.min_samples_leaf,
                lambda: 0.0,
                max_features: if single {
                    None
                } else if classification {
                    Some(((d as f64).sqrt().ceil() as usize).max(1))
                } else {
                    None
                },
            };
            let mut forest = Forest {
                ensemble: Ensemble::Averaged,
                base: vec![0.0; k],
                learning_rate: 1.0,
                trees: vec![Vec::new(); k],
            };
            let h = vec![1.0; n];
            let rounds = if single { 1 } else { o.rounds };
            for round in 0..rounds {
                let rows: Vec<usize> = if single {
                    train.to_vec()
                } else {
                    (0..train.len())
                        .map(|_| train[rng.next() as usize % train.len()])
                        .collect()
                };
                let seed = rng.next();
                for c in 0..k {
                    let g: Vec<f64> = targets.iter().map(|t| -t[c]).collect();
                    forest.trees[c].push(grow(b, &g, &h, rows.clone(), &params, seed));
                }
                on_round(round, &forest, None);
            }
            forest
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dataset, ModelPackage, Prediction, train_trees};

    const BREAST_CANCER: &str = include_str!("../../../data/breast_cancer.csv");
    const DIABETES: &str = include_str!("../../../data/diabetes.csv");
    const IRIS: &str = include_str!("../../../data/iris.csv");

    fn options(kind: TreeKind, rounds: usize) -> TreeOptions {
        TreeOptions {
            kind,
            rounds,
            min_samples_leaf: 5,
            ..Default::default()
        }
    }

    #[test]
    fn boosting_forest_and_tree_classify_breast_cancer() {
        let d = Dataset::from_csv(BREAST_CANCER, "diagnosis").expect("csv");
        for (kind, rounds, floor) in [
            (TreeKind::GradientBoosting, 100, 0.93),
            (TreeKind::RandomForest, 50, 0.91),
            (TreeKind::DecisionTree, 1, 0.88),
        ] {
            let fit = train_trees(&d, true, &options(kind, rounds), |_| {}).expect("fit");
            let acc = fit.test_accuracy.unwrap_or(0.0);
            assert!(acc >= floor, "{kind:?}: accuracy {acc}");
            // The package survives JSON and predicts the same.
            let again = ModelPackage::from_json(&fit.package.to_json()).expect("roundtrip");
            assert_eq!(
                again.predict(&d.x[..5]).expect("p"),
                fit.package.predict(&d.x[..5]).expect("p")
            );
        }
    }

    #[test]
    fn boosting_regresses_diabetes_and_is_reproducible() {
        let d = Dataset::from_csv(DIABETES, "progression").expect("csv");
        let o = TreeOptions {
            rounds: 150,
            learning_rate: 0.05,
            max_depth: 3,
            ..options(TreeKind::GradientBoosting, 150)
        };
        let fit = train_trees(&d, false, &o, |_| {}).expect("fit");
        let (_, _, test_rmse) = fit.history.last().copied().expect("history");
        assert!(test_rmse < 62.0, "test rmse {test_rmse}");
        let again = train_trees(&d, false, &o, |_| {}).expect("fit");
        assert_eq!(
            again.package, fit.package,
            "same seed, same model, bit for bit"
        );
        assert!(matches!(
            fit.package.predict(&d.x[..1]).expect("p")[0],
            Prediction::Value(_)
        ));
    }

    #[test]
    fn a_warm_start_keeps_the_trees_and_learns_the_new_rows() {
        let d = Dataset::from_csv(DIABETES, "progression").expect("csv");
        let half = d.x.len() / 2;
        let part = |r: std::ops::Range<usize>| Dataset {
            features: d.features.clone(),
            target: d.target.clone(),
            x: d.x[r.clone()].to_vec(),
            y: d.y[r].to_vec(),
        };
        let (old, new) = (part(0..half), part(half..d.x.len()));
        let o = TreeOptions {
            rounds: 40,
            learning_rate: 0.1,
            max_depth: 3,
            ..options(TreeKind::GradientBoosting, 40)
        };
        let first = train_trees(&old, false, &o, |_| {}).expect("fit");
        let crate::package::Algorithm::Trees { forest, .. } = &first.package.algorithm else {
            panic!("a forest");
        };
        let more = TreeOptions { rounds: 20, ..o };
        let warm = crate::continue_trees(&new, false, &more, Some(forest), |_| {}).expect("warm");
        let crate::package::Algorithm::Trees { forest: grown, .. } = &warm.package.algorithm else {
            panic!("a forest");
        };
        assert_eq!(grown.trees[0].len(), 60, "40 kept, 20 added");
        assert_eq!(
            grown.trees[0][..40],
            forest.trees[0][..],
            "the old trees are kept as they were"
        );
        assert_eq!(
            (grown.base.clone(), grown.learning_rate),
            (forest.base.clone(), forest.learning_rate)
        );
        let rmse = |p: &ModelPackage, dd: &Dataset| {
            let y: Vec<f64> = dd.y.iter().map(|v| v.parse().expect("number")).collect();
            let v: Vec<f64> = p
                .predict(&dd.x)
                .expect("predict")
                .iter()
                .map(|x| {
                    if let Prediction::Value(v) = x {
                        *v
                    } else {
                        f64::NAN
                    }
                })
                .collect();
            crate::regression_metrics(&y, &v)["rmse"]
        };
        assert!(
            rmse(&warm.package, &new) < rmse(&first.package, &new),
            "boosting on the new rows fits them better than the old model did"
        );
    }

    #[test]
    fn multiclass_iris() {
        let d = Dataset::from_csv(IRIS, "species").expect("csv");
        let fit =
            train_trees(&d, true, &options(TreeKind::GradientBoosting, 50), |_| {}).expect("fit");
        assert!(
            fit.test_accuracy.unwrap_or(0.0) >= 0.9,
            "{:?}",
            fit.test_accuracy
        );
        match &fit.package.predict(&d.x[..1]).expect("p")[0] {
            Prediction::Class { probabilities, .. } => assert_eq!(probabilities.len(), 3),
            other => panic!("{other:?}"),
        }
    }
}
