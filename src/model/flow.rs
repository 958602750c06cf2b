//! Normalizing-flow posteriors (Kingma et al. 2016, "Improved variational
//! inference with inverse autoregressive flow"; NVAE's cells): after a level's
//! Gaussian posterior draw z0, `flow_cells` inverse-autoregressive cells
//! transform it. Each cell's network is a masked 3x3 conv (z → hidden), ELU
//! and a masked 3x3 conv (hidden → [m, s]); its update is
//! `z ← σ ⊙ z + (1 − σ) ⊙ m` with `σ = sigmoid(s)` (log |det| = Σ log σ), or
//! with `flow_shift_only` NVAE's `z ← z − m` (log |det| = 0).
//!
//! **Masks.** The order is channel order within a pixel, pixels in raster
//! order. A tap above, or left on the same row, sees every channel; a tap
//! below or right sees none; the centre tap is where the channel order
//! decides. Each hidden channel `j` has the degree `j mod zdim`. The first
//! conv ("mask A") lets hidden degree d see z channels of degree < d; the
//! second ("mask B") lets output channel c (of m and of s) see hidden degrees
//! ≤ c. So m and s at (pixel, c) depend only on z earlier in the order, and
//! the update's Jacobian is triangular. Odd cells reverse both orders, as
//! NVAE's mirrored cells do. The masks multiply the weights inside the graph
//! (`Graph::mask_weights`), so masked taps get no gradient.
//!
//! **KL.** The flowed level's KL, E_q[log q(zk | ·) − log p(zk)] with
//! `log q(zk) = log N(z0; μ, σ) − Σ log|det|`, is estimated from one draw as
//! `KL(N(μ, σ) ‖ p) + log p(z0) − log p(zk) − Σ log|det|` (`Graph::flow_kl`):
//! the Gaussian's part in closed form, since E[log q(z0) − log p(z0)] is that
//! KL, and only the cells' change sampled. Its mean is the flowed KL, so the
//! ELBO stays a bound, and where the cells are the identity it is exactly
//! the Gaussian KL: the plain one-sample estimate `log q(z0) − log p(zk) −
//! Σ log|det|` adds the noise of `log q(z0) − log p(z0)` over every unit of
//! every level (tens of thousands per image), and trained here it drove the
//! posteriors to collapse. For importance sampling the draw's second output
//! is `log q(z0) − log p(z0)` itself, and the same op gives exactly
//! `log q(zk) − log p(zk)`.
//!
//! The conv Ladder VAE's merged posterior (precision weighting of the
//! bottom-up estimate and the prior) is written out packed first, and then
//! drawn from and flowed the same way.

use super::builder::Builder;
use super::config::HParams;
use super::params::{conv, kaiming, Init, ParamSpec};
use crate::checkpoint::NamedTensors;
use crate::error::{Error, Result};
use crate::graph::ops::ActivationKind;
use crate::graph::TensorId;
use crate::kernels::flow::Cell;

/// Most cells per level a config may ask for (NVAE uses 1–2).
pub const MAX_FLOW_CELLS: usize = 8;

/// Hidden channels of a cell's network for `zdim` latent channels: each
/// degree gets four.
pub fn hidden(zdim: usize) -> usize {
    4 * zdim
}

/// The flow settings' check.
pub fn check_config(h: &HParams) -> Result<()> {
    let bad = |msg: String| Err(Error::Input(msg));
    if h.flow_cells > MAX_FLOW_CELLS {
        return bad(format!(
            "flow_cells = {} is too many: at most {MAX_FLOW_CELLS} cells per level (NVAE uses 1 or 2)",
            h.flow_cells
        ));
    }
    if h.flow_cells > 0 && h.is_mlp() {
        return bad(
            "flow_cells works with the VDVAE and the conv Ladder VAE (\"ladder_form\": \"conv\"); \
             the MLP Ladder VAE's levels have no spatial order for the cells' masked convs"
                .into(),
        );
    }
    if h.flow_shift_only && h.flow_cells == 0 {
        return bad("flow_shift_only chooses the kind of flow cell: set flow_cells to 1 or more".into());
    }
    Ok(())
}

