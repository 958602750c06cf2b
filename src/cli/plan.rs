//! `vdvae plan`: parameters, latent layers and planned peak memory of a training step.

use std::process::ExitCode;

use super::args::{ModelArgs, PrecisionArg};
use vdvae::gpu::{AdapterChoice, GpuContext};
use vdvae::model::report::plan_training;

#[derive(clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Images per step [default: the config's n_batch]
    #[arg(long, value_parser = super::args::batch_size)]
    batch: Option<usize>,
    /// Recompute blocks in the backward pass until the planned memory fits
    /// (e.g. 6GiB, 512MiB, 6000000000); prints the recompute FLOPs
    #[arg(long, value_name = "SIZE", value_parser = super::args::parse_size)]
    memory_budget: Option<usize>,
    #[command(flatten)]
    precision: PrecisionArg,
}

pub fn run(choice: &AdapterChoice, a: &PlanArgs) -> vdvae::Result<ExitCode> {
    let h = a.model.load()?;
    // Planning needs no adapter; with one, the report also counts the dispatches.
    let ctx = match GpuContext::new(choice) {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            eprintln!("note: {e}\nnote: planning without an adapter (no dispatch count)");
            None
        }
    };
    let batch = a.batch.unwrap_or(h.n_batch);
    let report = plan_training(&h, batch, a.precision.get(), ctx.as_ref(), a.memory_budget)?;
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}
