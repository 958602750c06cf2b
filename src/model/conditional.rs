//! The model's forward pass with each level's z from a chosen source
//! ([`LevelSource`]): the graph behind `reconstruct`, `interpolate`, `encode`,
//! `diagnose` and `sample --fix-levels`. Forward only; it reads back the images,
//! the likelihood's parameters, the per-image NLL and KL, and every level's z
//! and posterior.

use super::builder::{encode_images, written_inputs, Builder};
use super::config::{HParams, Likelihood};
use super::evaluate::Device;
use super::forward::Forward;
use super::levels::{Level, LevelSource};
use super::params::ParamSpec;
use super::preprocess::{Binarization, Normalization};
use crate::checkpoint::NamedTensors;
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::graph::{Graph, TensorId};

pub struct ConditionalGraph {
    pub graph: Graph,
    pub params: Vec<(ParamSpec, TensorId)>,
    pub spec: ConditionalSpec,
}

/// Where a conditional graph's named parts are.
pub struct ConditionalSpec {
    pub likelihood: Likelihood,
    /// The graph inputs the data is written to (`encode_images` order), when a level reads it.
    pub data: Vec<TensorId>,
    /// The levels, top first.
    pub levels: Vec<Level>,
    /// Per-image KL `[N]` of each posterior level.
    pub kl: Vec<Option<TensorId>>,
    /// Per-image NLL `[N]` of the data, when there is data.
    pub nll: Option<TensorId>,
    /// The likelihood's parameters (DMoL mixture or Bernoulli logits).
    pub out: TensorId,
    /// Images: DMoL samples in [-1, 1] or Bernoulli means in [0, 1].
    pub images: TensorId,
    pub batch: usize,
    /// Image size and channels.
    pub image: (usize, usize),
}

/// Builds the forward graph of `h` for `batch` images, level l's z from
/// `sources[l]`. It reads images (and gives their NLL) when `with_data` or
/// when a level reads the posterior.
pub fn build_conditional(
    h: &HParams,
    batch: usize,
    sources: &[LevelSource],
    with_data: bool,
) -> Result<ConditionalGraph> {
    let (mut b, params) = Builder::with_params(h)?;
    let reads_data = with_data || sources.iter().any(|s| s.reads_data());
    let data = if reads_data {
        Some(b.data_input(h, batch)?)
    } else {
        None
    };
    let (out, levels) = b.levels(h, data.as_ref().map(|d| d.x), batch, sources)?;
    let mut kl = Vec::with_capacity(levels.len());
    for l in &levels {
        kl.push(match l.kl {
            Some(k) => {
                let name = format!("{}_sum", b.g.tensors[k].name);
                Some(b.g.sum_per_image(&name, k)?)
            }
            None => None,
        });
    }
    let nll = match &data {
        Some(d) => Some(b.nll(h, out, d.target)?),
        None => None,
    };
    let images = b.images(h, out)?;
    let mut outputs = vec![out, images];
    outputs.extend(nll);
    outputs.extend(kl.iter().flatten());
    for l in &levels {
        outputs.push(l.z);
        outputs.extend(l.posterior.iter().flat_map(|p| p.tensors()));
    }
    b.g.outputs.extend(outputs);
    let data = data.map_or_else(Vec::new, |d| written_inputs(h.likelihood, d.input, d.target));
    Ok(ConditionalGraph {
        graph: b.g,
        params,
        spec: ConditionalSpec {
            likelihood: h.likelihood,
            data,
            levels,
            kl,
            nll,
            out,
            images,
            batch,
            image: (h.image_size, h.image_channels),
        },
    })
}

/// A conditional graph with its weights on a device.
pub struct Conditional<'d> {
    pub spec: ConditionalSpec,
    graph: Graph,
    forward: Forward<'d>,
}

