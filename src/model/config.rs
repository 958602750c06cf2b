//! Hyperparameters under the official VDVAE names (hps.py), read from JSON.
//! Missing keys take the official argparse defaults.

use serde::{Deserialize, Serialize};

use super::blocks::{parse_layer_string, parse_width_settings, LayerSpec};
use crate::error::{Error, Result};

/// Which model the config describes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// The official VDVAE (Child 2021).
    #[default]
    Vdvae,
    /// The Ladder VAE (Sønderby et al. 2016): a bottom-up pass, and posteriors
    /// that merge it with the top-down prior by precision weighting.
    Ladder,
}

/// The two forms of the Ladder VAE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LadderForm {
    /// The paper's: fully connected layers with normalisation (`ladder_hidden`, `ladder_latent`).
    #[default]
    Mlp,
    /// The VDVAE's blocks (`enc_blocks`, `dec_blocks`, `width`, `zdim`), each
    /// level's posterior the merge of a bottom-up estimate and the prior.
    Conv,
}

/// The distribution of the pixels given the latents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Likelihood {
    /// Discretized mixture of logistics over 8-bit (or 5-bit) pixels (official VDVAE).
    #[default]
    Dmol,
    /// Bernoulli over binary pixels: the data is binarized, a fresh draw
    /// x ~ Bernoulli(pixel / 255) each training step, a fixed seeded one for evaluation.
    Bernoulli,
}

