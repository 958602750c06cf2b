//! The held-out ELBO of a run's EMA weights: `vdvae eval` on images the run
//! does not train on, with eval's default seeds (posterior noise 0, a
//! Bernoulli model's binarization 0), so successive evals are comparable and
//! each equals `vdvae eval --checkpoint <run>/model-ema.safetensors` with
//! the same images, batch and precision at that step.

use crate::checkpoint::NamedTensors;
use crate::data::ImageSet;
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::graph::{Precision, Sampling};
use crate::model::evaluate::{evaluate, Device, EvalInput, EvalReport};
use crate::model::preprocess::Normalization;
use crate::model::HParams;

/// `vdvae eval`'s defaults of `--seed` and `--binarize-seed`.
const SEED: u64 = 0;
const BINARIZE_SEED: u64 = 0;

/// Images to evaluate on (fitted to the model), and how.
pub struct HeldOut {
    pub images: ImageSet,
    /// The training normalisation: the network must see what it trains on.
    pub norm: Normalization,
    /// Images per forward pass.
    pub batch: usize,
    pub precision: Precision,
}

impl HeldOut {
    /// The ELBO of `weights` on the held-out images.
    pub fn evaluate(&self, ctx: &GpuContext, h: &HParams, weights: &NamedTensors) -> Result<EvalReport> {
        let input = EvalInput {
            h,
            weights,
            images: &self.images,
            norm: self.norm,
            sampling: Sampling::Posterior,
            seed: SEED,
            binarize_seed: BINARIZE_SEED,
            precision: self.precision,
        };
        evaluate(Device::Gpu(ctx), &input, self.batch)
    }
}
