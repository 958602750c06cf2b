//! The graph's ops, one file per family. Each op is a struct implementing
//! [`OpRule`] in the same file as its shape rule (a `Graph` builder method):
//! everything the graph knows about an op lives in one place.
//!
//! Adding an op: write its struct, builder method and `OpRule` impl in a file
//! here, list it in `ops!` below, and give it a kernel family in `src/kernels/` if
//! no existing kernel computes it. See `docs/design-notes.md`, "How to add an op".

mod activation;
mod add;
mod affine;
mod batch;
mod bernoulli;
mod conv2d;
mod copy_channels;
mod dmol;
mod elbo;
mod flow;
mod kl_control;
mod linear;
mod norm;
mod reparam;
mod resample;

pub use activation::{Activation, ActivationBackward, ActivationKind};
pub use add::{Add, AddChannels};
pub use affine::{Affine, AffineBackward};
pub use batch::{BroadcastBatch, BroadcastPerImage, SumBatch, SumPerImage};
pub use bernoulli::{BernoulliMean, BernoulliNll, BernoulliNllBackward, BernoulliSample, Binarize};
pub use conv2d::{Conv2d, Conv2dBackwardBias, Conv2dBackwardData, Conv2dBackwardWeight};
pub use copy_channels::{ChannelPiece, CopyChannels};
pub use dmol::{DmolNll, DmolNllBackward, DmolSample};
pub use elbo::{Elbo, ElboParts, ElboTotals, LossTerms};
pub use flow::{FlowKl, FlowKlBackward, Iaf, IafBackward, LadderMergePacked, LadderMergePackedBackward, MaskWeights};
pub use kl_control::{ControlledElbo, KlCoefTensor, KlColumns, KlSchedule, KlSeeds, KlStack, KlTerm};
pub use linear::{Linear, LinearBackwardData, LinearBackwardWeight};
pub use norm::{GroupNorm, GroupNormBackward};
pub use reparam::{PriorSample, ReparamKl, ReparamKlBackward, ReparamKlPacked, ReparamKlPackedBackward};
pub use resample::{AvgPool, AvgPoolBackward, Upsample, UpsampleBackward};

use super::autodiff::Backward;
use super::executor::cpu::CpuCall;
use super::executor::{BindingSplit, LowerCall};
use super::ir::{Graph, Node};
use crate::error::{shape_err, Error, Result};
use crate::gpu::Dispatch;

/// Everything the executors and autodiff need from one op.
pub trait OpRule {
    /// Appends the nodes that compute the gradients of this node's inputs.
    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        let _ = b;
        Err(Error::Shape(format!("autodiff: {} has no backward rule", self.name())))
    }
    /// The node's outputs on the plain-Rust reference ops, one vector per output.
    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>>;
    /// The GPU dispatches that compute the node's outputs.
    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>>;
    /// Elements of the shared workspace its kernels use as scratch.
    fn scratch_len(&self, g: &Graph, node: &Node) -> usize {
        let _ = (g, node);
        0
    }
    /// Elements of the second workspace (a separate buffer, for kernels that
    /// write scratch beside an output they also read).
    fn side_len(&self, g: &Graph, node: &Node) -> usize {
        let _ = (g, node);
        0
    }
    /// How the node divides into several dispatches when one of its tensors
    /// is larger than a storage binding (see `graph::executor::binding_split`); None: it
    /// does not, and such a node is refused.
    fn binding_split(&self, g: &Graph, node: &Node) -> Option<BindingSplit> {
        let _ = (g, node);
        None
    }
    /// Whether its kernels draw noise keyed by the step: their uniforms take
    /// the step before each run.
    fn noisy(&self) -> bool {
        false
    }
    /// Model FLOPs of the node: convolutions and matmuls at 2 per multiply-add
    /// (the convention of PyTorch's FLOP counter), nothing for other ops, so
    /// that model FLOP utilisation compares across implementations.
    fn model_flops(&self, g: &Graph, node: &Node) -> f64 {
        let _ = (g, node);
        0.0
    }
    /// Whether output `output` stays f32 under every storage precision (see
    /// `graph::precision`): statistics a backward reads, which f16 would round.
    fn keeps_f32(&self, output: usize) -> bool {
        let _ = output;
        false
    }
    /// Whether this op is the loss: autodiff seeds the backward pass from it.
    fn is_loss(&self) -> bool {
        false
    }
    fn name(&self) -> &'static str;
}

macro_rules! ops {
    ($($op:ident),* $(,)?) => {
        /// One operation of the graph. Tensors are NHWC; conv weights `[out, kh, kw, in]`.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Op {
            $($op($op),)*
        }

        impl Op {
            pub fn rule(&self) -> &dyn OpRule {
                match self {
                    $(Op::$op(op) => op,)*
                }
            }
        }

        $(impl From<$op> for Op {
            fn from(op: $op) -> Op {
                Op::$op(op)
            }
        })*
    };
}

ops!(
    Conv2d,
    Conv2dBackwardData,
    Conv2dBackwardWeight,
    Conv2dBackwardBias,
    Add,
    AddChannels,
    AvgPool,
    AvgPoolBackward,
    Upsample,
    UpsampleBackward,
    CopyChannels,
    BroadcastBatch,
    SumBatch,
    SumPerImage,
    BroadcastPerImage,
    Affine,
    AffineBackward,
    ReparamKl,
    ReparamKlBackward,
    ReparamKlPacked,
    ReparamKlPackedBackward,
    PriorSample,
    MaskWeights,
    Iaf,
    IafBackward,
    FlowKl,
    FlowKlBackward,
    LadderMergePacked,
    LadderMergePackedBackward,
    DmolNll,
    DmolNllBackward,
    DmolSample,
    BernoulliNll,
    BernoulliNllBackward,
    BernoulliMean,
    BernoulliSample,
    Binarize,
    Elbo,
    Linear,
    LinearBackwardData,
    LinearBackwardWeight,
    GroupNorm,
    GroupNormBackward,
    Activation,
    ActivationBackward,
    KlStack,
    KlColumns,
    KlSeeds,
    ControlledElbo,
);

impl Graph {
    /// Model FLOPs of one run of the graph (see [`OpRule::model_flops`]).
    pub fn model_flops(&self) -> f64 {
        self.nodes.iter().map(|n| n.op.rule().model_flops(self, n)).sum()
    }
}

/// The `[N, H, W, C]` of `t`, or an error naming the op and tensor.
pub(crate) fn nhwc_of(g: &Graph, t: super::TensorId, op: &str) -> Result<[usize; 4]> {
    match g.shape(t) {
        &[n, h, w, c] => Ok([n, h, w, c]),
        s => shape_err(format!("{op}: {} must be NHWC, has shape {s:?}", g.tensors[t].name)),
    }
}

/// A shape already checked to be NHWC by the builder.
pub(crate) fn nhwc(s: &[usize]) -> [usize; 4] {
    [s[0], s[1], s[2], s[3]]
}

/// `x` viewed as `[N, elements per image]`.
pub(crate) fn per_image_dims(s: &[usize]) -> [usize; 2] {
    [s[0], s[1..].iter().product()]
}
