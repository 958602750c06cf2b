//! Training on the GPU: after the backward dispatches, the global gradient
//! norm, the skip/clip decision, AdamW and the EMA run in the same pass. The
//! host submits once per step and reads metrics back one step late.

use super::upload::Uploader;
use super::{Buffers, DispatchLabel, GpuGraph, GRADS, INPUTS, WEIGHTS};
use crate::error::{Error, Result};
use crate::gpu::{BufView, Dispatch, GpuBuffer, GpuContext};
use crate::graph::ir::{Graph, TensorId};
use crate::graph::{ElboTotals, KlCoefTensor};
use crate::kernels::optimizer::{self, AdamW, ParamTensor, StepState, STATE_WORDS};
use crate::kernels::reduce;

/// Word of the optimizer state holding the iteration counter (the noise step).
pub(super) const ITERATION_WORD: u64 = optimizer::ITERATION as u64;

#[derive(Clone, Copy, Debug)]
pub struct TrainConfig {
    pub adamw: AdamW,
    /// Where the optimizer resumes from (fresh runs: the default).
    pub resume: StepState,
}

/// What one step reports (read back one step late).
#[derive(Clone, Debug, PartialEq)]
pub struct StepMetrics {
    /// The iteration this step ran as (its noise step).
    pub iteration: u32,
    /// Mean ELBO in nats per dim, and its two parts: the true ELBO (β = 1, no
    /// free bits) whatever controls the loss has.
    pub elbo: f64,
    pub distortion: f64,
    pub rate: f64,
    pub kl_per_level: Vec<f64>,
    /// With a controlled loss, the β·γ in force at each level (the mean over
    /// its terms) this step; empty with the plain ELBO.
    pub beta_per_level: Vec<f64>,
    pub grad_norm: f32,
    pub applied: bool,
    pub skips: u32,
}

pub(crate) struct TrainState {
    pub state: GpuBuffer,
    /// Adam's first and second moments, laid out like the weights.
    pub moments: [GpuBuffer; 2],
    pub ema: GpuBuffer,
    pub dispatches: Vec<Dispatch>,
    /// One per entry of `dispatches`.
    pub labels: Vec<DispatchLabel>,
    _norm_scratch: GpuBuffer,
    /// nll then each level's KL sum: the tensors metrics are computed from.
    pub(super) metric_tensors: Vec<TensorId>,
    /// A controlled loss's coefficients, read back after them.
    pub(super) kl_coef: Option<KlCoefTensor>,
    pub(super) metric_words: usize,
    pub(super) readback: [wgpu::Buffer; 2],
    /// Submission of the step whose metrics sit in each readback slot.
    pending: [Option<wgpu::SubmissionIndex>; 2],
    pub(super) steps: usize,
    dims: usize,
    pub(super) uploader: Uploader,
    /// The staging slot holding this step's inputs, once `stage_inputs` ran.
    pub(super) staged: Option<usize>,
    /// Buffers of data-parallel steps, once [`GpuGraph::share`] made them.
    pub(super) shared: Option<super::shared::SharedState>,
}

/// Elements of one flat sweep's piece: within `binding_limit` bytes, a
/// multiple of 64 (256 bytes) so every piece starts at an aligned offset.
fn chunk_len(binding_limit: usize) -> usize {
    (binding_limit / 4 / 64 * 64).max(64)
}

/// `buf` cut into pieces of [`chunk_len`] elements.
fn binding_chunks(buf: &GpuBuffer, binding_limit: usize) -> Vec<BufView<'_>> {
    let max = chunk_len(binding_limit);
    (0..buf.len)
        .step_by(max)
        .map(|o| buf.slice(o, max.min(buf.len - o)))
        .collect()
}

