//! `vdvae eval`: the ELBO, distortion, rate and per-level KL of a checkpoint on
//! a dataset, and optionally the importance-weighted NLL.

use std::process::ExitCode;

use super::args::{device_of, DataArgs};
use vdvae::gpu::AdapterChoice;
use vdvae::model::evaluate::evaluate;
use vdvae::model::importance::importance_weighted;

#[derive(clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Images per forward pass [default: the config's n_batch]
    #[arg(long, value_parser = super::args::batch_size)]
    batch: Option<usize>,
    /// Print one JSON object (elbo_nats_per_dim, elbo_nats_per_image, bits_per_dim, distortion,
    /// rate, kl_per_level; with --iw also iw_k, iw_nll_nats_per_image, iw_nll_bits_per_dim)
    #[arg(long)]
    json: bool,
    /// Also the importance-weighted NLL with K posterior samples per image (Burda et al. 2015)
    #[arg(long, value_name = "K", value_parser = super::args::at_least_one)]
    iw: Option<usize>,
    /// Rows (image samples) per forward pass of --iw
    #[arg(long, default_value_t = 1000, value_name = "ROWS", value_parser = super::args::batch_size)]
    iw_rows: usize,
}

pub fn run(choice: &AdapterChoice, a: &EvalArgs) -> vdvae::Result<ExitCode> {
    if a.iw.is_some() && a.data.posterior_mean {
        return Err(vdvae::Error::Input(
            "--iw draws z from the posterior; it cannot be combined with --posterior-mean".into(),
        ));
    }
    let (h, weights, images) = a.data.load()?;
    let device = a.data.device(choice)?;
    let batch = a.batch.unwrap_or(h.n_batch);
    let input = a.data.input(&h, &weights, &images);
    let mut r = evaluate(device_of(&device), &input, batch)?;
    if let Some(k) = a.iw {
        let e = importance_weighted(device_of(&device), &input, k, a.iw_rows)?;
        r.iw_k = Some(e.k);
        r.iw_nll_nats_per_image = Some(e.nll_nats_per_image);
        r.iw_nll_bits_per_dim = Some(e.nll_nats_per_image / images.image_len() as f64 / std::f64::consts::LN_2);
    }
    if a.json {
        println!("{}", serde_json::to_string(&r).expect("a report serialises"));
        return Ok(ExitCode::SUCCESS);
    }
    println!("images:        {}", r.images);
    println!(
        "ELBO:          {:.6} nats/dim  ({:.6} bits/dim)",
        r.elbo_nats_per_dim, r.bits_per_dim
    );
    println!("ELBO:          {:.4} nats/image", r.elbo_nats_per_image);
    if let (Some(k), Some(nll), Some(bpd)) = (r.iw_k, r.iw_nll_nats_per_image, r.iw_nll_bits_per_dim) {
        println!("IW NLL (K={k}): {nll:.4} nats/image  ({bpd:.6} bits/dim)");
    }
    println!("distortion:    {:.6} nats/dim", r.distortion);
    println!("rate:          {:.6} nats/dim", r.rate);
    println!("KL per level (nats/dim, top first):");
    for (i, kl) in r.kl_per_level.iter().enumerate() {
        println!("  {i:>3}  {kl:.6e}");
    }
    Ok(ExitCode::SUCCESS)
}
