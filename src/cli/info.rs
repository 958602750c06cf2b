//! `vdvae info`: the adapters, and the chosen one's features, limits and FMA ceiling.

use std::process::ExitCode;

use vdvae::gpu::{list_adapters, measure_fma_ceiling, AdapterChoice, GpuContext};

#[derive(clap::Args)]
pub struct InfoArgs {
    /// Seconds to spend measuring the FMA ceiling
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
}

pub fn run(choice: &AdapterChoice, a: &InfoArgs) -> vdvae::Result<ExitCode> {
    println!("adapters:");
    for a in list_adapters() {
        println!(
            "  [{}] {} ({}, {}) {}",
            a.index, a.name, a.backend, a.device_type, a.driver
        );
    }
    let ctx = GpuContext::new(choice)?;
    println!("chosen: [{}] {}", ctx.adapter_index, ctx.adapter.name);
    println!("features used: {:?}", ctx.features);
    if ctx.has(wgpu::Features::SUBGROUP) {
        println!("subgroup size: {}..{}", ctx.subgroup_min_size, ctx.subgroup_max_size);
    }
    let l = &ctx.limits;
    println!("limits:");
    println!(
        "  max_storage_buffer_binding_size   {} bytes",
        l.max_storage_buffer_binding_size
    );
    println!("  max_buffer_size                   {} bytes", l.max_buffer_size);
    println!(
        "  max_storage_buffers_per_stage     {}",
        l.max_storage_buffers_per_shader_stage
    );
    println!(
        "  max_compute_workgroup_storage     {} bytes",
        l.max_compute_workgroup_storage_size
    );
    println!(
        "  max_compute_invocations_per_wg    {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "  max_compute_workgroups_per_dim    {}",
        l.max_compute_workgroups_per_dimension
    );
    println!(
        "  min_storage_buffer_offset_align   {} bytes",
        l.min_storage_buffer_offset_alignment
    );
    let c = measure_fma_ceiling(&ctx, a.seconds)?;
    println!(
        "FMA ceiling: {:.1} GFLOP/s (register-only kernel, measured for {:.2} s)",
        c.gflops, c.seconds
    );
    Ok(ExitCode::SUCCESS)
}
