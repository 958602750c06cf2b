//! `vdvae diagnose`: per-level KL, active units, mutual information and
//! distortion by depth, as report.json and PNG plots.

use std::process::ExitCode;

use super::args::CheckpointOnData;
use super::create_dir;
use vdvae::diagnose::analyse::diagnose;
use vdvae::diagnose::plots::write_plots;
use vdvae::gpu::AdapterChoice;

#[derive(clap::Args)]
pub struct DiagnoseArgs {
    #[command(flatten)]
    base: CheckpointOnData,
    /// Only the first N images of the file (each is run levels + 1 times)
    #[arg(long, value_name = "N", default_value_t = 1000)]
    limit: usize,
    /// Images per forward pass [default: the config's n_batch]
    #[arg(long, value_parser = super::args::batch_size)]
    batch: Option<usize>,
    /// Prior temperature of the levels below k in the distortion by depth
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    temperature: f32,
    /// Output folder: report.json and the plots
    #[arg(long, default_value = "diagnose", value_parser = super::args::non_empty_path)]
    out: String,
}

pub fn run(choice: &AdapterChoice, a: &DiagnoseArgs) -> vdvae::Result<ExitCode> {
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
    println!(
        "MI: I(x; z) estimated over batches of B = {} images ({} of them), at most ln B = {:.4} nats",
        report.mutual_info_batch, report.mutual_info_images, report.mutual_info_cap_nats
    );
    println!("level  res   units    KL nats/image   MI nats  share   active");
    for l in &report.levels {
        println!(
            "{:>5} {:>4} {:>7} {:>16.4} {:>9.4} {:>6.1}% {:>6} ({:.0}%)",
            l.level,
            l.resolution,
            l.units,
            l.kl_nats_per_image,
            l.mutual_info_nats,
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
