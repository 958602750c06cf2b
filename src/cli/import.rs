//! `vdvae import`: a PyTorch checkpoint (the official VDVAE's `*-model.th`) to
//! safetensors once, so later commands read the smaller, faster file.

use std::process::ExitCode;

use vdvae::checkpoint;

#[derive(clap::Args)]
pub struct ImportArgs {
    /// PyTorch file of weights (.th, .pt, .pth: torch.save's zip or legacy format, a
    /// state_dict; DDP's module. prefix is dropped)
    file: String,
    /// The entry of the file's top-level dict that holds the weights (e.g.
    /// model_state_dict), for a file that saved them beside other things
    #[arg(long, value_name = "NAME")]
    checkpoint_key: Option<String>,
    /// Output safetensors file, F32 with the official names (written atomically)
    #[arg(long, value_parser = super::args::non_empty_path)]
    out: String,
}

pub fn run(a: &ImportArgs) -> vdvae::Result<ExitCode> {
    let weights = checkpoint::load_weights(&a.file, a.checkpoint_key.as_deref())?;
    checkpoint::save(&a.out, &weights, None)?;
    let values: usize = weights.values().map(|t| t.data.len()).sum();
    println!(
        "wrote {} tensors ({values} values) from {} to {}",
        weights.len(),
        a.file,
        a.out
    );
    Ok(ExitCode::SUCCESS)
}
