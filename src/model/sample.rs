//! `vdvae sample`: unconditional samples of a checkpoint, as a PNG grid.

use super::config::{HParams, Likelihood};
use super::evaluate::Device;
use super::vdvae::{build_sampler, param_values};
use crate::checkpoint::NamedTensors;
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::graph::cpu::{self, Noise};
use crate::graph::gpu::GpuGraph;
use crate::ops::dmol::samples_to_u8;

/// `n` samples at `temperature` as uint8 images (official rounding: truncate
/// `(x + 1) · 127.5`; a Bernoulli model's are its pixel probabilities · 255).
pub fn sample_images(
    device: &Device,
    h: &HParams,
    weights: &NamedTensors,
    n: usize,
    temperature: f32,
    seed: u64,
) -> Result<ImageSet> {
    let s = build_sampler(h, n, temperature)?;
    let mut values = param_values(&s.graph, &s.params, weights, "checkpoint")?;
    let x = match device {
        Device::Gpu(ctx) => {
            let gpu = GpuGraph::build(ctx, &s.graph, seed, None)?;
            gpu.write_values(ctx, &s.graph, &values)?;
            gpu.run(ctx, 0)?;
            gpu.read(ctx, s.samples)?
        }
        Device::Cpu => {
            cpu::run(&s.graph, &mut values, Noise { seed, step: 0 })?;
            values[s.samples].take().unwrap_or_default()
        }
    };
    let (size, c) = (h.image_size, h.image_channels);
    let pixels = match s.likelihood {
        Likelihood::Dmol => samples_to_u8(&x),
        // Bernoulli means: the probability of a white pixel, as a grey level.
        Likelihood::Bernoulli => x.iter().map(|&p| (p.clamp(0.0, 1.0) * 255.0).round() as u8).collect(),
    };
    Ok(ImageSet {
        n,
        h: size,
        w: size,
        c,
        pixels,
    })
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
