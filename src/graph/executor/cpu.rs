//! The CPU executor: runs a graph on the plain-Rust reference ops (f32 data,
//! f64 accumulation), each node through its op's `eval` rule; a tensor stored
//! as f16 (see `graph::precision`) is rounded to f16 as it is stored. It is the oracle
//! for the GPU executor and the fallback where no adapter exists (`--device cpu`).

use crate::error::{Error, Result};
use crate::graph::ir::{DType, Graph, Node, Role};
use crate::graph::plan::lifetimes;
use crate::kernels::rng::RngKey;

/// Where in the noise stream a run draws from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Noise {
    pub seed: u64,
    pub step: u64,
    /// Index in the global batch of this run's image 0: a data-parallel rank
    /// draws the noise one process with the whole batch would draw for its images.
    pub first_image: usize,
}

impl Noise {
    /// The noise of a whole batch (its image 0 is the batch's first).
    pub fn new(seed: u64, step: u64) -> Noise {
        Noise {
            seed,
            step,
            first_image: 0,
        }
    }
}

/// Elements per image of a batch-first tensor.
pub(crate) fn per_image(shape: &[usize]) -> usize {
    shape.iter().skip(1).product()
}

/// Tensor values by id; `None` until produced (or after their last use).
pub type Values = Vec<Option<Vec<f32>>>;

/// What an op's `eval` rule sees of one node.
pub struct CpuCall<'a> {
    pub g: &'a Graph,
    pub node: &'a Node,
    values: &'a Values,
    noise: Noise,
}

impl CpuCall<'_> {
    /// The value of input `k`.
    pub fn input(&self, k: usize) -> &[f32] {
        self.values[self.node.inputs[k]]
            .as_deref()
            .expect("inputs are computed before use")
    }

    pub fn in_shape(&self, k: usize) -> &[usize] {
        self.g.shape(self.node.inputs[k])
    }

    pub fn out_shape(&self, k: usize) -> &[usize] {
        self.g.shape(self.node.outputs[k])
    }

    /// Channels (last dimension) of input `k`.
    pub fn channels(&self, k: usize) -> usize {
        *self.in_shape(k).last().unwrap_or(&1)
    }

    /// The noise of tensor `tensor` at this run's step: every noisy op draws
    /// from the same stream position on CPU and GPU.
    pub fn key(&self, tensor: u32) -> RngKey {
        RngKey::new(self.noise.seed, self.noise.step, tensor)
    }

    /// Index in the global batch of this run's image 0 (see [`Noise::first_image`]).
    pub fn first_image(&self) -> usize {
        self.noise.first_image
    }

    /// The key of a tensor whose stream is indexed by the elements of a
    /// batch-first tensor of shape `keyed`: element 0 is this run's first image's.
    pub fn batch_key(&self, tensor: u32, keyed: &[usize]) -> RngKey {
        self.key(tensor).skip(self.first_image() * per_image(keyed))
    }
}

/// Runs every node of `g` in order. `values` must hold every Param and Input;
/// Constants are filled here. Activations are dropped after their last use
/// unless they are graph outputs.
pub fn run(g: &Graph, values: &mut Values, noise: Noise) -> Result<()> {
    values.resize(g.tensors.len(), None);
    for (t, data) in &g.constants {
        values[*t] = Some(data.clone());
    }
    for (t, info) in g.tensors.iter().enumerate() {
        if matches!(info.role, Role::Param | Role::Input) {
            match &values[t] {
                Some(v) if v.len() == info.numel() => {}
                Some(v) => {
                    return Err(Error::Shape(format!(
                        "{}: {} values given for shape {:?}",
                        info.name,
                        v.len(),
                        info.shape
                    )))
                }
                None => return Err(Error::Input(format!("{} was not given a value", info.name))),
            }
        }
    }
    let life = lifetimes(g);
    let mut keep: Vec<bool> = g.tensors.iter().map(|t| t.role != Role::Activation).collect();
    for &t in &g.outputs {
        keep[t] = true;
    }
    for (i, node) in g.nodes.iter().enumerate() {
        let call = CpuCall { g, node, values, noise };
        let outs = node.op.rule().eval(&call)?;
        for (&o, mut v) in node.outputs.iter().zip(outs) {
            debug_assert_eq!(v.len(), g.tensors[o].numel(), "{}", g.tensors[o].name);
            // Stored as the GPU stores it: an f16 tensor is rounded once, here.
            let dtype = g.tensors[o].dtype;
            if dtype != DType::F32 {
                v.iter_mut().for_each(|x| *x = dtype.round(*x));
            }
            values[o] = Some(v);
        }
        for &t in &node.inputs {
            if !keep[t] && life[t].is_some_and(|l| l.1 == i) {
                values[t] = None;
            }
        }
    }
    Ok(())
}
