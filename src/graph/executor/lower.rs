//! Lowering: each node becomes one or more kernel dispatches over the planned
//! buffers, through its op's `lower` rule. The scratch a kernel needs comes
//! from one shared workspace (ops run one after another, so their scratch
//! never overlaps in time). A node split across dispatches (`split/`) is
//! lowered once per slice, the call presenting that slice as the whole node.

use super::binding_split::NodeBindingSplit;
use super::Buffers;
use crate::error::Result;
use crate::gpu::{BufView, Dispatch, GpuContext};
use crate::graph::executor::cpu::per_image;
use crate::graph::ir::{Graph, Node};
use crate::kernels::rng::RngKey;

/// One tensor as a slice of a split node binds it.
pub(super) struct SliceView<'a> {
    pub view: BufView<'a>,
    pub shape: Vec<usize>,
    /// Its first element's index in the whole tensor.
    pub start: usize,
}

/// The part of a split node one call lowers: per input and output, the view
/// and shape it has instead of the whole tensor's (None: the whole tensor).
pub(super) struct Slice<'a> {
    pub inputs: Vec<Option<SliceView<'a>>>,
    pub outputs: Vec<Option<SliceView<'a>>>,
    pub accumulate: bool,
}

/// What an op's `lower` rule sees of one node (or of one slice of it).
#[derive(Clone, Copy)]
pub struct LowerCall<'a> {
    pub ctx: &'a GpuContext,
    pub g: &'a Graph,
    pub node: &'a Node,
    pub(super) bufs: &'a Buffers,
    pub(super) flips: &'a super::flips::Flips,
    pub(super) workspace: BufView<'a>,
    pub(super) side: BufView<'a>,
    pub(super) seed: u64,
    pub(super) first_image: usize,
    pub(super) slice: Option<&'a Slice<'a>>,
}

impl<'a> LowerCall<'a> {
    fn sliced_input(&self, k: usize) -> Option<&'a SliceView<'a>> {
        self.slice.and_then(|s| s.inputs[k].as_ref())
    }

    fn sliced_output(&self, k: usize) -> Option<&'a SliceView<'a>> {
        self.slice.and_then(|s| s.outputs[k].as_ref())
    }

    /// Where input `k` lives (this slice's part of it, when split).
    pub fn input(&self, k: usize) -> BufView<'a> {
        self.sliced_input(k)
            .map_or_else(|| self.bufs.view(self.node.inputs[k]), |s| s.view)
    }

    /// Where output `k` lives (this slice's part of it, when split).
    pub fn output(&self, k: usize) -> BufView<'a> {
        self.sliced_output(k)
            .map_or_else(|| self.bufs.view(self.node.outputs[k]), |s| s.view)
    }

    pub fn in_shape(&self, k: usize) -> &'a [usize] {
        match self.sliced_input(k) {
            Some(s) => &s.shape,
            None => self.g.shape(self.node.inputs[k]),
        }
    }

    pub fn out_shape(&self, k: usize) -> &'a [usize] {
        match self.sliced_output(k) {
            Some(s) => &s.shape,
            None => self.g.shape(self.node.outputs[k]),
        }
    }

    /// Index in the whole tensor of the first element of input `k` this call
    /// binds (0 unless the node is split).
    pub fn in_offset(&self, k: usize) -> usize {
        self.sliced_input(k).map_or(0, |s| s.start)
    }

    /// As [`LowerCall::in_offset`], for output `k`: noisy ops skip their key
    /// to it so that every slice draws its own elements' noise.
    pub fn out_offset(&self, k: usize) -> usize {
        self.sliced_output(k).map_or(0, |s| s.start)
    }

    /// Whether the kernels add into the outputs the op's split marks
    /// [`Part::Accumulate`](super::Part::Accumulate) (a later slice of a split
    /// node) instead of overwriting them.
    pub fn accumulate(&self) -> bool {
        self.slice.is_some_and(|s| s.accumulate)
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

    /// Index in the global batch of this graph's image 0 (see [`BuildOptions::first_image`](super::BuildOptions)).
    pub fn first_image(&self) -> usize {
        self.first_image
    }

    /// The key of a tensor whose stream is indexed by the elements of a
    /// batch-first tensor of shape `keyed` (the whole tensor's, not a slice's):
    /// element 0 is this graph's first image's. BindingSplit nodes skip further to
    /// their slice.
    pub fn batch_key(&self, tensor: u32, keyed: &[usize]) -> RngKey {
        self.key(tensor).skip(self.first_image * per_image(keyed))
    }
}

/// The dispatches of one node, each with whether its uniform carries a noise
/// step; a split node's through `binding_split::lower`, with staging areas `staging`
/// (inputs, outputs).
pub(super) fn lower(
    call: &LowerCall<'_>,
    split: Option<&NodeBindingSplit>,
    staging: [BufView<'_>; 2],
) -> Result<Vec<(Dispatch, bool)>> {
    let rule = call.node.op.rule();
    match split {
        Some(split) => super::binding_split::lower(call, split, staging),
        None => Ok(rule.lower(call)?.into_iter().map(|d| (d, rule.noisy())).collect()),
    }
}
