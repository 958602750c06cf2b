//! `reconstruct`, `interpolate`, `encode` and `diagnose`: what each level of a
//! trained model does.

use std::process::ExitCode;

use super::args::{device_of, CheckpointOnData};
use vdvae::diagnose::analyse::diagnose;
use vdvae::diagnose::encode::encode;
use vdvae::diagnose::interpolate::{interpolate, Interpolation};
use vdvae::diagnose::plots::write_plots;
use vdvae::diagnose::reconstruct::reconstruct;
use vdvae::gpu::AdapterChoice;
use vdvae::model::sample::write_rows_png;
use vdvae::model::temperature::Temperatures;
use vdvae::Error;

/// `vdvae reconstruct`.
#[derive(clap::Args)]
pub struct ReconstructArgs {
    #[command(flatten)]
    pub base: CheckpointOnData,
    /// Indices of the images in --data (from 0)
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4,5,6,7")]
    pub images: Vec<usize>,
    /// One row per K: the top K levels from the posterior mean, the rest from the prior
    /// [default: every level, the full reconstruction]
    #[arg(long, value_delimiter = ',', value_name = "K1,K2,...")]
    pub levels: Option<Vec<usize>>,
    /// Prior temperature of the levels below K: one value, or per level as `sample` takes it
    #[arg(long, default_value = "1.0", value_name = "T[,T|T:N...]", allow_hyphen_values = true)]
    pub temperature: Temperatures,
    /// Output PNG: the inputs in the first row, one row per K below (written atomically)
    #[arg(long, default_value = "reconstructions.png")]
    pub out: String,
}

pub fn run_reconstruct(choice: &AdapterChoice, a: &ReconstructArgs) -> vdvae::Result<ExitCode> {
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

/// `vdvae interpolate`.
#[derive(clap::Args)]
pub struct InterpolateArgs {
    #[command(flatten)]
    pub base: CheckpointOnData,
    /// The level whose latent is interpolated, from the top (0 = the coarsest)
    #[arg(long)]
    pub level: usize,
    /// Images in each strip, both ends included
    #[arg(long, default_value_t = 8)]
    pub steps: usize,
    /// Two image indices in --data; repeat the flag for more strips
    #[arg(long = "pair", value_name = "A,B", value_delimiter = ',', num_args = 1, action = clap::ArgAction::Append, default_value = "0,1")]
    pub pairs: Vec<usize>,
    /// Prior temperature of the levels below --level (0: the prior means)
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub temperature: f32,
    /// Output folder: one PNG strip per pair, `level<L>-<A>-<B>.png` (written atomically)
    #[arg(long, default_value = "interpolations")]
    pub out: String,
}

pub fn run_interpolate(choice: &AdapterChoice, a: &InterpolateArgs) -> vdvae::Result<ExitCode> {
    if !a.pairs.len().is_multiple_of(2) {
        return Err(Error::Input(format!(
            "--pair takes two image indices, A,B; got {:?}",
            a.pairs
        )));
    }
    let (h, weights, images) = a.base.load_fixed(None)?;
    let ctx = a.base.device(choice)?;
    create_dir(&a.out)?;
    let how = Interpolation {
        level: a.level,
        steps: a.steps,
        temperature: a.temperature,
        seed: a.base.seed,
    };
    for pair in a.pairs.chunks_exact(2) {
        let ends = images.select(pair)?;
        let strip = interpolate(device_of(&ctx), &h, &weights, &ends, a.base.normalization(), &how)?;
        let path = format!("{}/level{}-{}-{}.png", a.out, a.level, pair[0], pair[1]);
        write_rows_png(&path, &[strip.images()?])?;
        println!(
            "wrote {path}: level {} from image {} to image {} in {} steps",
            a.level, pair[0], pair[1], a.steps
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `vdvae encode`.
#[derive(clap::Args)]
pub struct EncodeArgs {
    #[command(flatten)]
    pub base: CheckpointOnData,
    /// Only the first N images of the file
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Images per forward pass [default: the config's n_batch]
    #[arg(long)]
    pub batch: Option<usize>,
    /// Output safetensors: `level.LL.mean` and `level.LL.std`, [N, C, H, W] ([N, C] for an MLP level)
    #[arg(long, default_value = "encodings.safetensors")]
    pub out: String,
}

pub fn run_encode(choice: &AdapterChoice, a: &EncodeArgs) -> vdvae::Result<ExitCode> {
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

/// `vdvae diagnose`.
#[derive(clap::Args)]
pub struct DiagnoseArgs {
    #[command(flatten)]
    pub base: CheckpointOnData,
    /// Only the first N images of the file (each is run levels + 1 times)
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub limit: usize,
    /// Images per forward pass [default: the config's n_batch]
    #[arg(long)]
    pub batch: Option<usize>,
    /// Prior temperature of the levels below k in the distortion by depth
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub temperature: f32,
    /// Output folder: report.json and the plots
    #[arg(long, default_value = "diagnose")]
    pub out: String,
}

pub fn run_diagnose(choice: &AdapterChoice, a: &DiagnoseArgs) -> vdvae::Result<ExitCode> {
    let (h, weights, images) = a.base.load_fixed(Some(a.limit))?;
    let ctx = a.base.device(choice)?;
    create_dir(&a.out)?;
    let run = a.base.batch_run(&ctx, &h, &weights, &images, a.batch);
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "diagnose {bar:40} {pos}/{len} passes over the images [{elapsed_precise}<{eta_precise}]",
        )
        .expect("a valid progress template"),
    );
    let report = diagnose(&run, a.temperature, |done, of| {
        bar.set_length(of as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    let json = serde_json::to_string_pretty(&report).expect("a report serialises");
    let path = format!("{}/report.json", a.out);
    vdvae::checkpoint::write_atomically(&path, json.as_bytes())?;
    println!(
        "{} images, {} levels ({})",
        report.images,
        report.levels.len(),
        report.model
    );
    println!("level  res   units    KL nats/image  share   active");
    for l in &report.levels {
        println!(
            "{:>5} {:>4} {:>7} {:>16.4} {:>6.1}% {:>6} ({:.0}%)",
            l.level,
            l.resolution,
            l.units,
            l.kl_nats_per_image,
            100.0 * l.rate_share,
            l.active_units,
            100.0 * l.active_fraction
        );
    }
    println!(
        "distortion by depth (top k levels from the posterior, the rest from the prior at t = {}):",
        a.temperature
    );
    for d in &report.depth {
        println!(
            "  k = {:>3}: distortion {:.5}  rate {:.5}  −ELBO {:.5} nats/dim",
            d.k, d.distortion_nats_per_dim, d.rate_nats_per_dim, d.elbo_nats_per_dim
        );
    }
    let plots = write_plots(&report, std::path::Path::new(&a.out))?;
    let plots: Vec<String> = plots.iter().map(|p| p.display().to_string()).collect();
    println!("wrote {path} and {}", plots.join(", "));
    Ok(ExitCode::SUCCESS)
}

fn create_dir(dir: &str) -> vdvae::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.to_string(),
        source: e,
    })
}
