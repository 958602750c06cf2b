//! Model configuration: official hyperparameter names, presets, block strings.

pub mod blocks;
pub mod config;
pub mod evaluate;
pub mod init;
pub mod layout;
pub mod params;
pub mod preprocess;
pub mod presets;
pub mod report;
pub mod sample;
pub mod vdvae;

pub use config::HParams;
pub use presets::{preset, PRESETS};
