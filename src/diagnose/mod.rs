//! What each level of the hierarchy does: partial reconstructions,
//! interpolation, encodings, active units, mutual information, distortion by
//! depth and the `vdvae diagnose` report with its plots. Every function runs
//! on the GPU or on the CPU reference path ([`Device`](crate::model::evaluate::Device)).

pub mod active_units;
pub mod analyse;
pub mod depth;
pub mod disentangle;
pub mod encode;
pub mod interpolate;
pub mod mutual_info;
pub mod plots;
pub mod reconstruct;
pub mod report;