/// The nonlinearity of the MLP Ladder VAE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationName {
    /// Leaky ReLU, slope 0.1.
    #[default]
    LeakyRelu,
    Elu,
    Gelu,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HParams {
    pub model: ModelKind,
    pub ladder_form: LadderForm,
    pub likelihood: Likelihood,
    /// MLP Ladder VAE: width of each level's deterministic layers, bottom (data) first.
    pub ladder_hidden: Vec<usize>,
    /// MLP Ladder VAE: latent units of each level, bottom first.
    pub ladder_latent: Vec<usize>,
    /// MLP Ladder VAE: fully connected layers per deterministic block.
    pub ladder_mlp_layers: usize,
    /// MLP Ladder VAE: normalisation groups of each layer's features (1: layer norm).
    pub norm_groups: usize,
    pub activation: ActivationName,
    // KL controls (hierarchical β-VAE). All default to the plain ELBO.
    /// β of every level after warm-up (1 for the ELBO).
    pub kl_beta: f64,
    /// β of each level, top first (overrides `kl_beta`); empty: `kl_beta` everywhere.
    pub kl_beta_per_level: Vec<f64>,
    /// β at step 0 of the warm-up (Sønderby et al.: 0).
    pub kl_beta0: f64,
    /// Steps of the linear warm-up from `kl_beta0` to each level's β; 0: none.
    pub kl_warmup_steps: u32,
    /// Warm-up steps of each level, top first (overrides `kl_warmup_steps`).
    pub kl_warmup_steps_per_level: Vec<u32>,
    /// Free bits λ (Kingma et al. 2016): nats of batch-mean KL of each level, or of
    /// each channel group when `free_bits_groups` > 1, that are not penalised; 0: none.
    pub free_bits: f64,
    /// Free bits of each level, top first (overrides `free_bits`).
    pub free_bits_per_level: Vec<f64>,
    /// Channel groups per level that free bits apply to separately (1: the whole level).
    pub free_bits_groups: usize,
    /// NVAE's KL balancing during warm-up (Vahdat & Kautz 2020).
    pub kl_balance: bool,
    /// Inverse-autoregressive flow cells after each level's Gaussian posterior
    /// draw (VDVAE only; see `model::flow`); 0: plain Gaussian posteriors.
    pub flow_cells: usize,
    /// NVAE's volume-preserving cells (`z − m`) instead of IAF's gated update.
    pub flow_shift_only: bool,
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
            model: ModelKind::Vdvae,
            ladder_form: LadderForm::Mlp,
            likelihood: Likelihood::Dmol,
            ladder_hidden: vec![512, 256, 128, 64, 32],
            ladder_latent: vec![64, 32, 16, 8, 4],
            ladder_mlp_layers: 2,
            norm_groups: 1,
            activation: ActivationName::LeakyRelu,
            kl_beta: 1.0,
            kl_beta_per_level: Vec::new(),
            kl_beta0: 0.0,
            kl_warmup_steps: 0,
            kl_warmup_steps_per_level: Vec::new(),
            free_bits: 0.0,
            free_bits_per_level: Vec::new(),
            free_bits_groups: 1,
            kl_balance: false,
            flow_cells: 0,
            flow_shift_only: false,
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

    /// The MLP Ladder VAE (no blocks, no resolutions).
    pub fn is_mlp(&self) -> bool {
        self.model == ModelKind::Ladder && self.ladder_form == LadderForm::Mlp
    }

    /// Latent levels, top (coarsest) first as the KL per level is reported.
    pub fn latent_levels(&self) -> Result<usize> {
        if self.is_mlp() {
            Ok(self.ladder_latent.len())
        } else {
            Ok(self.decoder_layers()?.len())
        }
    }

    /// Whether the objective differs from the plain ELBO (β, warm-up, free bits, balancing).
    pub fn has_kl_controls(&self) -> bool {
        self.kl_beta != 1.0
            || !self.kl_beta_per_level.is_empty()
            || self.kl_warmup_steps > 0
            || self.kl_warmup_steps_per_level.iter().any(|&s| s > 0)
            || self.free_bits > 0.0
            || self.free_bits_per_level.iter().any(|&f| f > 0.0)
            || self.kl_balance
    }

    /// Checks that the config describes a model that can be built.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Input(msg));
        if !matches!(self.image_channels, 1 | 3) {
            return bad(format!("image_channels must be 1 or 3, got {}", self.image_channels));
        }
        if self.image_size == 0 {
            return bad("image_size must be positive".into());
        }
        super::limits::check_sizes(self)?;
        if self.is_mlp() {
            self.validate_mlp()?;
        } else {
            self.validate_blocks()?;
        }
        self.validate_kl_controls()?;
        super::flow::check_config(self)?;
        super::ranges::check_optimizer(self)
    }

    fn validate_mlp(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Input(msg));
        let (hidden, latent) = (&self.ladder_hidden, &self.ladder_latent);
        if latent.is_empty() || hidden.len() != latent.len() {
            return bad(format!(
                "ladder_hidden ({} widths) and ladder_latent ({} sizes) must name the same levels, at least one",
                hidden.len(),
                latent.len()
            ));
        }
        if hidden.iter().chain(latent).any(|&w| w == 0) || self.ladder_mlp_layers == 0 {
            return bad("ladder_hidden, ladder_latent and ladder_mlp_layers must be positive".into());
        }
        super::limits::check_mlp_input(self)?;
        if self.likelihood != Likelihood::Bernoulli {
            return bad("the MLP Ladder VAE models binary images: set \"likelihood\": \"bernoulli\"".into());
        }
        if let Some(&z) = latent.iter().find(|&&z| z % self.free_bits_groups.max(1) != 0) {
            return bad(format!(
                "free_bits_groups = {} must divide every ladder_latent size (got {z})",
                self.free_bits_groups
            ));
        }
        if let Some(&w) = hidden
            .iter()
            .find(|&&w| self.norm_groups == 0 || w % self.norm_groups != 0)
        {
            return bad(format!(
                "norm_groups = {} must divide every ladder_hidden width (got {w})",
                self.norm_groups
            ));
        }
        Ok(())
    }

    fn validate_kl_controls(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Input(msg));
        let levels = self.latent_levels()?;
        for (name, len) in [
            ("kl_beta_per_level", self.kl_beta_per_level.len()),
            ("kl_warmup_steps_per_level", self.kl_warmup_steps_per_level.len()),
            ("free_bits_per_level", self.free_bits_per_level.len()),
        ] {
            if len != 0 && len != levels {
                return bad(format!("{name} has {len} values; the model has {levels} latent levels"));
            }
        }
        let mut betas = self.kl_beta_per_level.iter().chain([&self.kl_beta, &self.kl_beta0]);
        if let Some(b) = betas.find(|b| !(b.is_finite() && **b >= 0.0)) {
            return bad(format!("every β must be a finite number ≥ 0, got {b}"));
        }
        let mut frees = self.free_bits_per_level.iter().chain([&self.free_bits]);
        if let Some(f) = frees.find(|f| !(f.is_finite() && **f >= 0.0)) {
            return bad(format!("free bits must be a finite number of nats ≥ 0, got {f}"));
        }
        if self.free_bits_groups == 0 {
            return bad("free_bits_groups must be at least 1".into());
        }
        Ok(())
    }

    /// The VDVAE block strings and widths.
    fn validate_blocks(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Input(msg));
        if self.width == 0 || self.zdim == 0 || self.num_mixtures == 0 {
            return bad("width, zdim and num_mixtures must be positive".into());
        }
        if self.free_bits_groups > 0 && !self.zdim.is_multiple_of(self.free_bits_groups) {
            return bad(format!(
                "free_bits_groups = {} must divide zdim = {}",
                self.free_bits_groups, self.zdim
            ));
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
        super::limits::check_resolutions(self, &enc_res)
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
    fn ladder_and_kl_control_keys_are_read_and_checked() {
        let h = HParams::from_json(
            r#"{"model": "ladder", "likelihood": "bernoulli", "image_size": 28,
                "image_channels": 1, "kl_warmup_steps": 100, "free_bits_per_level": [0, 0, 0, 0, 0.5]}"#,
        )
        .unwrap();
        assert!(h.is_mlp() && h.has_kl_controls());
        assert_eq!(h.latent_levels().unwrap(), 5);
        let err = |json: &str| HParams::from_json(json).unwrap_err().to_string();
        let base = r#""model": "ladder", "likelihood": "bernoulli", "image_size": 28, "image_channels": 1"#;
        assert!(err(&format!("{{{base}, \"kl_beta_per_level\": [1, 1]}}")).contains("5 latent levels"));
        assert!(err(r#"{"model": "ladder", "image_size": 28, "image_channels": 1}"#).contains("bernoulli"));
        assert!(err(&format!("{{{base}, \"kl_beta\": -1}}")).contains("β"));
        assert!(err(&format!("{{{base}, \"ladder_hidden\": [8]}}")).contains("same levels"));
        assert!(err(r#"{"model": "laddr"}"#).contains("laddr"));
        assert!(!HParams::from_json(TINY).unwrap().has_kl_controls());
    }

    #[test]
    fn optimizer_values_out_of_range_are_refused_when_read() {
        let with = |key: &str, value: &str| TINY.replace("\"n_batch\"", &format!("\"{key}\": {value}, \"n_batch\""));
        let err = HParams::from_json(&with("adam_beta2", "1.0")).unwrap_err().to_string();
        assert!(err.contains("adam_beta2 = 1") && err.contains("[0, 1)"), "{err}");
        let err = HParams::from_json(&TINY.replace("\"grad_clip\": 200.0", "\"grad_clip\": 0"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("grad_clip = 0") && err.contains("exactly -1"), "{err}");
        HParams::from_json(&TINY.replace("\"grad_clip\": 200.0", "\"grad_clip\": -1")).unwrap();
        HParams::from_json(&with("skip_threshold", "-1")).unwrap();
    }

    #[test]
    fn custom_widths_apply_per_resolution() {
        let mut h = HParams::from_json(TINY).unwrap();
        h.custom_width_str = "8:16".into();
        assert_eq!((h.width_at(8), h.width_at(16)), (16, 32));
    }
}
