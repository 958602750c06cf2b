//! The executors. The GPU executor (this module): a graph's tensors placed in a
//! few large buffers by the memory plan, every node lowered to dispatches once
//! at build time, and a whole step recorded into one command buffer with one
//! submit. The CPU executor ([`cpu`]) runs the same graph on the references.

mod advice;
mod binding_split;
pub mod cpu;
mod exchange;
mod flips;
mod lower;
mod shared;
mod train;
mod upload;

pub use binding_split::{BindingSplit, Part, Unit};
pub(crate) use flips::flipped_bytes;
use flips::Flips;
pub use lower::LowerCall;
pub use shared::SharedStep;
pub use train::{StepMetrics, TrainConfig};

use super::ir::{Graph, Role, TensorId};
use super::plan::{plan, MemoryPlan, Region};
use crate::error::{Error, Result};
use crate::gpu::{BufView, DType, Dispatch, GpuBuffer, GpuContext, Work};
use crate::kernels::rng::RNG_STEP_WORD;

/// Where each tensor lives: (buffer index, element offset, elements), and
/// how its elements are stored (offsets count elements of that dtype).
pub(crate) struct Buffers {
    pub all: Vec<GpuBuffer>,
    pub loc: Vec<(usize, usize, usize)>,
    pub dtypes: Vec<DType>,
}

impl Buffers {
    pub fn view(&self, t: TensorId) -> BufView<'_> {
        let (b, offset, len) = self.loc[t];
        BufView {
            buffer: &self.all[b].buffer,
            offset,
            len,
            dtype: self.dtypes[t],
        }
    }
}

/// Indices in `Buffers::all` of the persistent regions; the arenas follow.
pub(crate) const WEIGHTS: usize = 0;
pub(crate) const GRADS: usize = 1;
pub(crate) const INPUTS: usize = 2;
const CONSTANTS: usize = 3;
const FIRST_ARENA: usize = 4;

/// What a dispatch of a step computes, for profiles and traces.
#[derive(Clone, Debug, PartialEq)]
pub struct DispatchLabel {
    /// The graph node it lowers (None for the optimizer's dispatches).
    pub node: Option<usize>,
    /// The node's op ([`OpRule::name`](crate::graph::ops::OpRule::name)), or the
    /// optimizer's stage (`grad_norm`, `decide`, `adamw`).
    pub op: &'static str,
    /// Where in the model: the node's first output tensor and its op, e.g.
    /// `grad.decoder.dec_blocks.6.resnet.c2.weight conv2d_backward_weight`, or
    /// `optimizer.adamw`.
    pub name: String,
}

impl DispatchLabel {
    fn of_node(g: &Graph, node: usize) -> DispatchLabel {
        let n = &g.nodes[node];
        let op = n.op.rule().name();
        let out = n.outputs.first().map_or("", |&t| g.tensors[t].name.as_str());
        DispatchLabel {
            node: Some(node),
            op,
            name: format!("{out} {op}"),
        }
    }

    /// The once-per-run flip of every conv's dx weights (see `flips.rs`).
    fn conv_weight_flips() -> DispatchLabel {
        DispatchLabel {
            node: None,
            op: "conv2d_flip_transpose_many",
            name: "conv weights flipped for dx".into(),
        }
    }

    pub(crate) fn optimizer(stage: &'static str) -> DispatchLabel {
        DispatchLabel {
            node: None,
            op: stage,
            name: format!("optimizer.{stage}"),
        }
    }
}

/// How [`GpuGraph::build_with`] builds a graph.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// The most bytes one dispatch may bind of a buffer; None: the adapter's
    /// `max_storage_buffer_binding_size` (a larger value is capped to it).
    /// Nodes with a tensor over it are split into several dispatches, and the
    /// optimizer sweeps the weights in pieces of at most this size. Tests set
    /// a small one to exercise splitting on small models.
    pub binding_limit: Option<usize>,
    /// Index in the global batch of this graph's image 0: a data-parallel
    /// rank's graph draws the noise of its images as one graph of the whole
    /// global batch would (0 for a whole batch).
    pub first_image: usize,
}

impl BuildOptions {
    /// The binding limit in bytes on `ctx`.
    fn binding_limit(&self, ctx: &GpuContext) -> usize {
        let adapter = ctx.limits.max_storage_buffer_binding_size as usize;
        self.binding_limit.map_or(adapter, |l| l.min(adapter))
    }
}

