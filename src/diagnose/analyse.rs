//! `vdvae diagnose`: per-level KL, active units and mutual information from
//! the posterior-mean pass, and distortion by depth for every k.

use super::active_units::ActiveUnits;
use super::depth::{depth_point, DepthTotals};
use super::encode::posterior_passes;
use super::mutual_info::{cap_nats, noise, MutualInfo};
use super::report::{DiagnoseReport, LevelReport, ACTIVE_THRESHOLD};
use crate::error::Result;
use crate::model::conditional::BatchRun;
use crate::model::config::{LadderForm, ModelKind};
use crate::model::HParams;

/// The whole report over the images of `run`; `temperature` is the prior's
/// for the levels below k in the distortion by depth. `progress` is told each
/// finished pass over the images (`done`, `of`).
pub fn diagnose(
    run: &BatchRun<'_, '_>,
    temperature: f32,
    mut progress: impl FnMut(usize, usize),
) -> Result<DiagnoseReport> {
    let (h, images) = (run.h, run.images);
    let levels = h.latent_levels()?;
    let stages = levels + 1;
    // Every level from the posterior mean: KL per level, active units, mutual
    // information and the depth point k = levels.
    let mut kl = vec![0f64; levels];
    let mut active: Vec<Option<ActiveUnits>> = (0..levels).map(|_| None).collect();
    let batch = run.batch_size();
    let mut mutual_info: Vec<MutualInfo> = (0..levels).map(|_| MutualInfo::new(batch)).collect();
    let mut full = DepthTotals::default();
    let mut batch_index = 0;
    let shapes = posterior_passes(run, |pass| {
        full.add(&pass.nll, &pass.kl);
        let n = pass.nll.len();
        for (l, ((mu, log_sigma), k)) in pass.posterior.iter().zip(&pass.kl).enumerate() {
            kl[l] += k.iter().map(|&v| v as f64).sum::<f64>();
            active[l].get_or_insert_with(|| ActiveUnits::new(mu.len() / n)).add(mu);
            if n == batch {
                let eps = noise(run.seed, batch_index, l, mu.len());
                mutual_info[l].add(n, mu, log_sigma, &eps);
            }
        }
        batch_index += 1;
        Ok(())
    })?;
    progress(1, stages);
    let dims = images.image_len();
    let mut depth = Vec::with_capacity(stages);
    let temperatures = vec![temperature; levels];
    for k in 0..levels {
        depth.push(depth_point(run, k, &temperatures)?);
        progress(k + 2, stages);
    }
    depth.push(full.point(levels, dims)?);

    let total: f64 = kl.iter().sum();
    let n = images.n as f64;
    let levels = shapes
        .iter()
        .zip(&kl)
        .zip(&active)
        .zip(&mutual_info)
        .enumerate()
        .map(|(l, (((shape, &kl), a), mi))| {
            let a = a.as_ref().expect("every level was counted");
            let active_units = a.active(ACTIVE_THRESHOLD);
            LevelReport {
                level: l,
                resolution: shape[0],
                units: a.units(),
                kl_nats_per_image: kl / n,
                kl_bits_per_dim: kl / n / dims as f64 / std::f64::consts::LN_2,
                rate_share: if total > 0.0 { kl / total } else { 0.0 },
                active_units,
                active_fraction: active_units as f64 / a.units() as f64,
                mutual_info_nats: mi.nats().expect("the first batch holds `batch` images"),
            }
        })
        .collect();
    Ok(DiagnoseReport {
        model: model_name(h),
        images: images.n,
        dims,
        levels,
        active_threshold: ACTIVE_THRESHOLD,
        mutual_info_batch: batch,
        mutual_info_images: mutual_info.first().map_or(0, MutualInfo::images),
        mutual_info_cap_nats: cap_nats(batch),
        depth_temperature: temperature,
        depth,
    })
}

fn model_name(h: &HParams) -> String {
    match (h.model, h.ladder_form) {
        (ModelKind::Vdvae, _) => "vdvae".into(),
        (ModelKind::Ladder, LadderForm::Mlp) => "ladder (mlp)".into(),
        (ModelKind::Ladder, LadderForm::Conv) => "ladder (conv)".into(),
    }
}
