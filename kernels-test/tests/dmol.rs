//! DMoL kernels against the CPU reference; the CPU gradient against f64 finite differences.

use kernels_test::assert_close_f64;
use vdvae::kernels::dmol::inputs::{self, Kind};
use vdvae::kernels::dmol::reference::{self, Branch};
use vdvae::kernels::dmol::{samples_to_u8, DataBits, DmolSpec};
use vdvae::kernels::testdata::finite_difference;

#[test]
fn dmol_matches_reference() {
    kernels_test::assert_family_passes("dmol");
}

fn branches(spec: &DmolSpec, l: &[f32], x: &[f32]) -> Vec<Branch> {
    let (co, c) = (spec.out_channels(), spec.channels);
    (0..spec.pixels())
        .flat_map(|p| reference::pixel(spec, &l[p * co..(p + 1) * co], &x[p * c..(p + 1) * c]).branches)
        .collect()
}

/// Moves raw log-scales off the floor's kink at -7 (a tie there has no derivative).
fn off_the_kink(spec: &DmolSpec, l: &mut [f32]) {
    let m = spec.mixtures;
    for p in 0..spec.pixels() {
        for c in 0..spec.channels {
            for k in 0..m {
                let i = p * spec.out_channels() + m + c * spec.stride() + m + k;
                if (l[i] + 7.0).abs() < 0.05 {
                    l[i] = -7.5;
                }
            }
        }
    }
}

/// Central differences of sum_n upstream[n] * NLL[n] against the analytic
/// gradient; every perturbed point must keep the base point's branches.
fn assert_gradient_matches_fd(spec: DmolSpec, kind: Kind, seed: u64) {
    // Scales down to e^-7 curve the log-likelihood on a 1e-3 scale: small steps
    // (the loss is evaluated in f64, so rounding stays far below the tolerance).
    let eps = match kind {
        Kind::Typical => 1e-5,
        Kind::Extreme => 1e-6,
    };
    let data = inputs::generate(&spec, kind, seed);
    let mut l = data.l.clone();
    off_the_kink(&spec, &mut l);
    let base = branches(&spec, &l, &data.x);
    let analytic = reference::nll_grad(&spec, &l, &data.x, &data.upstream);
    let fd = finite_difference(&l, eps, |lp| {
        assert_eq!(
            branches(&spec, lp, &data.x),
            base,
            "a perturbation crossed a branch switch"
        );
        reference::nll_f64(&spec, lp, &data.x)
            .iter()
            .zip(&data.upstream)
            .map(|(nll, &u)| nll * u as f64)
            .sum()
    });
    assert_close_f64(&format!("dmol dl {spec:?} {kind:?}"), &analytic, &fd, 1e-6, 1e-4);
}

fn spec(n: usize, h: usize, w: usize, channels: usize, mixtures: usize, bits: DataBits) -> DmolSpec {
    DmolSpec {
        n,
        h,
        w,
        channels,
        mixtures,
        bits,
    }
}

#[test]
fn rgb_gradient_matches_finite_differences() {
    assert_gradient_matches_fd(spec(2, 2, 3, 3, 3, DataBits::Eight), Kind::Typical, 11);
    assert_gradient_matches_fd(spec(1, 1, 1, 3, 1, DataBits::Eight), Kind::Typical, 12);
    assert_gradient_matches_fd(spec(1, 3, 2, 3, 4, DataBits::Five), Kind::Typical, 13);
}

#[test]
fn greyscale_gradient_matches_finite_differences() {
    assert_gradient_matches_fd(spec(2, 3, 3, 1, 3, DataBits::Eight), Kind::Typical, 21);
    assert_gradient_matches_fd(spec(1, 2, 2, 1, 2, DataBits::Five), Kind::Typical, 22);
}

#[test]
fn extreme_gradient_matches_finite_differences() {
    // Scales down to e^-7 make the density branch (cdf_delta <= 1e-5) common.
    let s = spec(1, 3, 3, 3, 3, DataBits::Eight);
    let data = inputs::generate(&s, Kind::Extreme, 31);
    assert!(branches(&s, &data.l, &data.x).contains(&Branch::Density));
    assert_gradient_matches_fd(s, Kind::Extreme, 31);
    assert_gradient_matches_fd(spec(1, 3, 3, 1, 3, DataBits::Five), Kind::Extreme, 32);
}

#[test]
fn every_branch_is_exercised_by_the_check_inputs() {
    let s = spec(3, 9, 5, 3, 10, DataBits::Eight);
    let data = inputs::generate(&s, Kind::Extreme, 102);
    let counts = inputs::branch_counts(&s, &data.l, &data.x);
    assert!(counts.iter().all(|&n| n > 0), "branch counts {counts:?}");
}

#[test]
fn a_pixel_centred_on_its_target_has_the_closed_form_likelihood() {
    // One mixture with the floored scale e^-7 centred on each target: cdf_delta =
    // sigmoid(a) - sigmoid(-a) = tanh(a / 2) with a = e^7 / 255.
    let s = spec(1, 1, 1, 3, 1, DataBits::Eight);
    let x = [0.2f32, -0.4, 0.6];
    let mut l = vec![0.0f32; s.out_channels()];
    for c in 0..3 {
        l[1 + 3 * c] = x[c];
        l[1 + 3 * c + 1] = -9.0;
    }
    let a = 7f64.exp() / 255.0;
    let want = -3.0 * (a / 2.0).tanh().ln();
    let nll = reference::nll_f64(&s, &l, &x)[0];
    assert!((nll - want).abs() < 1e-12, "nll {nll} want {want}");
}

#[test]
fn samples_convert_to_u8_as_the_official_code() {
    assert_eq!(samples_to_u8(&[-1.0, 1.0, 0.0, -2.0, 0.999]), vec![0, 255, 127, 0, 254]);
}
