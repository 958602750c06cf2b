//! A data-parallel training step: each rank runs forward and backward on its
//! shard of the global batch; the gradients are summed over the ranks on the
//! host (`exchange.rs`) and averaged; then every rank runs the same gradient
//! norm, skip/clip decision, AdamW and EMA on the same gradient, so the ranks'
//! weights stay equal. Two submits a step, with the all-reduce between them.
//!
//! The metrics are global too: each rank puts its images' per-image NLL and
//! KL at their places in the global batch, zeros elsewhere, and one small
//! all-reduce assembles the whole batch's, so the log shows what one process
//! with the global batch would. The same all-reduce agrees on stopping.

use super::exchange::GradientExchange;
use super::train::{map_words, not_training, ITERATION_WORD};
use super::{record_noise_step, GpuGraph, GRADS, INPUTS};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::graph::executor::StepMetrics;
use crate::kernels::optimizer::STATE_WORDS;
use crate::parallel::Collective;

pub(crate) struct SharedState {
    exchange: GradientExchange,
    /// Images per rank (this graph's batch).
    images: usize,
    /// Stop flag, then each metric tensor over the global batch: what this
    /// rank sends, and the sum.
    control: Vec<f32>,
    control_sum: Vec<f32>,
    /// The optimizer state after the last update pass.
    state_readback: wgpu::Buffer,
    /// The last step's global metric values (then its own coefficients),
    /// waiting for its optimizer state.
    pending: Option<Vec<f32>>,
    /// Wall seconds the steps so far spent in the exchange: from the end of
    /// the gradient pass to the submit of the update (read-back, all-reduces
    /// with the wait for the slowest rank, upload).
    exchange_seconds: f64,
}

/// What a data-parallel step returns.
#[derive(Debug)]
pub struct SharedStep {
    /// The previous step's metrics (steps report one step late).
    pub previous: Option<StepMetrics>,
    /// True when some rank asked to stop: every rank stops after this step.
    pub stop: bool,
}

