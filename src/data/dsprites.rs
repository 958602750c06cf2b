//! dSprites-like images (Matthey et al., 2017) drawn by our own renderer:
//! one white shape on black, its five factors drawn uniformly over dSprites'
//! grid (shape, scale, orientation, x, y). The grid is dSprites'; the pixels
//! are not identical to the original files.

use std::f64::consts::PI;

use super::{ImageSet, IndexTable};
use crate::error::{Error, Result};

/// One generative factor: its name, its values' labels and how many there are.
#[derive(Clone, Copy, Debug)]
pub struct Factor {
    pub name: &'static str,
    pub size: usize,
}

/// The factors in the order of `factors.npy`'s columns.
pub const FACTORS: [Factor; 5] = [
    Factor { name: "shape", size: 3 },
    Factor { name: "scale", size: 6 },
    Factor {
        name: "orientation",
        size: 40,
    },
    Factor { name: "x", size: 32 },
    Factor { name: "y", size: 32 },
];

/// The shapes, in the order of the shape factor's indices.
pub const SHAPES: [&str; 3] = ["square", "ellipse", "heart"];

/// The value of factor `f`'s index `i`: scale 0.5..=1 in 6 steps, orientation
/// i·2π/40 (radians, so 2π itself, which repeats 0, is not a value), x and y
/// 0..=1 in 32 steps; the shape's value is its index.
pub fn factor_value(f: usize, i: usize) -> f64 {
    match f {
        0 => i as f64,
        1 => 0.5 + 0.5 * i as f64 / 5.0,
        2 => i as f64 * 2.0 * PI / 40.0,
        _ => i as f64 / 31.0,
    }
}

/// The shape's half-size at scale 1, as a fraction of the image side: a
/// rotated square at the extreme positions stays inside the image.
const HALF_SIZE: f64 = 0.125;
/// Shape centres run over this middle share of the image, as dSprites' do.
const POSITION_SPAN: (f64, f64) = (0.2, 0.8);

/// Whether the point (u, v), in the shape's own frame (its half-size 1, v
/// pointing down the image), lies inside shape `shape`.
fn inside(shape: usize, u: f64, v: f64) -> bool {
    match shape {
        0 => u.abs() <= 1.0 && v.abs() <= 1.0,
        // Twice as long as it is wide.
        1 => u * u + 4.0 * v * v <= 1.0,
        _ => {
            // The heart curve (x² + y² − 1)³ ≤ x² y³ spans x in ±1.14 and y in
            // −1..1.24: scaled by 1.1 and its middle moved to the centre, tip down.
            let x = u * 1.1;
            let y = -v * 1.1 + 0.12;
            let r = x * x + y * y - 1.0;
            r * r * r <= x * x * y * y * y
        }
    }
}

/// Draws one image of side `size` with the factor indices `f` into `out`
/// (`size`², 0 or 255): a pixel is white when its centre lies inside the shape.
pub fn render(f: &[usize; 5], size: usize, out: &mut [u8]) {
    let s = size as f64;
    let r = HALF_SIZE * s * factor_value(1, f[1]);
    let (sin, cos) = factor_value(2, f[2]).sin_cos();
    let (lo, hi) = POSITION_SPAN;
    let cx = s * (lo + (hi - lo) * factor_value(3, f[3]));
    let cy = s * (lo + (hi - lo) * factor_value(4, f[4]));
    for row in 0..size {
        for col in 0..size {
            let (dx, dy) = (col as f64 + 0.5 - cx, row as f64 + 0.5 - cy);
            // Into the shape's frame: rotate back by the orientation, divide by the size.
            let u = (dx * cos + dy * sin) / r;
            let v = (-dx * sin + dy * cos) / r;
            out[row * size + col] = if inside(f[0], u, v) { 255 } else { 0 };
        }
    }
}

/// SplitMix64 (Steele et al., 2014): small, seedable, and the same stream on
/// every platform, so a seed names one dataset.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..k (Lemire's multiply-shift; its bias is below 2^-58 for k < 64).
    pub fn below(&mut self, k: usize) -> usize {
        ((self.next_u64() as u128 * k as u128) >> 64) as usize
    }
}

/// Generated images and the factor indices each was drawn with.
pub struct Dsprites {
    /// [N, size, size] grey, 0 or 255.
    pub images: ImageSet,
    /// [N, 5], columns as [`FACTORS`].
    pub factors: IndexTable,
}

