//! `vdvae diagnose`'s report: what each level carries and how the
//! reconstruction improves level by level. Written as `report.json`; the
//! plots are drawn from it ([`super::plots`]). Every field is required: a
//! report.json written before a field existed does not deserialise, and
//! serde's error names the missing field (a default would pass for a
//! measurement).

use serde::{Deserialize, Serialize};

/// Units whose posterior mean varies across the data by more than this are active (Burda et al. 2015).
pub const ACTIVE_THRESHOLD: f64 = 0.01;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiagnoseReport {
    /// `vdvae` or `ladder` (and its form).
    pub model: String,
    pub images: usize,
    /// Values per image (H · W · C).
    pub dims: usize,
    /// The levels, top (coarsest) first.
    pub levels: Vec<LevelReport>,
    /// Units counted active when Cov_x(E_q[z_u]) exceeds this.
    pub active_threshold: f64,
    /// B: the mutual information's aggregate posterior is taken over batches of
    /// this many images (`--batch`, or all the images when they are fewer).
    pub mutual_info_batch: usize,
    /// Images in whole batches of B, those the mutual information counts (a
    /// last, smaller batch is left out: its cap would differ).
    pub mutual_info_images: usize,
    /// ln B: no level's mutual information estimate exceeds it.
    pub mutual_info_cap_nats: f64,
    /// Distortion and ELBO with the first k levels from the posterior mean and
    /// the rest from the prior at `depth_temperature`, k = 0..=levels.
    pub depth_temperature: f32,
    pub depth: Vec<DepthPoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LevelReport {
    /// Index from the top, 0 first.
    pub level: usize,
    /// The latent's spatial size (1 for an MLP level).
    pub resolution: usize,
    /// Units per image: resolution² · channels.
    pub units: usize,
    /// KL(q ‖ p) of the level, nats per image, mean over the images.
    pub kl_nats_per_image: f64,
    /// The same in bits per image dimension.
    pub kl_bits_per_dim: f64,
    /// Share of the total rate (all levels' KL).
    pub rate_share: f64,
    /// Units with Cov_x(E_q[z_u]) > `active_threshold`.
    pub active_units: usize,
    pub active_fraction: f64,
    /// I(x; z) of the level, nats: He et al.'s estimate over batches of
    /// `mutual_info_batch` images ([`super::mutual_info`]), at most
    /// `mutual_info_cap_nats`. The top level's KL bounds it (its prior is
    /// fixed); a lower level's prior varies with the image through the levels
    /// above, so its I(x; z) may exceed its KL, which counts only what the
    /// level adds to them.
    pub mutual_info_nats: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DepthPoint {
    /// Levels from the posterior, counted from the top.
    pub k: usize,
    /// −log p(x | z), nats per dim.
    pub distortion_nats_per_dim: f64,
    /// KL of the first k levels, nats per dim.
    pub rate_nats_per_dim: f64,
    /// Distortion + rate, nats per dim (the negative ELBO at k = all levels).
    pub elbo_nats_per_dim: f64,
}
