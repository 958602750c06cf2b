//! The graph IR: tensors with shapes and roles, and nodes applying one op.
//! A model is built once as a graph; autodiff appends its backward nodes; the
//! memory planner places every tensor; an executor (CPU reference or GPU) runs it.

/// Index into [`Graph::tensors`].
pub type TensorId = usize;

/// Where a tensor lives and how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A trainable weight: persistent, in the weights buffer.
    Param,
    /// Data fed each step (network input, likelihood target).
    Input,
    /// Filled once when the graph is built (loss seeds).
    Constant,
    /// Produced and consumed within one step: placed by liveness in the arena.
    Activation,
    /// The gradient of a parameter: persistent, in the gradients buffer.
    ParamGrad,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: Role,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// How a latent is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    /// z = mu_q + sigma_q · eps.
    Posterior,
    /// z = mu_q (deterministic evaluation).
    PosteriorMean,
}

/// One operation. Tensors are NHWC; conv weights `[out, kh, kw, in]`.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// in: x, w, [bias], [residual] → y = conv(gelu?(x), w) + bias + residual.
    Conv2d {
        k: usize,
        gelu_input: bool,
        bias: bool,
        residual: bool,
    },
    /// in: dy, w, x → dx (through the input GELU when `gelu_input`).
    Conv2dBackwardData {
        k: usize,
        gelu_input: bool,
    },
    /// in: dy, x → dw, and db too when `bias` (one pass over dy for both).
    Conv2dBackwardWeight {
        k: usize,
        gelu_input: bool,
        bias: bool,
    },
    /// in: dy → db (sum over N, H, W).
    Conv2dBackwardBias,
    /// in: a, b → a + b.
    Add,
    /// Average pool by `k` (and its backward, which spreads dy / k²).
    AvgPool {
        k: usize,
    },
    AvgPoolBackward {
        k: usize,
    },
    /// Nearest upsample by `k` (and its backward, which sums k×k blocks).
    Upsample {
        k: usize,
    },
    UpsampleBackward {
        k: usize,
    },
    /// Channels `[start, end)` of x.
    SliceChannels {
        start: usize,
        end: usize,
    },
    /// x placed at channels `[start, start + C)` of a zero tensor with `total` channels.
    PlaceChannels {
        start: usize,
        total: usize,
    },
    /// in: a, b → cat[a, b] along channels.
    Concat,
    /// in: one tensor per range → a `total`-channel tensor holding input k at
    /// channels `ranges[k]` (disjoint) and zero elsewhere: the gradient of a
    /// tensor read through several channel slices, in one pass.
    AssembleChannels {
        ranges: Vec<(usize, usize)>,
        total: usize,
    },
    /// `[1, H, W, C]` repeated to `[n, H, W, C]` (the learned decoder start state).
    BroadcastBatch {
        n: usize,
    },
    /// `[N, H, W, C]` summed over N to `[1, H, W, C]`.
    SumBatch,
    /// in: x, gain[C], bias[C] → x · gain + bias.
    Affine,
    /// in: dy, x, gain → dx, dgain, dbias.
    AffineBackward,
    /// in: mu_q, logsig_q, mu_p, logsig_p → z, kl (elementwise); noise from `tensor` of the RNG stream.
    ReparamKl {
        sampling: Sampling,
        tensor: u32,
    },
    /// in: dz, dkl, mu_q, logsig_q, mu_p, logsig_p → dmu_q, dlogsig_q, dmu_p, dlogsig_p.
    ReparamKlBackward {
        sampling: Sampling,
        tensor: u32,
    },
    /// `[N, ...]` → `[N]`: the sum over each image.
    SumPerImage,
    /// `[N]` → `[N, ...]` with the shape of the output: each image's value everywhere.
    BroadcastPerImage,
    /// in: l (out_conv output, NHWC), target in [-1, 1] → per-image NLL `[N]`.
    DmolNll {
        low_bit: bool,
    },
    /// in: l, target, dnll[N] → dl.
    DmolNllBackward {
        low_bit: bool,
    },
    /// in: mu_p, logsig_p → z = mu_p + exp(logsig_p + ln t) · eps (unconditional sampling).
    PriorSample {
        temperature: f32,
        tensor: u32,
    },
    /// in: l (out_conv output) → an image sample in [-1, 1] with the output's channels.
    DmolSample {
        low_bit: bool,
        tensor: u32,
    },
    /// in: nll[N], klsum_1[N], …, klsum_L[N] → loss [1] = mean_n (nll + Σ kl) / dims.
    Elbo {
        dims: usize,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<TensorId>,
    pub outputs: Vec<TensorId>,
}

/// A whole model step: forward nodes, then (after autodiff) backward nodes.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub tensors: Vec<TensorInfo>,
    pub nodes: Vec<Node>,
    /// Values of `Role::Constant` tensors.
    pub constants: Vec<(TensorId, Vec<f32>)>,
    /// Named outputs (loss, metrics) the executors read back.
    pub outputs: Vec<(String, TensorId)>,
    /// Parameter → gradient, filled by autodiff.
    pub param_grads: Vec<(TensorId, TensorId)>,
    /// Number of forward nodes (autodiff appends after them).
    pub forward_len: usize,
}

impl Graph {
    pub fn tensor(&mut self, name: impl Into<String>, shape: Vec<usize>, role: Role) -> TensorId {
        self.tensors.push(TensorInfo {
            name: name.into(),
            shape,
            role,
        });
        self.tensors.len() - 1
    }

    pub fn shape(&self, t: TensorId) -> &[usize] {
        &self.tensors[t].shape
    }

    pub fn node(&mut self, op: Op, inputs: Vec<TensorId>, outputs: Vec<TensorId>) {
        self.nodes.push(Node { op, inputs, outputs });
    }

    pub fn output(&self, name: &str) -> Option<TensorId> {
        self.outputs.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
    }

    pub fn params(&self) -> impl Iterator<Item = TensorId> + '_ {
        (0..self.tensors.len()).filter(|&t| self.tensors[t].role == Role::Param)
    }

    pub fn count(&self, role: Role) -> (usize, usize) {
        let ts = self.tensors.iter().filter(|t| t.role == role);
        ts.fold((0, 0), |(n, e), t| (n + 1, e + t.numel()))
    }
}
