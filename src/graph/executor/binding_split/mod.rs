//! Nodes whose tensors exceed one storage binding, split into several
//! dispatches ("slices") that each bind at most the limit.
//!
//! An op says how its work divides ([`OpRule::split`](crate::graph::OpRule::split)):
//! the finest [`Unit`] its kernels compute on their own (whole images, rows,
//! pixels) and the [`Part`] each of its tensors plays. For a node with a tensor
//! over the limit, `plan.rs` picks the coarsest unit whose slices fit, cuts
//! the units into even slices at offsets the adapter can bind, and says which
//! element range of each tensor a slice binds. `lower.rs` then lowers the
//! slices through the op's own, unchanged `lower`, which sees each slice as a
//! smaller node (sub-views, shapes overridden; see [`LowerCall`](super::LowerCall)).
//! A node with nothing over the limit is lowered as before: no dispatch is added.

mod lower;
mod plan;

pub(super) use lower::lower;
pub(super) use plan::{plan_binding_split, NodeBindingSplit};

use crate::graph::ir::Node;

/// The finest piece of a node's work its kernels compute independently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unit {
    /// Whole images: the leading N dimension.
    Images,
    /// Rows of NHWC tensors, images stacked (N·H rows); tensors of different
    /// heights (resampling) are cut at matching rows.
    Rows,
    /// Pixels: NHWC viewed as `[N·H·W, C]`.
    Pixels,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Images => "image",
            Unit::Rows => "row",
            Unit::Pixels => "pixel",
        }
    }
}

/// The role of one of a node's tensors when the node is split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Cut with the work: each slice binds its own images, rows or pixels.
    Cut,
    /// Bound whole by every slice (weights, biases, gains, a scalar). Inputs only.
    Whole,
    /// A small `[N, ...]` tensor, one block per image (per-image sums, their
    /// gradient): a slice binds its images' blocks; an output that a slice
    /// inside one image writes gets that slice's partial sum added.
    PerImage,
    /// One image `[1, ...]` shared by all images (a broadcast's source, a sum
    /// over images): a slice binds the positions it covers in its image; as an
    /// output, the slices over different images add up.
    Image,
    /// An output reduced over all of the node's work (a sum over images or
    /// pixels): the first slice writes it, each later one adds its partial.
    Sum,
    /// As [`Part::Sum`], but the op's kernel adds into the output itself when
    /// [`LowerCall::accumulate`](super::LowerCall::accumulate) says so.
    Accumulate,
}

/// How an op's node divides into slices (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct BindingSplit {
    pub finest: Unit,
    /// One per node input, in order.
    pub inputs: Vec<Part>,
    /// One per node output, in order.
    pub outputs: Vec<Part>,
    /// Why the op splits no finer than `finest`, for the error when one unit is too large.
    pub finest_because: &'static str,
}

impl BindingSplit {
    pub fn new(finest: Unit, inputs: Vec<Part>, outputs: Vec<Part>) -> BindingSplit {
        BindingSplit {
            finest,
            inputs,
            outputs,
            finest_because: "",
        }
    }

    /// Every input and output cut alike: ops whose units are independent.
    pub fn cut_all(finest: Unit, node: &Node) -> BindingSplit {
        BindingSplit::new(
            finest,
            vec![Part::Cut; node.inputs.len()],
            vec![Part::Cut; node.outputs.len()],
        )
    }

    pub fn because(self, why: &'static str) -> BindingSplit {
        BindingSplit {
            finest_because: why,
            ..self
        }
    }
}
