//! `vdvae data images DIR --size S --out X.npy`: a folder of PNG/JPEG files
//! converted once, as `--format images` would, to a `.npy` that `--format npy` reads.

use std::process::ExitCode;

use vdvae::data::{npy_bytes, read_image_folder, FolderOptions};

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
    let DataAction::Images(a) = &a.action;
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
