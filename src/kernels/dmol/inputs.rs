//! Deterministic DMoL inputs for the checks, tests and benchmarks: mixture
//! parameters of two kinds, targets that include the edge values, and no term
//! within 1% of the cdf_delta = 1e-5 branch switch (where f32 and f64 could
//! legitimately pick different branches).

use super::reference::{self, Branch};
use super::{DataBits, DmolSpec};
use crate::kernels::testdata::TestRng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// What a trained model emits: moderate logits, means near the data, scales e^-5..1.
    Typical,
    /// Large logits and coefficients, means off the data range, log-scales from -9
    /// (floored, some exactly -7) to 4: hits the density branch (cdf_delta <= 1e-5).
    Extreme,
}

pub struct Inputs {
    pub l: Vec<f32>,
    pub x: Vec<f32>,
    /// dL/dNLL per image.
    pub upstream: Vec<f32>,
}

/// Targets on the edges of the branch thresholds, as f32.
pub fn edge_targets() -> [f32; 7] {
    let t = 0.999f32;
    [
        -1.0,
        1.0,
        t,
        f32::from_bits(t.to_bits() + 1),
        -t,
        f32::from_bits((-t).to_bits() + 1),
        0.9989,
    ]
}

fn target(rng: &mut TestRng, bits: DataBits) -> f32 {
    if rng.uniform(0.0, 1.0) < 0.15 {
        let edges = edge_targets();
        return edges[(rng.next_u64() % edges.len() as u64) as usize];
    }
    let level = (rng.next_u64() % 256) as f32;
    // Official 5-bit preprocessing keeps the top 5 bits of each uint8 level.
    let level = match bits {
        DataBits::Eight => level,
        DataBits::Five => (level / 8.0).floor() * 8.0,
    };
    level / 127.5 - 1.0
}

/// One colour block's value j (< stride) of mixture parameters.
fn block_value(rng: &mut TestRng, kind: Kind, m: usize, j: usize) -> f32 {
    match (kind, j / m) {
        (Kind::Typical, 0) => rng.uniform(-1.1, 1.1),
        (Kind::Typical, 1) => rng.uniform(-5.0, 0.0),
        (Kind::Typical, _) => rng.uniform(-2.0, 2.0),
        (Kind::Extreme, 0) => rng.uniform(-3.0, 3.0),
        (Kind::Extreme, 1) if rng.uniform(0.0, 1.0) < 0.05 => -7.0,
        (Kind::Extreme, 1) => rng.uniform(-9.0, 4.0),
        (Kind::Extreme, _) => rng.uniform(-8.0, 8.0),
    }
}

fn pixel_params(rng: &mut TestRng, spec: &DmolSpec, kind: Kind) -> Vec<f32> {
    let m = spec.mixtures;
    let mut p: Vec<f32> = (0..m)
        .map(|_| match kind {
            Kind::Typical => rng.normal_vec(1, 2.0)[0],
            Kind::Extreme => rng.uniform(-30.0, 30.0),
        })
        .collect();
    for _ in 0..spec.channels {
        for j in 0..spec.stride() {
            p.push(block_value(rng, kind, m, j));
        }
    }
    p
}

/// True when no middle-branch term of the pixel has cdf_delta within 1% of 1e-5.
fn clear_of_switch(spec: &DmolSpec, params: &[f32], x: &[f32]) -> bool {
    let r = reference::pixel(spec, params, x);
    r.branches
        .iter()
        .zip(&r.deltas)
        .all(|(b, &d)| !matches!(b, Branch::Delta | Branch::Density) || (d / 1e-5f32 as f64 - 1.0).abs() > 1e-2)
}

pub fn generate(spec: &DmolSpec, kind: Kind, seed: u64) -> Inputs {
    let mut rng = TestRng::new(seed);
    let mut l = Vec::with_capacity(spec.l_len());
    let mut x = Vec::with_capacity(spec.x_len());
    for _ in 0..spec.pixels() {
        let xp: Vec<f32> = (0..spec.channels).map(|_| target(&mut rng, spec.bits)).collect();
        let mut params = pixel_params(&mut rng, spec, kind);
        while !clear_of_switch(spec, &params, &xp) {
            params = pixel_params(&mut rng, spec, kind);
        }
        l.extend(params);
        x.extend(xp);
    }
    let upstream = rng.vec(spec.n, 0.5, 2.0);
    Inputs { l, x, upstream }
}

/// How many terms took each branch: [low edge, high edge, delta, density].
pub fn branch_counts(spec: &DmolSpec, l: &[f32], x: &[f32]) -> [usize; 4] {
    let (co, c) = (spec.out_channels(), spec.channels);
    let mut counts = [0usize; 4];
    for p in 0..spec.pixels() {
        for b in reference::pixel(spec, &l[p * co..(p + 1) * co], &x[p * c..(p + 1) * c]).branches {
            counts[b as usize] += 1;
        }
    }
    counts
}
