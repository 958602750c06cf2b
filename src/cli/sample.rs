//! `vdvae sample`: a checkpoint's samples as a PNG grid, every level from its
//! prior or the top levels fixed to a reference image's posterior.

use std::process::ExitCode;

use super::args::{device_of, CheckpointArg, DeviceArg, ModelArgs, OptionalData};
use vdvae::gpu::AdapterChoice;
use vdvae::model::sample::{sample_images, write_grid_png, FixedLevels};
use vdvae::model::temperature::Temperatures;

#[derive(clap::Args)]
pub struct SampleArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    checkpoint: CheckpointArg,
    /// Number of images
    #[arg(long, default_value_t = 16)]
    n: usize,
    /// Prior temperature (official: logsig_p += ln t; 0 gives the prior means): one value, or
    /// one per level top first (0.9,0.9,0.8), or T:N for N levels (1.0:16,0.8); the last
    /// value holds for the levels left
    #[arg(long, default_value = "1.0", value_name = "T[,T|T:N...]", allow_hyphen_values = true)]
    temperature: Temperatures,
    /// Fix the top K levels to the posterior mean of the --reference image
    #[arg(long, value_name = "K", requires = "reference")]
    fix_levels: Option<usize>,
    /// Index of the reference image in --data (from 0)
    #[arg(long, value_name = "INDEX", requires_all = ["fix_levels", "data"])]
    reference: Option<usize>,
    #[command(flatten)]
    data: OptionalData,
    /// Seed of the prior and pixel noise
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images per row of the grid [default: about the square root of n]
    #[arg(long)]
    cols: Option<usize>,
    /// Output PNG (written atomically)
    #[arg(long, default_value = "samples.png", value_parser = super::args::non_empty_path)]
    out: String,
    #[arg(long, value_enum, default_value_t = DeviceArg::Gpu)]
    device: DeviceArg,
}

pub fn run(choice: &AdapterChoice, a: &SampleArgs) -> vdvae::Result<ExitCode> {
    let h = a.model.load()?;
    let weights = a.checkpoint.load()?;
    let temperatures = a.temperature.per_level(h.latent_levels()?)?;
    // clap makes --fix-levels and --reference come together.
    let reference = match (a.fix_levels, a.reference) {
        (Some(_), Some(i)) => Some(a.data.load(&h)?.select(&[i])?),
        _ => None,
    };
    let fixed = reference.as_ref().map(|reference| FixedLevels {
        reference,
        levels: a.fix_levels.unwrap_or(0),
        norm: a.data.normalization(),
    });
    let ctx = a.device.open(choice)?;
    let images = sample_images(
        device_of(&ctx),
        &h,
        &weights,
        a.n,
        &temperatures,
        a.seed,
        fixed.as_ref(),
    )?;
    let cols = a.cols.unwrap_or_else(|| (a.n as f64).sqrt().ceil() as usize);
    write_grid_png(&a.out, &images, cols)?;
    match &fixed {
        Some(f) => println!(
            "wrote {} samples at temperature {}, the top {} levels fixed to image {} of the data, to {}",
            a.n,
            a.temperature,
            f.levels,
            a.reference.unwrap_or(0),
            a.out
        ),
        None => println!("wrote {} samples at temperature {} to {}", a.n, a.temperature, a.out),
    }
    Ok(ExitCode::SUCCESS)
}
