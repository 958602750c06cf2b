//! The flow kernels on the CPU (f64 arithmetic, f32 data): the reference
//! they are checked against and the CPU executor's ops. Packed tensors hold
//! `[first, second]` halves of `zdim` channels per pixel.

use super::Cell;
use crate::kernels::reparam_kl::reference::packed_pair_index;

pub fn mask(a: &[f32], mask: &[f32]) -> Vec<f32> {
    a.iter().zip(mask).map(|(&a, &m)| a * m).collect()
}

fn sigmoid(s: f64) -> f64 {
    1.0 / (1.0 + (-s).exp())
}

fn log_sigmoid(s: f64) -> f64 {
    s.min(0.0) - (-s.abs()).exp().ln_1p()
}

/// `(z_out, ls)` of one cell.
pub fn iaf(cell: Cell, zdim: usize, z: &[f32], ms: &[f32]) -> (Vec<f32>, Vec<f32>) {
    (0..z.len())
        .map(|i| {
            let j = packed_pair_index(i, zdim);
            let (zi, m) = (z[i] as f64, ms[j] as f64);
            match cell {
                Cell::ShiftOnly => ((zi - m) as f32, 0.0),
                Cell::Gated => {
                    let s = ms[j + zdim] as f64;
                    let sigma = sigmoid(s);
                    ((sigma * zi + (1.0 - sigma) * m) as f32, log_sigmoid(s) as f32)
                }
            }
        })
        .unzip()
}

/// `(dz, dms)` of one cell from `dz_out` and `dls`.
pub fn iaf_backward(
    cell: Cell,
    zdim: usize,
    dz_out: &[f32],
    dls: &[f32],
    z: &[f32],
    ms: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let mut dz = vec![0.0; z.len()];
    let mut dms = vec![0.0; ms.len()];
    for i in 0..z.len() {
        let j = packed_pair_index(i, zdim);
        let g = dz_out[i] as f64;
        match cell {
            Cell::ShiftOnly => {
                dz[i] = g as f32;
                dms[j] = -g as f32;
            }
            Cell::Gated => {
                let (m, sigma) = (ms[j] as f64, sigmoid(ms[j + zdim] as f64));
                let rest = 1.0 - sigma;
                dz[i] = (g * sigma) as f32;
                dms[j] = (g * rest) as f32;
                dms[j + zdim] = ((g * (z[i] as f64 - m) * sigma + dls[i] as f64) * rest) as f32;
            }
        }
    }
    (dz, dms)
}

/// A flowed level's latents (see [`super::FlowLevel`]).
pub struct FlowLevelRef<'a> {
    pub zdim: usize,
    pub z0: &'a [f32],
    pub p: &'a [f32],
    pub p_channels: usize,
    pub zk: &'a [f32],
}

impl FlowLevelRef<'_> {
    /// `(c, b, 1/sig_p)` of element `i`: z0 and zk standardised by the prior.
    fn terms(&self, i: usize) -> [f64; 3] {
        let k = i / self.zdim * self.p_channels + i % self.zdim;
        let inv_p = (-(self.p[k + self.zdim] as f64)).exp();
        let mu = self.p[k] as f64;
        [
            (self.z0[i] as f64 - mu) * inv_p,
            (self.zk[i] as f64 - mu) * inv_p,
            inv_p,
        ]
    }
}

/// The per-element KL term `kl0 + log p(z0) − log p(zk) − ld` in f64 (for finite differences).
pub fn kl_f64(l: &FlowLevelRef<'_>, kl0: &[f32], ld: &[f32]) -> Vec<f64> {
    (0..l.z0.len())
        .map(|i| {
            let [c, b, _] = l.terms(i);
            kl0[i] as f64 + 0.5 * (b * b - c * c) - ld[i] as f64
        })
        .collect()
}

pub fn kl(l: &FlowLevelRef<'_>, kl0: &[f32], ld: &[f32]) -> Vec<f32> {
    kl_f64(l, kl0, ld).into_iter().map(|v| v as f32).collect()
}

/// The gradients of [`kl`]'s inputs but kl0 (whose gradient is dkl): `p` is
/// of the prior's first `2 * zdim` channels, packed.
pub struct FlowLevelGrads {
    pub z0: Vec<f32>,
    pub p: Vec<f32>,
    pub zk: Vec<f32>,
    pub ld: Vec<f32>,
}

/// From `dkl` (one per element, or one value for all).
pub fn kl_backward(l: &FlowLevelRef<'_>, dkl: &[f32]) -> FlowLevelGrads {
    let (n, zdim) = (l.z0.len(), l.zdim);
    let mut d = FlowLevelGrads {
        z0: vec![0.0; n],
        p: vec![0.0; 2 * n],
        zk: vec![0.0; n],
        ld: vec![0.0; n],
    };
    for i in 0..n {
        let g = dkl[if dkl.len() == 1 { 0 } else { i }] as f64;
        let [c, b, inv_p] = l.terms(i);
        let j = packed_pair_index(i, zdim);
        d.z0[i] = (-g * c * inv_p) as f32;
        d.zk[i] = (g * b * inv_p) as f32;
        d.p[j] = (g * (c - b) * inv_p) as f32;
        d.p[j + zdim] = (g * (c * c - b * b)) as f32;
        d.ld[i] = (-g) as f32;
    }
    d
}
