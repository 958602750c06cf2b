use std::sync::Arc;

use super::context::PipelineEntry;
use super::{BufView, GpuContext};
use crate::error::{Error, Result};

/// How a kernel uses one binding of bind group 0, in binding order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadWrite,
    /// The op's parameters (shapes, flags); always a small uniform struct.
    Uniform,
}

/// One WGSL entry point. `sources` are concatenated in order, so shared code
/// (the RNG, GELU) is listed before the family's own file.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    pub name: &'static str,
    pub sources: &'static [&'static str],
    pub entry: &'static str,
    pub bindings: &'static [Access],
    /// Adapter feature the kernel needs (`wgpu::Features::empty()` for portable ones).
    pub requires: wgpu::Features,
    /// Compile without naga's per-access bounds checks. Only for kernels whose
    /// every index is proven in range by the host-side shape checks of their op.
    pub unchecked: bool,
}

impl Kernel {
    pub const fn portable(
        name: &'static str,
        sources: &'static [&'static str],
        entry: &'static str,
        bindings: &'static [Access],
    ) -> Kernel {
        Kernel {
            name,
            sources,
            entry,
            bindings,
            requires: wgpu::Features::empty(),
            unchecked: false,
        }
    }

    /// The same kernel compiled without bounds checks (see [`Kernel::unchecked`]).
    pub const fn without_bounds_checks(mut self) -> Kernel {
        self.unchecked = true;
        self
    }

    /// The same kernel, usable only on adapters with `feature` (e.g. SHADER_F16, SUBGROUP).
    pub const fn requiring(mut self, feature: wgpu::Features) -> Kernel {
        self.requires = feature;
        self
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
}

impl Dispatch {
    /// The uniform holding this dispatch's parameters, for values the GPU
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

/// A 1-D grid of `n` invocations in workgroups of `wg`, folded into x and y so
/// no dimension passes the 65535 limit. Shaders index with
/// `gid.x + gid.y * nwg.x * WG` (see `shaders/common.wgsl`).
pub fn grid_1d(n: usize, wg: u32) -> [u32; 3] {
    let groups = n.div_ceil(wg as usize).max(1);
    let x = groups.min(65535);
    let y = groups.div_ceil(x);
    [x as u32, y as u32, 1]
}

fn layout_entries(bindings: &[Access]) -> Vec<wgpu::BindGroupLayoutEntry> {
    bindings
        .iter()
        .enumerate()
        .map(|(i, a)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: match a {
                Access::Uniform => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                Access::Read | Access::ReadWrite => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: *a == Access::Read,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
            },
            count: None,
        })
        .collect()
}

