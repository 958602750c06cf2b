//! DCI (Eastwood and Williams, 2018): disentanglement, completeness and
//! informativeness from an importance matrix R[code][factor].
//!
//! Per factor a forest of bagged CART trees (smartcore's
//! `DecisionTreeClassifier`, Gini splits) learns the factor from all codes,
//! as Eastwood and Williams used random forests. R's column is the trees'
//! impurity-decrease importances (each tree's normalised to sum to 1, then
//! averaged, as scikit-learn's `feature_importances_`); the informativeness
//! is the forest's majority-vote accuracy on held-out images, averaged over
//! factors. D and C then follow disentanglement_lib's `dci.py`:
//! D = Σ_i ρ_i (1 − H_K(P_i·)), C = Σ_j ρ_j (1 − H_D(P_·j)), P the rows or
//! columns of R normalised, ρ their share of R's total, H_b the entropy in
//! base b (K factors, D codes). With every column of R summing to 1, C's
//! weights are equal: C is the mean over factors.

use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::tree::decision_tree_classifier::{
    DecisionTreeClassifier, DecisionTreeClassifierParameters, SplitCriterion,
};

use super::Codes;
use crate::data::dsprites::SplitMix64;
use crate::error::{Error, Result};

/// The forest each factor is learnt with.
#[derive(Clone, Debug)]
pub struct Forest {
    /// Trees, each on a bootstrap sample of the training images.
    pub trees: usize,
    /// Deepest split: bounds the time (smartcore scans every image at every node).
    pub max_depth: u16,
    pub seed: u64,
}

impl Default for Forest {
    fn default() -> Forest {
        Forest {
            trees: 10,
            max_depth: 10,
            seed: 0,
        }
    }
}

/// DCI's three scores and the importance matrix they come from.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Dci {
    pub disentanglement: f64,
    pub completeness: f64,
    pub informativeness: f64,
    /// `importance[code][factor]`.
    #[serde(skip)]
    pub importance: Vec<Vec<f64>>,
}

/// A forest's normalised importances of the codes for one factor and its
/// held-out accuracy, trained on images `..n_train`, tested on the rest.
fn learn_factor(
    codes: &Codes,
    labels: &[usize],
    n_train: usize,
    forest: &Forest,
    seed: u64,
) -> Result<(Vec<f64>, f64)> {
    let failed = |e: smartcore::error::Failed| Error::Input(format!("DCI's trees: {e}"));
    let units = codes.units;
    let test: Vec<f64> = codes.values[n_train * units..].to_vec();
    let n_test = codes.n - n_train;
    let test = DenseMatrix::new(n_test, units, test, false).map_err(failed)?;
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut votes = vec![0u32; n_test * classes];
    let mut importance = vec![0.0; units];
    let mut rng = SplitMix64::new(seed);
    for t in 0..forest.trees {
        let rows: Vec<usize> = (0..n_train).map(|_| rng.below(n_train)).collect();
        let x: Vec<f64> = rows.iter().flat_map(|&i| codes.row(i).iter().copied()).collect();
        let y: Vec<u32> = rows.iter().map(|&i| labels[i] as u32).collect();
        let x = DenseMatrix::new(n_train, units, x, false).map_err(failed)?;
        let parameters = DecisionTreeClassifierParameters {
            criterion: SplitCriterion::Gini,
            max_depth: Some(forest.max_depth),
            min_samples_leaf: 1,
            min_samples_split: 2,
            seed: Some(seed.wrapping_add(t as u64)),
        };
        let tree = DecisionTreeClassifier::fit(&x, &y, parameters).map_err(failed)?;
        let raw = tree.compute_feature_importances(false);
        let total: f64 = raw.iter().sum();
        // A tree that never splits (one class in its sample) says nothing about the codes.
        if total > 0.0 {
            for (sum, r) in importance.iter_mut().zip(&raw) {
                *sum += r / total;
            }
        }
        for (i, &class) in tree.predict(&test).map_err(failed)?.iter().enumerate() {
            votes[i * classes + class as usize] += 1;
        }
    }
    let total: f64 = importance.iter().sum();
    if total > 0.0 {
        importance.iter_mut().for_each(|v| *v /= total);
    }
    let right = (0..n_test)
        .filter(|&i| {
            let row = &votes[i * classes..(i + 1) * classes];
            // The most votes; a tie goes to the smaller class.
            let best = (0..classes).fold(0, |b, k| if row[k] > row[b] { k } else { b });
            best == labels[n_train + i]
        })
        .count();
    Ok((importance, right as f64 / n_test as f64))
}

