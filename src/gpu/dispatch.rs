//! Dispatches: a kernel's pipeline, its buffers bound, its typed params in a
//! uniform and a grid resolved with the shader's workgroup size.

use std::sync::Arc;

use super::grid::Grid;
use super::kernel::{Access, Kernel, KernelSpec};
use super::params::GpuParams;
use super::pipeline::PipelineEntry;
use super::{BufView, DType, GpuContext};
use crate::error::{Error, Result};

/// The least work a dispatch must do, for the profiler's rates.
///
/// - `flops`: multiply-adds of convolutions and matmuls at 2 each (the model-FLOP
///   convention); the fused model kernels that state an arithmetic count
///   (reparam + KL, DMoL, AdamW) carry it; every other kernel (elementwise, copies,
///   reductions, resampling, the conv's helper passes, its bias-gradient sums)
///   carries 0: they are judged by bytes.
/// - `bytes`: the tensor bytes the dispatch must read and write once (each input
///   read once, each output written once, read too when it accumulates; partial
///   sums in scratch count as tensors).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Work {
    pub flops: f64,
    pub bytes: f64,
}

impl Work {
    pub fn new(flops: f64, bytes: f64) -> Work {
        Work { flops, bytes }
    }

    /// No FLOPs, `elements` f32 values moved.
    pub fn f32s(elements: usize) -> Work {
        Work {
            flops: 0.0,
            bytes: 4.0 * elements as f64,
        }
    }
}

/// A recorded-once unit of GPU work: pipeline + bind group + grid. Built when a
/// graph is built; recording it into a pass allocates nothing.
pub struct Dispatch {
    pub kernel: &'static str,
    pipeline: Arc<PipelineEntry>,
    bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
    params: Option<wgpu::Buffer>,
    /// Set by the op that built the dispatch ([`Dispatch::with_work`]).
    work: Option<Work>,
    /// Bytes of every storage binding: the estimate when no op set the work.
    bound_bytes: f64,
}

impl Dispatch {
    /// Invocations per workgroup, from the shader's `@workgroup_size`.
    pub fn workgroup_invocations(&self) -> u32 {
        self.pipeline.workgroup_size.iter().product()
    }

    /// States the dispatch's work (see [`Work`] for the convention).
    pub fn with_work(mut self, work: Work) -> Dispatch {
        self.work = Some(work);
        self
    }

    /// The work its op stated or, when it stated none, 0 FLOPs and the bytes of
    /// its storage bindings (each read or written once).
    pub fn work(&self) -> Work {
        self.work.unwrap_or(Work {
            flops: 0.0,
            bytes: self.bound_bytes,
        })
    }

    /// Whether the op that built it stated its work.
    pub fn has_stated_work(&self) -> bool {
        self.work.is_some()
    }

    /// The buffer holding this dispatch's parameters (a uniform, or a
    /// read-only storage buffer where `GpuContext::params_in_storage`), for values the GPU
    /// itself updates between steps (e.g. the noise step copied from the
    /// optimizer's iteration counter).
    pub fn params_buffer(&self) -> Option<&wgpu::Buffer> {
        self.params.as_ref()
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

impl GpuContext {
    /// Builds a dispatch of `kernel` over `views` (its storage bindings in
    /// order) with `params` as its uniform (ignored for `NoParams` kernels),
    /// over `grid`. Errors, never panics, on a wrong buffer count, a view below
    /// its binding's minimum size, or a grid past the adapter's limits.
    pub fn dispatch<P: GpuParams>(
        &self,
        kernel: &Kernel<P>,
        constants: &[(&str, f64)],
        views: &[BufView<'_>],
        params: &P,
        grid: Grid,
    ) -> Result<Dispatch> {
        self.dispatch_spec(kernel, constants, views, bytemuck::bytes_of(params), grid)
    }

    fn dispatch_spec(
        &self,
        kernel: &KernelSpec,
        constants: &[(&str, f64)],
        views: &[BufView<'_>],
        params: &[u8],
        grid: Grid,
    ) -> Result<Dispatch> {
        let storage = kernel.bindings.iter().filter(|a| **a != Access::Uniform).count();
        if storage != views.len() {
            return Err(Error::Gpu(format!(
                "kernel `{}` takes {storage} buffers, got {}",
                kernel.name,
                views.len()
            )));
        }
        // Bindings (by index) whose views hold f16: the kernel's f16-storage variant.
        let f16: Vec<u32> = {
            let mut next_view = views.iter();
            (0..kernel.bindings.len() as u32)
                .filter(|&i| {
                    kernel.bindings[i as usize] != Access::Uniform
                        && next_view.next().is_some_and(|v| v.dtype == DType::F16)
                })
                .collect()
        };
        let entry = self.pipeline_with_f16(kernel, constants, &f16)?;
        let workgroups = self.workgroups(kernel.name, grid, entry.workgroup_size)?;
        let params_buffer = if kernel.bindings.contains(&Access::Uniform) {
            let mut bytes = params.to_vec();
            bytes.resize(bytes.len().div_ceil(16).max(1) * 16, 0);
            let usage = if self.params_in_storage {
                wgpu::BufferUsages::STORAGE
            } else {
                wgpu::BufferUsages::UNIFORM
            };
            Some(self.upload_bytes(&bytes, usage, kernel.name))
        } else {
            None
        };
        let bound_bytes = views.iter().map(|v| v.bytes() as f64).sum();
        let mut next_view = views.iter();
        let mut entries = Vec::with_capacity(kernel.bindings.len());
        for (i, (access, (name, min_size))) in kernel.bindings.iter().zip(&entry.bindings).enumerate() {
            let resource = match access {
                Access::Uniform => params_buffer.as_ref().unwrap().as_entire_binding(),
                _ => {
                    let v = next_view.next().unwrap();
                    v.check_binding(self, kernel.name)?;
                    let bytes = v.bound_bytes();
                    if bytes < *min_size {
                        return Err(Error::Shape(format!(
                            "kernel `{}`: binding {i} `{name}` needs at least {min_size} bytes, the view has {bytes}",
                            kernel.name
                        )));
                    }
                    v.binding()
                }
            };
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32,
                resource,
            });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name),
            layout: &entry.layout,
            entries: &entries,
        });
        Ok(Dispatch {
            kernel: kernel.name,
            pipeline: entry,
            bind_group,
            workgroups,
            params: params_buffer,
            work: None,
            bound_bytes,
        })
    }

