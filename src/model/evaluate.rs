//! `vdvae eval` and `vdvae grad`: a checkpoint on a dataset, on the GPU or on
//! the CPU reference path.

use serde::Serialize;

use super::assemble::{build_model, ModelGraph};
use super::config::HParams;
use super::forward::Forward;
use super::preprocess::Binarization;
use super::preprocess::Normalization;
use crate::checkpoint::NamedTensors;
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::graph::autodiff::append_backward;
use crate::graph::executor::cpu::Values;
use crate::graph::{set_precision, ElboParts, ElboTotals, Precision, Sampling, TensorId};

/// Where a graph runs.
#[derive(Clone, Copy)]
pub enum Device<'a> {
    Gpu(&'a GpuContext),
    /// The plain-Rust reference ops.
    Cpu,
}

/// `vdvae eval --json` prints exactly these keys.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub images: usize,
    /// Negative ELBO, positive, lower is better: per dim and per image.
    pub elbo_nats_per_dim: f64,
    pub elbo_nats_per_image: f64,
    pub bits_per_dim: f64,
    pub distortion: f64,
    pub rate: f64,
    /// nats/dim of each decoder level, top (coarsest) first.
    pub kl_per_level: Vec<f64>,
    /// Samples per image of the importance-weighted NLL (`--iw K`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iw_k: Option<usize>,
    /// The importance-weighted NLL, positive, lower is better: nats per image and bits per dim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iw_nll_nats_per_image: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iw_nll_bits_per_dim: Option<f64>,
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

/// Per-image NLL and per-level KL sums of one batch, run with noise step
/// `step`: `data` is this batch's input (and target).
pub(crate) fn run_batch(
    m: &ModelGraph,
    forward: &mut Forward<'_>,
    data: &[(TensorId, Vec<f32>)],
    step: u32,
) -> Result<(Vec<f32>, Vec<Vec<f32>>)> {
    for (t, d) in data {
        forward.set(&m.graph, *t, d)?;
    }
    forward.run(&m.graph, step)?;
    let kls = m.kl_per_level.iter().map(|&k| forward.read(k)).collect::<Result<_>>()?;
    Ok((forward.read(m.nll)?, kls))
}

/// A model's graph for one batch size, with its weights on the device.
pub(crate) struct BatchGraph<'d> {
    rows: usize,
    model: ModelGraph,
    forward: Forward<'d>,
}

/// The graph of `input`'s model for `rows` images: the one in `built` when it
/// has that batch size, else a new one (built, weights converted and uploaded once).
pub(crate) fn fit_batch_graph<'a, 'd>(
    device: Device<'d>,
    input: &EvalInput<'_>,
    rows: usize,
    built: &'a mut Option<BatchGraph<'d>>,
) -> Result<(&'a ModelGraph, &'a mut Forward<'d>)> {
    if built.as_ref().is_none_or(|b| b.rows != rows) {
        let mut model = build_model(input.h, rows, input.sampling)?;
        set_precision(&mut model.graph, input.precision);
        let forward = Forward::new(device, &model.graph, &model.params, input.weights, input.seed)?;
        *built = Some(BatchGraph { rows, model, forward });
    }
    let b = built.as_mut().expect("just built");
    Ok((&b.model, &mut b.forward))
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
    /// Seed of the fixed binarization of a Bernoulli model's data.
    pub binarize_seed: u64,
    /// How activations are stored.
    pub precision: Precision,
}

/// ELBO, distortion, rate and per-level KL of the weights on the images, in batches of `batch`.
pub fn evaluate(device: Device<'_>, input: &EvalInput<'_>, batch: usize) -> Result<EvalReport> {
    let EvalInput {
        images,
        norm,
        binarize_seed,
        ..
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
    let mut built = None;
    let mut start = 0;
    while start < images.n {
        let n = batch.min(images.n - start);
        let (m, forward) = fit_batch_graph(device, input, n, &mut built)?;
        let binarization = Binarization::Fixed {
            seed: binarize_seed,
            first_image: start,
        };
        let data = m.input_data(&images.range(start, n), norm, binarization)?;
        let step = (start / batch) as u32;
        let (nll, kls) = run_batch(m, forward, &data, step)?;
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
        elbo_nats_per_image: elbo * images.image_len() as f64,
        bits_per_dim: elbo / std::f64::consts::LN_2,
        distortion,
        rate,
        kl_per_level,
        iw_k: None,
        iw_nll_nats_per_image: None,
        iw_nll_bits_per_dim: None,
    })
}

/// The gradient of the mean ELBO over all the images taken as one batch, official names.
pub fn gradient(device: Device<'_>, input: &EvalInput<'_>) -> Result<NamedTensors> {
    let EvalInput {
        h,
        weights,
        images,
        norm,
        sampling,
        seed,
        precision,
        binarize_seed,
    } = *input;
    if images.n == 0 {
        return Err(Error::Input("the dataset holds no images".into()));
    }
    let mut m = build_model(h, images.n, sampling)?;
    append_backward(&mut m.graph)?;
    set_precision(&mut m.graph, precision);
    let mut forward = Forward::new(device, &m.graph, &m.params, weights, seed)?;
    let binarization = Binarization::Fixed {
        seed: binarize_seed,
        first_image: 0,
    };
    for (t, d) in m.input_data(images, norm, binarization)? {
        forward.set(&m.graph, t, &d)?;
    }
    forward.run(&m.graph, 0)?;
    let mut values: Values = vec![None; m.graph.tensors.len()];
    for &(_, d) in &m.graph.param_grads {
        values[d] = Some(forward.read(d)?);
    }
    m.official_grads(&values)
}