/// The cells' parameters of decoder level `p` (official-style names:
/// `{p}.flow.{t}.c1` z → hidden, `{p}.flow.{t}.c2` hidden → [m, s]).
pub fn param_specs(out: &mut Vec<ParamSpec>, h: &HParams, p: &str) {
    let (z, hid) = (h.zdim, hidden(h.zdim));
    for t in 0..h.flow_cells {
        let name = format!("{p}.flow.{t}");
        conv(out, &format!("{name}.c1"), z, hid, 3, kaiming(z, 3, 1.0));
        // Each cell starts as (nearly) the identity: m = 0 and s = +5 for
        // every input (zero weights; σ = 0.9933). A flowed level's KL grows
        // with the cells' distance from the identity summed over all its
        // units (tens of thousands per image over a VDVAE's levels): with
        // Kingma et al.'s +2 (σ = 0.88) it started near 640 nats per image on
        // MNIST and the posteriors collapsed; at +5 it is about 2. The last
        // conv learns first, as the VDVAE's zero-initialised prior output does.
        out.push(ParamSpec {
            name: format!("{name}.c2.weight"),
            shape: vec![2 * z, hid, 3, 3],
            init: Init::Zeros,
        });
        out.push(ParamSpec {
            name: format!("{name}.c2.bias"),
            shape: vec![2 * z],
            init: Init::Halves {
                first: 0.0,
                second: 5.0,
            },
        });
    }
}

/// Small deterministic nonzero weights in every flow cell's last conv, so that
/// cells that start as the identity (that conv zero) transform z: for tests
/// of the cells' math and gradients away from the identity.
pub fn perturb_cells(weights: &mut NamedTensors) {
    for (name, t) in weights.iter_mut() {
        if name.contains(".flow.") && name.ends_with("c2.weight") {
            for (i, v) in t.data.iter_mut().enumerate() {
                *v = ((i * 7919 % 97) as f32 - 48.0) / 480.0;
            }
        }
    }
}

/// Which of a cell's two convs a mask is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskKind {
    /// z → hidden: the centre tap excludes the channel's own degree ("mask A").
    First,
    /// hidden → [m, s]: the centre tap includes it ("mask B").
    Second,
}

/// The degree of z channel `c` in a cell's order.
fn z_degree(c: usize, zdim: usize, reversed: bool) -> usize {
    if reversed {
        zdim - 1 - c
    } else {
        c
    }
}

/// Whether the 3x3 tap `(kh, kw)` reads a pixel earlier in the order.
fn earlier(kh: usize, kw: usize, reversed: bool) -> bool {
    let (dy, dx) = (kh as i64 - 1, kw as i64 - 1);
    let before = dy < 0 || (dy == 0 && dx < 0);
    let after = dy > 0 || (dy == 0 && dx > 0);
    if reversed {
        after
    } else {
        before
    }
}

/// The 0/1 mask of one of a cell's 3x3 convs in the graph's weight layout
/// `[out, kh, kw, in]` (see the module docs).
pub fn mask(kind: MaskKind, zdim: usize, reversed: bool) -> Vec<f32> {
    let hid = hidden(zdim);
    let (outs, ins) = match kind {
        MaskKind::First => (hid, zdim),
        MaskKind::Second => (2 * zdim, hid),
    };
    let mut m = Vec::with_capacity(outs * 9 * ins);
    for o in 0..outs {
        for kh in 0..3 {
            for kw in 0..3 {
                for i in 0..ins {
                    let open = if earlier(kh, kw, reversed) {
                        true
                    } else if (kh, kw) == (1, 1) {
                        match kind {
                            MaskKind::First => z_degree(i, zdim, reversed) < o % zdim,
                            MaskKind::Second => i % zdim <= z_degree(o % zdim, zdim, reversed),
                        }
                    } else {
                        false
                    };
                    m.push(open as u8 as f32);
                }
            }
        }
    }
    m
}

