//! Conversion between official PyTorch layouts (checkpoints) and the engine's
//! channels-last layouts (graph tensors).

use super::params::ParamSpec;

/// The graph shape of a parameter: conv weights `[out, kh, kw, in]`,
/// `bias_xs` `[1, H, W, C]`, gain/bias `[C]`, biases `[C]`.
pub fn internal_shape(spec: &ParamSpec) -> Vec<usize> {
    match spec.shape[..] {
        [1, c, 1, 1] if spec.name.starts_with("decoder.gain") || spec.name == "decoder.bias" => vec![c],
        [1, c, h, w] if spec.name.starts_with("decoder.bias_xs") => vec![1, h, w, c],
        [o, i, kh, kw] => vec![o, kh, kw, i],
        ref s => s.to_vec(),
    }
}

/// Official `[o, i, kh, kw]` → `[o, kh, kw, i]`; `bias_xs` `[1, C, H, W]` → `[1, H, W, C]`; others unchanged.
pub fn to_internal(spec: &ParamSpec, data: &[f32]) -> Vec<f32> {
    permute(spec, data, false)
}

/// The inverse of [`to_internal`].
pub fn to_official(spec: &ParamSpec, data: &[f32]) -> Vec<f32> {
    permute(spec, data, true)
}

fn permute(spec: &ParamSpec, data: &[f32], back: bool) -> Vec<f32> {
    // Decide by kind, not by comparing shapes: [32, 3, 3, 3] looks the same in both layouts.
    if internal_shape(spec).len() != 4 {
        return data.to_vec();
    }
    // Both moves take the channel axis (official axis 1) to the last position.
    let [a, c, h, w] = [spec.shape[0], spec.shape[1], spec.shape[2], spec.shape[3]];
    let mut out = vec![0.0; data.len()];
    for i in 0..a {
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let official = ((i * c + ch) * h + y) * w + x;
                    let channels_last = ((i * h + y) * w + x) * c + ch;
                    if back {
                        out[official] = data[channels_last];
                    } else {
                        out[channels_last] = data[official];
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::params::Init;

    #[test]
    fn conv_weights_round_trip_and_move_in_to_last() {
        let spec = ParamSpec {
            name: "c.weight".into(),
            shape: vec![2, 3, 1, 2],
            init: Init::Zeros,
        };
        let data: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let internal = to_internal(&spec, &data);
        // out 0, tap (0, 1), in 2: official index ((0·3 + 2)·1 + 0)·2 + 1 = 5,
        // internal index ((0·1 + 0)·2 + 1)·3 + 2 = 5 as well, by coincidence; in 1 differs.
        assert_eq!(internal[5], 5.0);
        // out 0, tap (0, 0), in 1: official 2, internal 1.
        assert_eq!(internal[1], 2.0);
        assert_eq!(to_official(&spec, &internal), data);
    }

    #[test]
    fn a_weight_whose_shape_reads_the_same_in_both_layouts_is_still_permuted() {
        let spec = ParamSpec {
            name: "in_conv.weight".into(),
            shape: vec![1, 3, 3, 3],
            init: Init::Zeros,
        };
        let data: Vec<f32> = (0..27).map(|v| v as f32).collect();
        let internal = to_internal(&spec, &data);
        // in 1, tap (0, 0) sits at official index 9 and internal index 1.
        assert_eq!(internal[1], 9.0);
        assert_eq!(to_official(&spec, &internal), data);
    }
}