/// Copies the noise step into the uniform of each of `noisy` (indices into
/// `dispatches`), from `src` word `word`.
fn record_noise_step(
    noisy: &[usize],
    dispatches: &[Dispatch],
    encoder: &mut wgpu::CommandEncoder,
    src: &wgpu::Buffer,
    word: u64,
) {
    for &i in noisy {
        if let Some(params) = dispatches[i].params_buffer() {
            // The step word of the `RngKey` that noisy kernels' uniforms start with.
            encoder.copy_buffer_to_buffer(src, word * 4, params, RNG_STEP_WORD as u64 * 4, 4);
        }
    }
}

/// A graph ready to run on one adapter.
pub struct GpuGraph {
    pub plan: MemoryPlan,
    pub(crate) bufs: Buffers,
    pub(crate) dispatches: Vec<Dispatch>,
    /// One per entry of `dispatches`.
    labels: Vec<DispatchLabel>,
    /// Dispatches (indices) whose uniform takes the noise step each run.
    noisy: Vec<usize>,
    /// A one-word buffer holding the noise step for runs without an optimizer.
    step_word: GpuBuffer,
    /// The flipped conv weights the dx dispatches read (kept alive with them).
    _flips: Flips,
    /// The most bytes one dispatch binds of a buffer (see [`BuildOptions`]).
    pub(crate) binding_limit: usize,
    pub(crate) train: Option<train::TrainState>,
}

fn storage_buffer(ctx: &GpuContext, bytes: usize) -> GpuBuffer {
    ctx.zeros(bytes.div_ceil(4).max(1))
}

/// An error unless every buffer of the plan fits the adapter's largest buffer.
fn check_buffer_sizes(ctx: &GpuContext, g: &Graph, plan: &MemoryPlan) -> Result<()> {
    let max = ctx.limits.max_buffer_size as usize;
    let regions = [
        ("weights", Role::Param, plan.weights),
        ("inputs", Role::Input, plan.inputs),
        ("constants", Role::Constant, plan.constants),
    ];
    let arenas = plan.arenas.iter().map(|&b| ("activations", Role::Activation, b));
    let Some((what, role, bytes)) = regions.into_iter().chain(arenas).find(|&(_, _, b)| b > max) else {
        return Ok(());
    };
    Err(Error::Shape(advice::too_large_buffer(g, what, role, bytes, max)))
}

impl GpuGraph {
    /// Plans memory, allocates every buffer, uploads constants and builds every
    /// dispatch. With `train`, appends gradient norm, AdamW and EMA.
    pub fn build(ctx: &GpuContext, g: &Graph, seed: u64, train: Option<TrainConfig>) -> Result<GpuGraph> {
        GpuGraph::build_with(ctx, g, seed, train, BuildOptions::default())
    }

