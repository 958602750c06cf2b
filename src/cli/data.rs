//! `vdvae data images DIR --size S --out X.npy`: a folder of PNG/JPEG files
//! converted once, as `--format images` would, to a `.npy` that `--format npy` reads.
//! `vdvae data dsprites --out DIR`: generated dSprites-like images with their
//! factors, for `vdvae disentangle`.

use std::process::ExitCode;

use vdvae::data::{dsprites, index_npy_bytes, npy_bytes, read_image_folder, FolderOptions};

#[derive(clap::Args)]
pub struct DataArgs {
    #[command(subcommand)]
    action: DataAction,
}

#[derive(clap::Subcommand)]
enum DataAction {
    /// Every PNG and JPEG under DIR (recursively, sorted by path), centre-cropped to a
    /// square, resized to --size and converted to grey or RGB, written as a uint8 .npy
    Images(ImagesArgs),
    /// dSprites-like images drawn uniformly over dSprites' factor grid (shape: square, ellipse,
    /// heart; 6 scales in 0.5..1; 40 orientations in 0..2π; 32 x and 32 y positions), by our own
    /// renderer (not pixel-identical to dSprites): DIR/images.npy (uint8 0/255 [N, S, S]),
    /// DIR/factors.npy (int64 [N, 5] factor indices) and DIR/factors.json (names, sizes, values)
    Dsprites(DspritesArgs),
}

#[derive(clap::Args)]
struct DspritesArgs {
    /// The folder to write images.npy, factors.npy and factors.json into (created if missing)
    #[arg(long, value_parser = super::args::non_empty_path)]
    out: String,
    /// Side of the images in pixels: 64 as dSprites, or 32 for quick models
    #[arg(long, default_value_t = 64, value_parser = dsprites_size)]
    size: usize,
    /// How many images
    #[arg(long, default_value_t = 100_000, value_parser = super::args::at_least_one)]
    n: usize,
    /// Seed of the factor draws: the same seed writes the same files
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(clap::Args)]
struct ImagesArgs {
    /// The folder of images
    dir: String,
    /// Side of the square images written, in pixels (a model's image_size)
    #[arg(long, value_parser = super::args::at_least_one)]
    size: usize,
    /// 1 for grey, 3 for RGB (a model's image_channels)
    #[arg(long, default_value_t = 3, value_parser = channels)]
    channels: usize,
    /// The .npy file to write ([N, S, S] for grey, [N, S, S, 3] for RGB)
    #[arg(long, value_parser = super::args::non_empty_path)]
    out: String,
    /// A file that cannot be decoded is an error, not a warning and a skipped file
    #[arg(long)]
    strict: bool,
}

pub fn run(a: &DataArgs) -> vdvae::Result<ExitCode> {
    match &a.action {
        DataAction::Images(a) => images(a),
        DataAction::Dsprites(a) => sprites(a),
    }
}

fn sprites(a: &DspritesArgs) -> vdvae::Result<ExitCode> {
    let set = dsprites::generate(a.n, a.size, a.seed)?;
    super::create_dir(&a.out)?;
    let dir = std::path::Path::new(&a.out);
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let json = dsprites::factors_json(a.n, a.size, a.seed);
    vdvae::checkpoint::write_atomically(&path("images.npy"), &npy_bytes(&set.images))?;
    vdvae::checkpoint::write_atomically(&path("factors.npy"), &index_npy_bytes(&set.factors))?;
    let text = serde_json::to_string_pretty(&json).expect("a JSON value prints");
    vdvae::checkpoint::write_atomically(&path("factors.json"), text.as_bytes())?;
    println!(
        "wrote {} dSprites-like images of {}x{} to {} (images.npy, factors.npy, factors.json)",
        a.n, a.size, a.size, a.out
    );
    Ok(ExitCode::SUCCESS)
}

fn images(a: &ImagesArgs) -> vdvae::Result<ExitCode> {
    let options = FolderOptions {
        size: a.size,
        channels: a.channels,
        strict: a.strict,
        cache_dir: None, // converted once: nothing to reuse
    };
    let folder = read_image_folder(&a.dir, &options)?;
    if let Some(parent) = std::path::Path::new(&a.out)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        super::create_dir(&parent.to_string_lossy())?;
    }
    vdvae::checkpoint::write_atomically(&a.out, &npy_bytes(&folder.images))?;
    let images = &folder.images;
    println!(
        "wrote {} images of {}x{}x{} to {}{}",
        images.n,
        images.h,
        images.w,
        images.c,
        a.out,
        match folder.skipped.len() {
            0 => String::new(),
            k => format!(" ({k} unreadable files skipped)"),
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn channels(s: &str) -> Result<usize, String> {
    match s.trim() {
        "1" => Ok(1),
        "3" => Ok(3),
        _ => Err(format!("{s:?}: give 1 (grey) or 3 (RGB)")),
    }
}

fn dsprites_size(s: &str) -> Result<usize, String> {
    match s.trim() {
        "64" => Ok(64),
        "32" => Ok(32),
        _ => Err(format!("{s:?}: give 64 (dSprites' size) or 32")),
    }
}
