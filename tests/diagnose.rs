//! The per-level diagnostics: active units, mutual information, distortion by
//! depth, interpolation, per-level temperatures, fixed levels, and every command's
//! GPU output against the CPU reference path.

mod common;

use common::assert_close;
use vdvae::checkpoint::NamedTensors;
use vdvae::data::{bundled_mnist, ImageSet};
use vdvae::diagnose::analyse::diagnose;
use vdvae::diagnose::encode::{encode, level_name};
use vdvae::diagnose::interpolate::{interpolate, Interpolation};
use vdvae::diagnose::reconstruct::reconstruct;
use vdvae::diagnose::report::DiagnoseReport;
use vdvae::gpu::GpuContext;
use vdvae::graph::{Precision, Sampling};
use vdvae::model::conditional::{BatchRun, Conditional};
use vdvae::model::config::{LadderForm, Likelihood, ModelKind};
use vdvae::model::evaluate::{evaluate, fit_images, Device, EvalInput};
use vdvae::model::init::init_weights;
use vdvae::model::levels::{posterior_then_prior, LevelSource};
use vdvae::model::preprocess::{fixed_binary_images, MNIST};
use vdvae::model::sample::{sample_images, FixedLevels};
use vdvae::model::{preset, HParams};

fn context() -> GpuContext {
    GpuContext::from_env().unwrap_or_else(|e| panic!("the diagnostics tests need an adapter: {e}"))
}

/// A three-level MLP Ladder VAE (Bernoulli).
fn tiny_ladder() -> HParams {
    HParams {
        ladder_hidden: vec![32, 16, 8],
        ladder_latent: vec![8, 4, 2],
        ..preset("ladder-mnist").unwrap()
    }
}

/// The conv Ladder VAE on `mnist-tiny`'s blocks (Bernoulli).
fn tiny_conv_ladder() -> HParams {
    HParams {
        model: ModelKind::Ladder,
        ladder_form: LadderForm::Conv,
        likelihood: Likelihood::Bernoulli,
        ..preset("mnist-tiny").unwrap()
    }
}

/// One model of each kind: the VDVAE, the MLP Ladder and the conv Ladder.
fn every_kind() -> [HParams; 3] {
    [preset("mnist-tiny").unwrap(), tiny_ladder(), tiny_conv_ladder()]
}

/// `n` bundled images fitted to the model (binarized once for a Bernoulli model).
fn images(h: &HParams, n: usize) -> ImageSet {
    fixed_binary_images(h.likelihood, fit_images(h, bundled_mnist().first(n)).unwrap(), 3)
}

/// The images in batches of 3 on `device`.
fn batches<'a, 'd>(
    device: Device<'d>,
    h: &'a HParams,
    weights: &'a NamedTensors,
    images: &'a ImageSet,
) -> BatchRun<'a, 'd> {
    BatchRun {
        device,
        h,
        weights,
        images,
        norm: MNIST,
        batch: 3,
        seed: 9,
    }
}

fn diagnose_on(device: Device<'_>, h: &HParams, weights: &NamedTensors, images: &ImageSet) -> DiagnoseReport {
    diagnose(&batches(device, h, weights, images), 1.0, |_, _| {}).unwrap()
}

/// Each unit's population variance over images of an encoding `[N, ...]`, by a plain two-pass sum.
fn variances(t: &vdvae::checkpoint::Tensor) -> Vec<f64> {
    let n = t.shape[0];
    let units = t.data.len() / n;
    (0..units)
        .map(|u| {
            let xs: Vec<f64> = (0..n).map(|i| t.data[i * units + u] as f64).collect();
            let mean = xs.iter().sum::<f64>() / n as f64;
            xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64
        })
        .collect()
}

