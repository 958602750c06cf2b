//! Lowering: each node becomes one or more kernel dispatches over the planned
//! buffers, through its op's `lower` rule. The scratch a kernel needs comes
//! from one shared workspace (ops run one after another, so their scratch
//! never overlaps in time).

use super::Buffers;
use crate::error::Result;
use crate::gpu::{BufView, Dispatch, GpuContext};
use crate::graph::ir::{Graph, Node};
use crate::ops::rng::RngKey;

/// What an op's `lower` rule sees of one node.
pub struct LowerCall<'a> {
    pub ctx: &'a GpuContext,
    pub g: &'a Graph,
    pub node: &'a Node,
    pub(super) bufs: &'a Buffers,
    pub(super) flips: &'a super::flips::Flips,
    pub(super) workspace: BufView<'a>,
    pub(super) side: BufView<'a>,
    pub(super) seed: u64,
}

impl<'a> LowerCall<'a> {
    /// Where input `k` lives.
    pub fn input(&self, k: usize) -> BufView<'a> {
        self.bufs.view(self.node.inputs[k])
    }

    /// Where output `k` lives.
    pub fn output(&self, k: usize) -> BufView<'a> {
        self.bufs.view(self.node.outputs[k])
    }

    pub fn in_shape(&self, k: usize) -> &'a [usize] {
        self.g.shape(self.node.inputs[k])
    }

    pub fn out_shape(&self, k: usize) -> &'a [usize] {
        self.g.shape(self.node.outputs[k])
    }

    /// Channels (last dimension) of input `k`.
    pub fn channels(&self, k: usize) -> usize {
        *self.in_shape(k).last().unwrap_or(&1)
    }

    /// Input `k` (conv weights) flipped and transposed for dx, refreshed once per
    /// run for all convs, when this graph keeps such a copy.
    pub fn transposed_weights(&self, k: usize) -> Option<BufView<'a>> {
        self.flips.view(self.node.inputs[k])
    }

    /// The first `len` elements of the shared workspace (sized by the ops' `scratch_len`).
    pub fn scratch(&self, len: usize) -> BufView<'a> {
        BufView { len, ..self.workspace }
    }

    /// The whole second workspace (sized by the ops' `side_len`).
    pub fn side(&self) -> BufView<'a> {
        self.side
    }

    /// The noise key of tensor `tensor`. Its step word is overwritten on the
    /// GPU before each run (see `GpuGraph::record_noise_step`), so it is built
    /// with step 0.
    pub fn key(&self, tensor: u32) -> RngKey {
        RngKey::new(self.seed, 0, tensor)
    }
}

/// The dispatches of one node, and whether their uniforms carry a noise step.
pub(super) fn lower(call: &LowerCall<'_>) -> Result<(Vec<Dispatch>, bool)> {
    let rule = call.node.op.rule();
    Ok((rule.lower(call)?, rule.noisy()))
}