impl TrainState {
    pub fn build(ctx: &GpuContext, g: &Graph, graph: &mut GpuGraph, cfg: TrainConfig) -> Result<TrainState> {
        let n = graph.bufs.all[WEIGHTS].len;
        let state = optimizer::upload_state(ctx, &cfg.resume);
        let moments = [ctx.zeros(n), ctx.zeros(n)];
        let ema = ctx.zeros(n);
        let grads = &graph.bufs.all[GRADS];
        let limit = graph.binding_limit;
        let norm = reduce::SqNormPlan::with_binding_limit(ctx, &binding_chunks(grads, limit), limit)?;
        let norm_scratch = ctx.zeros(norm.scratch_len());
        let mut dispatches = norm.dispatches(ctx, norm_scratch.view(), state.slice(0, 1))?;
        let mut labels = vec![DispatchLabel::optimizer("grad_norm"); dispatches.len()];
        dispatches.push(optimizer::decide(ctx, &cfg.adamw, state.view())?);
        labels.push(DispatchLabel::optimizer("decide"));
        let t = ParamTensor {
            param: graph.bufs.all[WEIGHTS].view(),
            grad: grads.view(),
            exp_avg: moments[0].view(),
            exp_avg_sq: moments[1].view(),
            ema: Some(ema.view()),
        };
        let update = optimizer::update_in_chunks(ctx, &cfg.adamw, state.view(), &t, chunk_len(limit))?;
        labels.resize(labels.len() + update.len(), DispatchLabel::optimizer("adamw"));
        dispatches.extend(update);
        graph.plan.workspace += norm_scratch.len * 4;

        let loss = g
            .loss_terms()
            .ok_or_else(|| Error::Shape("training needs a graph with a loss (an ELBO node)".into()))?;
        let mut metric_tensors = vec![loss.nll];
        metric_tensors.extend(&loss.kl_per_level);
        let read = metric_tensors.iter().chain(loss.kl_coef.as_ref().map(|k| &k.coef));
        let metric_words = read.map(|&t| g.tensors[t].numel()).sum::<usize>() + STATE_WORDS;
        let readback = [0, 1].map(|_| {
            ctx.create_buffer(&wgpu::BufferDescriptor {
                label: Some("metrics"),
                size: (metric_words * 4) as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        Ok(TrainState {
            state,
            moments,
            ema,
            dispatches,
            labels,
            _norm_scratch: norm_scratch,
            metric_tensors,
            kl_coef: loss.kl_coef,
            metric_words,
            readback,
            pending: [None, None],
            steps: 0,
            dims: loss.dims,
            uploader: Uploader::new(ctx, graph.bufs.all[INPUTS].len * 4),
            staged: None,
            shared: None,
        })
    }
}

impl TrainState {
    /// A step's metrics from the values of its metric tensors (each per-image
    /// tensor, then the coefficients of a controlled loss) and the optimizer
    /// state after it.
    pub(super) fn metrics(&self, values: &[f32], state: &StepState) -> StepMetrics {
        // The per-image tensors, then the coefficients.
        let (per_image, coef) = values.split_at(values.len() - self.coef_len());
        let per_image: Vec<&[f32]> = per_image.chunks(per_image.len() / self.metric_tensors.len()).collect();
        let mut totals = ElboTotals::default();
        totals.add(per_image[0], &per_image[1..]);
        let parts = totals.per_dim(self.dims);
        let levels = per_image.len() - 1;
        let beta_per_level = self
            .kl_coef
            .as_ref()
            .map_or(Vec::new(), |k| k.beta_per_level(coef, levels));
        StepMetrics {
            // The state was copied after `decide` advanced the counter.
            iteration: state.iteration.saturating_sub(1),
            elbo: parts.elbo,
            distortion: parts.distortion,
            rate: parts.rate,
            kl_per_level: parts.kl_per_level,
            beta_per_level,
            grad_norm: state.grad_norm,
            applied: state.applied,
            skips: state.skips,
        }
    }

    /// Words of a controlled loss's coefficients in the metrics (2 per term).
    fn coef_len(&self) -> usize {
        self.kl_coef.as_ref().map_or(0, |k| 2 * k.term_levels.len())
    }

    /// Images of the graph's batch (the length of each per-image metric tensor).
    pub(super) fn images(&self) -> usize {
        (self.metric_words - STATE_WORDS - self.coef_len()) / self.metric_tensors.len()
    }

    /// Records the copy of the metric tensors (then the coefficients) into
    /// `dst` from byte 0; returns the bytes copied.
    pub(super) fn record_metric_copies(
        &self,
        bufs: &Buffers,
        encoder: &mut wgpu::CommandEncoder,
        dst: &wgpu::Buffer,
    ) -> u64 {
        let mut at = 0u64;
        for &m in self.metric_tensors.iter().chain(self.kl_coef.as_ref().map(|k| &k.coef)) {
            let v = bufs.view(m);
            encoder.copy_buffer_to_buffer(v.buffer, v.offset as u64 * 4, dst, at, v.len as u64 * 4);
            at += v.len as u64 * 4;
        }
        at
    }
}

/// The first `words` words of `buffer`, mapped after submission `index` (or
/// everything submitted) finished.
pub(super) fn map_words(
    ctx: &GpuContext,
    buffer: &wgpu::Buffer,
    index: Option<wgpu::SubmissionIndex>,
    words: usize,
) -> Result<Vec<u32>> {
    let bytes = ctx.read_mapped(buffer, index)?;
    Ok(bytemuck::pod_collect_to_vec::<u8, u32>(&bytes[..words * 4]))
}

pub(super) fn not_training() -> Error {
    Error::Input("this graph was built without training".into())
}

impl GpuGraph {
    pub(super) fn train_state(&self) -> Result<&TrainState> {
        self.train.as_ref().ok_or_else(not_training)
    }

    /// Sets the EMA weights to the current weights (call once after loading them).
    pub fn reset_ema(&self, ctx: &GpuContext) -> Result<()> {
        let t = self.train_state()?;
        let w = &self.bufs.all[WEIGHTS];
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&w.buffer, 0, &t.ema.buffer, 0, (w.len * 4) as u64);
        ctx.submit(encoder.finish());
        ctx.wait()
    }

    /// Stages this step's input tensors (e.g. network input and target) for the
    /// next [`GpuGraph::train_step`], through persistent staging buffers.
    pub fn stage_inputs(&mut self, ctx: &GpuContext, g: &Graph, inputs: &[(TensorId, &[f32])]) -> Result<()> {
        let mut writes = Vec::with_capacity(inputs.len());
        for &(t, data) in inputs {
            let info = &g.tensors[t];
            let (buffer, offset, len) = self.bufs.loc[t];
            if buffer != INPUTS || data.len() != len {
                return Err(Error::Shape(format!(
                    "{}: stage_inputs takes Input tensors with their exact length ({:?})",
                    info.name, info.shape
                )));
            }
            writes.push((offset as u64 * 4, data));
        }
        let t = self.train.as_mut().ok_or_else(not_training)?;
        t.staged = Some(t.uploader.stage(ctx, &writes)?);
        Ok(())
    }

    /// Records and submits one training step: staged inputs are copied in (or
    /// the inputs already written are used), then forward, backward, gradient
    /// norm, AdamW and EMA run in one pass. Returns the previous step's metrics.
    pub fn train_step(&mut self, ctx: &GpuContext) -> Result<Option<StepMetrics>> {
        let t = self.train_state()?;
        let slot = t.steps % 2;
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        if let Some(staged) = t.staged {
            t.uploader
                .record_copy(&mut encoder, staged, &self.bufs.all[INPUTS].buffer);
        }
        self.record_noise_step(&mut encoder, &t.state.buffer, ITERATION_WORD);
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for d in self.dispatches.iter().chain(&t.dispatches) {
                d.record(&mut pass);
            }
        }
        // Metrics of this step, and the state before the optimizer's counters move on.
        let at = t.record_metric_copies(&self.bufs, &mut encoder, &t.readback[slot]);
        encoder.copy_buffer_to_buffer(&t.state.buffer, 0, &t.readback[slot], at, (STATE_WORDS * 4) as u64);
        let index = ctx.submit(encoder.finish());
        let t = self.train.as_mut().unwrap();
        if let Some(staged) = t.staged.take() {
            t.uploader.recycle(staged);
        }
        t.pending[slot] = Some(index);
        t.steps += 1;
        if t.pending[1 - slot].is_none() {
            return Ok(None);
        }
        self.read_metrics(ctx, 1 - slot).map(Some)
    }

    /// Waits for the last submitted step and returns its metrics (None when
    /// they were already returned).
    pub fn finish(&mut self, ctx: &GpuContext) -> Result<Option<StepMetrics>> {
        if self.train_state()?.shared.is_some() {
            return self.finish_shared(ctx);
        }
        let t = self.train_state()?;
        if t.steps == 0 || t.pending[(t.steps - 1) % 2].is_none() {
            return Ok(None);
        }
        self.read_metrics(ctx, (t.steps - 1) % 2).map(Some)
    }

    fn read_metrics(&mut self, ctx: &GpuContext, slot: usize) -> Result<StepMetrics> {
        let t = self.train.as_mut().unwrap();
        let Some(index) = t.pending[slot].take() else {
            return Err(Error::Gpu("no step is pending in that metrics slot".into()));
        };
        let words = map_words(ctx, &t.readback[slot], Some(index), t.metric_words)?;
        let n = t.metric_words - STATE_WORDS;
        let state = StepState::from_words(&words[n..])?;
        Ok(t.metrics(bytemuck::cast_slice(&words[..n]), &state))
    }

    /// Current optimizer state (waits for the GPU).
    pub fn optimizer_state(&self, ctx: &GpuContext) -> Result<StepState> {
        optimizer::read_state(ctx, self.train_state()?.state.view())
    }

    /// Adam's (first, second) moments of a parameter tensor, in graph layout.
    pub fn read_moments(&self, ctx: &GpuContext, t: TensorId) -> Result<(Vec<f32>, Vec<f32>)> {
        let ts = self.train_state()?;
        let v = self.bufs.view(t);
        let m = ctx.read(BufView {
            buffer: &ts.moments[0].buffer,
            ..v
        })?;
        Ok((
            m,
            ctx.read(BufView {
                buffer: &ts.moments[1].buffer,
                ..v
            })?,
        ))
    }

    /// The EMA weights, in graph layout, one slice per parameter tensor.
    pub fn read_ema(&self, ctx: &GpuContext, t: TensorId) -> Result<Vec<f32>> {
        let ts = self.train_state()?;
        let v = self.bufs.view(t);
        ctx.read(BufView {
            buffer: &ts.ema.buffer,
            ..v
        })
    }
}

impl GpuGraph {
    /// Sets a parameter's EMA weights and Adam moments (graph layout), for resuming.
    pub fn write_optimizer_tensor(
        &self,
        ctx: &GpuContext,
        t: TensorId,
        ema: &[f32],
        exp_avg: &[f32],
        exp_avg_sq: &[f32],
    ) -> Result<()> {
        let ts = self.train_state()?;
        let v = self.bufs.view(t);
        for (buffer, data) in [(&ts.ema, ema), (&ts.moments[0], exp_avg), (&ts.moments[1], exp_avg_sq)] {
            if data.len() != v.len {
                return Err(Error::Shape(format!(
                    "optimizer tensor: {} values for {} elements",
                    data.len(),
                    v.len
                )));
            }
            ctx.queue
                .write_buffer(&buffer.buffer, v.offset as u64 * 4, bytemuck::cast_slice(data));
        }
        Ok(())
    }
}
