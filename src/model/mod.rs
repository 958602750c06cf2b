//! The models (VDVAE, Ladder VAE) as graphs, their configuration (official
//! hyperparameter names, presets, block strings), evaluation and sampling.

pub mod assemble;
pub mod blocks;
pub mod builder;
pub mod conditional;
pub mod config;
pub mod evaluate;
pub mod flow;
pub mod forward;
pub mod importance;
pub mod init;
pub mod ladder;
pub mod layout;
pub mod levels;
pub mod limits;
pub mod objective;
pub mod params;
pub mod preprocess;
pub mod presets;
pub mod ranges;
pub mod report;
pub mod sample;
pub mod temperature;
pub mod vdvae;

pub use config::HParams;
pub use presets::{preset, PRESETS};