/// 1 − the entropy of `weights` (normalised, smoothed by 1e-11 as
/// disentanglement_lib does) in base `base`; 1 when the base is 1 (a lone
/// code or factor has nothing to share its importance with).
fn one_minus_entropy(weights: &[f64], base: usize) -> f64 {
    if base <= 1 {
        return 1.0;
    }
    let smoothed: Vec<f64> = weights.iter().map(|w| w + 1e-11).collect();
    let total: f64 = smoothed.iter().sum();
    let h: f64 = smoothed
        .iter()
        .map(|w| w / total)
        .map(|p| if p > 0.0 { -p * p.ln() } else { 0.0 })
        .sum();
    1.0 - h / (base as f64).ln()
}

/// D and C of the importance matrix `r[code][factor]`.
pub fn disentanglement_completeness(r: &[Vec<f64>]) -> (f64, f64) {
    let (codes, factors) = (r.len(), r.first().map_or(0, |row| row.len()));
    let total: f64 = r.iter().flatten().sum();
    // All-zero importances weigh every code and factor alike, as disentanglement_lib.
    let share = |part: f64, count: usize| if total > 0.0 { part / total } else { 1.0 / count as f64 };
    let d = r
        .iter()
        .map(|row| share(row.iter().sum(), codes) * one_minus_entropy(row, factors))
        .sum();
    let c = (0..factors)
        .map(|j| {
            let column: Vec<f64> = r.iter().map(|row| row[j]).collect();
            share(column.iter().sum(), factors) * one_minus_entropy(&column, codes)
        })
        .sum();
    (d, c)
}

/// DCI of `codes` against the factors' labels (`labels[factor][image]`),
/// the forests trained on images `..n_train`.
pub fn dci(codes: &Codes, labels: &[Vec<usize>], n_train: usize, forest: &Forest) -> Result<Dci> {
    let mut importance = vec![vec![0.0; labels.len()]; codes.units];
    let mut accuracy = 0.0;
    for (j, y) in labels.iter().enumerate() {
        let seed = forest.seed.wrapping_add((j as u64) << 32);
        let (column, acc) = learn_factor(codes, y, n_train, forest, seed)?;
        for (row, v) in importance.iter_mut().zip(column) {
            row[j] = v;
        }
        accuracy += acc;
    }
    let (disentanglement, completeness) = disentanglement_completeness(&importance);
    Ok(Dci {
        disentanglement,
        completeness,
        informativeness: accuracy / labels.len() as f64,
        importance,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{factor_labels, testdata, train_count};
    use super::*;

    #[test]
    fn a_diagonal_importance_matrix_is_fully_disentangled_and_complete() {
        let r = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        let (d, c) = disentanglement_completeness(&r);
        assert!((d - 1.0).abs() < 1e-6 && (c - 1.0).abs() < 1e-6, "{d} {c}");
        let (d, c) = disentanglement_completeness(&[vec![0.5, 0.5], vec![0.5, 0.5]]);
        assert!(d.abs() < 1e-9 && c.abs() < 1e-9, "{d} {c}");
        // One code for two factors: the code is not disentangled, each factor is complete.
        let (d, c) = disentanglement_completeness(&[vec![1.0, 1.0], vec![0.0, 0.0]]);
        assert!(d.abs() < 1e-6 && (c - 1.0).abs() < 1e-6, "{d} {c}");
    }

    #[test]
    fn codes_copying_factors_score_near_one_and_noise_near_zero() {
        let f = testdata::factors(2000, &[3, 6, 10, 16, 20], 1);
        let labels = factor_labels(&f);
        let n_train = train_count(f.rows);
        let forest = Forest::default();
        let copied = dci(&testdata::copies(&f, 2), &labels, n_train, &forest).unwrap();
        assert!(copied.disentanglement > 0.9, "{copied:?}");
        assert!(copied.completeness > 0.9, "{copied:?}");
        assert!(copied.informativeness > 0.95, "{copied:?}");
        let noise = dci(&testdata::noise(2000, 5, 3), &labels, n_train, &forest).unwrap();
        assert!(noise.disentanglement < 0.1, "{noise:?}");
        assert!(noise.completeness < 0.1, "{noise:?}");
        // Chance is 1/K per factor: about 0.17 averaged over these.
        assert!(noise.informativeness < 0.3, "{noise:?}");
    }
}
