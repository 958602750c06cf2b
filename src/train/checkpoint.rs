//! A training run on disk, all safetensors in official names and layouts:
//!
//! - `model.safetensors`: the weights (loads in PyTorch as the official `state_dict`);
//! - `model-ema.safetensors`: the EMA weights, same names;
//! - `opt.safetensors`: AdamW moments as `exp_avg.<name>` and `exp_avg_sq.<name>`,
//!   with the step counters in its metadata (`step`, `skips`, `iteration`).
//!
//! The three files are first written in full to temporary names, then renamed
//! together, so a crash never leaves a half-written checkpoint and the files
//! of one checkpoint come from one step (each records `step` and `iteration`,
//! checked on load).

use crate::checkpoint::{
    check_finite, load, load_metadata, load_weights, stage, to_safetensors, Metadata, NamedTensors, Staged, Tensor,
};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::graph::executor::GpuGraph;
use crate::kernels::optimizer::StepState;
use crate::model::assemble::ModelGraph;
use crate::model::config::HParams;
use crate::model::layout::{to_internal, to_official};
use crate::model::params::check_against;
use crate::model::params::ParamSpec;

const MOMENTS: [&str; 2] = ["exp_avg", "exp_avg_sq"];

pub struct RunState {
    pub weights: NamedTensors,
    pub ema: NamedTensors,
    pub opt: NamedTensors,
    pub state: StepState,
    /// The data-parallel ranks and the images per rank that trained it (None
    /// in checkpoints written before they were recorded).
    pub layout: Option<(usize, usize)>,
}

fn path(dir: &str, file: &str) -> String {
    format!("{dir}/{file}")
}

/// A checkpoint written to temporary files, not yet in place.
#[must_use = "a staged checkpoint replaces nothing until it is committed"]
pub struct StagedRun {
    files: Vec<Staged>,
}

impl StagedRun {
    /// Renames the files into place (a few renames: microseconds).
    pub fn commit(self) -> Result<()> {
        self.files.into_iter().try_for_each(Staged::commit)
    }
}

fn official(spec: &ParamSpec, data: Vec<f32>) -> Tensor {
    Tensor {
        shape: spec.shape.clone(),
        data: to_official(spec, &data),
    }
}

/// The EMA weights on the GPU, in official names and layouts (what
/// `model-ema.safetensors` holds).
pub fn read_ema_weights(ctx: &GpuContext, m: &ModelGraph, gpu: &GpuGraph) -> Result<NamedTensors> {
    m.params
        .iter()
        .map(|(spec, t)| Ok((spec.name.clone(), official(spec, gpu.read_ema(ctx, *t)?))))
        .collect()
}

/// Writes weights, EMA and optimizer state of `gpu` to temporary files in `dir`.
/// `ranks`: the data-parallel ranks that trained it (1 for one process).
pub fn stage_run(
    ctx: &GpuContext,
    dir: &str,
    h: &HParams,
    m: &ModelGraph,
    gpu: &GpuGraph,
    ranks: usize,
) -> Result<StagedRun> {
    let state = gpu.optimizer_state(ctx)?;
    let (mut weights, mut opt) = (NamedTensors::new(), NamedTensors::new());
    let ema = read_ema_weights(ctx, m, gpu)?;
    for (spec, t) in &m.params {
        weights.insert(spec.name.clone(), official(spec, gpu.read(ctx, *t)?));
        let (m1, m2) = gpu.read_moments(ctx, *t)?;
        opt.insert(format!("{}.{}", MOMENTS[0], spec.name), official(spec, m1));
        opt.insert(format!("{}.{}", MOMENTS[1], spec.name), official(spec, m2));
    }
    let config = serde_json::to_string(h).expect("hyperparameters serialise");
    let meta = Metadata::from([
        ("config".to_string(), config),
        ("step".to_string(), state.step.to_string()),
        ("iteration".to_string(), state.iteration.to_string()),
    ]);
    let mut opt_meta = meta.clone();
    opt_meta.insert("skips".into(), state.skips.to_string());
    opt_meta.insert("ranks".into(), ranks.to_string());
    opt_meta.insert("batch".into(), m.batch.to_string());
    let files = [
        ("model.safetensors", &weights, &meta),
        ("model-ema.safetensors", &ema, &meta),
        ("opt.safetensors", &opt, &opt_meta),
    ];
    let mut staged = Vec::new();
    for (file, tensors, meta) in files {
        let p = path(dir, file);
        let bytes = to_safetensors(tensors, Some(meta)).map_err(|e| Error::Input(format!("{p}: {e}")))?;
        staged.push(stage(&p, &bytes)?);
    }
    Ok(StagedRun { files: staged })
}

