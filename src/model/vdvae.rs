//! The VDVAE of docs/design-notes.md#the-vdvae-computation as a graph: encoder, top-down decoder with a
//! posterior, prior and residual block per level, and the DMoL output head.
//! `builder.rs` dispatches here for a VDVAE's levels; `assemble.rs` adds the
//! data, the likelihood and the ELBO.

use std::collections::HashMap;

use super::blocks::LayerSpec;
use super::builder::Builder;
use super::config::{HParams, ModelKind};
use super::levels::{Level, LevelSource, PosteriorParts};
use crate::error::Result;
use crate::graph::{Role, TensorId};

impl Builder {
    fn conv(&mut self, prefix: &str, x: TensorId, residual: Option<TensorId>, gelu: bool) -> Result<TensorId> {
        let (w, b) = (
            self.param(&format!("{prefix}.weight"))?,
            self.param(&format!("{prefix}.bias"))?,
        );
        self.g.conv2d(prefix, x, w, Some(b), residual, gelu)
    }

    /// Block: c1..c4 with GELU before each conv; `x + f(x)` when residual.
    fn block(&mut self, prefix: &str, x: TensorId, residual: bool) -> Result<TensorId> {
        let c1 = self.conv(&format!("{prefix}.c1"), x, None, true)?;
        self.block_after_c1(prefix, c1, residual.then_some(x))
    }

    /// A non-residual Block over `cat[x, a]` along channels: its c1 reads x
    /// and a where they lie (`Graph::conv2d_cat`), no concatenated copy.
    fn block_cat(&mut self, prefix: &str, x: TensorId, a: TensorId) -> Result<TensorId> {
        #[cfg(test)]
        if self.materialised_cat {
            // The reference: the Block over a concatenated copy.
            let cat = self.g.concat(&format!("{prefix}.cat"), x, a)?;
            return self.block(prefix, cat, false);
        }
        let c1 = format!("{prefix}.c1");
        let (w, b) = (self.param(&format!("{c1}.weight"))?, self.param(&format!("{c1}.bias"))?);
        let t = self.g.conv2d_cat(&c1, x, a, w, Some(b), None, true)?;
        self.block_after_c1(prefix, t, None)
    }

    /// c2..c4 of a Block from c1's output, plus `residual` at the end.
    fn block_after_c1(&mut self, prefix: &str, c1: TensorId, residual: Option<TensorId>) -> Result<TensorId> {
        let mut t = c1;
        for c in ["c2", "c3"] {
            t = self.conv(&format!("{prefix}.{c}"), t, None, true)?;
        }
        self.conv(&format!("{prefix}.c4"), t, residual, true)
    }

    /// The decoder's learned start states, repeated over the batch.
    fn decoder_start(&mut self, h: &HParams, batch: usize) -> Result<HashMap<usize, TensorId>> {
        let mut xs = HashMap::new();
        for (j, res) in super::params::bias_resolutions(h)?.into_iter().enumerate() {
            let bias = self.param(&format!("decoder.bias_xs.{j}"))?;
            xs.insert(
                res,
                self.g.broadcast_batch(&format!("decoder.start.{res}"), bias, batch)?,
            );
        }
        Ok(xs)
    }

    /// A level's input state: the resolution's state (zeros before any block
    /// there without a learned start), plus the upsampled mixin state.
    fn level_input(
        &mut self,
        p: &str,
        l: &LayerSpec,
        w: usize,
        xs: &HashMap<usize, TensorId>,
        batch: usize,
    ) -> Result<TensorId> {
        let r = l.res;
        let mut x = match xs.get(&r) {
            Some(&t) => t,
            None => {
                let zeros = self
                    .g
                    .tensor(format!("{p}.zeros"), vec![batch, r, r, w], Role::Constant);
                self.g.constants.push((zeros, vec![0.0; batch * r * r * w]));
                zeros
            }
        };
        if let Some(m) = l.mixin {
            let mut from = xs[&m];
            if *self.g.shape(from).last().unwrap() != w {
                from = self.g.slice_channels(&format!("{p}.mixin_slice"), from, 0, w)?;
            }
            let up = self.g.upsample(&format!("{p}.mixin"), from, r / m)?;
            x = self.g.add(&format!("{p}.mixed"), x, up)?;
        }
        Ok(x)
    }