#[test]
fn a_level_whose_posterior_is_its_prior_has_no_active_units_no_kl_and_no_mutual_info() {
    // The top level's posterior is its bottom-up estimate: with zero heads it is
    // N(0, I), the top prior, whatever the image.
    let h = tiny_ladder();
    let mut weights = init_weights(&h, 2).unwrap();
    for name in ["mu", "logsig"] {
        for part in ["weight", "bias"] {
            let t = weights.get_mut(&format!("ladder.up.2.{name}.{part}")).unwrap();
            t.data.iter_mut().for_each(|v| *v = 0.0);
        }
    }
    let images = images(&h, 12);
    let ctx = context();
    let report = diagnose_on(Device::Gpu(&ctx), &h, &weights, &images);
    let top = &report.levels[0];
    assert_eq!((top.units, top.active_units), (2, 0), "{top:?}");
    assert!(top.kl_nats_per_image.abs() < 1e-6, "{top:?}");
    // Every image's posterior is the same N(0, I): z tells nothing of the image.
    assert!(top.mutual_info_nats.abs() < 1e-12, "{top:?}");
    // The other levels' counts are those of their encodings' variances.
    let encoded = encode(&batches(Device::Gpu(&ctx), &h, &weights, &images)).unwrap();
    for level in &report.levels {
        let v = variances(&encoded[&level_name(level.level, "mean")]);
        let want = v.iter().filter(|&&v| v > 0.01).count();
        println!("level {}: variances {v:.4?}, {want} active", level.level);
        assert_eq!(level.active_units, want, "level {}", level.level);
        assert_eq!(level.units, v.len());
    }
    assert!(report.levels[1..].iter().any(|l| l.active_units > 0), "{report:?}");
}

#[test]
fn a_vdvae_level_with_a_constant_posterior_mean_has_no_active_units() {
    // Zero the last conv of level 2's posterior block: its mean is the conv's bias, the same for every image.
    let h = preset("mnist-tiny").unwrap();
    let mut weights = init_weights(&h, 2).unwrap();
    for part in ["weight", "bias"] {
        let t = weights.get_mut(&format!("decoder.dec_blocks.2.enc.c4.{part}")).unwrap();
        t.data.iter_mut().for_each(|v| *v = 0.0);
    }
    let images = images(&h, 6);
    let ctx = context();
    let report = diagnose_on(Device::Gpu(&ctx), &h, &weights, &images);
    assert_eq!(report.levels[2].active_units, 0, "{:?}", report.levels[2]);
    assert_eq!(report.levels[2].units, 4 * 4 * h.zdim);
    assert_eq!(report.levels.len(), h.latent_levels().unwrap());
    assert_eq!(report.depth.len(), report.levels.len() + 1);
}

#[test]
fn a_level_with_narrow_posteriors_apart_for_each_image_reaches_ln_b() {
    // The top level's log σ head set to -8 for every image: its posterior means,
    // which differ from image to image, lie thousands of σ apart, so a z drawn
    // for one image is explained by that image alone.
    let h = tiny_ladder();
    let mut weights = init_weights(&h, 2).unwrap();
    for (part, value) in [("weight", 0.0), ("bias", -8.0)] {
        let t = weights.get_mut(&format!("ladder.up.2.logsig.{part}")).unwrap();
        t.data.iter_mut().for_each(|v| *v = value);
    }
    let images = images(&h, 6);
    let ctx = context();
    let report = diagnose_on(Device::Gpu(&ctx), &h, &weights, &images);
    let top = &report.levels[0];
    let cap = report.mutual_info_cap_nats;
    assert!(cap - top.mutual_info_nats < 1e-6, "{top:?}, ln B = {cap}");
}

#[test]
fn mutual_info_stays_under_ln_b_and_a_seed_gives_the_same_report() {
    // 7 images in batches of 3: the last batch (1 image) is left out of the
    // mutual information, whose cap is ln 3.
    let h = preset("mnist-tiny").unwrap();
    let weights = init_weights(&h, 4).unwrap();
    let images = images(&h, 7);
    let ctx = context();
    let report = diagnose_on(Device::Gpu(&ctx), &h, &weights, &images);
    assert_eq!((report.mutual_info_batch, report.mutual_info_images), (3, 6));
    assert_eq!(report.mutual_info_cap_nats, 3f64.ln());
    for l in &report.levels {
        println!(
            "level {}: MI {:.4} nats, KL {:.4} nats",
            l.level, l.mutual_info_nats, l.kl_nats_per_image
        );
        assert!(l.mutual_info_nats <= report.mutual_info_cap_nats, "{l:?}");
    }
    assert_eq!(diagnose_on(Device::Gpu(&ctx), &h, &weights, &images), report);
    // Another seed draws other z: the same KL, another estimate.
    let reseeded = BatchRun {
        seed: 10,
        ..batches(Device::Gpu(&ctx), &h, &weights, &images)
    };
    let other = diagnose(&reseeded, 1.0, |_, _| {}).unwrap();
    for (a, b) in report.levels.iter().zip(&other.levels) {
        assert_eq!(a.kl_nats_per_image, b.kl_nats_per_image);
    }
    assert!(report
        .levels
        .iter()
        .zip(&other.levels)
        .any(|(a, b)| a.mutual_info_nats != b.mutual_info_nats));
}

