//! `vdvae interpolate`: strips from one image to another, one level's latent
//! moving between the two posterior means.

use std::process::ExitCode;

use super::args::{device_of, CheckpointOnData};
use super::create_dir;
use vdvae::diagnose::interpolate::{interpolate, Interpolation};
use vdvae::gpu::AdapterChoice;
use vdvae::model::sample::write_rows_png;
use vdvae::Error;

#[derive(clap::Args)]
pub struct InterpolateArgs {
    #[command(flatten)]
    base: CheckpointOnData,
    /// The level whose latent is interpolated, from the top (0 = the coarsest)
    #[arg(long)]
    level: usize,
    /// Images in each strip, both ends included
    #[arg(long, default_value_t = 8)]
    steps: usize,
    /// Two image indices in --data; repeat the flag for more strips
    #[arg(long = "pair", value_name = "A,B", value_delimiter = ',', num_args = 1, action = clap::ArgAction::Append, default_value = "0,1")]
    pairs: Vec<usize>,
    /// Prior temperature of the levels below --level (0: the prior means)
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    temperature: f32,
    /// Output folder: one PNG strip per pair, `level<L>-<A>-<B>.png` (written atomically)
    #[arg(long, default_value = "interpolations", value_parser = super::args::non_empty_path)]
    out: String,
}

pub fn run(choice: &AdapterChoice, a: &InterpolateArgs) -> vdvae::Result<ExitCode> {
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