/// Writes weights, EMA and optimizer state of `gpu` into `dir`.
pub fn save_run(ctx: &GpuContext, dir: &str, h: &HParams, m: &ModelGraph, gpu: &GpuGraph, ranks: usize) -> Result<()> {
    stage_run(ctx, dir, h, m, gpu, ranks)?.commit()
}

fn counter(meta: &Metadata, key: &str, file: &str) -> Result<u32> {
    meta.get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Input(format!("{file}: metadata has no valid `{key}` counter")))
}

/// Checks that the weights and EMA files were saved at the optimizer state's
/// step (a copy from another run, or a kill between renames, mixes them).
fn check_same_step(dir: &str, opt_meta: &Metadata) -> Result<()> {
    for file in ["model.safetensors", "model-ema.safetensors"] {
        let meta = load_metadata(&path(dir, file))?;
        for key in ["step", "iteration"] {
            // Files written before `iteration` was recorded have only `step`.
            if let (Some(a), Some(b)) = (meta.get(key), opt_meta.get(key)) {
                if a != b {
                    return Err(Error::Input(format!(
                        "{dir}: {file} has {key} {a} but opt.safetensors has {key} {b}: \
                         the files come from different checkpoints; restore a matching set \
                         or start a new run without --resume"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Reads a run written by [`save_run`], checking every tensor against the model.
pub fn load_run(dir: &str, m: &ModelGraph) -> Result<RunState> {
    let specs: Vec<ParamSpec> = m.params.iter().map(|(s, _)| s.clone()).collect();
    let weights = load_weights(&path(dir, "model.safetensors"), None)?;
    check_against(&specs, &weights, "model.safetensors")?;
    let ema = load_weights(&path(dir, "model-ema.safetensors"), None)?;
    check_against(&specs, &ema, "model-ema.safetensors")?;
    let opt_path = path(dir, "opt.safetensors");
    let opt = load(&opt_path)?;
    // NaN moments would turn the first resumed update's weights NaN.
    check_finite(&opt).map_err(|e| Error::Input(format!("{opt_path}: Adam's moments: {e}")))?;
    let moment_specs: Vec<ParamSpec> = MOMENTS
        .iter()
        .flat_map(|p| {
            specs.iter().map(move |s| ParamSpec {
                name: format!("{p}.{}", s.name),
                ..s.clone()
            })
        })
        .collect();
    check_against(&moment_specs, &opt, "opt.safetensors")?;
    let meta = load_metadata(&opt_path)?;
    check_same_step(dir, &meta)?;
    let state = StepState::resumed(
        counter(&meta, "step", "opt.safetensors")?,
        counter(&meta, "skips", "opt.safetensors")?,
        counter(&meta, "iteration", "opt.safetensors")?,
    );
    let number = |key: &str| meta.get(key).and_then(|v| v.parse::<usize>().ok());
    Ok(RunState {
        weights,
        ema,
        opt,
        state,
        layout: number("ranks").zip(number("batch")),
    })
}

impl RunState {
    /// Says so when the run continues with another data-parallel layout: it
    /// trains on, but its batches are not the ones an uninterrupted run would take.
    pub fn note_other_layout(&self, ranks: usize, batch: usize) {
        if let Some((was_ranks, was_batch)) = self.layout {
            if (was_ranks, was_batch) != (ranks, batch) {
                ::log::info!(
                    "note: this run was trained on {was_ranks} rank(s) of batch {was_batch} and continues on \
                     {ranks} of batch {batch}: its batches differ from those of an uninterrupted run \
                     (resume with the same ranks and --batch to continue it exactly)"
                );
            }
        }
    }

    /// Puts weights, EMA and moments on the GPU.
    pub fn upload(&self, ctx: &GpuContext, m: &ModelGraph, gpu: &GpuGraph) -> Result<()> {
        for (spec, t) in &m.params {
            let internal = |set: &NamedTensors, name: &str| to_internal(spec, &set[name].data);
            gpu.write(ctx, &m.graph, *t, &internal(&self.weights, &spec.name))?;
            gpu.write_optimizer_tensor(
                ctx,
                *t,
                &internal(&self.ema, &spec.name),
                &internal(&self.opt, &format!("{}.{}", MOMENTS[0], spec.name)),
                &internal(&self.opt, &format!("{}.{}", MOMENTS[1], spec.name)),
            )?;
        }
        Ok(())
    }
}
