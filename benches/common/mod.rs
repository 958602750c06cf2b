//! What the whole-step benches share: the model argument (`PRESET | --config
//! FILE [BATCH]`) and the images a step trains on.

use vdvae::data::{bundled_mnist, ImageSet};
use vdvae::model::evaluate::fit_images;
use vdvae::model::preprocess::{Normalization, CIFAR10, MNIST};
use vdvae::model::{preset, HParams};

/// The bench's command line, without cargo's `--bench`.
pub fn bench_args() -> Vec<String> {
    std::env::args().skip(1).filter(|a| a != "--bench").collect()
}

/// The model a bench runs: a preset name or a config file, and the batch.
pub struct ModelArg {
    /// The preset name or the config's path, for printing.
    pub model: String,
    pub h: HParams,
    pub batch: usize,
}

/// The value after `flag`, if the flag is given.
pub fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a String> {
    args.iter()
        .position(|a| a == flag)
        .map(|i| args.get(i + 1).unwrap_or_else(|| panic!("{flag} takes a value")))
}

/// Reads `(PRESET | --config FILE) [BATCH]`; `valued` names the other flags
/// that take a value, so their values are not read as positionals.
pub fn model_arg(args: &[String], valued: &[&str], default_batch: usize) -> ModelArg {
    let config = flag_value(args, "--config");
    let takes_value = |i: usize| i > 0 && (args[i - 1] == "--config" || valued.contains(&args[i - 1].as_str()));
    let positional: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|&(i, a)| !a.starts_with("--") && !takes_value(i))
        .map(|(_, a)| a)
        .collect();
    let (model, h, rest) = match config {
        Some(path) => {
            let h = HParams::from_json_file(path).unwrap_or_else(|e| panic!("{e}"));
            (path.clone(), h, &positional[..])
        }
        None => {
            let name = positional.first().map_or("mnist", |s| s.as_str());
            let h = preset(name).unwrap_or_else(|e| panic!("{e}"));
            (name.to_string(), h, positional.get(1..).unwrap_or(&[]))
        }
    };
    let batch = rest
        .first()
        .map_or(default_batch, |s| s.parse().expect("BATCH is a number"));
    ModelArg { model, h, batch }
}

/// Images to train on: the bundled MNIST digits for one-channel models,
/// seeded random images of the model's size otherwise (speed and memory do
/// not depend on pixel values).
pub fn training_images(h: &HParams, batch: usize) -> (ImageSet, Normalization) {
    if h.image_channels == 1 {
        (fit_images(h, bundled_mnist()).unwrap(), MNIST)
    } else {
        (random_images(h, 4 * batch), CIFAR10)
    }
}

/// Seeded random uint8 images of the model's size.
fn random_images(h: &HParams, n: usize) -> ImageSet {
    let (s, c) = (h.image_size, h.image_channels);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let pixels = (0..n * s * s * c)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect();
    ImageSet {
        n,
        h: s,
        w: s,
        c,
        pixels,
    }
}

/// The `step`-th batch of `n` images, wrapping around the set.
pub fn batch_of(images: &ImageSet, step: usize, n: usize) -> ImageSet {
    let len = images.image_len();
    let start = (step * n) % (images.n - n + 1);
    ImageSet {
        n,
        pixels: images.pixels[start * len..(start + n) * len].to_vec(),
        ..*images
    }
}

/// A `--memory-budget` value (`6GiB`, `512MiB`, bytes); panics on a bad one.
pub fn parse_size(s: &str) -> usize {
    let bytes = s
        .trim()
        .parse::<bytesize::ByteSize>()
        .unwrap_or_else(|e| panic!("--memory-budget {s:?}: {e}"));
    bytes.as_u64() as usize
}