    /// The prior block's output (mu_p, logsig_p, xpp along channels) and
    /// `x + xpp`, xpp read from the output in place (no slice).
    fn prior_features(&mut self, p: &str, x: TensorId, z: usize) -> Result<(TensorId, TensorId)> {
        let feats = self.block(&format!("{p}.prior"), x, false)?;
        let x = self.g.add_channels(&format!("{p}.x_xpp"), x, feats, 2 * z)?;
        Ok((feats, x))
    }

    /// `resnet(x + z_proj(z))`: the level's output state.
    fn level_output(&mut self, p: &str, zt: TensorId, x: TensorId) -> Result<TensorId> {
        let x = self.conv(&format!("{p}.z_proj"), zt, Some(x), false)?;
        self.block(&format!("{p}.resnet"), x, true)
    }

    /// `out_conv(x · gain + bias)`: the mixture-of-logistics parameters.
    fn output_head(&mut self, top: TensorId) -> Result<TensorId> {
        let (gain, bias) = (self.param("decoder.gain")?, self.param("decoder.bias")?);
        let y = self.g.affine("decoder.final", top, gain, bias)?;
        self.conv("decoder.out_net.out_conv", y, None, false)
    }
}

/// The encoder's last activation at each resolution.
fn encoder(b: &mut Builder, h: &HParams, x: TensorId) -> Result<HashMap<usize, TensorId>> {
    let mut acts: HashMap<usize, TensorId> = HashMap::new();
    let mut x = b.conv("encoder.in_conv", x, None, false)?;
    acts.insert(h.image_size, x);
    for (i, l) in h.encoder_layers()?.iter().enumerate() {
        x = b.block(&format!("encoder.enc_blocks.{i}"), x, true)?;
        let mut res = l.res;
        if let Some(d) = l.down {
            x = b.g.avg_pool(&format!("encoder.enc_blocks.{i}.pool"), x, d)?;
            res /= d;
        }
        let w = h.width_at(res);
        if *b.g.shape(x).last().unwrap() != w {
            x = b.g.place_channels(&format!("encoder.pad.{i}"), x, 0, w)?;
        }
        acts.insert(res, x);
    }
    Ok(acts)
}