/// `n` images of side `size`, each factor drawn uniformly and independently
/// over its grid from `seed`.
pub fn generate(n: usize, size: usize, seed: u64) -> Result<Dsprites> {
    if n == 0 || size < 8 {
        return Err(Error::Input(format!(
            "dSprites: {n} images of {size}x{size}: give at least 1 image of at least 8x8"
        )));
    }
    let mut rng = SplitMix64::new(seed);
    let mut pixels = vec![0u8; n * size * size];
    let mut values = Vec::with_capacity(n * FACTORS.len());
    for image in pixels.chunks_exact_mut(size * size) {
        let f = FACTORS.map(|factor| rng.below(factor.size));
        render(&f, size, image);
        values.extend_from_slice(&f);
    }
    Ok(Dsprites {
        images: ImageSet {
            n,
            h: size,
            w: size,
            c: 1,
            pixels,
        },
        factors: IndexTable {
            rows: n,
            cols: FACTORS.len(),
            values,
        },
    })
}

/// `factors.json`: the factors' names, sizes and values, so the indices in
/// `factors.npy` can be read without this code.
pub fn factors_json(n: usize, size: usize, seed: u64) -> serde_json::Value {
    let factors: Vec<serde_json::Value> = FACTORS
        .iter()
        .enumerate()
        .map(|(f, factor)| {
            let values: Vec<serde_json::Value> = (0..factor.size)
                .map(|i| match f {
                    0 => SHAPES[i].into(),
                    _ => factor_value(f, i).into(),
                })
                .collect();
            serde_json::json!({"name": factor.name, "size": factor.size, "values": values})
        })
        .collect();
    serde_json::json!({
        "factors": factors,
        "images": n,
        "image_size": size,
        "seed": seed,
        "note": "factors.npy holds each image's index into every factor's values; \
                 orientation in radians, x and y as fractions of the centre's range",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn white(image: &[u8]) -> usize {
        image.iter().filter(|&&p| p == 255).count()
    }

    #[test]
    fn a_seed_names_one_dataset_and_every_grid_value_is_drawn() {
        let a = generate(3000, 32, 7).unwrap();
        let b = generate(3000, 32, 7).unwrap();
        assert_eq!(a.images, b.images);
        assert_eq!(a.factors, b.factors);
        assert_ne!(generate(3000, 32, 8).unwrap().factors, a.factors);
        for (f, factor) in FACTORS.iter().enumerate() {
            let mut seen = vec![false; factor.size];
            for row in 0..a.factors.rows {
                seen[a.factors.values[row * 5 + f]] = true;
            }
            assert!(seen.iter().all(|&s| s), "{}: a value never drawn", factor.name);
        }
        assert!(a.images.pixels.iter().all(|&p| p == 0 || p == 255));
    }

    #[test]
    fn every_shape_shows_and_its_area_grows_with_scale() {
        for size in [32, 64] {
            let mut image = vec![0u8; size * size];
            for (shape, name) in SHAPES.iter().enumerate() {
                let mut areas = Vec::new();
                for scale in [0, 5] {
                    render(&[shape, scale, 3, 16, 16], size, &mut image);
                    areas.push(white(&image));
                }
                assert!(areas[0] > 0, "{name} at scale 0.5 on {size}x{size} is empty");
                // Area goes with scale²: 4x from 0.5 to 1, give or take the pixel grid.
                let ratio = areas[1] as f64 / areas[0] as f64;
                assert!((2.5..6.0).contains(&ratio), "{name}: area ratio {ratio}");
            }
        }
    }

    #[test]
    fn position_moves_the_shape_and_a_square_turned_a_quarter_is_the_same() {
        let size = 64;
        let centroid = |f: [usize; 5]| {
            let mut image = vec![0u8; size * size];
            render(&f, size, &mut image);
            let (mut sx, mut sy, mut k) = (0.0, 0.0, 0.0);
            for (i, &p) in image.iter().enumerate() {
                if p == 255 {
                    sx += (i % size) as f64;
                    sy += (i / size) as f64;
                    k += 1.0;
                }
            }
            (sx / k, sy / k, image)
        };
        let (x0, y0, _) = centroid([0, 5, 0, 0, 31]);
        let (x1, y1, _) = centroid([0, 5, 0, 31, 0]);
        assert!(x1 - x0 > 0.5 * size as f64 && y0 - y1 > 0.5 * size as f64);
        // 10 of 40 steps is a quarter turn: a square's pixels come back.
        let (_, _, a) = centroid([0, 5, 0, 16, 16]);
        let (_, _, b) = centroid([0, 5, 10, 16, 16]);
        let differ = a.iter().zip(&b).filter(|(p, q)| p != q).count();
        assert!(differ <= 4, "{differ} pixels differ");
        // ...but a heart's do not.
        let (_, _, a) = centroid([2, 5, 0, 16, 16]);
        let (_, _, b) = centroid([2, 5, 10, 16, 16]);
        assert!(a.iter().zip(&b).filter(|(p, q)| p != q).count() > 20);
    }
}