    fn workgroups(&self, kernel: &str, grid: Grid, workgroup_size: [u32; 3]) -> Result<[u32; 3]> {
        let groups = grid
            .workgroups(workgroup_size)
            .map_err(|e| Error::Shape(format!("kernel `{kernel}`: {e}")))?;
        let max = self.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max as u64) {
            return Err(Error::Shape(format!(
                "kernel `{kernel}`: grid {groups:?} exceeds {max} workgroups per dimension"
            )));
        }
        Ok(groups.map(|g| g as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::NoParams;

    const BROKEN: Kernel<NoParams> = Kernel::portable(
        "broken_kernel",
        &["@compute @workgroup_size(1) fn main() { let x: f32 = undefined_thing; }"],
        "main",
        &[],
    );
    const TINY_WGSL: &str = "@group(0) @binding(0) var<storage, read_write> o: array<vec4<f32>>;\n\
           @compute @workgroup_size(1) fn main() { o[0] = vec4<f32>(42.0); }";
    const TINY: Kernel<NoParams> = Kernel::portable("tiny_kernel", &[TINY_WGSL], "main", &[Access::ReadWrite]);

    #[test]
    fn a_wgsl_error_names_the_kernel() {
        let ctx = GpuContext::from_env().expect("an adapter (install mesa-vulkan-drivers)");
        match ctx.dispatch(&BROKEN, &[], &[], &NoParams, Grid::Groups(1)) {
            Err(Error::Shader { kernel, message }) => {
                assert!(kernel.contains("broken_kernel"), "{kernel}");
                assert!(message.contains("undefined_thing"), "{message}");
            }
            Err(e) => panic!("expected a shader error, got {e}"),
            Ok(_) => panic!("a broken kernel compiled"),
        }
    }

    #[test]
    fn a_binding_the_shader_declares_otherwise_is_an_error() {
        let ctx = GpuContext::from_env().expect("an adapter (install mesa-vulkan-drivers)");
        let read_only = Kernel::<NoParams>::portable("tiny_read", &[TINY_WGSL], "main", &[Access::Read]);
        let out = ctx.zeros(4);
        match ctx.dispatch(&read_only, &[], &[out.view()], &NoParams, Grid::Groups(1)) {
            Err(Error::Contract { kernel, mismatches }) => {
                assert_eq!(kernel, "tiny_read");
                assert!(mismatches[0].contains("binding 0 `o`"), "{mismatches:?}");
            }
            Err(e) => panic!("expected a contract error, got {e}"),
            Ok(_) => panic!("a read-only binding of a written buffer was accepted"),
        }
    }

    #[test]
    fn pipelines_are_compiled_once_and_reused() {
        let ctx = GpuContext::from_env().expect("an adapter (install mesa-vulkan-drivers)");
        let out = ctx.zeros(4);
        let a = ctx
            .dispatch(&TINY, &[], &[out.view()], &NoParams, Grid::Groups(1))
            .unwrap();
        let before = ctx.pipeline_count();
        let b = ctx
            .dispatch(&TINY, &[], &[out.view()], &NoParams, Grid::Groups(1))
            .unwrap();
        assert_eq!(ctx.pipeline_count(), before);
        ctx.run(&[&a, &b]).unwrap();
        assert_eq!(ctx.read_f32(&out).unwrap(), vec![42.0; 4]);
        // The wrong number of buffers, or a view smaller than one vec4, is an error, not a panic.
        assert!(ctx.dispatch(&TINY, &[], &[], &NoParams, Grid::Groups(1)).is_err());
        let small = ctx.zeros(3);
        let err = ctx
            .dispatch(&TINY, &[], &[small.view()], &NoParams, Grid::Groups(1))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("at least 16 bytes"), "{err}");
    }
}