/// The VDVAE's encoder (when `x` is given) and top-down decoder, each level's
/// z from its source: returns the likelihood's parameters and the levels, top first.
pub(crate) fn build_levels(
    b: &mut Builder,
    h: &HParams,
    x: Option<TensorId>,
    batch: usize,
    sources: &[LevelSource],
) -> Result<(TensorId, Vec<Level>)> {
    let acts = match x {
        Some(x) => encoder(b, h, x)?,
        None => HashMap::new(),
    };
    // The official posterior from cat[x, activation] (read in place), or the
    // Ladder VAE's merge of a bottom-up estimate from the activation alone
    // with the prior; prior from x; KL between them.
    let mut xs = b.decoder_start(h, batch)?;
    let z = h.zdim;
    let merge = h.model == ModelKind::Ladder;
    let mut levels = Vec::new();
    for (i, (l, &source)) in h.decoder_layers()?.iter().zip(sources).enumerate() {
        let p = format!("decoder.dec_blocks.{i}");
        let w = h.width_at(l.res);
        let x = b.level_input(&p, l, w, &xs, batch)?;
        let q = match source {
            LevelSource::Posterior(_) if merge => Some(b.block(&format!("{p}.enc"), acts[&l.res], false)?),
            LevelSource::Posterior(_) => Some(b.block_cat(&format!("{p}.enc"), x, acts[&l.res])?),
            _ => None,
        };
        let (feats, x) = b.prior_features(&p, x, z)?;
        let slice =
            |b: &mut Builder, t, part: &str, from| b.g.slice_channels(&format!("{p}.{part}"), t, from, from + z);
        let level = match (source, q) {
            (LevelSource::Posterior(sampling), Some(q)) if merge && h.flow_cells == 0 => {
                let d = (slice(b, q, "mu_d", 0)?, slice(b, q, "logsig_d", z)?);
                let prior = (slice(b, feats, "mu_p", 0)?, slice(b, feats, "logsig_p", z)?);
                let (zt, kl) = b.g.reparam_kl_ladder(&p, d, prior, sampling, i as u32)?;
                Level {
                    kl: Some(kl),
                    posterior: Some(PosteriorParts::Merged { d, p: prior }),
                    ..Level::drawn(zt)
                }
            }
            (LevelSource::Posterior(sampling), Some(q)) => {
                // A flowed Ladder level writes its merged posterior out, packed
                // as the VDVAE's posterior block writes it.
                let q = if merge {
                    let d = (slice(b, q, "mu_d", 0)?, slice(b, q, "logsig_d", z)?);
                    let prior = (slice(b, feats, "mu_p", 0)?, slice(b, feats, "logsig_p", z)?);
                    b.g.ladder_merge_packed(&format!("{p}.q"), d, prior)?
                } else {
                    q
                };
                // mu and logsig are read from the two blocks' outputs in place.
                let (zt, kl) = b.g.reparam_kl_packed(&p, q, feats, z, sampling, i as u32)?;
                let (zt, kl) = if h.flow_cells > 0 {
                    // The cells' change of the KL is added to the Gaussian's.
                    let (zk, ld) = super::flow::cells(b, h, &p, zt)?;
                    (zk, b.g.flow_kl(&format!("{p}.flow_kl"), kl, zt, feats, zk, ld)?)
                } else {
                    (zt, kl)
                };
                Level {
                    kl: Some(kl),
                    posterior: Some(PosteriorParts::Packed { q, zdim: z }),
                    ..Level::drawn(zt)
                }
            }
            (LevelSource::Prior { temperature }, _) => {
                let prior = (slice(b, feats, "mu_p", 0)?, slice(b, feats, "logsig_p", z)?);
                Level::drawn(b.g.prior_sample(&format!("{p}.z"), prior, temperature, i as u32)?)
            }
            _ => b.given_latent(&format!("{p}.z_given"), vec![batch, l.res, l.res, z]),
        };
        xs.insert(l.res, b.level_output(&p, level.z, x)?);
        levels.push(level);
    }
    Ok((b.output_head(xs[&h.image_size])?, levels))
}

#[cfg(test)]
mod tests {
    //! The posterior's first conv reads cat[x, a] from x and a where they lie;
    //! the graph that copies them into one tensor first is the reference
    //! (`build_model_materialised_cat`, test builds only). The forward sums in
    //! the same order (bit-identical); gradients summed from the same parts in
    //! another order (a chain of dx epilogues instead of Adds) may differ in
    //! the last bits only.

    use crate::data::{bundled_mnist, ImageSet};
    use crate::gpu::GpuContext;
    use crate::graph::autodiff::append_backward;
    use crate::graph::executor::cpu::{run, Noise, Values};
    use crate::graph::executor::GpuGraph;
    use crate::graph::Sampling;
    use crate::model::assemble::{build_model, build_model_materialised_cat, ModelGraph};
    use crate::model::init::init_weights;
    use crate::model::preprocess::MNIST;
    use crate::model::preset;

    fn build(materialised: bool, h: &crate::model::HParams, batch: usize) -> ModelGraph {
        let build = if materialised {
            build_model_materialised_cat
        } else {
            build_model
        };
        let mut m = build(h, batch, Sampling::Posterior).unwrap();
        append_backward(&mut m.graph).unwrap();
        m
    }

