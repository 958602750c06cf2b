//! The dx weights of every conv flipped and transposed once per run, in one
//! dispatch per binding-sized span of weights, instead of one dispatch per conv:
//! a persistent buffer holds the copies, refreshed before the first dx of each run.

use std::collections::HashMap;

use super::Buffers;
use crate::error::Result;
use crate::gpu::{BufView, Dispatch, GpuBuffer, GpuContext};
use crate::graph::ir::{Graph, Op, Role, TensorId};
use crate::kernels::conv2d::{self, Conv2dShape, FlipJob};

/// One span: the weights it flips (in buffer order) and its table.
struct Span {
    weights: Vec<TensorId>,
    table: GpuBuffer,
}

#[derive(Default)]
pub(crate) struct Flips {
    buffer: Option<GpuBuffer>,
    /// Each flipped weight's offset and shape.
    at: HashMap<TensorId, (usize, Conv2dShape)>,
    spans: Vec<Span>,
}

/// The weights of `node` (a conv dx) as the flip sees them, when the node's
/// weights are a parameter and its dx reads them flipped (the tiled path,
/// Cout a multiple of 4).
fn flippable(ctx: &GpuContext, g: &Graph, node: &crate::graph::Node) -> Option<(TensorId, Conv2dShape)> {
    let Op::Conv2dBackwardData(op) = &node.op else {
        return None;
    };
    let (w, x) = (node.inputs[1], node.inputs[2]);
    if g.tensors[w].role != Role::Param {
        return None;
    }
    // The input channels from the weights: x is only the first half of a cat.
    let [n, h, wd, c1] = super::super::ops::nhwc(g.shape(x));
    let [cout, .., cin] = *g.shape(w) else { return None };
    let mut s = Conv2dShape::new(n, h, wd, cin, cout, op.k).with_gelu(op.gelu_input);
    if op.cat {
        s = s.with_cat(c1);
    }
    conv2d::reads_transposed_weights(ctx, &s).then_some((w, s))
}

impl Flips {
    /// Spans bind at most `binding_limit` bytes of either buffer.
    pub fn plan(ctx: &GpuContext, g: &Graph, bufs: &Buffers, binding_limit: usize) -> Result<Flips> {
        let mut weights: Vec<(TensorId, Conv2dShape)> = Vec::new();
        for node in &g.nodes {
            if let Some((w, s)) = flippable(ctx, g, node) {
                if !weights.iter().any(|&(t, _)| t == w) {
                    weights.push((w, s));
                }
            }
        }
        if weights.is_empty() {
            return Ok(Flips::default());
        }
        weights.sort_by_key(|&(w, _)| bufs.loc[w].1);
        let align = (ctx.limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
        let binding = binding_limit / 4;
        let mut at = HashMap::new();
        let mut next = 0usize;
        let mut groups: Vec<Vec<TensorId>> = vec![Vec::new()];
        let mut span_start: Option<(usize, usize)> = None;
        for &(w, s) in &weights {
            let (src, dst) = (bufs.loc[w].1, next);
            let end = (src + s.w_len(), dst + s.w_len());
            let fits = span_start.is_none_or(|(a, b)| end.0 - a <= binding && end.1 - b <= binding);
            if !fits {
                groups.push(Vec::new());
                span_start = None;
            }
            span_start.get_or_insert((src, dst));
            groups.last_mut().unwrap().push(w);
            at.insert(w, (dst, s));
            next = (dst + s.w_len()).next_multiple_of(align);
        }
        let buffer = ctx.zeros(next.max(1));
        let mut flips = Flips {
            buffer: Some(buffer),
            at,
            spans: Vec::new(),
        };
        for weights in groups {
            let table = conv2d::flip_table(&flips.jobs(bufs, &weights))?;
            let table = ctx.upload(&table);
            flips.spans.push(Span { weights, table });
        }
        Ok(flips)
    }

    fn jobs<'a>(&'a self, bufs: &'a Buffers, weights: &[TensorId]) -> Vec<FlipJob<'a>> {
        weights
            .iter()
            .map(|&w| FlipJob {
                shape: self.at[&w].1,
                w: bufs.view(w),
                wt: self.view(w).expect("every span weight is flipped"),
            })
            .collect()
    }

    /// Bytes of the flipped copies.
    pub fn bytes(&self) -> usize {
        self.buffer.as_ref().map_or(0, |b| b.len * 4)
    }

    /// The flipped, transposed copy of `w`, when this graph keeps one.
    pub fn view(&self, w: TensorId) -> Option<BufView<'_>> {
        let (offset, s) = self.at.get(&w)?;
        Some(self.buffer.as_ref()?.slice(*offset, s.w_len()))
    }

    /// Whether `node` reads a flipped copy (so the flips must run before it).
    pub fn serves(&self, node: &crate::graph::Node) -> bool {
        matches!(node.op, Op::Conv2dBackwardData(_)) && self.at.contains_key(&node.inputs[1])
    }

    /// The dispatches that refresh every copy from the current weights.
    pub fn dispatches(&self, ctx: &GpuContext, bufs: &Buffers) -> Result<Vec<Dispatch>> {
        self.spans
            .iter()
            .map(|span| conv2d::flip_transpose_many(ctx, &self.jobs(bufs, &span.weights), span.table.view()))
            .collect()
    }
}

/// Bytes of the flipped copies [`Flips::plan`] makes for `g` on `ctx`, without
/// allocating anything (memory budgets, `crate::graph::budget`).
pub(crate) fn flipped_bytes(ctx: &GpuContext, g: &Graph) -> usize {
    let align = (ctx.limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
    let mut seen = std::collections::HashSet::new();
    let len: usize = g
        .nodes
        .iter()
        .filter_map(|node| flippable(ctx, g, node))
        .filter(|&(w, _)| seen.insert(w))
        .map(|(_, s)| s.w_len().next_multiple_of(align))
        .sum();
    len * 4
}
