//! GPU context: adapter choice, device with the adapter's own limits, pipeline
//! cache, buffers, dispatch recording and readback.

mod buffers;
mod ceiling;
mod context;
mod kernel;
mod profiler;

pub use buffers::{BufView, GpuBuffer};
pub use ceiling::{measure_fma_ceiling, FmaCeiling};
pub use context::quiet_display_probe_when_headless;
pub use context::{list_adapters, AdapterChoice, AdapterSummary, GpuContext, GpuCounters};
pub use kernel::{grid_1d, Access, Dispatch, Kernel};
pub use profiler::KernelTime;
