//! `vdvae diagnose`'s report: what each level carries and how the
//! reconstruction improves level by level. Written as `report.json`; the
//! plots are drawn from it ([`super::plots`]).

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
