//! Named configurations: the official VDVAE hparam sets (hps.py) and small
//! MNIST models that train on a CPU Vulkan driver.

use super::config::{HParams, LadderForm, Likelihood, ModelKind};
use crate::error::{Error, Result};

/// Every preset name, for `--help` and error messages.
pub const PRESETS: &[&str] = &[
    "cifar10",
    "imagenet32",
    "imagenet64",
    "ffhq256",
    "ffhq1024",
    "mnist",
    "mnist-tiny",
    "ladder-mnist",
    "vdvae-ladder-mnist",
];

fn cifar10() -> HParams {
    HParams {
        width: 384,
        lr: 0.0002,
        zdim: 16,
        wd: 0.01,
        dec_blocks: "1x1,4m1,4x2,8m4,8x5,16m8,16x10,32m16,32x21".into(),
        enc_blocks: "32x11,32d2,16x6,16d2,8x6,8d2,4x3,4d4,1x3".into(),
        warmup_iters: 100.0,
        n_batch: 16,
        ema_rate: 0.9999,
        ..HParams::default()
    }
}

fn imagenet32() -> HParams {
    HParams {
        ema_rate: 0.999,
        dec_blocks: "1x2,4m1,4x4,8m4,8x9,16m8,16x19,32m16,32x40".into(),
        enc_blocks: "32x15,32d2,16x9,16d2,8x8,8d2,4x6,4d4,1x6".into(),
        width: 512,
        n_batch: 8,
        lr: 0.00015,
        grad_clip: 200.0,
        skip_threshold: 300.0,
        ..cifar10()
    }
}

fn imagenet64() -> HParams {
    HParams {
        n_batch: 4,
        grad_clip: 220.0,
        skip_threshold: 380.0,
        image_size: 64,
        dec_blocks: "1x2,4m1,4x3,8m4,8x7,16m8,16x15,32m16,32x31,64m32,64x12".into(),
        enc_blocks: "64x11,64d2,32x20,32d2,16x9,16d2,8x8,8d2,4x7,4d4,1x5".into(),
        ..imagenet32()
    }
}

fn ffhq256() -> HParams {
    HParams {
        n_batch: 1,
        lr: 0.00015,
        image_size: 256,
        // The official DmolNet uses 5-bit bins for ffhq_256.
        low_bit: true,
        dec_blocks: "1x2,4m1,4x3,8m4,8x4,16m8,16x9,32m16,32x21,64m32,64x13,128m64,128x7,256m128".into(),
        enc_blocks: "256x3,256d2,128x8,128d2,64x12,64d2,32x17,32d2,16x7,16d2,8x5,8d2,4x5,4d4,1x4".into(),
        no_bias_above: 64,
        grad_clip: 130.0,
        skip_threshold: 180.0,
        ..imagenet64()
    }
}

fn ffhq1024() -> HParams {
    HParams {
        image_size: 1024,
        low_bit: false,
        grad_clip: 360.0,
        skip_threshold: 500.0,
        num_mixtures: 2,
        width: 16,
        lr: 0.00007,
        dec_blocks: "1x2,4m1,4x3,8m4,8x4,16m8,16x9,32m16,32x20,64m32,64x14,128m64,128x7,256m128,256x2,512m256,1024m512"
            .into(),
        enc_blocks:
            "1024x1,1024d2,512x3,512d2,256x5,256d2,128x7,128d2,64x10,64d2,32x14,32d2,16x7,16d2,8x5,8d2,4x5,4d4,1x4"
                .into(),
        custom_width_str: "512:32,256:64,128:512,64:512,32:512,16:512,8:512,4:512,1:512".into(),
        ..ffhq256()
    }
}

/// MNIST (28x28 padded to 32x32, one channel): 15 latent layers, trains on lavapipe.
fn mnist() -> HParams {
    HParams {
        width: 64,
        zdim: 8,
        image_channels: 1,
        num_mixtures: 5,
        enc_blocks: "32x2,32d2,16x2,16d2,8x2,8d2,4x2,4d4,1x2".into(),
        dec_blocks: "1x1,4m1,4x2,8m4,8x3,16m8,16x3,32m16,32x3".into(),
        n_batch: 32,
        lr: 0.0005,
        wd: 0.01,
        warmup_iters: 100.0,
        ema_rate: 0.999,
        ..HParams::default()
    }
}

/// The smallest useful MNIST model: for tests and step benchmarks.
fn mnist_tiny() -> HParams {
    HParams {
        width: 16,
        zdim: 4,
        num_mixtures: 2,
        enc_blocks: "32x1,32d2,16x1,16d2,8x1,8d2,4x1,4d4,1x1".into(),
        dec_blocks: "1x1,4m1,4x1,8m4,8x1,16m8,16x1,32m16,32x1".into(),
        n_batch: 8,
        ..mnist()
    }
}

/// The Ladder VAE paper's MNIST model (Sønderby et al. 2016): 5 levels,
/// deterministic 512-256-128-64-32, latent 64-32-16-8-4, two fully connected
/// layers per block, Bernoulli likelihood on dynamically binarized 28x28 MNIST,
/// KL warm-up from β = 0.
fn ladder_mnist() -> HParams {
    HParams {
        model: ModelKind::Ladder,
        ladder_form: LadderForm::Mlp,
        likelihood: Likelihood::Bernoulli,
        image_size: 28,
        image_channels: 1,
        kl_beta0: 0.0,
        kl_warmup_steps: 2000,
        n_batch: 256,
        lr: 0.001,
        wd: 0.0,
        warmup_iters: 100.0,
        adam_beta2: 0.999,
        ema_rate: 0.999,
        grad_clip: 200.0,
        skip_threshold: 1000.0,
        ..HParams::default()
    }
}

/// The conv form of the Ladder VAE: the `mnist` VDVAE's blocks with each
/// posterior the precision-weighted merge of a bottom-up estimate and the
/// prior, Bernoulli likelihood on binarized MNIST (padded to 32x32), KL warm-up.
fn vdvae_ladder_mnist() -> HParams {
    HParams {
        model: ModelKind::Ladder,
        ladder_form: LadderForm::Conv,
        likelihood: Likelihood::Bernoulli,
        kl_beta0: 0.0,
        kl_warmup_steps: 1000,
        ..mnist()
    }
}

pub fn preset(name: &str) -> Result<HParams> {
    let h = match name {
        "cifar10" => cifar10(),
        "imagenet32" => imagenet32(),
        "imagenet64" => imagenet64(),
        "ffhq256" => ffhq256(),
        "ffhq1024" => ffhq1024(),
        "mnist" => mnist(),
        "mnist-tiny" => mnist_tiny(),
        "ladder-mnist" => ladder_mnist(),
        "vdvae-ladder-mnist" => vdvae_ladder_mnist(),
        _ => {
            return Err(Error::Input(format!(
                "unknown preset {name:?}; the presets are: {}",
                PRESETS.join(", ")
            )))
        }
    };
    h.validate()?;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid() {
        for name in PRESETS {
            preset(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(preset("cifar100").unwrap_err().to_string().contains("cifar10"));
    }

    #[test]
    fn cifar10_has_the_official_depth() {
        let h = preset("cifar10").unwrap();
        assert_eq!(h.decoder_layers().unwrap().len(), 43);
        assert_eq!(h.encoder_layers().unwrap().len(), 33);
    }
}