impl<'d> Conditional<'d> {
    /// Builds the graph for `batch` images (see [`build_conditional`]) and
    /// writes the weights to the device.
    pub fn new(
        device: Device<'d>,
        h: &HParams,
        weights: &NamedTensors,
        batch: usize,
        sources: &[LevelSource],
        with_data: bool,
        seed: u64,
    ) -> Result<Conditional<'d>> {
        let c = build_conditional(h, batch, sources, with_data)?;
        let forward = Forward::new(device, &c.graph, &c.params, weights, seed)?;
        Ok(Conditional {
            spec: c.spec,
            graph: c.graph,
            forward,
        })
    }

    /// Writes `images` (exactly the batch) to the data inputs. A Bernoulli
    /// model's images are binarized by their row in the batch: pass images
    /// already binarized by [`fixed_binary_images`](super::preprocess::fixed_binary_images)
    /// to key the draw by the dataset instead (0/255 pixels stay as they are).
    pub fn set_images(&mut self, images: &ImageSet, norm: Normalization) -> Result<()> {
        let (size, c) = self.spec.image;
        if images.n != self.spec.batch || (images.h, images.w, images.c) != (size, size, c) {
            return Err(Error::Input(format!(
                "the graph takes {} images of {size}x{size}x{c}; got {}x{}x{}x{}",
                self.spec.batch, images.n, images.h, images.w, images.c
            )));
        }
        let binarization = Binarization::Fixed {
            seed: 0,
            first_image: 0,
        };
        let encoded = encode_images(self.spec.likelihood, images, norm, binarization);
        for (&t, data) in self.spec.data.iter().zip(encoded) {
            self.forward.set(&self.graph, t, &data)?;
        }
        Ok(())
    }

    /// Writes level `l`'s z (a [`LevelSource::Given`] level), NHWC, the whole batch.
    pub fn set_latent(&mut self, l: usize, z: Vec<f32>) -> Result<()> {
        let t = self.spec.levels[l]
            .given
            .ok_or_else(|| Error::Input(format!("level {l} is not given by the caller")))?;
        self.forward.set(&self.graph, t, &z)
    }

    pub fn run(&mut self, step: u32) -> Result<()> {
        self.forward.run(&self.graph, step)
    }

    /// The images of the last run as uint8 (DMoL samples with the official
    /// rounding; Bernoulli means as grey levels).
    pub fn images(&self) -> Result<ImageSet> {
        let x = self.forward.read(self.spec.images)?;
        let (size, c) = self.spec.image;
        Ok(ImageSet {
            n: self.spec.batch,
            h: size,
            w: size,
            c,
            pixels: to_u8(self.spec.likelihood, &x),
        })
    }

    /// The likelihood's parameters of the last run.
    pub fn likelihood_params(&self) -> Result<Vec<f32>> {
        self.forward.read(self.spec.out)
    }

    /// Per-image NLL (nats) of the last run's data.
    pub fn nll(&self) -> Result<Vec<f32>> {
        let t = self
            .spec
            .nll
            .ok_or_else(|| Error::Input("this graph reads no data".into()))?;
        self.forward.read(t)
    }

    /// Per-image KL of level `l`, when it was drawn from the posterior.
    pub fn kl(&self, l: usize) -> Result<Option<Vec<f32>>> {
        self.spec.kl[l].map(|t| self.forward.read(t)).transpose()
    }

    /// Level `l`'s z, NHWC.
    pub fn z(&self, l: usize) -> Result<Vec<f32>> {
        self.forward.read(self.spec.levels[l].z)
    }

    /// Level `l`'s posterior `(mu, log sigma)`, NHWC, when it was drawn from the posterior.
    pub fn posterior(&self, l: usize) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
        let Some(parts) = self.spec.levels[l].posterior else {
            return Ok(None);
        };
        let values = parts
            .tensors()
            .into_iter()
            .map(|t| self.forward.read(t))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(parts.gaussian(&values)))
    }

    /// The shape of level `l`'s z: `[N, H, W, C]`.
    pub fn latent_shape(&self, l: usize) -> Vec<usize> {
        self.graph.shape(self.spec.levels[l].z).to_vec()
    }
}

/// What [`over_batches`] runs: a model with its weights on images.
pub struct BatchRun<'a, 'd> {
    pub device: Device<'d>,
    pub h: &'a HParams,
    pub weights: &'a NamedTensors,
    /// Binarized for a Bernoulli model (see [`Conditional::set_images`]).
    pub images: &'a ImageSet,
    pub norm: Normalization,
    pub batch: usize,
    pub seed: u64,
}

impl BatchRun<'_, '_> {
    /// Images per pass of [`over_batches`]: `batch`, at least 1 and at most
    /// the images; only the last pass may hold fewer.
    pub fn batch_size(&self) -> usize {
        self.batch.clamp(1, self.images.n.max(1))
    }
}

/// Runs the conditional graph of `sources` over every image in batches (one
/// graph per batch size, noise step = the batch's index) and hands each run
/// to `visit` with the index of its first image.
pub fn over_batches(
    run: &BatchRun<'_, '_>,
    sources: &[LevelSource],
    mut visit: impl FnMut(&Conditional<'_>, usize) -> Result<()>,
) -> Result<()> {
    let images = run.images;
    if images.n == 0 {
        return Err(Error::Input("the dataset holds no images".into()));
    }
    let batch = run.batch_size();
    let mut graph: Option<Conditional<'_>> = None;
    let mut start = 0;
    while start < images.n {
        let n = batch.min(images.n - start);
        if graph.as_ref().is_none_or(|c| c.spec.batch != n) {
            graph = Some(Conditional::new(
                run.device,
                run.h,
                run.weights,
                n,
                sources,
                true,
                run.seed,
            )?);
        }
        let c = graph.as_mut().expect("just built");
        c.set_images(&images.range(start, n), run.norm)?;
        c.run((start / batch) as u32)?;
        visit(c, start)?;
        start += n;
    }
    Ok(())
}

/// Model images as uint8: DMoL samples with the official rounding (truncate
/// `(x + 1) · 127.5`), Bernoulli means (the probability of a white pixel) as grey levels.
pub fn to_u8(likelihood: Likelihood, x: &[f32]) -> Vec<u8> {
    match likelihood {
        Likelihood::Dmol => crate::kernels::dmol::samples_to_u8(x),
        Likelihood::Bernoulli => x.iter().map(|&p| (p.clamp(0.0, 1.0) * 255.0).round() as u8).collect(),
    }
}
