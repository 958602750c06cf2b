//! A run's progress in pictures, drawn from its EMA weights into the run
//! directory (each PNG written atomically):
//!
//! - `samples.png`: 16 samples, every level from its prior at the picture
//!   temperatures, as a 4x4 grid;
//! - `reconstructions.png`: the first 8 training images in one row, their
//!   reconstructions (every level from the posterior mean) in the row below.
//!
//! The noise seed is fixed, so successive pictures differ only by training.

use crate::checkpoint::NamedTensors;
use crate::data::ImageSet;
use crate::diagnose::reconstruct::reconstruct;
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::model::evaluate::Device;
use crate::model::preprocess::{fixed_binary_images, Normalization};
use crate::model::sample::{sample_images, write_grid_png, write_rows_png};
use crate::model::HParams;

/// Samples in `samples.png`, a square grid.
pub const SAMPLES: usize = 16;
/// Training images (and reconstructions) in `reconstructions.png`.
pub const RECONSTRUCTED: usize = 8;
/// Seed of the prior and pixel noise and of a Bernoulli model's binarization.
const SEED: u64 = 0;

pub struct Pictures {
    /// The images to reconstruct, as the model sees them (binarized once for a Bernoulli model).
    originals: ImageSet,
    /// Prior temperature of each level, top first.
    temperatures: Vec<f32>,
    norm: Normalization,
}

impl Pictures {
    /// The pictures of a model trained on `images` (fitted to it) with
    /// normalisation `norm`, sampled at `temperatures`: one per level, each
    /// checked, as `Temperatures::per_level` gives them.
    pub fn new(h: &HParams, images: &ImageSet, norm: Normalization, temperatures: Vec<f32>) -> Pictures {
        Pictures {
            originals: fixed_binary_images(h.likelihood, images.first(RECONSTRUCTED), SEED),
            temperatures,
            norm,
        }
    }

    /// Writes `samples.png` and `reconstructions.png` of `weights` into `dir`.
    pub fn write(&self, ctx: &GpuContext, dir: &str, h: &HParams, weights: &NamedTensors) -> Result<()> {
        let device = Device::Gpu(ctx);
        let samples = sample_images(device, h, weights, SAMPLES, &self.temperatures, SEED, None)?;
        write_grid_png(&format!("{dir}/samples.png"), &samples, SAMPLES.isqrt())?;
        let every_level = h.latent_levels()?;
        let rows = reconstruct(
            device,
            h,
            weights,
            &self.originals,
            self.norm,
            &[every_level],
            &self.temperatures,
            SEED,
        )?;
        let rows: Vec<ImageSet> = std::iter::once(self.originals.clone()).chain(rows).collect();
        write_rows_png(&format!("{dir}/reconstructions.png"), &rows)
    }
}
