//! vdvae: Very Deep VAEs and Ladder VAEs trained on the GPU through wgpu, every
//! WGSL kernel checked against a plain-Rust CPU reference.

pub mod bench;
pub mod check;
pub mod checkpoint;
pub mod data;
pub mod diagnose;
pub mod error;
pub mod gpu;
pub mod graph;
pub mod kernels;
pub mod model;
pub mod parallel;
pub mod train;

pub use error::{Error, Result};
