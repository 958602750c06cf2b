//! `vdvae reconstruct`: inputs above their reconstructions, the top K levels
//! from the posterior mean and the rest from the prior.

use std::process::ExitCode;

use super::args::{device_of, CheckpointOnData};
use vdvae::diagnose::reconstruct::reconstruct;
use vdvae::gpu::AdapterChoice;
use vdvae::model::sample::write_rows_png;
use vdvae::model::temperature::Temperatures;

#[derive(clap::Args)]
pub struct ReconstructArgs {
    #[command(flatten)]
    base: CheckpointOnData,
    /// Indices of the images in --data (from 0)
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4,5,6,7")]
    images: Vec<usize>,
    /// One row per K: the top K levels from the posterior mean, the rest from the prior
    /// [default: every level, the full reconstruction]
    #[arg(long, value_delimiter = ',', value_name = "K1,K2,...")]
    levels: Option<Vec<usize>>,
    /// Prior temperature of the levels below K: one value, or per level as `sample` takes it
    #[arg(long, default_value = "1.0", value_name = "T[,T|T:N...]", allow_hyphen_values = true)]
    temperature: Temperatures,
    /// Output PNG: the inputs in the first row, one row per K below (written atomically)
    #[arg(long, default_value = "reconstructions.png", value_parser = super::args::non_empty_path)]
    out: String,
}

pub fn run(choice: &AdapterChoice, a: &ReconstructArgs) -> vdvae::Result<ExitCode> {
    let (h, weights, images) = a.base.load_fixed(None)?;
    let inputs = images.select(&a.images)?;
    let levels = h.latent_levels()?;
    let ks = a.levels.clone().unwrap_or_else(|| vec![levels]);
    let temperatures = a.temperature.per_level(levels)?;
    let ctx = a.base.device(choice)?;
    let norm = a.base.normalization();
    let rows = reconstruct(
        device_of(&ctx),
        &h,
        &weights,
        &inputs,
        norm,
        &ks,
        &temperatures,
        a.base.seed,
    )?;
    write_rows_png(&a.out, &[vec![inputs], rows].concat())?;
    let ks: Vec<String> = ks.iter().map(|k| k.to_string()).collect();
    println!(
        "wrote {} images and their reconstructions to {} (rows: the inputs, then K = {} of {levels} levels from the posterior, the rest at temperature {})",
        a.images.len(),
        a.out,
        ks.join(", "),
        a.temperature
    );
    Ok(ExitCode::SUCCESS)
}