impl GpuContext {
    fn pipeline(&self, kernel: &Kernel, constants: &[(&str, f64)]) -> Result<Arc<PipelineEntry>> {
        if !self.features.contains(kernel.requires) {
            return Err(Error::Gpu(format!(
                "kernel `{}` needs adapter features {:?}, which {} lacks",
                kernel.name, kernel.requires, self.adapter.name
            )));
        }
        let key = format!("{}::{}{:?}{}", kernel.name, kernel.entry, constants, kernel.unchecked);
        if let Some(p) = self.cached_pipeline(&key) {
            return Ok(p);
        }
        let source: String = kernel.sources.concat();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(kernel.name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        };
        let module = if kernel.unchecked {
            // SAFETY: `unchecked` kernels index only within the ranges their op's
            // host-side shape checks guarantee (see each op's validation).
            unsafe {
                self.device
                    .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        } else {
            self.device.create_shader_module(desc)
        };
        let layout = self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(kernel.name),
            entries: &layout_entries(kernel.bindings),
        });
        let pipeline_layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(kernel.name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.name),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(kernel.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(Error::Shader {
                kernel: format!("{}::{}", kernel.name, kernel.entry),
                message: err.to_string(),
            });
        }
        Ok(self.store_pipeline(key, PipelineEntry { pipeline, layout }))
    }

    /// Builds a dispatch of `kernel` over `views` (the storage bindings in order)
    /// with `params` as its uniform (when the kernel has one).
    pub fn dispatch(
        &self,
        kernel: &Kernel,
        constants: &[(&str, f64)],
        views: &[BufView<'_>],
        params: &[u8],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let storage = kernel.bindings.iter().filter(|a| **a != Access::Uniform).count();
        if storage != views.len() {
            return Err(Error::Gpu(format!(
                "kernel `{}` takes {storage} buffers, got {}",
                kernel.name,
                views.len()
            )));
        }
        let max = self.limits.max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&w| w > max) {
            return Err(Error::Shape(format!(
                "kernel `{}`: grid {workgroups:?} exceeds {max} workgroups per dimension",
                kernel.name
            )));
        }
        let entry = self.pipeline(kernel, constants)?;
        let params_buffer = if kernel.bindings.contains(&Access::Uniform) {
            let mut bytes = params.to_vec();
            bytes.resize(bytes.len().div_ceil(16).max(1) * 16, 0);
            Some(self.upload_bytes(&bytes, wgpu::BufferUsages::UNIFORM, kernel.name))
        } else {
            None
        };
        let mut next_view = views.iter();
        let entries: Vec<wgpu::BindGroupEntry> = kernel
            .bindings
            .iter()
            .enumerate()
            .map(|(i, a)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: match a {
                    Access::Uniform => params_buffer.as_ref().unwrap().as_entire_binding(),
                    _ => next_view.next().unwrap().binding(),
                },
            })
            .collect();
        for v in views {
            v.check_binding(self, kernel.name)?;
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_1d_covers_n_within_the_dimension_limit() {
        for (n, wg) in [
            (1usize, 64u32),
            (64, 64),
            (65, 64),
            (65535 * 64 + 1, 64),
            (100_000_000, 256),
        ] {
            let [x, y, z] = grid_1d(n, wg);
            assert!(x <= 65535 && y <= 65535 && z == 1);
            assert!(x as usize * y as usize * wg as usize >= n, "{n}: {x}x{y}");
        }
    }

    const BROKEN: Kernel = Kernel::portable(
        "broken_kernel",
        &["@compute @workgroup_size(1) fn main() { let x: f32 = undefined_thing; }"],
        "main",
        &[],
    );
    const TINY: Kernel = Kernel::portable(
        "tiny_kernel",
        &["@group(0) @binding(0) var<storage, read_write> o: array<f32>;\n\
           @compute @workgroup_size(1) fn main() { o[0] = 42.0; }"],
        "main",
        &[Access::ReadWrite],
    );

    #[test]
    fn a_wgsl_error_names_the_kernel() {
        let ctx = GpuContext::from_env().expect("an adapter (install mesa-vulkan-drivers)");
        match ctx.dispatch(&BROKEN, &[], &[], &[], [1, 1, 1]) {
            Err(Error::Shader { kernel, message }) => {
                assert!(kernel.contains("broken_kernel"), "{kernel}");
                assert!(message.contains("undefined_thing"), "{message}");
            }
            Err(e) => panic!("expected a shader error, got {e}"),
            Ok(_) => panic!("a broken kernel compiled"),
        }
    }

    #[test]
    fn pipelines_are_compiled_once_and_reused() {
        let ctx = GpuContext::from_env().expect("an adapter (install mesa-vulkan-drivers)");
        let out = ctx.zeros(1);
        let a = ctx.dispatch(&TINY, &[], &[out.view()], &[], [1, 1, 1]).unwrap();
        let before = ctx.pipeline_count();
        let b = ctx.dispatch(&TINY, &[], &[out.view()], &[], [1, 1, 1]).unwrap();
        assert_eq!(ctx.pipeline_count(), before);
        ctx.run(&[&a, &b]).unwrap();
        assert_eq!(ctx.read_f32(&out).unwrap(), vec![42.0]);
        // The wrong number of buffers is an error, not a panic.
        assert!(ctx.dispatch(&TINY, &[], &[], &[], [1, 1, 1]).is_err());
    }
}
