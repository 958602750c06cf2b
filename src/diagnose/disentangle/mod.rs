//! `vdvae disentangle`: how well each level's codes separate the generative
//! factors of labelled data (dSprites), by MIG, SAP and DCI, as
//! disentanglement_lib (Locatello et al., 2019) defines them.
//!
//! A code is one unit of a level: its posterior mean, averaged over space.
//! SAP and DCI train classifiers on the first [`TRAIN_SHARE`] of the images
//! and score them on the rest; MIG uses all of them.

pub mod codes;
pub mod dci;
pub mod mig;
pub mod sap;

pub use codes::{level_codes, Codes};

use crate::data::IndexTable;
use crate::error::{Error, Result};

/// The share of the images the classifiers of SAP and DCI train on; the
/// rest is where their accuracy is measured.
pub const TRAIN_SHARE: f64 = 0.8;

/// The fewest images that leave a few to test on.
pub const MIN_IMAGES: usize = 10;

/// One set of codes' scores.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Scores {
    pub units: usize,
    pub mig: f64,
    pub sap: f64,
    pub dci: dci::Dci,
}

/// Each factor's column of `factors` relabelled 0..K in the order the values
/// first appear: the classes the metrics see (a grid value never drawn is no class).
pub fn factor_labels(factors: &IndexTable) -> Vec<Vec<usize>> {
    (0..factors.cols)
        .map(|f| {
            let column: Vec<usize> = (0..factors.rows)
                .map(|r| factors.values[r * factors.cols + f])
                .collect();
            dense_labels(&column).0
        })
        .collect()
}

/// `values` as labels 0..K (first appearance first) and K.
pub fn dense_labels(values: &[usize]) -> (Vec<usize>, usize) {
    let mut ids = std::collections::HashMap::new();
    let labels = values
        .iter()
        .map(|v| {
            let next = ids.len();
            *ids.entry(*v).or_insert(next)
        })
        .collect();
    (labels, ids.len())
}

/// The images the classifiers train on: the first [`TRAIN_SHARE`] of `n`.
pub fn train_count(n: usize) -> usize {
    ((n as f64 * TRAIN_SHARE).round() as usize).clamp(1, n.saturating_sub(1))
}

/// MIG, SAP and DCI of `codes` against `factors` (one row per image each).
pub fn scores(codes: &Codes, factors: &IndexTable, forest: &dci::Forest) -> Result<Scores> {
    if codes.n != factors.rows {
        return Err(Error::Input(format!(
            "{} codes but {} rows of factors: give the factors of the same images, in the same order",
            codes.n, factors.rows
        )));
    }
    if codes.n < MIN_IMAGES {
        return Err(Error::Input(format!(
            "{} images: give at least {MIN_IMAGES}, so the classifiers of SAP and DCI have some to test on",
            codes.n
        )));
    }
    if codes.units == 0 || factors.cols == 0 {
        return Err(Error::Input(format!(
            "{} codes per image and {} factors: both must be at least 1",
            codes.units, factors.cols
        )));
    }
    let labels = factor_labels(factors);
    let n_train = train_count(codes.n);
    Ok(Scores {
        units: codes.units,
        mig: mig::mig(codes, &labels)?.score,
        sap: sap::sap(codes, &labels, n_train).score,
        dci: dci::dci(codes, &labels, n_train, forest)?,
    })
}

/// The mean over factors of the gap between the largest and the second
/// largest score of the codes (`scores[code][factor]`); with a single code
/// the second is taken as 0.
pub fn mean_top_two_gap(scores: &[Vec<f64>], factors: usize) -> f64 {
    let mut total = 0.0;
    for f in 0..factors {
        let mut column: Vec<f64> = scores.iter().map(|row| row[f]).collect();
        column.sort_by(|a, b| b.total_cmp(a));
        total += column[0] - column.get(1).copied().unwrap_or(0.0);
    }
    total / factors as f64
}

#[cfg(test)]
pub(crate) mod testdata {
    use super::*;
    use crate::data::dsprites::SplitMix64;

    /// `n` random factor rows with `sizes` values each.
    pub fn factors(n: usize, sizes: &[usize], seed: u64) -> IndexTable {
        let mut rng = SplitMix64::new(seed);
        let values = (0..n)
            .flat_map(|_| sizes.iter().map(|&k| rng.below(k)).collect::<Vec<_>>())
            .collect();
        IndexTable {
            rows: n,
            cols: sizes.len(),
            values,
        }
    }

    /// Codes that copy each factor's index, plus a little noise (each code one factor).
    pub fn copies(f: &IndexTable, seed: u64) -> Codes {
        let mut rng = SplitMix64::new(seed);
        let values = f
            .values
            .iter()
            .map(|&v| v as f64 + 0.01 * (rng.next_u64() as f64 / u64::MAX as f64))
            .collect();
        Codes::new(f.rows, f.cols, values).unwrap()
    }

    /// `units` codes of uniform noise, independent of any factor.
    pub fn noise(n: usize, units: usize, seed: u64) -> Codes {
        let mut rng = SplitMix64::new(seed);
        let values = (0..n * units)
            .map(|_| rng.next_u64() as f64 / u64::MAX as f64)
            .collect();
        Codes::new(n, units, values).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gap_is_between_the_two_best_codes_per_factor() {
        // Codes × factors: factor 0's best two are 0.9 and 0.5, factor 1's 0.7 and 0.6.
        let s = vec![vec![0.9, 0.1], vec![0.5, 0.7], vec![0.2, 0.6]];
        assert!((mean_top_two_gap(&s, 2) - (0.4 + 0.1) / 2.0).abs() < 1e-12);
        assert!((mean_top_two_gap(&[vec![0.3]], 1) - 0.3).abs() < 1e-12);
    }

    #[test]
    fn factor_values_become_classes_in_order_of_appearance() {
        assert_eq!(dense_labels(&[7, 3, 7, 9]), (vec![0, 1, 0, 2], 3));
    }

    #[test]
    fn mismatched_rows_and_too_few_images_are_input_errors() {
        let f = testdata::factors(100, &[3, 4], 1);
        let err = scores(&testdata::noise(99, 2, 2), &f, &dci::Forest::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("99 codes but 100 rows"), "{err}");
        let f = testdata::factors(5, &[3], 1);
        let err = scores(&testdata::noise(5, 2, 2), &f, &dci::Forest::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 10"), "{err}");
    }
}