#[test]
fn distortion_at_every_level_is_the_posterior_mean_reconstruction() {
    for h in every_kind() {
        let weights = init_weights(&h, 4).unwrap();
        let images = images(&h, 6);
        let ctx = context();
        let report = diagnose_on(Device::Gpu(&ctx), &h, &weights, &images);
        let input = EvalInput {
            h: &h,
            weights: &weights,
            images: &images,
            norm: MNIST,
            sampling: Sampling::PosteriorMean,
            seed: 0,
            binarize_seed: 0,
            precision: Precision::F32,
        };
        let eval = evaluate(Device::Gpu(&ctx), &input, 6).unwrap();
        let all = report.depth.last().unwrap();
        println!(
            "{}: k = all: distortion {:.6}, rate {:.6}; eval --posterior-mean: {:.6}, {:.6}",
            report.model, all.distortion_nats_per_dim, all.rate_nats_per_dim, eval.distortion, eval.rate
        );
        assert!((all.distortion_nats_per_dim - eval.distortion).abs() <= 1e-6 * eval.distortion);
        assert!((all.rate_nats_per_dim - eval.rate).abs() <= 1e-5 * eval.rate.max(1e-3));
        let total: f64 = report.levels.iter().map(|l| l.kl_nats_per_image).sum();
        assert!((total / report.dims as f64 - eval.rate).abs() <= 1e-5 * eval.rate.max(1e-3));
        // Fewer levels from the posterior reconstruct worse.
        assert!(report.depth[0].distortion_nats_per_dim > all.distortion_nats_per_dim);
        assert_eq!(report.depth[0].rate_nats_per_dim, 0.0);
    }
}

/// The likelihood parameters of `image` decoded with its top `k` levels from
/// the posterior mean and the rest at the prior means.
fn posterior_decode(device: Device<'_>, h: &HParams, weights: &NamedTensors, image: &ImageSet, k: usize) -> Vec<f32> {
    let levels = h.latent_levels().unwrap();
    let sources = posterior_then_prior(levels, k, &vec![0.0; levels]).unwrap();
    let mut c = Conditional::new(device, h, weights, 1, &sources, false, 5).unwrap();
    c.set_images(image, MNIST).unwrap();
    c.run(0).unwrap();
    c.likelihood_params().unwrap()
}

#[test]
fn interpolation_ends_are_the_two_posterior_decodes() {
    let ctx = context();
    for h in every_kind() {
        let weights = init_weights(&h, 4).unwrap();
        let pair = images(&h, 2);
        let steps = 4;
        let how = |level| Interpolation {
            level,
            steps,
            temperature: 0.0,
            seed: 5,
        };
        // At the top level both ends are the images' own decodes.
        let strip = interpolate(Device::Gpu(&ctx), &h, &weights, &pair, MNIST, &how(0)).unwrap();
        let params = strip.likelihood_params().unwrap();
        let row = params.len() / steps;
        for (end, image) in [(0, 0), (steps - 1, 1)] {
            let want = posterior_decode(Device::Gpu(&ctx), &h, &weights, &pair.select(&[image]).unwrap(), 1);
            assert_close(
                &format!("end {end}"),
                &params[end * row..(end + 1) * row],
                &want,
                1e-5,
                1e-5,
            );
        }
        // Lower down, the first end is the first image's decode with levels 0..=L from its posterior.
        let level = h.latent_levels().unwrap() - 2;
        let strip = interpolate(Device::Gpu(&ctx), &h, &weights, &pair, MNIST, &how(level)).unwrap();
        let params = strip.likelihood_params().unwrap();
        let want = posterior_decode(Device::Gpu(&ctx), &h, &weights, &pair.select(&[0]).unwrap(), level + 1);
        assert_close("first end, lower level", &params[..row], &want, 1e-5, 1e-5);
        // The middle differs from both ends.
        assert_ne!(&params[row..2 * row], &params[..row]);
    }
}

