//! The most a config may ask for, checked before anything is allocated: a
//! block string of 10^11 blocks or an image of 65536² pixels would otherwise
//! abort on a terabyte allocation, and building a model costs the square of
//! its block count. Each limit is several times the largest official model's.

use super::config::HParams;
use crate::error::{Error, Result};

/// Blocks in one block string (`enc_blocks`, `dec_blocks`), repeats counted:
/// the official models have at most 75.
pub const MAX_BLOCKS: usize = 1000;
/// `image_size`: the official models go to 1024.
pub const MAX_IMAGE_SIZE: usize = 4096;
/// Channels of any layer: `width`, each width of `custom_width_str`, the
/// bottleneck, `zdim`, `ladder_hidden`, `ladder_latent` (official: 512 at most).
pub const MAX_WIDTH: usize = 4096;
/// Elements of one image's activation at one resolution (resolution² ×
/// width): ffhq1024's largest is 2^24.
pub const MAX_ACTIVATION: usize = 1 << 26;
/// `num_mixtures` (official: 10 at most).
pub const MAX_MIXTURES: usize = 1024;
/// `ladder_mlp_layers` per block (the Ladder VAE paper: 2).
pub const MAX_MLP_LAYERS: usize = 64;
/// `n_batch` (official: 32 at most).
pub const MAX_BATCH: usize = 1 << 16;

fn too_large(what: &str, value: impl std::fmt::Display, limit: usize) -> Error {
    Error::Input(format!("{what} = {value} is too large: the limit is {limit}"))
}

fn at_most(what: &str, value: usize, limit: usize) -> Result<()> {
    if value > limit {
        return Err(too_large(what, value, limit));
    }
    Ok(())
}

/// The sizes a config states directly; run before its block strings are read.
pub fn check_sizes(h: &HParams) -> Result<()> {
    at_most("image_size", h.image_size, MAX_IMAGE_SIZE)?;
    at_most("n_batch", h.n_batch, MAX_BATCH)?;
    at_most("num_mixtures", h.num_mixtures, MAX_MIXTURES)?;
    at_most("ladder_mlp_layers", h.ladder_mlp_layers, MAX_MLP_LAYERS)?;
    at_most("width", h.width, MAX_WIDTH)?;
    at_most("zdim", h.zdim, MAX_WIDTH)?;
    for (key, widths) in [("ladder_hidden", &h.ladder_hidden), ("ladder_latent", &h.ladder_latent)] {
        at_most(&format!("the number of {key} levels"), widths.len(), MAX_BLOCKS)?;
        for &w in widths {
            at_most(&format!("a {key} width"), w, MAX_WIDTH)?;
        }
    }
    let b = h.bottleneck_multiple;
    if !(b.is_finite() && b > 0.0) {
        return Err(Error::Input(format!(
            "bottleneck_multiple = {b} is out of range: it must be a finite number > 0"
        )));
    }
    Ok(())
}

/// The widths at each resolution of the VDVAE's blocks (custom, bottleneck)
/// and one image's activation there; run once the block strings are read.
pub fn check_resolutions(h: &HParams, resolutions: &[usize]) -> Result<()> {
    for &r in resolutions {
        let width = h.width_at(r);
        at_most(
            &format!("the width at resolution {r} (custom_width_str)"),
            width,
            MAX_WIDTH,
        )?;
        let mid = h.mid_width_at(r);
        if mid > MAX_WIDTH {
            return Err(too_large(
                &format!(
                    "the bottleneck width at resolution {r} (width {width} × bottleneck_multiple {})",
                    h.bottleneck_multiple
                ),
                mid,
                MAX_WIDTH,
            ));
        }
        let elements = r * r * width.max(h.zdim);
        if elements > MAX_ACTIVATION {
            return Err(Error::Input(format!(
                "one image's activation at resolution {r} holds {r}x{r}x{} = {elements} values: too large, \
                 the limit is {MAX_ACTIVATION}; lower image_size or the width there",
                width.max(h.zdim)
            )));
        }
    }
    Ok(())
}

/// The MLP Ladder VAE's first layer: one weight per pixel value and unit of
/// `ladder_hidden[0]`, the largest matrix such a model has.
pub fn check_mlp_input(h: &HParams) -> Result<()> {
    let inputs = h.image_size * h.image_size * h.image_channels;
    let first = h.ladder_hidden.first().copied().unwrap_or(0);
    let weights = inputs * first;
    if weights > MAX_ACTIVATION {
        return Err(Error::Input(format!(
            "the MLP Ladder VAE's first layer has {inputs} inputs (image_size {} squared × image_channels {}) \
             × ladder_hidden[0] {first} = {weights} weights: too large, the limit is {MAX_ACTIVATION}",
            h.image_size, h.image_channels
        )));
    }
    Ok(())
}

/// Elements of one activation of a whole pass (batch × one image's largest):
/// 16 GiB of f32, past any adapter's memory, and the size of the zero state a
/// decoder that starts at a fine resolution is given on the host.
pub const MAX_PASS_ACTIVATION: usize = 1 << 32;