    /// [`GpuGraph::build`] with options (e.g. a smaller binding limit).
    pub fn build_with(
        ctx: &GpuContext,
        g: &Graph,
        seed: u64,
        train: Option<TrainConfig>,
        options: BuildOptions,
    ) -> Result<GpuGraph> {
        let align = ctx.limits.min_storage_buffer_offset_alignment.max(4) as usize;
        let chunk = (ctx.limits.max_buffer_size as usize).min(1 << 30) / align * align;
        let binding_limit = options.binding_limit(ctx);
        super::precision::check_adapter(ctx, g)?;
        let mut plan = plan(g, align, chunk, train.is_some());
        check_buffer_sizes(ctx, g, &plan)?;
        // Nodes with a tensor over one binding are lowered as several dispatches.
        let splits = g
            .nodes
            .iter()
            .map(|n| binding_split::plan_binding_split(g, n, binding_limit, align))
            .collect::<Result<Vec<_>>>()?;
        let staging_len = splits
            .iter()
            .flatten()
            .map(|s| s.staging())
            .fold((0, 0), |a, b| (a.0.max(b.0), a.1.max(b.1)));
        let mut all = vec![
            storage_buffer(ctx, plan.weights),
            storage_buffer(ctx, plan.grads),
            storage_buffer(ctx, plan.inputs),
        ];
        // Constants are uploaded once.
        let mut constants = vec![0f32; plan.constants / 4];
        for (t, data) in &g.constants {
            let o = plan.placements[*t].offset / 4;
            constants[o..o + data.len()].copy_from_slice(data);
        }
        all.push(ctx.upload(&constants));
        for &bytes in &plan.arenas {
            all.push(storage_buffer(ctx, bytes));
        }
        let loc = g
            .tensors
            .iter()
            .enumerate()
            .map(|(t, info)| {
                let p = plan.placements[t];
                let (b, offset) = match p.region {
                    Region::Weights => (WEIGHTS, p.offset),
                    Region::Grads => (GRADS, p.offset),
                    Region::Inputs => (INPUTS, p.offset),
                    Region::Constants => (CONSTANTS, p.offset),
                    Region::Arena(k) => (FIRST_ARENA + k, p.offset),
                };
                (b, offset / info.dtype.size(), info.numel())
            })
            .collect();
        let workspace_len = g
            .nodes
            .iter()
            .map(|n| n.op.rule().scratch_len(g, n))
            .max()
            .unwrap_or(0)
            .max(1);
        // A split node's slices use at most one binding of the side buffer.
        let side_len = g
            .nodes
            .iter()
            .map(|n| n.op.rule().side_len(g, n))
            .max()
            .unwrap_or(0)
            .min(binding_limit / 4)
            .max(1);
        let workspace = all.len();
        all.push(ctx.zeros(workspace_len));
        all.push(ctx.zeros(side_len));
        all.push(ctx.zeros(staging_len.0.max(1)));
        all.push(ctx.zeros(staging_len.1.max(1)));
        plan.workspace = (workspace_len + side_len + staging_len.0 + staging_len.1) * 4;
        let dtypes = g.tensors.iter().map(|t| t.dtype).collect();
        let bufs = Buffers { all, loc, dtypes };

        let flips = Flips::plan(ctx, g, &bufs, binding_limit)?;
        plan.flipped_weights = flips.bytes();
        let mut flipped = false;
        let mut dispatches = Vec::new();
        let mut labels = Vec::new();
        let mut noisy = Vec::new();
        let (ws, side) = (bufs.all[workspace].view(), bufs.all[workspace + 1].view());
        let staging = [bufs.all[workspace + 2].view(), bufs.all[workspace + 3].view()];
        for (i, node) in g.nodes.iter().enumerate() {
            if !flipped && flips.serves(node) {
                let ds = flips.dispatches(ctx, &bufs)?;
                labels.extend(std::iter::repeat_n(DispatchLabel::conv_weight_flips(), ds.len()));
                dispatches.extend(ds);
                flipped = true;
            }
            let call = LowerCall {
                ctx,
                g,
                node,
                bufs: &bufs,
                flips: &flips,
                workspace: ws,
                side,
                seed,
                first_image: options.first_image,
                slice: None,
            };
            let ds = lower::lower(&call, splits[i].as_ref(), staging)?;
            labels.extend(std::iter::repeat_n(DispatchLabel::of_node(g, i), ds.len()));
            for (d, is_noisy) in ds {
                if is_noisy {
                    noisy.push(dispatches.len());
                }
                dispatches.push(d);
            }
        }
        let mut graph = GpuGraph {
            plan,
            bufs,
            dispatches,
            labels,
            noisy,
            step_word: ctx.zeros(1),
            _flips: flips,
            binding_limit,
            train: None,
        };
        if let Some(cfg) = train {
            graph.train = Some(train::TrainState::build(ctx, g, &mut graph, cfg)?);
        }
        Ok(graph)
    }

    /// Dispatches one run records (forward, backward and, when training, the optimizer).
    pub fn dispatch_count(&self) -> usize {
        self.dispatches.len() + self.train.as_ref().map_or(0, |t| t.dispatches.len())
    }

    /// Every dispatch of one run, in recording order, with its label.
    pub fn labelled_dispatches(&self) -> impl Iterator<Item = (&Dispatch, &DispatchLabel)> {
        let train = self.train.iter().flat_map(|t| t.dispatches.iter().zip(&t.labels));
        self.dispatches.iter().zip(&self.labels).chain(train)
    }

