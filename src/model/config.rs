//! Hyperparameters under the official VDVAE names (hps.py), read from JSON.
//! Missing keys take the official argparse defaults.

use serde::{Deserialize, Serialize};

use super::blocks::{parse_layer_string, parse_width_settings, LayerSpec};
use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HParams {
    pub width: usize,
    pub zdim: usize,
    pub bottleneck_multiple: f64,
    pub enc_blocks: String,
    pub dec_blocks: String,
    pub custom_width_str: String,
    pub no_bias_above: usize,
    pub num_mixtures: usize,
    pub image_size: usize,
    pub image_channels: usize,
    /// Likelihood bins: 8-bit (official) or 5-bit data.
    pub low_bit: bool,
    // Training.
    pub n_batch: usize,
    pub lr: f64,
    pub wd: f64,
    pub warmup_iters: f64,
    pub ema_rate: f64,
    pub grad_clip: f64,
    pub skip_threshold: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub seed: u64,
}

impl Default for HParams {
    /// The official argparse defaults (hps.py `add_vae_arguments`).
    fn default() -> HParams {
        HParams {
            width: 512,
            zdim: 16,
            bottleneck_multiple: 0.25,
            enc_blocks: String::new(),
            dec_blocks: String::new(),
            custom_width_str: String::new(),
            no_bias_above: 64,
            num_mixtures: 10,
            image_size: 32,
            image_channels: 3,
            low_bit: false,
            n_batch: 32,
            lr: 0.00015,
            wd: 0.0,
            warmup_iters: 0.0,
            ema_rate: 0.999,
            grad_clip: 200.0,
            skip_threshold: 400.0,
            adam_beta1: 0.9,
            adam_beta2: 0.9,
            seed: 0,
        }
    }
}

impl HParams {
    /// Reads a JSON config file and validates it.
    pub fn from_json_file(path: &str) -> Result<HParams> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.into(),
            source: e,
        })?;
        HParams::from_json(&text).map_err(|e| Error::Input(format!("{path}: {e}")))
    }

    pub fn from_json(text: &str) -> Result<HParams> {
        let h: HParams = serde_json::from_str(text).map_err(|e| Error::Input(format!("invalid config: {e}")))?;
        h.validate()?;
        Ok(h)
    }

    pub fn encoder_layers(&self) -> Result<Vec<LayerSpec>> {
        parse_layer_string(&self.enc_blocks).map_err(|e| Error::Input(format!("enc_blocks: {e}")))
    }

    pub fn decoder_layers(&self) -> Result<Vec<LayerSpec>> {
        parse_layer_string(&self.dec_blocks).map_err(|e| Error::Input(format!("dec_blocks: {e}")))
    }

    /// Channel width at a resolution (`custom_width_str` overrides `width`).
    pub fn width_at(&self, res: usize) -> usize {
        parse_width_settings(&self.custom_width_str)
            .unwrap_or_default()
            .into_iter()
            .find(|(r, _)| *r == res)
            .map_or(self.width, |(_, w)| w)
    }

    /// Bottleneck width of a block at `res`: `int(width * bottleneck_multiple)`.
    pub fn mid_width_at(&self, res: usize) -> usize {
        (self.width_at(res) as f64 * self.bottleneck_multiple) as usize
    }

    /// Checks that the block strings describe a model that can be built.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Input(msg));
        if self.width == 0 || self.zdim == 0 || self.num_mixtures == 0 || self.image_size == 0 {
            return bad("width, zdim, num_mixtures and image_size must be positive".into());
        }
        if !matches!(self.image_channels, 1 | 3) {
            return bad(format!("image_channels must be 1 or 3, got {}", self.image_channels));
        }
        parse_width_settings(&self.custom_width_str)?;
        let enc = self.encoder_layers()?;
        let dec = self.decoder_layers()?;
        if enc.is_empty() || dec.is_empty() {
            return bad("enc_blocks and dec_blocks must not be empty".into());
        }
        // The encoder starts at image_size and each `d` block halves (or divides) the resolution.
        let mut res = self.image_size;
        let mut enc_res = vec![res];
        for l in &enc {
            if l.res != res {
                return bad(format!(
                    "enc_blocks: a block at resolution {} follows resolution {res} (start at image_size {})",
                    l.res, self.image_size
                ));
            }
            if let Some(d) = l.down {
                res /= d;
                enc_res.push(res);
            }
        }
        let mut seen = Vec::new();
        for l in &dec {
            if !enc_res.contains(&l.res) {
                return bad(format!("dec_blocks: resolution {} has no encoder activation", l.res));
            }
            if let Some(m) = l.mixin {
                if !seen.contains(&m) {
                    return bad(format!(
                        "dec_blocks: {}m{m} mixes in resolution {m} before any block there",
                        l.res
                    ));
                }
            }
            if self.mid_width_at(l.res) == 0 {
                return bad(format!("width at resolution {} times bottleneck_multiple is 0", l.res));
            }
            seen.push(l.res);
        }
        if dec.last().unwrap().res != self.image_size {
            return bad(format!("dec_blocks must end at image_size {}", self.image_size));
        }
        if self.width_at(self.image_size) != self.width {
            return bad("the width at image_size must equal `width` (the output layer uses it)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = r#"{"image_size": 32, "width": 32, "zdim": 4, "num_mixtures": 3,
        "enc_blocks": "32x1,32d2,16x1,16d2,8x1,8d2,4x1,4d4,1x1",
        "dec_blocks": "1x1,4m1,4x1,8m4,8x1,16m8,16x1,32m16,32x1",
        "n_batch": 16, "lr": 0.001, "grad_clip": 200.0}"#;

    #[test]
    fn reads_the_fixture_config_with_official_defaults() {
        let h = HParams::from_json(TINY).unwrap();
        assert_eq!((h.width, h.zdim, h.num_mixtures), (32, 4, 3));
        assert_eq!(h.bottleneck_multiple, 0.25);
        assert_eq!(h.no_bias_above, 64);
        assert_eq!(h.image_channels, 3);
        assert_eq!(h.mid_width_at(32), 8);
    }

    #[test]
    fn unknown_keys_and_bad_strings_are_errors() {
        assert!(HParams::from_json(r#"{"widht": 3}"#)
            .unwrap_err()
            .to_string()
            .contains("widht"));
        let bad = TINY.replace("32m16,32x1", "32m2,32x1");
        assert!(HParams::from_json(&bad).unwrap_err().to_string().contains("mixes in"));
        let bad = TINY.replace("\"32x1,32d2", "\"16x1,32d2");
        assert!(HParams::from_json(&bad).is_err());
    }

    #[test]
    fn custom_widths_apply_per_resolution() {
        let mut h = HParams::from_json(TINY).unwrap();
        h.custom_width_str = "8:16".into();
        assert_eq!((h.width_at(8), h.width_at(16)), (16, 32));
    }
}
