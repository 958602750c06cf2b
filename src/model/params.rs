//! The parameter list of a VDVAE: official `state_dict` names and shapes
//! (PyTorch layouts) and the official initialisation of each tensor.

use super::config::{HParams, Likelihood, ModelKind};
use crate::checkpoint::NamedTensors;
use crate::error::{Error, Result};

/// How a parameter starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    /// PyTorch's Conv2d default (kaiming uniform, a = sqrt 5): U(±1/sqrt(fan_in)), times `scale`.
    ConvUniform {
        fan_in: usize,
        scale: f64,
    },
    /// A bias of two halves: `first` in the first half, `second` in the
    /// second (an IAF cell's [m, s] output: s starts positive, so each cell
    /// starts near the identity).
    Halves {
        first: f64,
        second: f64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    /// Official shape: conv weights `[out, in, kh, kw]`, `bias_xs` `[1, C, H, W]`, gain/bias `[1, C, 1, 1]`.
    pub shape: Vec<usize>,
    pub init: Init,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

pub(crate) fn conv(out: &mut Vec<ParamSpec>, prefix: &str, cin: usize, cout: usize, k: usize, weight_init: Init) {
    out.push(ParamSpec {
        name: format!("{prefix}.weight"),
        shape: vec![cout, cin, k, k],
        init: weight_init,
    });
    out.push(ParamSpec {
        name: format!("{prefix}.bias"),
        shape: vec![cout],
        init: Init::Zeros,
    });
}

pub(crate) fn kaiming(cin: usize, k: usize, scale: f64) -> Init {
    Init::ConvUniform {
        fan_in: cin * k * k,
        scale,
    }
}

/// A `Block(in, mid, out)`'s four convs; `c4_init` overrides the last conv's weight init.
fn block(out: &mut Vec<ParamSpec>, prefix: &str, cin: usize, mid: usize, cout: usize, k: usize, c4_init: Init) {
    conv(out, &format!("{prefix}.c1"), cin, mid, 1, kaiming(cin, 1, 1.0));
    conv(out, &format!("{prefix}.c2"), mid, mid, k, kaiming(mid, k, 1.0));
    conv(out, &format!("{prefix}.c3"), mid, mid, k, kaiming(mid, k, 1.0));
    conv(out, &format!("{prefix}.c4"), mid, cout, 1, c4_init);
}

/// Resolutions ≤ 2 use 1x1 convs for c2 and c3.
pub fn block_kernel(res: usize) -> usize {
    if res > 2 {
        3
    } else {
        1
    }
}

/// Every parameter in official `state_dict` order-independent naming.
pub fn param_specs(h: &HParams) -> Result<Vec<ParamSpec>> {
    if h.is_mlp() {
        return Ok(super::ladder::param_specs(h));
    }
    let mut out = Vec::new();
    let enc = h.encoder_layers()?;
    let dec = h.decoder_layers()?;
    conv(
        &mut out,
        "encoder.in_conv",
        h.image_channels,
        h.width,
        3,
        kaiming(h.image_channels, 3, 1.0),
    );
    let enc_scale = (1.0 / enc.len() as f64).sqrt();
    for (i, l) in enc.iter().enumerate() {
        let (w, mid) = (h.width_at(l.res), h.mid_width_at(l.res));
        let c4 = kaiming(mid, 1, enc_scale);
        block(
            &mut out,
            &format!("encoder.enc_blocks.{i}"),
            w,
            mid,
            w,
            block_kernel(l.res),
            c4,
        );
    }
    let dec_scale = (1.0 / dec.len() as f64).sqrt();
    for (i, l) in dec.iter().enumerate() {
        let (w, mid, k, z) = (h.width_at(l.res), h.mid_width_at(l.res), block_kernel(l.res), h.zdim);
        let p = format!("decoder.dec_blocks.{i}");
        // The official posterior reads cat[x, activation]; the Ladder VAE's
        // bottom-up estimate reads the activation alone.
        let enc_in = if h.model == ModelKind::Ladder { w } else { 2 * w };
        block(
            &mut out,
            &format!("{p}.enc"),
            enc_in,
            mid,
            2 * z,
            k,
            kaiming(mid, 1, 1.0),
        );
        block(&mut out, &format!("{p}.prior"), w, mid, 2 * z + w, k, Init::Zeros);
        conv(&mut out, &format!("{p}.z_proj"), z, w, 1, kaiming(z, 1, dec_scale));
        block(
            &mut out,
            &format!("{p}.resnet"),
            w,
            mid,
            w,
            k,
            kaiming(mid, 1, dec_scale),
        );
        super::flow::param_specs(&mut out, h, &p);
    }
    for (j, res) in bias_resolutions(h)?.into_iter().enumerate() {
        let shape = vec![1, h.width_at(res), res, res];
        out.push(ParamSpec {
            name: format!("decoder.bias_xs.{j}"),
            shape,
            init: Init::Zeros,
        });
    }
    let out_channels = match h.likelihood {
        Likelihood::Dmol => h.num_mixtures * if h.image_channels == 1 { 3 } else { 10 },
        Likelihood::Bernoulli => h.image_channels,
    };
    conv(
        &mut out,
        "decoder.out_net.out_conv",
        h.width,
        out_channels,
        1,
        kaiming(h.width, 1, 1.0),
    );
    out.push(ParamSpec {
        name: "decoder.gain".into(),
        shape: vec![1, h.width, 1, 1],
        init: Init::Ones,
    });
    out.push(ParamSpec {
        name: "decoder.bias".into(),
        shape: vec![1, h.width, 1, 1],
        init: Init::Zeros,
    });
    Ok(out)
}

/// Decoder resolutions with a learned starting state, ascending (`bias_xs.{j}` order).
pub fn bias_resolutions(h: &HParams) -> Result<Vec<usize>> {
    let mut res: Vec<usize> = h.decoder_layers()?.iter().map(|l| l.res).collect();
    res.sort_unstable();
    res.dedup();
    Ok(res.into_iter().filter(|&r| r <= h.no_bias_above).collect())
}

/// Checks that `tensors` has exactly the parameters of `specs` with their
/// shapes; the error lists every difference.
pub fn check_against(specs: &[ParamSpec], tensors: &NamedTensors, what: &str) -> Result<()> {
    let mut problems = Vec::new();
    for s in specs {
        match tensors.get(&s.name) {
            None => problems.push(format!("missing {} {:?}", s.name, s.shape)),
            Some(t) if t.shape != s.shape => problems.push(format!(
                "{}: shape {:?} in the file, {:?} in the config",
                s.name, t.shape, s.shape
            )),
            Some(_) => {}
        }
    }
    for name in tensors.keys() {
        if !specs.iter().any(|s| &s.name == name) {
            problems.push(format!("unexpected {name} (not a parameter of this config)"));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let shown = problems.len().min(20);
    let more = if problems.len() > shown {
        format!("\n  ... and {} more", problems.len() - shown)
    } else {
        String::new()
    };
    Err(Error::Input(format!(
        "{what} does not match the config ({} differences):\n  {}{more}",
        problems.len(),
        problems[..shown].join("\n  ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Tensor;
    use crate::model::preset;

    #[test]
    fn the_tiny_fixture_config_has_the_official_parameter_count() {
        // tests/fixtures/official-vdvae/tiny.json
        let h = HParams::from_json(
            r#"{"image_size": 32, "width": 32, "zdim": 4, "num_mixtures": 3,
                "enc_blocks": "32x1,32d2,16x1,16d2,8x1,8d2,4x1,4d4,1x1",
                "dec_blocks": "1x1,4m1,4x1,8m4,8x1,16m8,16x1,32m16,32x1"}"#,
        )
        .unwrap();
        let specs = param_specs(&h).unwrap();
        // 317 tensors in the official tiny.safetensors.
        assert_eq!(specs.len(), 317);
        let z_proj = specs
            .iter()
            .find(|s| s.name == "decoder.dec_blocks.0.z_proj.weight")
            .unwrap();
        assert_eq!(z_proj.shape, vec![32, 4, 1, 1]);
        let out = specs
            .iter()
            .find(|s| s.name == "decoder.out_net.out_conv.weight")
            .unwrap();
        assert_eq!(out.shape, vec![30, 32, 1, 1]);
    }

    #[test]
    fn cifar10_has_about_39_million_parameters() {
        let n: usize = param_specs(&preset("cifar10").unwrap())
            .unwrap()
            .iter()
            .map(|s| s.numel())
            .sum();
        // The VDVAE paper reports 39M parameters for CIFAR-10.
        assert!((38_000_000..41_000_000).contains(&n), "{n}");
    }

    #[test]
    fn mismatches_are_all_listed() {
        let specs = vec![
            ParamSpec {
                name: "w".into(),
                shape: vec![2, 2, 1, 1],
                init: Init::Zeros,
            },
            ParamSpec {
                name: "b".into(),
                shape: vec![2],
                init: Init::Zeros,
            },
        ];
        let mut t = NamedTensors::new();
        t.insert(
            "w".into(),
            Tensor {
                shape: vec![2, 2, 3, 3],
                data: vec![0.0; 36],
            },
        );
        t.insert(
            "extra".into(),
            Tensor {
                shape: vec![1],
                data: vec![0.0],
            },
        );
        let err = check_against(&specs, &t, "ckpt").unwrap_err().to_string();
        assert!(
            err.contains("missing b") && err.contains("w: shape") && err.contains("unexpected extra"),
            "{err}"
        );
    }
}
