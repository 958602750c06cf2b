//! The optimizer state buffer: 16 words the GPU reads and writes every step, so
//! a whole training step (norm, decision, clip, update, EMA) needs no CPU input.
//!
//! | word | field            | type | written by                                        |
//! |------|------------------|------|---------------------------------------------------|
//! | 0    | grad_sq          | f32  | the global-norm reduce: sum of g^2 over all params |
//! | 1    | grad_norm        | f32  | decide: sqrt(grad_sq)                              |
//! | 2    | clip_scale       | f32  | decide: min(1, grad_clip / (grad_norm + 1e-6))     |
//! | 3    | applied          | u32  | decide: 1 applied, 0 skipped                       |
//! | 4    | lr               | f32  | decide: base lr x warm-up factor of this step      |
//! | 5    | step_size        | f32  | decide: lr / (1 - beta1^step), last applied step   |
//! | 6    | bc2_sqrt         | f32  | decide: sqrt(1 - beta2^step), last applied step    |
//! | 7    | step             | u32  | decide: applied steps (Adam's t)                   |
//! | 8    | skips            | u32  | decide: skipped steps                              |
//! | 9    | iteration        | u32  | decide: all decided steps (the warm-up clock)      |
//! | 10   | nonfinite_skips  | u32  | decide: skips whose norm was NaN or infinite       |
//! | 11-15| reserved (0)     |      |                                                    |
//!
//! WGSL: `OptState` in `shaders/optimizer_common.wgsl`.

use crate::error::{shape_err, Result};
use crate::gpu::{BufView, GpuBuffer, GpuContext};

crate::gpu_params! {
    /// The state buffer word by word: `OptState` in optimizer_common.wgsl (the
    /// contract test compares the two member by member).
    #[derive(Debug, Default, PartialEq)]
    pub struct OptState {
        pub grad_sq: f32,
        pub grad_norm: f32,
        pub clip_scale: f32,
        pub apply: u32,
        pub lr: f32,
        pub step_size: f32,
        pub bc2_sqrt: f32,
        pub step: u32,
        pub skips: u32,
        pub iteration: u32,
        pub nonfinite_skips: u32,
        pub reserved0: u32,
        pub reserved1: u32,
        pub reserved2: u32,
        pub reserved3: u32,
        pub reserved4: u32,
    }
}

/// Length of the state buffer in 4-byte words.
pub const STATE_WORDS: usize = std::mem::size_of::<OptState>() / 4;
/// Word of the squared gradient norm: bind `state.slice(GRAD_SQ, 1)` as the
/// output of the global-norm reduce (offset 0, so it meets any offset alignment).
pub const GRAD_SQ: usize = std::mem::offset_of!(OptState, grad_sq) / 4;
/// Word of the iteration counter (all decided steps), which is also the noise step.
pub const ITERATION: usize = std::mem::offset_of!(OptState, iteration) / 4;

/// The state buffer's contents (see the module docs for the layout).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepState {
    pub grad_sq: f32,
    pub grad_norm: f32,
    pub clip_scale: f32,
    pub applied: bool,
    pub lr: f32,
    pub step_size: f32,
    pub bc2_sqrt: f32,
    pub step: u32,
    pub skips: u32,
    pub iteration: u32,
    pub nonfinite_skips: u32,
}

impl StepState {
    /// The state of a run resumed after `step` applied and `skips` skipped steps
    /// (`iteration` = all steps taken, which drives the warm-up).
    pub fn resumed(step: u32, skips: u32, iteration: u32) -> StepState {
        StepState {
            step,
            skips,
            iteration,
            ..StepState::default()
        }
    }

    pub fn to_words(&self) -> [u32; STATE_WORDS] {
        let words = OptState {
            grad_sq: self.grad_sq,
            grad_norm: self.grad_norm,
            clip_scale: self.clip_scale,
            apply: self.applied as u32,
            lr: self.lr,
            step_size: self.step_size,
            bc2_sqrt: self.bc2_sqrt,
            step: self.step,
            skips: self.skips,
            iteration: self.iteration,
            nonfinite_skips: self.nonfinite_skips,
            ..OptState::default()
        };
        bytemuck::cast(words)
    }

    pub fn from_words(w: &[u32]) -> Result<StepState> {
        if w.len() < STATE_WORDS {
            return shape_err(format!("optimizer state: needs {STATE_WORDS} words, got {}", w.len()));
        }
        let s: OptState = bytemuck::pod_read_unaligned(bytemuck::cast_slice(&w[..STATE_WORDS]));
        Ok(StepState {
            grad_sq: s.grad_sq,
            grad_norm: s.grad_norm,
            clip_scale: s.clip_scale,
            applied: s.apply != 0,
            lr: s.lr,
            step_size: s.step_size,
            bc2_sqrt: s.bc2_sqrt,
            step: s.step,
            skips: s.skips,
            iteration: s.iteration,
            nonfinite_skips: s.nonfinite_skips,
        })
    }

    /// The float fields, for comparisons: grad_norm, clip_scale, lr, step_size, bc2_sqrt.
    pub fn floats(&self) -> [f32; 5] {
        [self.grad_norm, self.clip_scale, self.lr, self.step_size, self.bc2_sqrt]
    }

    /// The integer fields, for exact comparisons: applied, step, skips, iteration, nonfinite_skips.
    pub fn counters(&self) -> [u32; 5] {
        [
            self.applied as u32,
            self.step,
            self.skips,
            self.iteration,
            self.nonfinite_skips,
        ]
    }
}

/// A new state buffer holding `state` (`StepState::default()` for a fresh run).
pub fn upload_state(ctx: &GpuContext, state: &StepState) -> GpuBuffer {
    ctx.upload(&state.to_words())
}

/// Reads the state back (waits for the GPU; for metrics, read one step late).
pub fn read_state(ctx: &GpuContext, state: BufView<'_>) -> Result<StepState> {
    StepState::from_words(&ctx.read::<u32>(state)?)
}

/// Overwrites word 0 with a squared gradient norm computed elsewhere (tests,
/// the CPU path); on the GPU path the global-norm reduce writes it.
pub fn write_grad_sq(ctx: &GpuContext, state: &GpuBuffer, grad_sq: f32) {
    ctx.queue
        .write_buffer(&state.buffer, (GRAD_SQ * 4) as u64, bytemuck::bytes_of(&grad_sq));
}

pub(crate) fn check_state_view(op: &str, state: &BufView<'_>) -> Result<()> {
    if state.len != STATE_WORDS {
        return shape_err(format!(
            "{op}: the optimizer state must be a view of exactly {STATE_WORDS} words, got {}",
            state.len
        ));
    }
    Ok(())
}