    pub fn view(&self, t: TensorId) -> BufView<'_> {
        self.bufs.view(t)
    }

    /// Writes host data into a Param, Input tensor (f32, its exact length).
    pub fn write(&self, ctx: &GpuContext, g: &Graph, t: TensorId, data: &[f32]) -> Result<()> {
        let info = &g.tensors[t];
        if data.len() != info.numel() {
            return Err(Error::Shape(format!(
                "{}: {} values for shape {:?}",
                info.name,
                data.len(),
                info.shape
            )));
        }
        if !matches!(info.role, Role::Param | Role::Input) || info.dtype != DType::F32 {
            return Err(Error::Shape(format!("{} is not an f32 parameter or input", info.name)));
        }
        let v = self.view(t);
        ctx.queue
            .write_buffer(v.buffer, v.byte_offset(), bytemuck::cast_slice(data));
        Ok(())
    }

    /// Writes every Param and Input that `values` holds (CPU-executor values).
    pub fn write_values(&self, ctx: &GpuContext, g: &Graph, values: &[Option<Vec<f32>>]) -> Result<()> {
        for (t, v) in values.iter().enumerate() {
            if let (Some(v), Role::Param | Role::Input) = (v, g.tensors[t].role) {
                self.write(ctx, g, t, v)?;
            }
        }
        Ok(())
    }

    /// A tensor's values (f16 ones widened to f32).
    pub fn read(&self, ctx: &GpuContext, t: TensorId) -> Result<Vec<f32>> {
        ctx.read_values(self.view(t))
    }

    /// Copies the noise step into every noisy dispatch's uniform, from `src` word `word`.
    fn record_noise_step(&self, encoder: &mut wgpu::CommandEncoder, src: &wgpu::Buffer, word: u64) {
        record_noise_step(&self.noisy, &self.dispatches, encoder, src, word);
    }

    /// Runs the graph once (no optimizer) with noise step `step`; waits for the GPU.
    pub fn run(&self, ctx: &GpuContext, step: u32) -> Result<()> {
        ctx.queue
            .write_buffer(&self.step_word.buffer, 0, bytemuck::bytes_of(&step));
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        self.record_noise_step(&mut encoder, &self.step_word.buffer, 0);
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for d in &self.dispatches {
                d.record(&mut pass);
            }
        }
        ctx.submit(encoder.finish());
        ctx.wait()
    }
}

impl GpuGraph {
    /// Kernel names of the dispatches that fail validation on their own (debugging aid).
    pub fn invalid_dispatches(&self, ctx: &GpuContext) -> Vec<String> {
        let mut bad = Vec::new();
        let all: Vec<&Dispatch> = self
            .dispatches
            .iter()
            .chain(self.train.iter().flat_map(|t| &t.dispatches))
            .collect();
        for (i, d) in all.iter().enumerate() {
            let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                d.record(&mut pass);
            }
            let cmd = encoder.finish();
            if let Some(e) = pollster::block_on(scope.pop()) {
                bad.push(format!("#{i} {}: {e}", d.kernel));
            } else {
                drop(cmd);
            }
        }
        bad
    }
}

/// One dispatch of a profiled run.
#[derive(Clone, Debug)]
pub struct DispatchTime {
    pub kernel: &'static str,
    pub label: DispatchLabel,
    pub work: Work,
    /// Invocations per workgroup of its kernel.
    pub workgroup_invocations: u32,
    /// GPU time of the dispatch alone in its own compute pass.
    pub seconds: f64,
}

impl GpuGraph {
    /// Runs every dispatch of one step once, each in its own timed pass (so
    /// one after another, nothing overlapping), and returns them in recording
    /// order with their labels, stated work and GPU time. With an optimizer the
    /// weights take one update.
    pub fn profile(&self, ctx: &GpuContext) -> Result<Vec<DispatchTime>> {
        let (all, labels): (Vec<&Dispatch>, Vec<&DispatchLabel>) = self.labelled_dispatches().unzip();
        let times = ctx.profile(&all)?;
        Ok(times
            .into_iter()
            .zip(all.iter().zip(labels))
            .map(|(t, (d, label))| DispatchTime {
                kernel: t.kernel,
                label: label.clone(),
                work: d.work(),
                workgroup_invocations: d.workgroup_invocations(),
                seconds: t.seconds,
            })
            .collect())
    }
}
