//! Per-kernel GPU time from timestamp queries: each dispatch runs in its own
//! compute pass with begin/end timestamps (needs only TIMESTAMP_QUERY).

use super::{BufView, DType, Dispatch, GpuContext};
use crate::error::{Error, Result};

/// GPU time of one dispatch.
#[derive(Clone, Debug)]
pub struct KernelTime {
    pub kernel: &'static str,
    pub seconds: f64,
}

/// Queries per resolve: wgpu caps a query set at 4096.
const MAX_QUERIES: usize = 4096;

impl GpuContext {
    /// Whether [`GpuContext::profile`] can run on this adapter.
    pub fn can_profile(&self) -> bool {
        self.has(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Runs the dispatches once, in order, and returns each one's GPU time.
    pub fn profile(&self, dispatches: &[&Dispatch]) -> Result<Vec<KernelTime>> {
        if !self.can_profile() {
            return Err(Error::Gpu(format!(
                "{} does not support timestamp queries; per-kernel profiling is unavailable",
                self.adapter.name
            )));
        }
        let period_ns = self.queue.get_timestamp_period() as f64;
        let mut times = Vec::with_capacity(dispatches.len());
        for chunk in dispatches.chunks(MAX_QUERIES / 2) {
            let count = (chunk.len() * 2) as u32;
            let queries = self.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profiler"),
                ty: wgpu::QueryType::Timestamp,
                count,
            });
            let resolved = self.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profiler"),
                size: count as u64 * 8,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let mut encoder = self.device.create_command_encoder(&Default::default());
            for (i, d) in chunk.iter().enumerate() {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(d.kernel),
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: &queries,
                        beginning_of_pass_write_index: Some(2 * i as u32),
                        end_of_pass_write_index: Some(2 * i as u32 + 1),
                    }),
                });
                d.record(&mut pass);
            }
            encoder.resolve_query_set(&queries, 0..count, &resolved, 0);
            self.submit(encoder.finish());
            let words: Vec<u32> = self.read(BufView {
                buffer: &resolved,
                offset: 0,
                len: count as usize * 2,
                dtype: DType::F32,
            })?;
            let ticks: Vec<u64> = words.chunks(2).map(|w| w[0] as u64 | (w[1] as u64) << 32).collect();
            for (i, d) in chunk.iter().enumerate() {
                let delta = ticks[2 * i + 1].saturating_sub(ticks[2 * i]);
                times.push(KernelTime {
                    kernel: d.kernel,
                    seconds: delta as f64 * period_ns * 1e-9,
                });
            }
        }
        Ok(times)
    }
}

#[cfg(test)]
mod tests {
    use crate::gpu::{Access, GpuContext, Grid, Kernel, NoParams};

    const SPIN: Kernel<NoParams> = Kernel::portable(
        "spin_kernel",
        &["@group(0) @binding(0) var<storage, read_write> o: array<f32>;\n\
           @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {\n\
             var x = f32(g.x);\n\
             for (var i = 0u; i < 20000u; i++) { x = fma(x, 0.999, 0.001); }\n\
             o[g.x] = x;\n\
           }"],
        "main",
        &[Access::ReadWrite],
    );

    #[test]
    fn profiles_each_dispatch_with_its_kernel_name() {
        let ctx = GpuContext::from_env().expect("an adapter (install mesa-vulkan-drivers)");
        assert!(
            ctx.can_profile(),
            "lavapipe and every desktop GPU support timestamp queries"
        );
        let out = ctx.zeros(64 * 64);
        let d = ctx
            .dispatch(&SPIN, &[], &[out.view()], &NoParams, Grid::Groups(64))
            .unwrap();
        let times = ctx.profile(&[&d, &d]).unwrap();
        assert_eq!(times.len(), 2);
        for t in &times {
            assert_eq!(t.kernel, "spin_kernel");
            assert!(t.seconds > 0.0 && t.seconds < 10.0, "{t:?}");
        }
    }
}
