//! Mutual Information Gap (Chen et al., 2018), as disentanglement_lib
//! computes it: each code cut into [`BINS`] equal-width bins, the plug-in
//! mutual information (nats) of each binned code with each factor, and per
//! factor the gap between the two most informative codes, divided by the
//! factor's entropy, averaged over factors.

use super::{mean_top_two_gap, Codes};
use crate::error::{Error, Result};

/// Equal-width bins per code, as disentanglement_lib's default `num_bins`.
pub const BINS: usize = 20;

/// MIG and what it is made of.
#[derive(Clone, Debug)]
pub struct Mig {
    pub score: f64,
    /// `mutual_info[code][factor]`, nats.
    pub mutual_info: Vec<Vec<f64>>,
    /// Each factor's entropy, nats.
    pub entropy: Vec<f64>,
}

/// Each value's bin as `np.digitize(x, np.histogram(x, bins)[1][:-1])`
/// numbers it: `bins` equal-width bins over min..max (edges as
/// `np.linspace` computes them), a value's bin the count of the left edges
/// at or below it, so the maximum lands in the last bin. A constant code has
/// one bin (NumPy widens its range by ±0.5).
pub fn discretize(code: &[f64], bins: usize) -> Vec<usize> {
    let (mut lo, mut hi) = code.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
        (lo.min(x), hi.max(x))
    });
    if lo == hi {
        lo -= 0.5;
        hi += 0.5;
    }
    let step = (hi - lo) / bins as f64;
    let left_edges: Vec<f64> = (0..bins).map(|k| k as f64 * step + lo).collect();
    code.iter().map(|&x| left_edges.partition_point(|&e| e <= x)).collect()
}

/// The plug-in estimate of the mutual information (nats) of two labellings
/// of the same items, as `sklearn.metrics.mutual_info_score`: from their
/// contingency table, Σ p(a,b) ln(p(a,b) / (p(a) p(b))), never below 0.
pub fn mutual_info(a: &[usize], b: &[usize]) -> f64 {
    let (a, ka) = super::dense_labels(a);
    let (b, kb) = super::dense_labels(b);
    let n = a.len() as f64;
    let mut joint = vec![0usize; ka * kb];
    let (mut na, mut nb) = (vec![0usize; ka], vec![0usize; kb]);
    for (&i, &j) in a.iter().zip(&b) {
        joint[i * kb + j] += 1;
        na[i] += 1;
        nb[j] += 1;
    }
    let mut mi = 0.0;
    for i in 0..ka {
        for j in 0..kb {
            let nij = joint[i * kb + j];
            if nij > 0 {
                let nij = nij as f64;
                mi += nij / n * (nij * n / (na[i] as f64 * nb[j] as f64)).ln();
            }
        }
    }
    mi.max(0.0)
}

/// MIG of `codes` against the factors' labels (`labels[factor][image]`).
/// A factor that takes one value carries no information to find: an error.
pub fn mig(codes: &Codes, labels: &[Vec<usize>]) -> Result<Mig> {
    let binned: Vec<Vec<usize>> = (0..codes.units).map(|u| discretize(&codes.unit(u), BINS)).collect();
    let entropy: Vec<f64> = labels.iter().map(|y| mutual_info(y, y)).collect();
    if let Some(f) = entropy.iter().position(|&h| h <= 0.0) {
        return Err(Error::Input(format!(
            "factor {f} takes a single value in these {} images: it has no entropy to divide by; \
             give images where every factor varies",
            codes.n
        )));
    }
    let mutual_info: Vec<Vec<f64>> = binned
        .iter()
        .map(|code| labels.iter().map(|y| mutual_info(y, code)).collect())
        .collect();
    let normalised: Vec<Vec<f64>> = mutual_info
        .iter()
        .map(|row| row.iter().zip(&entropy).map(|(m, h)| m / h).collect())
        .collect();
    Ok(Mig {
        score: mean_top_two_gap(&normalised, labels.len()),
        mutual_info,
        entropy,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{factor_labels, testdata};
    use super::*;

    #[test]
    fn bins_follow_numpy_histogram_and_digitize() {
        // NumPy 2.4's np.digitize(x, np.histogram(x, bins)[1][:-1]): [1, 2, 3, 4, 4] for
        // x = [0, 1, 2, 3, 4] in 4 bins (the maximum joins the last bin), [11, 11] for a
        // constant [2, 2] in 20 (its range widened to 1.5..2.5).
        assert_eq!(discretize(&[0.0, 1.0, 2.0, 3.0, 4.0], 4), vec![1, 2, 3, 4, 4]);
        assert_eq!(discretize(&[2.0, 2.0], 20), vec![11, 11]);
    }

    #[test]
    fn mutual_information_of_a_labelling_with_itself_is_its_entropy() {
        let y = [0, 1, 2, 3, 0, 1, 2, 3];
        assert!((mutual_info(&y, &y) - 4f64.ln()).abs() < 1e-12);
        assert!(mutual_info(&y, &[5; 8]).abs() < 1e-12);
    }

    #[test]
    fn codes_copying_factors_score_near_one_and_noise_near_zero() {
        // At most 20 values a factor, so each of a copy's values has a bin of its own
        // (a 40-value factor in 20 bins would keep only ln 20 / ln 40 of its entropy).
        let f = testdata::factors(10_000, &[3, 6, 10, 16, 20], 1);
        let labels = factor_labels(&f);
        let copied = mig(&testdata::copies(&f, 2), &labels).unwrap();
        assert!(copied.score > 0.95, "{}", copied.score);
        let noise = mig(&testdata::noise(10_000, 10, 3), &labels).unwrap();
        assert!(noise.score < 0.01, "{}", noise.score);
    }

    /// tests/fixtures/mig_sklearn.json: codes, factors and the mutual
    /// information and MIG scikit-learn's `mutual_info_score` gives on them,
    /// made by tests/fixtures/mig_sklearn.py.
    #[test]
    fn mig_equals_scikit_learns_on_the_fixture() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mig_sklearn.json");
        let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let codes: Vec<Vec<f64>> = serde_json::from_value(fixture["codes"].clone()).unwrap();
        let factors: Vec<Vec<usize>> = serde_json::from_value(fixture["factors"].clone()).unwrap();
        let want_mi: Vec<Vec<f64>> = serde_json::from_value(fixture["mutual_info"].clone()).unwrap();
        let want_entropy: Vec<f64> = serde_json::from_value(fixture["entropy"].clone()).unwrap();
        let want_mig = fixture["mig"].as_f64().unwrap();
        let (n, units) = (codes.len(), codes[0].len());
        let codes = Codes::new(n, units, codes.concat()).unwrap();
        let table = crate::data::IndexTable {
            rows: n,
            cols: factors[0].len(),
            values: factors.concat(),
        };
        let got = mig(&codes, &factor_labels(&table)).unwrap();
        for (u, (got, want)) in got.mutual_info.iter().zip(&want_mi).enumerate() {
            for (f, (g, w)) in got.iter().zip(want).enumerate() {
                assert!((g - w).abs() < 1e-6, "code {u}, factor {f}: {g} vs scikit-learn's {w}");
            }
        }
        for (g, w) in got.entropy.iter().zip(&want_entropy) {
            assert!((g - w).abs() < 1e-6, "entropy {g} vs {w}");
        }
        assert!(
            (got.score - want_mig).abs() < 1e-6,
            "MIG {} vs scikit-learn's {want_mig}",
            got.score
        );
    }
}
