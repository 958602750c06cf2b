//! Codes: one number per unit and image, what the metrics score.

use crate::diagnose::encode::posterior_passes;
use crate::error::{Error, Result};
use crate::model::conditional::BatchRun;

/// `n` images' codes, `units` each, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Codes {
    pub n: usize,
    pub units: usize,
    pub values: Vec<f64>,
}

impl Codes {
    /// Refuses a length that is not `n`·`units` and values that are not finite.
    pub fn new(n: usize, units: usize, values: Vec<f64>) -> Result<Codes> {
        if values.len() != n * units {
            return Err(Error::Shape(format!(
                "{} code values for {n} images of {units} units",
                values.len()
            )));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::Input(format!(
                "code {} of image {} is {}: the model's posterior mean is not finite",
                i % units.max(1),
                i / units.max(1),
                values[i]
            )));
        }
        Ok(Codes { n, units, values })
    }

    /// Unit `u`'s code of every image.
    pub fn unit(&self, u: usize) -> Vec<f64> {
        (0..self.n).map(|i| self.values[i * self.units + u]).collect()
    }

    /// Image `i`'s codes.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.units..(i + 1) * self.units]
    }

    /// The sets' units side by side (they must be of the same images).
    pub fn join(sets: &[Codes]) -> Result<Codes> {
        let n = sets.first().map_or(0, |s| s.n);
        if sets.iter().any(|s| s.n != n) {
            return Err(Error::Shape("joining codes of different numbers of images".into()));
        }
        let units = sets.iter().map(|s| s.units).sum();
        let mut values = Vec::with_capacity(n * units);
        for i in 0..n {
            for s in sets {
                values.extend_from_slice(s.row(i));
            }
        }
        Codes::new(n, units, values)
    }
}

/// Each level's codes of the images of `run` (top level first, as
/// `encode`'s `level.LL.mean`): the posterior mean along the posterior-mean
/// path, averaged over the level's pixels to one code per channel.
pub fn level_codes(run: &BatchRun<'_, '_>) -> Result<Vec<Codes>> {
    let levels = run.h.latent_levels()?;
    let mut pooled: Vec<Vec<f64>> = vec![Vec::new(); levels];
    let mut units = vec![0; levels];
    posterior_passes(run, |pass| {
        for (l, (mu, _)) in pass.posterior.iter().enumerate() {
            let [h, w, c] = pass.shapes[l][..] else {
                unreachable!("a latent is [N, H, W, C]")
            };
            units[l] = c;
            // NHWC: image i's pixel p, channel k at (i·HW + p)·C + k.
            for image in mu.chunks_exact(h * w * c) {
                let mut sum = vec![0.0f64; c];
                for pixel in image.chunks_exact(c) {
                    for (s, &v) in sum.iter_mut().zip(pixel) {
                        *s += v as f64;
                    }
                }
                pooled[l].extend(sum.into_iter().map(|s| s / (h * w) as f64));
            }
        }
        Ok(())
    })?;
    pooled
        .into_iter()
        .zip(units)
        .map(|(values, c)| Codes::new(run.images.n, c, values))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_codes_put_each_images_units_side_by_side() {
        let a = Codes::new(2, 1, vec![1.0, 2.0]).unwrap();
        let b = Codes::new(2, 2, vec![10.0, 11.0, 20.0, 21.0]).unwrap();
        let j = Codes::join(&[a, b]).unwrap();
        assert_eq!((j.n, j.units), (2, 3));
        assert_eq!(j.values, vec![1.0, 10.0, 11.0, 2.0, 20.0, 21.0]);
        assert_eq!(j.unit(1), vec![10.0, 20.0]);
    }

    #[test]
    fn a_code_that_is_not_finite_is_refused() {
        let err = Codes::new(1, 2, vec![0.0, f64::NAN]).unwrap_err().to_string();
        assert!(err.contains("code 1 of image 0"), "{err}");
    }
}
