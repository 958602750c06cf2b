//! The strided-copy family: channel slices, placements into a zero tensor,
//! concats, and the gradient of a tensor read through several slices are all
//! one op that copies runs of channels between NHWC tensors of equal N, H, W.
//! Kernel: `crate::kernels::elementwise::copy_channels`.

use super::{nhwc_of, OpRule};
use crate::error::{shape_err, Result};
use crate::gpu::Dispatch;
use crate::graph::autodiff::Backward;
use crate::graph::executor::cpu::CpuCall;
use crate::graph::executor::{BindingSplit, LowerCall, Unit};
use crate::graph::ir::{Graph, Node, TensorId};
use crate::kernels::elementwise::{self, reference, ChannelRange, CopyMode};

/// Channels `[from, from + width)` of input `input` go to output channels `[to, to + width)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelPiece {
    pub input: usize,
    pub from: usize,
    pub to: usize,
    pub width: usize,
}

/// in: one tensor per distinct source → a `channels`-channel tensor holding
/// every piece where it says (destinations disjoint) and zero elsewhere.
#[derive(Clone, Debug, PartialEq)]
pub struct CopyChannels {
    pub pieces: Vec<ChannelPiece>,
    pub channels: usize,
}

impl Graph {
    /// Channels `[start, end)` of x.
    pub fn slice_channels(&mut self, name: &str, x: TensorId, start: usize, end: usize) -> Result<TensorId> {
        let piece = ChannelPiece {
            input: 0,
            from: start,
            to: 0,
            width: end.saturating_sub(start),
        };
        self.copy_channels(name, &[x], vec![piece], end.saturating_sub(start))
    }

    /// x at channels `[start, start + C)` of a zero tensor with `total` channels.
    pub fn place_channels(&mut self, name: &str, x: TensorId, start: usize, total: usize) -> Result<TensorId> {
        let [.., c] = nhwc_of(self, x, name)?;
        let piece = ChannelPiece {
            input: 0,
            from: 0,
            to: start,
            width: c,
        };
        self.copy_channels(name, &[x], vec![piece], total)
    }

    /// `cat[a, b]` along channels.
    pub fn concat(&mut self, name: &str, a: TensorId, b: TensorId) -> Result<TensorId> {
        let [.., ca] = nhwc_of(self, a, name)?;
        let [.., cb] = nhwc_of(self, b, name)?;
        let pieces = vec![
            ChannelPiece {
                input: 0,
                from: 0,
                to: 0,
                width: ca,
            },
            ChannelPiece {
                input: 1,
                from: 0,
                to: ca,
                width: cb,
            },
        ];
        self.copy_channels(name, &[a, b], pieces, ca + cb)
    }

    /// The general form: `pieces` of `inputs` copied into a zero `channels`-channel tensor.
    pub fn copy_channels(
        &mut self,
        name: &str,
        inputs: &[TensorId],
        pieces: Vec<ChannelPiece>,
        channels: usize,
    ) -> Result<TensorId> {
        let Some(&first) = inputs.first() else {
            return shape_err(format!("{name}: a channel copy needs at least one input"));
        };
        let [n, h, w, _] = nhwc_of(self, first, name)?;
        for &t in inputs {
            let [n2, h2, w2, _] = nhwc_of(self, t, name)?;
            if (n, h, w) != (n2, h2, w2) {
                return shape_err(format!(
                    "{name}: cannot copy channels between {:?} and {:?}",
                    self.shape(first),
                    self.shape(t)
                ));
            }
        }
        let mut taken: Vec<(usize, usize)> = Vec::with_capacity(pieces.len());
        for p in &pieces {
            let Some(&src) = inputs.get(p.input) else {
                return shape_err(format!("{name}: piece {p:?} names a missing input"));
            };
            let src_channels = self.shape(src)[3];
            if p.width == 0 || p.from + p.width > src_channels || p.to + p.width > channels {
                return shape_err(format!(
                    "{name}: channels [{}, {}) of a {src_channels}-channel tensor cannot go to [{}, {}) of {channels}",
                    p.from,
                    p.from + p.width,
                    p.to,
                    p.to + p.width
                ));
            }
            let dst = (p.to, p.to + p.width);
            if taken.iter().any(|&(a, b)| dst.0 < b && a < dst.1) {
                return shape_err(format!("{name}: destination channels {dst:?} overlap another piece"));
            }
            taken.push(dst);
        }
        let y = self.activation(name, vec![n, h, w, channels]);
        self.node(CopyChannels { pieces, channels }, inputs.to_vec(), vec![y]);
        Ok(y)
    }
}

impl CopyChannels {
    /// The source and destination ranges of a piece, given its input's channels.
    fn ranges(&self, p: &ChannelPiece, src_channels: usize) -> (ChannelRange, ChannelRange) {
        (
            ChannelRange::new(src_channels, p.from, p.from + p.width),
            ChannelRange::new(self.channels, p.to, p.to + p.width),
        )
    }
}

impl OpRule for CopyChannels {
    fn name(&self) -> &'static str {
        "copy_channels"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        let dy = b.dy();
        for p in &self.pieces {
            if b.wants(p.input) {
                b.push_channels(p.input, (p.from, p.from + p.width), dy, p.to);
            }
        }
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let mut y = vec![0.0; c.g.tensors[c.node.outputs[0]].numel()];
        for p in &self.pieces {
            let (src, dst) = self.ranges(p, c.channels(p.input));
            reference::copy_channels(c.input(p.input), src, &mut y, dst);
        }
        Ok(vec![y])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        // The first copy zeroes the uncovered channels unless the pieces cover them all.
        let covered: usize = self.pieces.iter().map(|p| p.width).sum();
        let mut dispatches = Vec::with_capacity(self.pieces.len());
        for (k, p) in self.pieces.iter().enumerate() {
            let mode = if k == 0 && covered < self.channels {
                CopyMode::OverwriteZeroRest
            } else {
                CopyMode::Overwrite
            };
            let (src, dst) = self.ranges(p, l.channels(p.input));
            dispatches.push(elementwise::copy_channels(
                l.ctx,
                l.input(p.input),
                src,
                l.output(0),
                dst,
                mode,
            )?);
        }
        Ok(dispatches)
    }

    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Pixels, node))
    }
}