/// A pass of `batch` images: its largest activation within [`MAX_PASS_ACTIVATION`].
pub fn check_batch(h: &HParams, batch: usize) -> Result<()> {
    let pixels = h.image_size * h.image_size;
    let (per_image, at) = if h.is_mlp() {
        let widest = h
            .ladder_hidden
            .iter()
            .chain(&h.ladder_latent)
            .max()
            .copied()
            .unwrap_or(0);
        (
            widest.max(pixels * h.image_channels),
            "the input or a layer".to_string(),
        )
    } else {
        let mut resolutions: Vec<usize> = h.encoder_layers()?.iter().map(|l| l.res).collect();
        resolutions.sort_unstable();
        resolutions.dedup();
        resolutions
            .into_iter()
            .map(|r| (r * r * h.width_at(r).max(h.zdim), format!("resolution {r}")))
            .max_by_key(|(n, _)| *n)
            .unwrap_or((0, String::new()))
    };
    let values = batch.saturating_mul(per_image);
    if values > MAX_PASS_ACTIVATION {
        return Err(Error::Input(format!(
            "a batch of {batch} images needs {values} values in its largest activation ({per_image} per image at \
             {at}): too large, the limit is {MAX_PASS_ACTIVATION}; use a smaller batch"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(edit: impl FnOnce(&mut HParams)) -> String {
        let mut h = crate::model::preset("mnist-tiny").unwrap();
        edit(&mut h);
        h.validate().unwrap_err().to_string()
    }

    #[test]
    fn sizes_over_a_limit_name_the_key_value_and_limit() {
        let e = err_of(|h| h.image_size = 65536);
        assert!(e.contains("image_size = 65536 is too large: the limit is 4096"), "{e}");
        let e = err_of(|h| h.width = 100_000);
        assert!(e.contains("width = 100000 is too large: the limit is 4096"), "{e}");
        let e = err_of(|h| h.zdim = 5000);
        assert!(e.contains("zdim = 5000"), "{e}");
        let e = err_of(|h| h.n_batch = 1 << 20);
        assert!(e.contains("n_batch = 1048576 is too large"), "{e}");
        let e = err_of(|h| h.custom_width_str = "16:100000".into());
        assert!(
            e.contains("the width at resolution 16 (custom_width_str) = 100000 is too large"),
            "{e}"
        );
        let e = err_of(|h| h.bottleneck_multiple = 1000.0);
        assert!(
            e.contains("bottleneck width at resolution") && e.contains("bottleneck_multiple 1000"),
            "{e}"
        );
        assert!(err_of(|h| h.bottleneck_multiple = f64::NAN).contains("bottleneck_multiple = NaN"));
        let e = err_of(|h| h.ladder_hidden = vec![5000; 5]);
        assert!(e.contains("a ladder_hidden width = 5000 is too large"), "{e}");
    }

    #[test]
    fn an_mlp_first_layer_over_the_limit_names_its_sizes() {
        let mut h = crate::model::preset("ladder-mnist").unwrap();
        h.image_size = 4096;
        let e = h.validate().unwrap_err().to_string();
        assert!(
            e.contains("16777216 inputs") && e.contains("ladder_hidden[0] 512"),
            "{e}"
        );
    }

    #[test]
    fn a_pass_over_the_limit_names_the_batch_and_the_activation() {
        let mut h = crate::model::preset("mnist-tiny").unwrap();
        check_batch(&h, 65536).unwrap();
        h.width = 4096;
        let e = check_batch(&h, 65536).unwrap_err().to_string();
        assert!(
            e.contains("a batch of 65536 images") && e.contains("at resolution 32"),
            "{e}"
        );
        assert!(e.contains("the limit is 4294967296; use a smaller batch"), "{e}");
        let e = crate::model::assemble::build_model(&h, 65536, crate::graph::Sampling::Posterior)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("a batch of 65536 images"), "{e}");
    }

    #[test]
    fn a_block_string_over_the_limit_fails_before_allocating() {
        let e = err_of(|h| h.enc_blocks = "32x99999999999,32d2,16x1,16d2,8x1,8d2,4x1,4d4,1x1".into());
        assert!(
            e.contains("enc_blocks") && e.contains("99999999999") && e.contains("1000"),
            "{e}"
        );
        // Under the limit item by item, over it in all.
        let e = err_of(|h| h.dec_blocks = format!("1x1,4m1,4x600,4x600,{}", "8m4,8x1,16m8,16x1,32m16,32x1"));
        assert!(e.contains("dec_blocks") && e.contains("1000"), "{e}");
    }

    #[test]
    fn one_image_activation_over_the_limit_names_its_resolution() {
        let e = err_of(|h| {
            h.image_size = 4096;
            h.width = 16;
            h.custom_width_str = String::new();
            h.enc_blocks = "4096x1,4096d4096,1x1".into();
            h.dec_blocks = "1x1,4096m1".into();
        });
        assert!(e.contains("resolution 4096") && e.contains("limit is 67108864"), "{e}");
    }
}