/// The cells of decoder level `p` applied to its posterior draw `z0`:
/// returns (zk, the cells' summed per-element log |det|).
pub(crate) fn cells(b: &mut Builder, h: &HParams, p: &str, z0: TensorId) -> Result<(TensorId, TensorId)> {
    let cell = if h.flow_shift_only {
        Cell::ShiftOnly
    } else {
        Cell::Gated
    };
    let (mut z, mut ld) = (z0, None);
    for t in 0..h.flow_cells {
        let name = format!("{p}.flow.{t}");
        let reversed = t % 2 == 1;
        let conv = |b: &mut Builder, x: TensorId, c: &str, kind: MaskKind| -> Result<TensorId> {
            let w = b.param(&format!("{name}.{c}.weight"))?;
            let w =
                b.g.mask_weights(&format!("{name}.{c}.masked"), w, mask(kind, h.zdim, reversed))?;
            let bias = b.param(&format!("{name}.{c}.bias"))?;
            b.g.conv2d(&format!("{name}.{c}"), x, w, Some(bias), None, false)
        };
        let hid = conv(b, z, "c1", MaskKind::First)?;
        let hid = b.g.activate(&format!("{name}.elu"), hid, ActivationKind::Elu)?;
        let ms = conv(b, hid, "c2", MaskKind::Second)?;
        let (next, ls) = b.g.iaf(&name, z, ms, cell)?;
        ld = Some(match ld {
            None => ls,
            Some(sum) => b.g.add(&format!("{name}.log_det_sum"), sum, ls)?,
        });
        z = next;
    }
    let ld = ld.ok_or_else(|| Error::Input("a flowed level needs at least one cell".into()))?;
    Ok((z, ld))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::executor::cpu::{run, Noise};
    use crate::graph::Role;
    use crate::model::assemble::param_values;
    use crate::model::config::ModelKind;
    use crate::model::init::init_weights;
    use crate::model::preset;

    /// A level's cells on a 4x4 latent in the CPU executor: ([m, s] of cell
    /// `cell`, the flowed z) for `z`.
    fn one_cell(h: &HParams, cell: usize, z: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (mut b, params) = Builder::with_params(h).unwrap();
        let zt = b.g.tensor("z0", vec![1, 4, 4, h.zdim], Role::Input);
        let (zk, _) = cells(&mut b, h, "decoder.dec_blocks.0", zt).unwrap();
        let mut weights = init_weights(h, 3).unwrap();
        perturb_cells(&mut weights);
        let mut values = param_values(&b.g, &params, &weights, "init").unwrap();
        values[zt] = Some(z.to_vec());
        let last = format!("decoder.dec_blocks.0.flow.{cell}.c2");
        let ms = (0..b.g.tensors.len()).find(|&t| b.g.tensors[t].name == last).unwrap();
        // Keep every tensor: the executor frees a tensor after its last use.
        b.g.outputs.extend([ms, zk]);
        run(&b.g, &mut values, Noise::new(1, 0)).unwrap();
        (values[ms].clone().unwrap(), values[zk].clone().unwrap())
    }

    #[test]
    fn perturbing_z_moves_m_and_s_only_later_in_the_order() {
        // The graph's cell (masked weights, convs, ELU) keeps the masks'
        // promise; the reversed order is checked on the masks below.
        let h = HParams {
            flow_cells: 1,
            ..preset("mnist-tiny").unwrap()
        };
        let zdim = h.zdim;
        let z: Vec<f32> = (0..16 * zdim).map(|i| ((i * 37 % 17) as f32 - 8.0) / 5.0).collect();
        let (ms, _) = one_cell(&h, 0, &z);
        for (pix, c) in [(0, 0), (5, 1), (10, zdim - 1), (14, 2)] {
            let mut moved = z.clone();
            moved[pix * zdim + c] += 0.5;
            let (ms2, _) = one_cell(&h, 0, &moved);
            let mut changed = 0;
            for q in 0..16 {
                for o in 0..2 * zdim {
                    let at = q * 2 * zdim + o;
                    if ms[at] != ms2[at] {
                        changed += 1;
                        assert!(
                            (q, o % zdim) > (pix, c),
                            "z at pixel {pix} channel {c} moved [m, s] channel {o} at pixel {q}"
                        );
                    }
                }
            }
            assert!(changed > 0, "z at pixel {pix} channel {c} moved nothing");
        }
    }

    /// Whether output channel `o` of the two convs composed can see z channel
    /// `i` at tap offset (dy, dx) in −2..=2: the union over hidden channels and
    /// the pairs of taps whose offsets add up.
    fn composed_sees(zdim: usize, reversed: bool, o: usize, i: usize, dy: i64, dx: i64) -> bool {
        let (a, bm) = (
            mask(MaskKind::First, zdim, reversed),
            mask(MaskKind::Second, zdim, reversed),
        );
        let hid = hidden(zdim);
        let at_a = |j: usize, kh: usize, kw: usize| a[((j * 3 + kh) * 3 + kw) * zdim + i] == 1.0;
        let at_b = |kh: usize, kw: usize, j: usize| bm[((o * 3 + kh) * 3 + kw) * hid + j] == 1.0;
        (0..hid).any(|j| {
            (0..3).any(|kh2| {
                (0..3).any(|kw2| {
                    let (rh, rw) = (dy - (kh2 as i64 - 1) + 1, dx - (kw2 as i64 - 1) + 1);
                    (0..3).contains(&rh)
                        && (0..3).contains(&rw)
                        && at_b(kh2, kw2, j)
                        && at_a(j, rh as usize, rw as usize)
                })
            })
        })
    }

    #[test]
    fn the_composed_masks_are_autoregressive_in_both_orders() {
        let zdim = 3;
        for reversed in [false, true] {
            for o in 0..2 * zdim {
                let c = o % zdim;
                for i in 0..zdim {
                    for dy in -2..=2i64 {
                        for dx in -2..=2i64 {
                            let sees = composed_sees(zdim, reversed, o, i, dy, dx);
                            let pixel_earlier = if reversed {
                                dy > 0 || (dy == 0 && dx > 0)
                            } else {
                                dy < 0 || (dy == 0 && dx < 0)
                            };
                            let centre = dy == 0 && dx == 0;
                            let allowed =
                                pixel_earlier || (centre && z_degree(i, zdim, reversed) < z_degree(c, zdim, reversed));
                            assert!(
                                !sees || allowed,
                                "o {o} sees z channel {i} at ({dy}, {dx}), reversed {reversed}"
                            );
                            if centre && z_degree(i, zdim, reversed) < z_degree(c, zdim, reversed) {
                                assert!(sees, "o {o} should see earlier channel {i} at its own pixel");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn configs_past_the_limits_are_refused() {
        let h = |cells, shift, model| HParams {
            flow_cells: cells,
            flow_shift_only: shift,
            model,
            ..HParams::default()
        };
        assert!(check_config(&h(1, false, ModelKind::Vdvae)).is_ok());
        assert!(check_config(&h(2, true, ModelKind::Vdvae)).is_ok());
        let msg = |h: HParams| check_config(&h).unwrap_err().to_string();
        assert!(msg(h(9, false, ModelKind::Vdvae)).contains("at most 8"));
        assert!(msg(h(1, false, ModelKind::Ladder)).contains("conv Ladder"));
        let conv_ladder = HParams {
            ladder_form: crate::model::config::LadderForm::Conv,
            ..h(1, false, ModelKind::Ladder)
        };
        assert!(check_config(&conv_ladder).is_ok());
        assert!(msg(h(0, true, ModelKind::Vdvae)).contains("flow_cells to 1"));
    }
}
