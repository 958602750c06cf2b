//! Separated Attribute Predictability (Kumar et al., 2018) for discrete
//! factors: per code and factor, how well that one code alone classifies the
//! factor on held-out images; per factor the gap between the two best codes,
//! averaged over factors.
//!
//! The one-code classifier is the nearest class mean: each class is the mean
//! of its training codes, an image goes to the class whose mean is nearest
//! its code. disentanglement_lib trains a LinearSVC per code; in one
//! dimension both split the line into intervals, one per class, and the
//! nearest mean needs no regularisation constant or iterations.

use super::{mean_top_two_gap, Codes};

/// SAP and its score matrix.
#[derive(Clone, Debug)]
pub struct Sap {
    pub score: f64,
    /// `accuracy[code][factor]`: held-out accuracy of that code alone.
    pub accuracy: Vec<Vec<f64>>,
}

/// Held-out accuracy of the nearest-class-mean classifier of `labels` from
/// the scalar `code`, trained on items `..n_train` and tested on the rest.
pub fn nearest_mean_accuracy(code: &[f64], labels: &[usize], n_train: usize) -> f64 {
    let classes = labels[..n_train].iter().max().map_or(0, |m| m + 1);
    let mut sum = vec![0.0; classes];
    let mut count = vec![0usize; classes];
    for (&x, &y) in code[..n_train].iter().zip(&labels[..n_train]) {
        sum[y] += x;
        count[y] += 1;
    }
    // (mean, class) of the classes seen in training, sorted by mean.
    let mut means: Vec<(f64, usize)> = (0..classes)
        .filter(|&k| count[k] > 0)
        .map(|k| (sum[k] / count[k] as f64, k))
        .collect();
    means.sort_by(|a, b| a.0.total_cmp(&b.0));
    let test = &code[n_train..];
    let right = test
        .iter()
        .zip(&labels[n_train..])
        .filter(|(&x, &y)| {
            let at = means.partition_point(|m| m.0 < x);
            // The nearest mean is at `at` or just before it; a tie goes to the smaller mean.
            let nearest = match (at.checked_sub(1).map(|i| means[i]), means.get(at)) {
                (Some(below), Some(above)) if x - below.0 <= above.0 - x => below,
                (_, Some(&above)) => above,
                (Some(below), None) => below,
                (None, None) => return false,
            };
            nearest.1 == y
        })
        .count();
    right as f64 / test.len() as f64
}

/// SAP of `codes` against the factors' labels (`labels[factor][image]`).
pub fn sap(codes: &Codes, labels: &[Vec<usize>], n_train: usize) -> Sap {
    let accuracy: Vec<Vec<f64>> = (0..codes.units)
        .map(|u| {
            let code = codes.unit(u);
            labels
                .iter()
                .map(|y| nearest_mean_accuracy(&code, y, n_train))
                .collect()
        })
        .collect();
    Sap {
        score: mean_top_two_gap(&accuracy, labels.len()),
        accuracy,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{factor_labels, testdata, train_count};
    use super::*;

    #[test]
    fn the_nearest_mean_classifies_separated_classes_and_ties_go_low() {
        // Class 0 near 0, class 1 near 10; tested: 1 → 0, 9 → 1, 5 (a tie) → 0.
        let code = [0.0, 0.0, 10.0, 10.0, 1.0, 9.0, 5.0];
        let labels = [0, 0, 1, 1, 0, 1, 0];
        assert_eq!(nearest_mean_accuracy(&code, &labels, 4), 1.0);
        let labels = [0, 0, 1, 1, 1, 0, 1];
        assert_eq!(nearest_mean_accuracy(&code, &labels, 4), 0.0);
    }

    #[test]
    fn codes_copying_factors_separate_and_noise_does_not() {
        let f = testdata::factors(5000, &[3, 6, 40, 32, 32], 1);
        let labels = factor_labels(&f);
        let n_train = train_count(f.rows);
        let copied = sap(&testdata::copies(&f, 2), &labels, n_train);
        for (u, row) in copied.accuracy.iter().enumerate() {
            assert!(row[u] > 0.99, "code {u} copies factor {u}: accuracy {}", row[u]);
        }
        // The gap is 1 less the best other code's accuracy, near chance (1/K) for each factor.
        assert!(copied.score > 0.6, "{}", copied.score);
        let noise = sap(&testdata::noise(5000, 10, 3), &labels, n_train);
        assert!(noise.score < 0.05, "{}", noise.score);
    }
}
