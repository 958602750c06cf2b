//! Fixed binarization of evaluation data: image j of a dataset always gets the
//! same binary pixels, whatever batch it is read in and whatever the step, so
//! test NLLs of binarized data compare across runs and batch sizes (training
//! binarizes dynamically instead, with a fresh draw each step:
//! `Graph::binarize`).

use super::reference::uniform;
use crate::kernels::rng::RngKey;

/// The tensor word of the keys [`binarize_fixed`] draws from, far above the
/// tensor numbers models give their noisy ops.
pub const FIXED_BINARIZATION_TENSOR: u32 = 0xB1A0_0000;

/// Binarizes consecutive images of `per_image` uint8 pixels, the first being
/// image `first_image` of its dataset: pixel e of image j becomes 1.0 where
/// `u < pixel / 255` (in f32) and 0.0 otherwise, u the uniform
/// `reference::uniform(key_j, e)` with `key_j = RngKey::new(seed,
/// j, FIXED_BINARIZATION_TENSOR)` (the image index stands in the key's step).
/// Pixels 0 and 255 give 0 and 1. A trailing partial image is binarized too.
pub fn binarize_fixed(pixels: &[u8], per_image: usize, first_image: usize, seed: u64) -> Vec<f32> {
    assert!(per_image > 0, "binarize_fixed: per_image must be positive");
    pixels
        .chunks(per_image)
        .enumerate()
        .flat_map(|(k, image)| {
            let key = RngKey::new(seed, (first_image + k) as u64, FIXED_BINARIZATION_TENSOR);
            image
                .iter()
                .enumerate()
                .map(move |(e, &v)| f32::from(u8::from((uniform(&key, e) as f32) < v as f32 / 255.0)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_binarizes_alike_in_any_batch() {
        let pixels: Vec<u8> = (0..5 * 30).map(|i| (i * 37 % 256) as u8).collect();
        let all = binarize_fixed(&pixels, 30, 10, 7);
        // Images 12..14 read as a batch of their own, starting at image 12.
        assert_eq!(binarize_fixed(&pixels[60..120], 30, 12, 7), all[60..120]);
        assert!(all.iter().all(|&x| x == 0.0 || x == 1.0));
        // Another seed or another place in the dataset draws other values.
        assert_ne!(binarize_fixed(&pixels, 30, 10, 8), all);
        assert_ne!(binarize_fixed(&pixels, 30, 11, 7), all);
    }

    #[test]
    fn black_and_white_pixels_are_kept_and_grey_is_drawn_at_its_level() {
        let n = 20_000;
        let mut pixels = vec![0u8, 255];
        pixels.extend(std::iter::repeat_n(64u8, n));
        let x = binarize_fixed(&pixels, pixels.len(), 0, 3);
        assert_eq!(x[..2], [0.0, 1.0]);
        let ones = x[2..].iter().sum::<f32>() as f64 / n as f64;
        // 64/255 ≈ 0.251; the standard error is about 0.003.
        assert!((ones - 64.0 / 255.0).abs() < 0.015, "fraction of ones {ones}");
    }
}
