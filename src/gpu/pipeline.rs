//! Building (once) the compute pipeline of a kernel: naga reflects its WGSL,
//! the Rust side's statements are checked against it, and the bind group
//! layout gets real minimum binding sizes from it.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Instant;

use super::contract;
use super::f16_storage;
use super::kernel::{Access, KernelSpec};
use super::reflect::{parse, reflect_module};
use super::GpuContext;
use crate::error::{Error, Result};

/// A built pipeline and what dispatches need from its reflection.
pub(crate) struct PipelineEntry {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub workgroup_size: [u32; 3],
    /// Per binding of the kernel: the WGSL name and the bytes a bound buffer needs at least.
    pub bindings: Vec<(String, u64)>,
}

fn layout_entry(index: usize, access: Access, min_size: u64, params_in_storage: bool) -> wgpu::BindGroupLayoutEntry {
    let ty = match access {
        Access::Uniform if !params_in_storage => wgpu::BufferBindingType::Uniform,
        Access::Uniform => wgpu::BufferBindingType::Storage { read_only: true },
        Access::Read | Access::ReadWrite => wgpu::BufferBindingType::Storage {
            read_only: access == Access::Read,
        },
    };
    wgpu::BindGroupLayoutEntry {
        binding: index as u32,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: NonZeroU64::new(min_size),
        },
        count: None,
    }
}

/// Moves every `var<uniform>` of `module` to `var<storage, read>`: the same
/// struct at the same binding, with the same layout (WGSL lays a struct out
/// alike in both; the uniform address space only adds alignment checks, which
/// the source already passed). Loads read it as before. Lavapipe compiles a
/// new shader per dispatch from uniform values and leaks it (see
/// `context::params_in_storage`); it never does so from storage buffers.
fn params_to_storage(module: &mut naga::Module) {
    for (_, var) in module.global_variables.iter_mut() {
        if var.space == naga::AddressSpace::Uniform {
            var.space = naga::AddressSpace::Storage {
                access: naga::StorageAccess::LOAD,
            };
        }
    }
}

impl GpuContext {
    /// The pipeline of `kernel` with override `constants` and the storage
    /// bindings `f16` (indices) holding f16, built and checked on first use.
    pub(crate) fn pipeline_with_f16(
        &self,
        kernel: &KernelSpec,
        constants: &[(&str, f64)],
        f16: &[u32],
    ) -> Result<Arc<PipelineEntry>> {
        let requires = kernel.requires | f16_storage::features(f16);
        if !self.features.contains(requires) {
            let why = if self.features.contains(kernel.requires) {
                format!(
                    "f16 storage of bindings {f16:?} needs the adapter feature SHADER_F16, which {} lacks",
                    self.adapter.name
                )
            } else {
                format!(
                    "needs adapter features {:?}, which {} lacks",
                    kernel.requires, self.adapter.name
                )
            };
            return Err(Error::Gpu(format!("kernel `{}`: {why}", kernel.name)));
        }
        let key = format!(
            "{}::{}{:?}{}{}",
            kernel.name,
            kernel.entry,
            constants,
            kernel.unchecked,
            f16_storage::key_suffix(f16)
        );
        if let Some(p) = self.cached_pipeline(&key) {
            return Ok(p);
        }
        let started = Instant::now();
        let source = kernel.source.text();
        let shader_error = |message| Error::Shader {
            kernel: format!("{}::{}", kernel.name, kernel.entry),
            message,
        };
        // Parsed once, here: wgpu compiles the same module (naga's WGSL parser is
        // slow on the large generated kernels, ~1 s each).
        let mut module = parse(&source, kernel.requires).map_err(shader_error)?;
        f16_storage::store_as_f16(&mut module, f16).map_err(shader_error)?;
        let reflection = reflect_module(&module, &source, kernel.entry, requires).map_err(shader_error)?;
        let mismatches = contract::mismatches(kernel, &reflection);
        if !mismatches.is_empty() {
            return Err(Error::Contract {
                kernel: kernel.name.to_string(),
                mismatches,
            });
        }
        // Every declared binding exists in the shader (the contract holds).
        let bindings: Vec<(String, u64)> = (0..kernel.bindings.len())
            .map(|i| {
                let b = reflection.binding(i as u32).expect("checked by the contract");
                (b.name.clone(), b.min_size as u64)
            })
            .collect();
        let entries: Vec<_> = kernel
            .bindings
            .iter()
            .zip(&bindings)
            .enumerate()
            .map(|(i, (&access, (_, min)))| layout_entry(i, access, *min, self.params_in_storage))
            .collect();
        if self.params_in_storage {
            params_to_storage(&mut module);
        }

        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(kernel.name),
            source: wgpu::ShaderSource::Naga(std::borrow::Cow::Owned(module)),
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
            entries: &entries,
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
        self.compile_progress.built(started.elapsed());
        Ok(self.store_pipeline(
            key,
            PipelineEntry {
                pipeline,
                layout,
                workgroup_size: reflection.workgroup_size,
                bindings,
            },
        ))
    }
}
