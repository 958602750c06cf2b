//! `vdvae profile`: where a training step's time and FLOPs go.

use std::process::ExitCode;

use super::args::{ModelArgs, PrecisionArg};
use vdvae::gpu::{AdapterChoice, GpuContext};
use vdvae::train::{profile_training, ProfileOptions};

#[derive(clap::Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Images per step [default: the config's n_batch]
    #[arg(long, value_parser = super::args::batch_size)]
    batch: Option<usize>,
    /// Pipelined steps timed for the wall time (after 2 warm-up steps)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    steps: u32,
    /// Also write the step as Chrome trace-event JSON (Perfetto, chrome://tracing), atomically
    #[arg(long, value_name = "FILE.json")]
    trace: Option<String>,
    /// Print the report as one JSON object instead of the table
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    precision: PrecisionArg,
}

pub fn run(choice: &AdapterChoice, a: &ProfileArgs) -> vdvae::Result<ExitCode> {
    let h = a.model.load()?;
    let ctx = GpuContext::new(choice)?;
    let mut options = ProfileOptions::new(a.batch.unwrap_or(h.n_batch));
    options.timed_steps = a.steps as usize;
    options.precision = a.precision.get();
    let report = profile_training(&ctx, &h, &options)?;
    if let Some(path) = &a.trace {
        report.write_trace(path)?;
        // On stderr: stdout holds only the report (it may be --json).
        eprintln!("wrote {} trace events to {path}", report.dispatches.len());
    }
    if a.json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}