/// Every level's z of a prior sampler with per-level temperatures and a seed.
fn prior_latents(device: Device<'_>, h: &HParams, weights: &NamedTensors, t: &[f32], seed: u64) -> Vec<Vec<f32>> {
    let sources: Vec<LevelSource> = t
        .iter()
        .map(|&temperature| LevelSource::Prior { temperature })
        .collect();
    let mut c = Conditional::new(device, h, weights, 2, &sources, false, seed).unwrap();
    c.run(0).unwrap();
    (0..t.len()).map(|l| c.z(l).unwrap()).collect()
}

#[test]
fn a_levels_temperature_changes_that_level_alone() {
    let ctx = context();
    for h in every_kind() {
        let weights = init_weights(&h, 4).unwrap();
        let levels = h.latent_levels().unwrap();
        let j = 1;
        let base = vec![1.0; levels];
        let mut colder = base.clone();
        colder[j] = 0.0;
        let warm = prior_latents(Device::Gpu(&ctx), &h, &weights, &base, 1);
        let cold = prior_latents(Device::Gpu(&ctx), &h, &weights, &colder, 1);
        // Above level j nothing changes; level j changes.
        assert_eq!(warm[..j], cold[..j]);
        assert_ne!(warm[j], cold[j]);
        // At temperature 0, level j is its prior mean: no noise, whatever the seed,
        // while the levels above and below still draw theirs.
        let other_seed = prior_latents(Device::Gpu(&ctx), &h, &weights, &colder, 2);
        assert_ne!(cold[0], other_seed[0]);
        assert_ne!(cold[levels - 1], other_seed[levels - 1]);
        let mut same_above = colder.clone();
        same_above[0] = 0.0;
        let a = prior_latents(Device::Gpu(&ctx), &h, &weights, &same_above, 1);
        let b = prior_latents(Device::Gpu(&ctx), &h, &weights, &same_above, 2);
        assert_eq!(
            a[..=j],
            b[..=j],
            "levels 0 and {j} at temperature 0 are the prior means"
        );
        assert_ne!(a[levels - 1], b[levels - 1]);
    }
}

#[test]
fn fixed_levels_are_the_references_posterior_in_every_sample() {
    let ctx = context();
    let h = preset("mnist-tiny").unwrap();
    let weights = init_weights(&h, 4).unwrap();
    let levels = h.latent_levels().unwrap();
    let reference = images(&h, 1);
    let k = 2;
    let sources = posterior_then_prior(levels, k, &vec![1.0; levels]).unwrap();
    let n = 3;
    let mut c = Conditional::new(Device::Gpu(&ctx), &h, &weights, n, &sources, false, 0).unwrap();
    c.set_images(&reference.select(&vec![0; n]).unwrap(), MNIST).unwrap();
    c.run(0).unwrap();
    let one = |z: Vec<f32>| z[..z.len() / n].to_vec();
    for l in 0..levels {
        let z = c.z(l).unwrap();
        let rows: Vec<&[f32]> = z.chunks(z.len() / n).collect();
        if l < k {
            assert!(rows.iter().all(|r| *r == rows[0]), "level {l} is fixed");
            let (mu, _) = c.posterior(l).unwrap().unwrap();
            assert_eq!(rows[0], &one(mu)[..]);
        } else {
            assert_ne!(rows[0], rows[1], "level {l} is drawn per sample");
        }
    }
    // `sample_images` with the same request gives that graph's images.
    let fixed = FixedLevels {
        reference: &reference,
        levels: k,
        norm: MNIST,
    };
    let via_sample = sample_images(Device::Gpu(&ctx), &h, &weights, n, &vec![1.0; levels], 0, Some(&fixed)).unwrap();
    assert_eq!(via_sample.pixels, c.images().unwrap().pixels);
}

