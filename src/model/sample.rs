//! `vdvae sample`: unconditional samples of a checkpoint, as a PNG grid.

use super::conditional::Conditional;
use super::config::HParams;
use super::evaluate::Device;
use super::levels::posterior_then_prior;
use super::preprocess::Normalization;
use crate::checkpoint::NamedTensors;
use crate::data::ImageSet;
use crate::error::{Error, Result};

/// The top levels a sample takes from a reference image's posterior mean.
pub struct FixedLevels<'a> {
    /// One image (fitted to the model; binarized for a Bernoulli model, see
    /// [`fixed_binary_images`](super::preprocess::fixed_binary_images)).
    pub reference: &'a ImageSet,
    /// How many levels, from the top.
    pub levels: usize,
    pub norm: Normalization,
}

/// `n` samples as uint8 images: each level from its prior at its temperature
/// (`temperatures`, top first), or the top levels fixed to a reference
/// image's posterior mean. DMoL samples use the official rounding (truncate
/// `(x + 1) · 127.5`); a Bernoulli model's are its pixel probabilities · 255.
pub fn sample_images(
    device: Device<'_>,
    h: &HParams,
    weights: &NamedTensors,
    n: usize,
    temperatures: &[f32],
    seed: u64,
    fixed: Option<&FixedLevels<'_>>,
) -> Result<ImageSet> {
    if n == 0 {
        return Err(Error::Input("the number of samples must be at least 1".into()));
    }
    let k = fixed.map_or(0, |f| f.levels);
    let sources = posterior_then_prior(h.latent_levels()?, k, temperatures)?;
    let mut c = Conditional::new(device, h, weights, n, &sources, false, seed)?;
    if let Some(f) = fixed.filter(|f| f.levels > 0) {
        if f.reference.n != 1 {
            return Err(Error::Input("--reference names one image".into()));
        }
        c.set_images(&f.reference.select(&vec![0; n])?, f.norm)?;
    }
    c.run(0)?;
    c.images()
}

/// Writes the sets as the rows of one PNG grid (each set one row, all the same length), atomically.
pub fn write_rows_png(path: &str, rows: &[ImageSet]) -> Result<()> {
    let cols = rows.first().map_or(1, |r| r.n);
    if rows.iter().any(|r| r.n != cols) {
        return Err(Error::Input("every row of the picture must hold as many images".into()));
    }
    write_grid_png(path, &ImageSet::concat(rows)?, cols)
}

/// Writes the images as one PNG grid (`cols` wide, 2-pixel white gutters), atomically.
pub fn write_grid_png(path: &str, images: &ImageSet, cols: usize) -> Result<()> {
    let cols = cols.clamp(1, images.n.max(1));
    let rows = images.n.div_ceil(cols);
    let gap = 2;
    let (w, h) = (cols * (images.w + gap) + gap, rows * (images.h + gap) + gap);
    let c = images.c;
    let mut canvas = vec![255u8; w * h * c];
    for i in 0..images.n {
        let (gx, gy) = (gap + (i % cols) * (images.w + gap), gap + (i / cols) * (images.h + gap));
        for y in 0..images.h {
            let src = &images.image(i)[y * images.w * c..(y + 1) * images.w * c];
            let dst = ((gy + y) * w + gx) * c;
            canvas[dst..dst + src.len()].copy_from_slice(src);
        }
    }
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, w as u32, h as u32);
        encoder.set_color(if c == 1 {
            png::ColorType::Grayscale
        } else {
            png::ColorType::Rgb
        });
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| Error::Input(format!("{path}: {e}")))?;
        writer
            .write_image_data(&canvas)
            .map_err(|e| Error::Input(format!("{path}: {e}")))?;
    }
    crate::checkpoint::write_atomically(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_png_has_gutters_and_every_image() {
        let images = ImageSet {
            n: 3,
            h: 2,
            w: 2,
            c: 1,
            pixels: vec![7; 12],
        };
        let path = std::env::temp_dir().join(format!("vdvae-grid-{}.png", std::process::id()));
        let path = path.to_string_lossy().into_owned();
        write_grid_png(&path, &images, 2).unwrap();
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (2 * 4 + 2, 2 * 4 + 2));
        assert_eq!(buf.iter().filter(|&&p| p == 7).count(), 12);
        std::fs::remove_file(&path).unwrap();
    }
}
