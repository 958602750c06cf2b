//! Fresh weights with the official initialisation (PyTorch Conv2d defaults,
//! zero biases, zeroed prior output conv, depth-scaled residual convs), drawn
//! from the counter RNG so a seed gives the same weights on every machine.

use super::config::HParams;
use super::params::{param_specs, Init};
use crate::checkpoint::{NamedTensors, Tensor};
use crate::error::Result;
use crate::kernels::rng::RngKey;

/// Official-layout weights for `h`, reproducible from `seed`.
pub fn init_weights(h: &HParams, seed: u64) -> Result<NamedTensors> {
    let mut out = NamedTensors::new();
    for (j, spec) in param_specs(h)?.into_iter().enumerate() {
        let n = spec.numel();
        let data = match spec.init {
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
            Init::Halves { first, second } => (0..n).map(|i| if i < n / 2 { first } else { second } as f32).collect(),
            Init::ConvUniform { fan_in, scale } => {
                // Tensor ids from u32::MAX down keep weights apart from latent noise streams.
                let key = RngKey::new(seed, u64::MAX, u32::MAX - j as u32);
                let bound = scale / (fan_in as f64).sqrt();
                (0..n as u32)
                    .map(|i| ((2.0 * key.uniform(i) as f64 - 1.0) * bound) as f32)
                    .collect()
            }
        };
        out.insert(
            spec.name,
            Tensor {
                shape: spec.shape,
                data,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::preset;

    #[test]
    fn weights_follow_the_official_init() {
        let h = preset("mnist-tiny").unwrap();
        let w = init_weights(&h, 1).unwrap();
        let c1 = &w["encoder.enc_blocks.0.c1.weight"];
        let bound = 1.0 / (16f32).sqrt();
        assert!(c1.data.iter().all(|v| v.abs() <= bound) && c1.data.iter().any(|v| v.abs() > bound * 0.9));
        assert!(w["decoder.dec_blocks.0.prior.c4.weight"].data.iter().all(|&v| v == 0.0));
        assert!(w["decoder.gain"].data.iter().all(|&v| v == 1.0));
        assert!(w["encoder.in_conv.bias"].data.iter().all(|&v| v == 0.0));
        assert_eq!(init_weights(&h, 1).unwrap(), w);
        assert_ne!(init_weights(&h, 2).unwrap(), w);
    }
}