    #[test]
    fn the_posterior_reads_its_cat_in_place_with_the_values_of_the_copied_cat() {
        let h = preset("mnist-tiny").unwrap();
        let weights = init_weights(&h, 2).unwrap();
        let step = |materialised: bool| {
            let m = build(materialised, &h, 1);
            let mut values = m.values_from_checkpoint(&weights, "init").unwrap();
            let images = ImageSet {
                n: 1,
                h: 32,
                w: 32,
                c: 1,
                pixels: (0..1024).map(|i| (i * 37 % 256) as u8).collect(),
            };
            m.set_images(&mut values, &images, MNIST).unwrap();
            run(&m.graph, &mut values, Noise::new(1, 0)).unwrap();
            let grads: Vec<Vec<f32>> = m
                .graph
                .param_grads
                .iter()
                .map(|&(_, d)| values[d].clone().unwrap())
                .collect();
            (values[m.loss].clone().unwrap(), grads, m.graph.nodes.len())
        };
        let ((loss, grads, nodes), (loss2, grads2, nodes2)) = (step(false), step(true));
        assert_eq!(loss, loss2, "the forward is bit-identical");
        assert!(nodes < nodes2, "{nodes} nodes in place, {nodes2} with the copies");
        for (g, w) in grads.iter().zip(&grads2) {
            for (a, b) in g.iter().zip(w) {
                assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-3), "{a} vs {b}");
            }
        }
    }

    /// Loss, per-level KL and every parameter gradient of one forward + backward on the GPU.
    fn gpu_step_values(ctx: &GpuContext, m: &ModelGraph, values: &Values, seed: u64) -> Vec<(String, Vec<f32>)> {
        let gpu = GpuGraph::build(ctx, &m.graph, seed, None).unwrap();
        gpu.write_values(ctx, &m.graph, values).unwrap();
        let bad = gpu.invalid_dispatches(ctx);
        assert!(bad.is_empty(), "{}", bad.join("\n"));
        gpu.run(ctx, 0).unwrap();
        let mut out = vec![("loss".to_string(), gpu.read(ctx, m.loss).unwrap())];
        for (i, &k) in m.kl_per_level.iter().enumerate() {
            out.push((format!("kl {i}"), gpu.read(ctx, k).unwrap()));
        }
        for &(p, d) in &m.graph.param_grads {
            out.push((m.graph.tensors[p].name.clone(), gpu.read(ctx, d).unwrap()));
        }
        out
    }

    /// ‖got − want‖ and ‖want‖.
    fn rel_norm(got: &[f32], want: &[f32]) -> (f64, f64) {
        let d: f64 = got
            .iter()
            .zip(want)
            .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let n: f64 = want.iter().map(|&b| (b as f64).powi(2)).sum::<f64>().sqrt();
        (d, n)
    }

    #[test]
    fn reading_the_posterior_cat_in_place_changes_no_value_on_the_gpu() {
        let mut ctx = GpuContext::from_env().expect("an adapter (install mesa-vulkan-drivers)");
        // The kernels pinned: tuning times a conv over a cat and the same conv
        // over its copy as two shape classes, and may give them kernels that
        // sum in different orders.
        ctx.tuner = ctx.tuner.turned_off();
        let h = preset("mnist-tiny").unwrap();
        let images = bundled_mnist().first(2).pad_to(32).unwrap();
        let (in_place, copied) = (build(false, &h, images.n), build(true, &h, images.n));
        let cats = |m: &ModelGraph| {
            let cat = |n: &str| n.starts_with("decoder.") && n.ends_with(".cat");
            m.graph.tensors.iter().filter(|t| cat(&t.name)).count()
        };
        assert_eq!(cats(&in_place), 0);
        assert_eq!(cats(&copied), h.decoder_layers().unwrap().len());
        let weights = init_weights(&h, 7).unwrap();
        let run_one = |m: &ModelGraph| {
            let mut values = m.values_from_checkpoint(&weights, "init").unwrap();
            m.set_images(&mut values, &images, MNIST).unwrap();
            gpu_step_values(&ctx, m, &values, 3)
        };
        let (got, want) = (run_one(&in_place), run_one(&copied));
        let mut identical = 0;
        for ((name, g), (name2, w)) in got.iter().zip(&want) {
            assert_eq!(name, name2);
            if name == "loss" || name.starts_with("kl ") {
                assert_eq!(g, w, "{name}: the forward must be bit-identical");
            }
            let (d, n) = rel_norm(g, w);
            assert!(d <= 1e-6 * n + 1e-12, "{name}: differs by {d:e} (norm {n:e})");
            identical += (g == w) as usize;
        }
        println!("{identical} of {} values bit-identical", got.len());
    }
}
