//! `vdvae grad`: the gradient of the mean ELBO over a file's images, under official names.

use std::process::ExitCode;

use super::args::{device_of, DataArgs};
use vdvae::checkpoint;
use vdvae::gpu::AdapterChoice;
use vdvae::model::evaluate::gradient;

#[derive(clap::Args)]
pub struct GradArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Output safetensors file (written atomically)
    #[arg(long, value_parser = super::args::non_empty_path)]
    out: String,
}

pub fn run(choice: &AdapterChoice, a: &GradArgs) -> vdvae::Result<ExitCode> {
    let (h, weights, images) = a.data.load()?;
    let device = a.data.device(choice)?;
    let grads = gradient(device_of(&device), &a.data.input(&h, &weights, &images))?;
    checkpoint::save(&a.out, &grads, None)?;
    println!(
        "wrote {} gradient tensors of the mean ELBO over {} images to {}",
        grads.len(),
        images.n,
        a.out
    );
    Ok(ExitCode::SUCCESS)
}