impl GpuGraph {
    /// Makes the buffers of data-parallel steps among `ranks` ranks, the
    /// gradient exchanged in buckets of `bucket_len` elements. After this,
    /// train with [`GpuGraph::shared_train_step`].
    pub fn share(&mut self, ctx: &GpuContext, ranks: usize, bucket_len: usize) -> Result<()> {
        let grads = self.bufs.all[GRADS].len;
        let t = self.train.as_mut().ok_or_else(not_training)?;
        let images = t.images();
        let control_len = 1 + t.metric_tensors.len() * images * ranks;
        t.shared = Some(SharedState {
            exchange: GradientExchange::new(ctx, grads, bucket_len),
            images,
            control: vec![0.0; control_len],
            control_sum: vec![0.0; control_len],
            state_readback: ctx.create_buffer(&wgpu::BufferDescriptor {
                label: Some("optimizer state"),
                size: (STATE_WORDS * 4) as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            pending: None,
            exchange_seconds: 0.0,
        });
        Ok(())
    }

    /// One data-parallel step with the inputs staged by
    /// [`GpuGraph::stage_inputs`]; every rank calls it together. `stop`: this
    /// rank asks to stop after the step. Returns the previous step's metrics.
    pub fn shared_train_step(
        &mut self,
        ctx: &GpuContext,
        ranks: &mut dyn Collective,
        stop: bool,
    ) -> Result<SharedStep> {
        let t = self.train.as_mut().ok_or_else(not_training)?;
        let mut sh = t.shared.take().ok_or_else(not_shared)?;
        let step = self.step_with(ctx, &mut sh, ranks, stop);
        self.train.as_mut().unwrap().shared = Some(sh);
        step
    }

    fn step_with(
        &mut self,
        ctx: &GpuContext,
        sh: &mut SharedState,
        ranks: &mut dyn Collective,
        stop: bool,
    ) -> Result<SharedStep> {
        let t = self.train.as_mut().ok_or_else(not_training)?;
        let grads = &self.bufs.all[GRADS].buffer;
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        if let Some(staged) = t.staged {
            t.uploader
                .record_copy(&mut encoder, staged, &self.bufs.all[INPUTS].buffer);
        }
        record_noise_step(
            &self.noisy,
            &self.dispatches,
            &mut encoder,
            &t.state.buffer,
            ITERATION_WORD,
        );
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for d in &self.dispatches {
                d.record(&mut pass);
            }
        }
        let metric_bytes = t.record_metric_copies(&self.bufs, &mut encoder, &t.readback[0]);
        sh.exchange.record_download(&mut encoder, grads);
        let index = ctx.submit(encoder.finish());
        if let Some(staged) = t.staged.take() {
            t.uploader.recycle(staged);
        }
        // Waiting for the gradient pass also waits for the previous update.
        let words = map_words(ctx, &t.readback[0], Some(index), metric_bytes as usize / 4)?;
        let exchange = std::time::Instant::now();
        let previous = match sh.pending.take() {
            Some(values) => Some(t.metrics(&values, &read_state(ctx, &sh.state_readback)?)),
            None => None,
        };
        let values: &[f32] = bytemuck::cast_slice(&words);
        let (b, global) = (sh.images, sh.images * ranks.ranks());
        sh.control.fill(0.0);
        sh.control[0] = f32::from(u8::from(stop));
        for m in 0..t.metric_tensors.len() {
            let at = 1 + m * global + ranks.rank() * b;
            sh.control[at..at + b].copy_from_slice(&values[m * b..(m + 1) * b]);
        }
        ranks.all_reduce_sum(&sh.control, &mut sh.control_sum)?;
        let mut pending = sh.control_sum[1..].to_vec();
        pending.extend_from_slice(&values[t.metric_tensors.len() * b..]);
        sh.pending = Some(pending);
        let stop = sh.control_sum[0] > 0.0;

        let scale = 1.0 / ranks.ranks() as f32;
        sh.exchange.reduce(ctx, ranks, scale)?;
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        sh.exchange.record_upload(&mut encoder, grads);
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for d in &t.dispatches {
                d.record(&mut pass);
            }
        }
        encoder.copy_buffer_to_buffer(&t.state.buffer, 0, &sh.state_readback, 0, (STATE_WORDS * 4) as u64);
        ctx.submit(encoder.finish());
        sh.exchange.recycle();
        sh.exchange_seconds += exchange.elapsed().as_secs_f64();
        Ok(SharedStep { previous, stop })
    }

    /// Wall seconds the data-parallel steps so far spent exchanging the
    /// gradient and metrics (None before [`GpuGraph::share`]).
    pub fn exchange_seconds(&self) -> Option<f64> {
        let t = self.train.as_ref()?;
        t.shared.as_ref().map(|sh| sh.exchange_seconds)
    }

    /// Waits for the last data-parallel step and returns its metrics (None
    /// when they were already returned).
    pub(super) fn finish_shared(&mut self, ctx: &GpuContext) -> Result<Option<StepMetrics>> {
        let t = self.train.as_mut().ok_or_else(not_training)?;
        let sh = t.shared.as_mut().ok_or_else(not_shared)?;
        let Some(values) = sh.pending.take() else {
            return Ok(None);
        };
        let state = read_state(ctx, &sh.state_readback)?;
        Ok(Some(t.metrics(&values, &state)))
    }
}

fn not_shared() -> Error {
    Error::Input("this graph was not prepared for data-parallel steps (GpuGraph::share)".into())
}

/// The optimizer state the last update pass copied out (waits for it).
fn read_state(ctx: &GpuContext, buffer: &wgpu::Buffer) -> Result<crate::kernels::optimizer::StepState> {
    let words = map_words(ctx, buffer, None, STATE_WORDS)?;
    crate::kernels::optimizer::StepState::from_words(&words)
}
