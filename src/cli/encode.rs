//! `vdvae encode`: every level's posterior mean and standard deviation of each
//! image, to safetensors.

use std::process::ExitCode;

use super::args::CheckpointOnData;
use vdvae::diagnose::encode::encode;
use vdvae::gpu::AdapterChoice;

#[derive(clap::Args)]
pub struct EncodeArgs {
    #[command(flatten)]
    base: CheckpointOnData,
    /// Only the first N images of the file
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Images per forward pass [default: the config's n_batch]
    #[arg(long, value_parser = super::args::batch_size)]
    batch: Option<usize>,
    /// Output safetensors: `level.LL.mean` and `level.LL.std`, [N, C, H, W] ([N, C] for an MLP level)
    #[arg(long, default_value = "encodings.safetensors", value_parser = super::args::non_empty_path)]
    out: String,
}

pub fn run(choice: &AdapterChoice, a: &EncodeArgs) -> vdvae::Result<ExitCode> {
    let (h, weights, images) = a.base.load_fixed(a.limit)?;
    let ctx = a.base.device(choice)?;
    let tensors = encode(&a.base.batch_run(&ctx, &h, &weights, &images, a.batch))?;
    let metadata = [
        ("levels".to_string(), h.latent_levels()?.to_string()),
        ("images".to_string(), images.n.to_string()),
        (
            "posterior".to_string(),
            "each level's posterior given the posterior means of the levels above".to_string(),
        ),
    ]
    .into_iter()
    .collect();
    vdvae::checkpoint::save(&a.out, &tensors, Some(&metadata))?;
    println!(
        "wrote the posterior mean and std of {} levels for {} images to {}",
        h.latent_levels()?,
        images.n,
        a.out
    );
    Ok(ExitCode::SUCCESS)
}
