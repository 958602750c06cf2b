//! `vdvae tune`: fills the adapter's kernel-tuning cache for a model's training
//! step ahead of training, by building the step: lowering each node picks its
//! kernel variants, tuning the shape classes not yet cached.

use super::profile::profile_images;
use super::start;
use crate::error::Result;
use crate::gpu::tune::Choice;
use crate::gpu::GpuContext;
use crate::graph::Precision;
use crate::model::HParams;

/// The choices the training step of `h` at `batch` needs on this adapter:
/// every class this process tuned, in order (cached ones are not listed).
pub fn tune_training(
    ctx: &GpuContext,
    h: &HParams,
    batch: usize,
    precision: Precision,
) -> Result<Vec<(String, Choice)>> {
    let images = profile_images(h, batch);
    start(ctx, h, &images, (batch, 0, 1), precision, None, None)?;
    Ok(ctx.tuner.tuned())
}
