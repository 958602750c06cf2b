//! `vdvae tune`: times the kernel variants a model's training step needs on
//! this adapter, ahead of training, and caches the choices.

use std::process::ExitCode;

use super::args::{ModelArgs, PrecisionArg};
use vdvae::gpu::tune::TuneMode;
use vdvae::gpu::{AdapterChoice, GpuContext};
use vdvae::train::tune_training;

#[derive(clap::Args)]
pub struct TuneArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Images per step [default: the config's n_batch]
    #[arg(long, value_parser = super::args::batch_size)]
    batch: Option<usize>,
    #[command(flatten)]
    precision: PrecisionArg,
}

pub fn run(choice: &AdapterChoice, a: &TuneArgs) -> vdvae::Result<ExitCode> {
    let h = a.model.load()?;
    let ctx = GpuContext::new(choice)?;
    if ctx.tuner.mode() == TuneMode::Off {
        eprintln!("VDVAE_TUNE=off: every kernel family runs its built-in default; nothing to tune");
        return Ok(ExitCode::SUCCESS);
    }
    let batch = a.batch.unwrap_or(h.n_batch);
    let tuned = tune_training(&ctx, &h, batch, a.precision.get())?;
    let place = ctx
        .tuner
        .file()
        .map_or("memory only (no cache directory)".into(), |f| f.display().to_string());
    println!("adapter: {}; cache: {place}", ctx.adapter.name);
    let known = ctx.tuner.choices().len();
    if tuned.is_empty() && known == 0 {
        println!("no kernel of this step has variants to choose between on this adapter: nothing to tune");
        return Ok(ExitCode::SUCCESS);
    }
    if tuned.is_empty() {
        println!("every shape class of this step was already tuned ({known} choices cached)");
        return Ok(ExitCode::SUCCESS);
    }
    println!("tuned {} shape classes ({known} choices cached):", tuned.len());
    for (class, c) in &tuned {
        let times: Vec<String> = c.ms.iter().map(|(v, ms)| format!("{v} {ms:.3} ms")).collect();
        println!("  {class}: {} ({})", c.variant, times.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