/// Pixels that differ by more than one grey level (uint8 truncation of a DMoL
/// sample may flip one on a bin edge); a Bernoulli mean rounds the same way.
fn far_pixels(a: &ImageSet, b: &ImageSet) -> usize {
    assert_eq!((a.n, a.h, a.w, a.c), (b.n, b.h, b.w, b.c));
    a.pixels
        .iter()
        .zip(&b.pixels)
        .filter(|(x, y)| x.abs_diff(**y) > 1)
        .count()
}

#[test]
fn every_command_gives_the_same_on_the_gpu_and_the_cpu() {
    let ctx = context();
    let (gpu, cpu) = (Device::Gpu(&ctx), Device::Cpu);
    for h in every_kind() {
        let weights = init_weights(&h, 4).unwrap();
        let levels = h.latent_levels().unwrap();
        let images = images(&h, 4);
        let t = vec![0.9; levels];
        let name = format!("{:?} {:?}", h.model, h.ladder_form);

        let ks = [0, 1, levels];
        let rec = |d| reconstruct(d, &h, &weights, &images, MNIST, &ks, &t, 3).unwrap();
        for (g, c) in rec(gpu).iter().zip(rec(cpu)) {
            assert_eq!(far_pixels(g, &c), 0, "{name}: reconstruct");
        }

        let how = Interpolation {
            level: 1,
            steps: 3,
            temperature: 0.7,
            seed: 3,
        };
        let pair = images.select(&[0, 1]).unwrap();
        let strip = |d| {
            interpolate(d, &h, &weights, &pair, MNIST, &how)
                .unwrap()
                .likelihood_params()
                .unwrap()
        };
        assert_close(&format!("{name}: interpolate"), &strip(gpu), &strip(cpu), 1e-4, 1e-4);

        let enc = |d| encode(&batches(d, &h, &weights, &images)).unwrap();
        let (g, c) = (enc(gpu), enc(cpu));
        assert_eq!(g.keys().collect::<Vec<_>>(), c.keys().collect::<Vec<_>>());
        assert_eq!(g.len(), 2 * levels);
        for (key, t) in &g {
            assert_eq!(t.shape, c[key].shape, "{name}: {key}");
            assert_close(&format!("{name}: encode {key}"), &t.data, &c[key].data, 1e-5, 1e-4);
        }

        let (rg, rc) = (
            diagnose_on(gpu, &h, &weights, &images),
            diagnose_on(cpu, &h, &weights, &images),
        );
        for (a, b) in rg.levels.iter().zip(&rc.levels) {
            assert_eq!(a.active_units, b.active_units, "{name}: level {}", a.level);
            assert!((a.kl_nats_per_image - b.kl_nats_per_image).abs() <= 1e-4 * b.kl_nats_per_image.max(1.0));
            assert!(
                (a.mutual_info_nats - b.mutual_info_nats).abs() <= 1e-4,
                "{name}: level {}: MI {} vs {}",
                a.level,
                a.mutual_info_nats,
                b.mutual_info_nats
            );
        }
        for (a, b) in rg.depth.iter().zip(&rc.depth) {
            assert!(
                (a.elbo_nats_per_dim - b.elbo_nats_per_dim).abs() <= 1e-5 * b.elbo_nats_per_dim,
                "{name}: k = {}: {} vs {}",
                a.k,
                a.elbo_nats_per_dim,
                b.elbo_nats_per_dim
            );
        }

        let reference = images.select(&[2]).unwrap();
        let fixed = FixedLevels {
            reference: &reference,
            levels: 1,
            norm: MNIST,
        };
        let s = |d| sample_images(d, &h, &weights, 3, &t, 8, Some(&fixed)).unwrap();
        assert_eq!(far_pixels(&s(gpu), &s(cpu)), 0, "{name}: sample --fix-levels");
    }
}
