//! The `vdvae` command line. Each subcommand calls one library function.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vdvae::check::{format_table, run_checks, CaseSize, Checker};
use vdvae::gpu::{list_adapters, measure_fma_ceiling, AdapterChoice, GpuContext};
use vdvae::model::{preset, report::plan_training, HParams, PRESETS};

#[derive(Parser)]
#[command(
    name = "vdvae",
    version,
    about = "Very Deep VAEs trained on the GPU through wgpu, every kernel checked against a CPU reference"
)]
struct Cli {
    /// GPU adapter to use: an index from `vdvae info` or part of its name
    /// [default: the high-performance one]
    #[arg(long, global = true, env = "VDVAE_ADAPTER")]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List adapters; show the chosen one's features, limits and measured FMA ceiling
    Info {
        /// Seconds to spend measuring the FMA ceiling
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
    /// Run every kernel on the adapter against the CPU reference; non-zero exit on any failure
    Check {
        /// Only this kernel family (e.g. matmul, conv2d, rng)
        #[arg(long)]
        kernel: Option<String>,
        /// Also run the large shapes (the biggest tensor one binding holds); slower
        #[arg(long)]
        full: bool,
        /// Corrupt one element of every GPU result, to prove the check catches it
        #[arg(long, hide = true)]
        perturb: bool,
    },
    /// Parameters, latent layers and planned peak memory of a training step; runs nothing
    Plan {
        #[command(flatten)]
        model: ModelArgs,
        /// Images per step [default: the config's n_batch]
        #[arg(long)]
        batch: Option<usize>,
    },
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct ModelArgs {
    /// A named configuration
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(PRESETS))]
    preset: Option<String>,
    /// A JSON file of official VDVAE hyperparameters (width, zdim, enc_blocks, ...)
    #[arg(long)]
    config: Option<String>,
}

impl ModelArgs {
    fn load(&self) -> vdvae::Result<HParams> {
        match (&self.preset, &self.config) {
            (Some(p), _) => preset(p),
            (None, Some(c)) => HParams::from_json_file(c),
            (None, None) => unreachable!("clap requires --preset or --config"),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let choice = AdapterChoice::from_flag_or_env(cli.adapter.as_deref());
    let result = match cli.command {
        Command::Info { seconds } => info(&choice, seconds),
        Command::Check { kernel, full, perturb } => check(&choice, kernel.as_deref(), full, perturb),
        Command::Plan { model, batch } => plan(&model, batch),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn info(choice: &AdapterChoice, seconds: f64) -> vdvae::Result<ExitCode> {
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
    let c = measure_fma_ceiling(&ctx, seconds)?;
    println!(
        "FMA ceiling: {:.1} GFLOP/s (register-only kernel, measured for {:.2} s)",
        c.gflops, c.seconds
    );
    Ok(ExitCode::SUCCESS)
}

fn check(choice: &AdapterChoice, kernel: Option<&str>, full: bool, perturb: bool) -> vdvae::Result<ExitCode> {
    let ctx = GpuContext::new(choice)?;
    println!("adapter: [{}] {}", ctx.adapter_index, ctx.adapter.name);
    let mut checker = Checker::new(&ctx, if full { CaseSize::Full } else { CaseSize::Quick });
    checker.perturb = perturb;
    run_checks(&mut checker, kernel)?;
    print!("{}", format_table(&checker.rows));
    let failed = checker.failures();
    println!("{} passed, {} failed", checker.rows.len() - failed, failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn plan(model: &ModelArgs, batch: Option<usize>) -> vdvae::Result<ExitCode> {
    let h = model.load()?;
    let report = plan_training(&h, batch.unwrap_or(h.n_batch))?;
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}
