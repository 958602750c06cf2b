//! GPU context: adapter choice, device with the adapter's own limits, pipeline
//! cache, buffers, dispatch recording and readback. Every kernel's WGSL is
//! reflected by naga and checked against what the Rust side states.

mod buffers;
mod ceiling;
mod compile_progress;
mod context;
pub mod contract;
mod dispatch;
pub mod f16_storage;
mod grid;
mod kernel;
mod params;
mod pipeline;
mod profiler;
pub mod reflect;
pub mod tune;

pub use buffers::{BufView, DType, GpuBuffer};
pub use ceiling::{ceiling_kernels, fma_ceiling_dispatch, measure_fma_ceiling, FmaCeiling, FMA_SINK_LEN};
pub use context::quiet_display_probe_when_headless;
pub use context::{list_adapters, AdapterChoice, AdapterSummary, GpuContext, GpuCounters};
pub use dispatch::{Dispatch, Work};
pub use grid::Grid;
pub use kernel::{Access, Kernel, KernelSpec, Source, PRELUDE};
pub use params::{GpuParams, Member, NoParams, ParamsLayout};
pub use profiler::KernelTime;

/// For [`gpu_params!`](crate::gpu_params) in other crates.
#[doc(hidden)]
pub use bytemuck;
