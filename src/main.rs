//! The `vdvae` command line: parses the flags and hands the subcommand to
//! `cli`, where each one's flags and body live in a file of its own.

use std::process::ExitCode;

mod cli;

use clap::Parser;
use vdvae::gpu::quiet_display_probe_when_headless;

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
    /// Kernel variants: `tuned` (each family's choice for the adapter) or `gpu`
    /// (the GPU-shaped variants forced, on any adapter)
    #[arg(
        long,
        global = true,
        env = "VDVAE_KERNELS",
        default_value = "tuned",
        value_name = "tuned|gpu"
    )]
    kernels: vdvae::gpu::tune::KernelSet,
    #[command(subcommand)]
    command: cli::Command,
}

fn main() -> ExitCode {
    // Before any thread starts: it may set an environment variable.
    quiet_display_probe_when_headless();
    let cli = Cli::parse();
    cli::logging::init();
    vdvae::gpu::tune::use_kernels(cli.kernels);
    cli::run(cli.command, cli.adapter.as_deref())
}
