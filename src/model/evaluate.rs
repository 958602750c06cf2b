//! `vdvae eval` and `vdvae grad`: a checkpoint on a dataset, on the GPU or on
//! the CPU reference path.

use serde::Serialize;

use super::config::HParams;
use super::preprocess::Normalization;
use super::vdvae::{build_vdvae, VdvaeGraph};
use crate::checkpoint::NamedTensors;
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::graph::autodiff::append_backward;
use crate::graph::cpu::{self, Noise, Values};
use crate::graph::gpu::GpuGraph;
use crate::graph::{set_precision, ElboParts, ElboTotals, Precision, Sampling};

/// Where a graph runs.
pub enum Device {
    Gpu(Box<GpuContext>),
    /// The plain-Rust reference ops.
    Cpu,
}

/// `vdvae eval --json` prints exactly these keys.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub images: usize,
    pub elbo_nats_per_dim: f64,
    pub bits_per_dim: f64,
    pub distortion: f64,
    pub rate: f64,
    /// nats/dim of each decoder level, top (coarsest) first.
    pub kl_per_level: Vec<f64>,
}

/// The images a model takes: checks channels, pads smaller images (MNIST 28 → 32).
pub fn fit_images(h: &HParams, images: ImageSet) -> Result<ImageSet> {
    if images.c != h.image_channels {
        return Err(Error::Input(format!(
            "the data has {} channel(s) per pixel but the model takes image_channels = {}",
            images.c, h.image_channels
        )));
    }
    if images.h == h.image_size && images.w == h.image_size {
        return Ok(images);
    }
    images
        .pad_to(h.image_size)
        .map_err(|e| Error::Input(format!("{e}; the model takes {0}x{0} images", h.image_size)))
}

fn slice(images: &ImageSet, start: usize, n: usize) -> ImageSet {
    let len = images.image_len();
    ImageSet {
        n,
        pixels: images.pixels[start * len..(start + n) * len].to_vec(),
        ..*images
    }
}

/// Per-image NLL and per-level KL sums of one batch, run on `device` with noise
/// step `step`. `values` holds the weights (already on the GPU) and this batch's
/// input and target.
fn run_batch(
    device: &Device,
    m: &VdvaeGraph,
    gpu: Option<&GpuGraph>,
    values: &mut Values,
    seed: u64,
    step: u32,
) -> Result<(Vec<f32>, Vec<Vec<f32>>)> {
    match (device, gpu) {
        (Device::Gpu(ctx), Some(gpu)) => {
            for t in [m.input, m.target] {
                gpu.write(ctx, &m.graph, t, values[t].as_ref().expect("set_images ran"))?;
            }
            gpu.run(ctx, step)?;
            let kls = m
                .kl_per_level
                .iter()
                .map(|&k| gpu.read(ctx, k))
                .collect::<Result<_>>()?;
            Ok((gpu.read(ctx, m.nll)?, kls))
        }
        _ => {
            cpu::run(
                &m.graph,
                values,
                Noise {
                    seed,
                    step: step as u64,
                },
            )?;
            let get = |t: usize| -> Vec<f32> { values[t].clone().unwrap_or_default() };
            Ok((get(m.nll), m.kl_per_level.iter().map(|&k| get(k)).collect()))
        }
    }
}

/// What to evaluate: a model with its weights on images.
pub struct EvalInput<'a> {
    pub h: &'a HParams,
    pub weights: &'a NamedTensors,
    pub images: &'a ImageSet,
    pub norm: Normalization,
    pub sampling: Sampling,
    /// Seed of the posterior noise.
    pub seed: u64,
    /// How activations are stored.
    pub precision: Precision,
}

/// ELBO, distortion, rate and per-level KL of the weights on the images, in batches of `batch`.
pub fn evaluate(device: &Device, input: &EvalInput<'_>, batch: usize) -> Result<EvalReport> {
    let EvalInput {
        h,
        weights,
        images,
        norm,
        sampling,
        seed,
        precision,
    } = *input;
    if images.n == 0 {
        return Err(Error::Input("the dataset holds no images".into()));
    }
    let batch = batch.clamp(1, images.n);
    let mut totals = ElboTotals::default();
    let progress = indicatif::ProgressBar::new(images.n as u64).with_style(
        indicatif::ProgressStyle::with_template("eval {bar:40} {pos}/{len} images [{elapsed_precise}<{eta_precise}]")
            .expect("a valid progress template"),
    );
    // The graph (one per batch size) with the weights converted and uploaded once.
    let mut built: Option<(usize, VdvaeGraph, Option<GpuGraph>, Values)> = None;
    let mut start = 0;
    while start < images.n {
        let n = batch.min(images.n - start);
        if built.as_ref().is_none_or(|b| b.0 != n) {
            let mut m = build_vdvae(h, n, sampling)?;
            set_precision(&mut m.graph, precision);
            let values = m.values_from_checkpoint(weights, "checkpoint")?;
            let gpu = match device {
                Device::Gpu(ctx) => {
                    let gpu = GpuGraph::build(ctx, &m.graph, seed, None)?;
                    gpu.write_values(ctx, &m.graph, &values)?;
                    Some(gpu)
                }
                Device::Cpu => None,
            };
            built = Some((n, m, gpu, values));
        }
        let (_, m, gpu, values) = built.as_mut().unwrap();
        m.set_images(values, &slice(images, start, n), norm)?;
        let step = (start / batch) as u32;
        let (nll, kls) = run_batch(device, m, gpu.as_ref(), values, seed, step)?;
        totals.add(&nll, &kls);
        start += n;
        progress.set_position(start as u64);
    }
    progress.finish_and_clear();
    let ElboParts {
        elbo,
        distortion,
        rate,
        kl_per_level,
    } = totals.per_dim(images.image_len());
    if !elbo.is_finite() {
        return Err(Error::Input(format!(
            "the ELBO is not finite (distortion {distortion}, rate {rate}): the checkpoint's weights produce NaN or inf"
        )));
    }
    Ok(EvalReport {
        images: images.n,
        elbo_nats_per_dim: elbo,
        bits_per_dim: elbo / std::f64::consts::LN_2,
        distortion,
        rate,
        kl_per_level,
    })
}

/// The gradient of the mean ELBO over all the images taken as one batch, official names.
pub fn gradient(device: &Device, input: &EvalInput<'_>) -> Result<NamedTensors> {
    let EvalInput {
        h,
        weights,
        images,
        norm,
        sampling,
        seed,
        precision,
    } = *input;
    if images.n == 0 {
        return Err(Error::Input("the dataset holds no images".into()));
    }
    let mut m = build_vdvae(h, images.n, sampling)?;
    append_backward(&mut m.graph)?;
    set_precision(&mut m.graph, precision);
    let mut values = m.values_from_checkpoint(weights, "checkpoint")?;
    m.set_images(&mut values, images, norm)?;
    match device {
        Device::Gpu(ctx) => {
            let gpu = GpuGraph::build(ctx, &m.graph, seed, None)?;
            gpu.write_values(ctx, &m.graph, &values)?;
            gpu.run(ctx, 0)?;
            for &(_, d) in &m.graph.param_grads {
                values[d] = Some(gpu.read(ctx, d)?);
            }
        }
        Device::Cpu => cpu::run(&m.graph, &mut values, Noise { seed, step: 0 })?,
    }
    m.official_grads(&values)
}
