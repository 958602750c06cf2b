//! Pixels to network input and likelihood target, in f32 exactly as the
//! official data pipeline computes them: `(x + shift) * scale`.

use crate::data::ImageSet;

/// Per-dataset input normalisation `(x - mean) / std` on uint8 pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    pub mean: f32,
    pub std: f32,
}

/// Official VDVAE CIFAR-10 constants.
pub const CIFAR10: Normalization = Normalization {
    mean: 120.63838,
    std: 64.16736,
};
/// MNIST training-set pixel mean and standard deviation (28x28, before padding).
pub const MNIST: Normalization = Normalization {
    mean: 33.318_42,
    std: 78.567_49,
};

/// `(x - mean) / std` as official: `x.add_(-mean).mul_(1 / std)` in f32.
pub fn network_input(images: &ImageSet, norm: Normalization) -> Vec<f32> {
    let (shift, scale) = (-norm.mean, 1.0 / norm.std);
    images.pixels.iter().map(|&p| (p as f32 + shift) * scale).collect()
}

/// Likelihood target in [-1, 1]: `(x - 127.5) / 127.5` in f32.
pub fn likelihood_target(images: &ImageSet) -> Vec<f32> {
    let scale = 1.0f32 / 127.5;
    images.pixels.iter().map(|&p| (p as f32 - 127.5) * scale).collect()
}

/// How a Bernoulli model's images become binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binarization {
    /// The graph draws x ~ Bernoulli(pixel / 255) afresh each step (training).
    Dynamic,
    /// One draw per image fixed by `seed` and the image's index in its dataset
    /// (`first_image` is the index of the first image given), whatever the batch.
    Fixed { seed: u64, first_image: usize },
}

/// A Bernoulli model's input: pixel probabilities `x / 255` (the graph
/// binarizes them), or binary pixels already drawn (which the graph's
/// binarization keeps: probabilities 0 and 1 give 0 and 1).
pub fn bernoulli_input(images: &ImageSet, binarization: Binarization) -> Vec<f32> {
    match binarization {
        Binarization::Dynamic => images.pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        Binarization::Fixed { seed, first_image } => {
            crate::kernels::bernoulli::binarize_fixed(&images.pixels, images.image_len(), first_image, seed)
        }
    }
}

/// The images a Bernoulli model sees, drawn once: each image binarized by
/// `seed` and its index in `images` ([`Binarization::Fixed`]), as 0/255
/// pixels. Selecting or repeating them keeps the draw; other models' images
/// are returned as they are.
pub fn fixed_binary_images(likelihood: crate::model::config::Likelihood, images: ImageSet, seed: u64) -> ImageSet {
    if likelihood != crate::model::config::Likelihood::Bernoulli {
        return images;
    }
    let binary = crate::kernels::bernoulli::binarize_fixed(&images.pixels, images.image_len(), 0, seed);
    ImageSet {
        pixels: binary.iter().map(|&b| if b > 0.5 { 255 } else { 0 }).collect(),
        ..images
    }
}
