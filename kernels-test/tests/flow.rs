//! Flow kernels against the CPU reference; the CPU gradients against f64 finite differences.

use kernels_test::assert_close_f64;
use vdvae::kernels::flow::{reference, Cell};
use vdvae::kernels::testdata::{finite_difference, weighted_sum, TestRng};

#[test]
fn flow_matches_reference() {
    kernels_test::assert_family_passes("flow");
}

#[test]
fn iaf_gradients_match_finite_differences() {
    let (rows, zdim) = (5, 3);
    let n = rows * zdim;
    let mut rng = TestRng::new(7);
    let (z, ms) = (rng.vec(n, -2.0, 2.0), rng.vec(2 * n, -3.0, 3.0));
    let (gz, gl) = (rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
    for cell in [Cell::Gated, Cell::ShiftOnly] {
        let loss = |z: &[f32], ms: &[f32]| {
            let (zo, ls) = reference::iaf(cell, zdim, z, ms);
            weighted_sum(&zo, &gz) + weighted_sum(&ls, &gl)
        };
        let (dz, dms) = reference::iaf_backward(cell, zdim, &gz, &gl, &z, &ms);
        let fd_z = finite_difference(&z, 1e-3, |z| loss(z, &ms));
        let fd_ms = finite_difference(&ms, 1e-3, |ms| loss(&z, ms));
        assert_close_f64(&format!("{cell:?} dz"), &dz, &fd_z, 1e-3, 1e-3);
        assert_close_f64(&format!("{cell:?} dms"), &dms, &fd_ms, 1e-3, 1e-3);
    }
}

#[test]
fn kl_gradients_match_finite_differences() {
    let (rows, zdim, p_channels) = (4, 2, 7);
    let n = rows * zdim;
    let mut rng = TestRng::new(8);
    let (z0, zk, ld) = (rng.vec(n, -2.0, 2.0), rng.vec(n, -2.0, 2.0), rng.vec(n, -1.0, 0.0));
    let (kl0, p) = (rng.vec(n, 0.0, 1.0), rng.vec(rows * p_channels, -1.0, 1.0));
    let dkl = rng.vec(n, -1.0, 1.0);
    let level = |z0: &[f32], p: &[f32], zk: &[f32], kl0: &[f32], ld: &[f32]| -> f64 {
        let l = reference::FlowLevelRef {
            zdim,
            z0,
            p,
            p_channels,
            zk,
        };
        reference::kl_f64(&l, kl0, ld)
            .iter()
            .zip(&dkl)
            .map(|(k, &g)| k * g as f64)
            .sum()
    };
    let r = reference::FlowLevelRef {
        zdim,
        z0: &z0,
        p: &p,
        p_channels,
        zk: &zk,
    };
    let d = reference::kl_backward(&r, &dkl);
    // d.p is packed over the prior's first 2·zdim channels; the finite
    // differences run over all p_channels.
    let fd_p = finite_difference(&p, 1e-3, |v| level(&z0, v, &zk, &kl0, &ld));
    let fd_p_packed: Vec<f64> = (0..rows)
        .flat_map(|r| fd_p[r * p_channels..r * p_channels + 2 * zdim].to_vec())
        .collect();
    let checks = [
        (
            "dz0",
            d.z0,
            finite_difference(&z0, 1e-3, |v| level(v, &p, &zk, &kl0, &ld)),
        ),
        ("dp", d.p, fd_p_packed),
        (
            "dzk",
            d.zk,
            finite_difference(&zk, 1e-3, |v| level(&z0, &p, v, &kl0, &ld)),
        ),
        (
            "dld",
            d.ld,
            finite_difference(&ld, 1e-3, |v| level(&z0, &p, &zk, &kl0, v)),
        ),
        (
            "dkl0",
            dkl.clone(),
            finite_difference(&kl0, 1e-3, |v| level(&z0, &p, &zk, v, &ld)),
        ),
    ];
    for (name, analytic, fd) in checks {
        assert_close_f64(name, &analytic, &fd, 1e-3, 1e-3);
    }
    // The prior's channels past 2·zdim get nothing.
    assert!(fd_p
        .iter()
        .enumerate()
        .all(|(i, &g)| i % p_channels < 2 * zdim || g == 0.0));
}

#[test]
fn identity_cells_leave_the_gaussian_kl_and_a_log_ratio_becomes_the_flowed_one() {
    let (rows, zdim, p_channels) = (3, 2, 4);
    let n = rows * zdim;
    let mut rng = TestRng::new(9);
    let (z0, zk) = (rng.vec(n, -2.0, 2.0), rng.vec(n, -2.0, 2.0));
    let (kl0, p) = (rng.vec(n, 0.0, 1.0), rng.vec(rows * p_channels, -1.0, 1.0));
    fn level<'a>(
        zdim: usize,
        z0: &'a [f32],
        p: &'a [f32],
        p_channels: usize,
        zk: &'a [f32],
    ) -> reference::FlowLevelRef<'a> {
        reference::FlowLevelRef {
            zdim,
            z0,
            p,
            p_channels,
            zk,
        }
    }
    // zk = z0 and no log det: the Gaussian draw's KL, unchanged.
    let same = reference::kl_f64(&level(zdim, &z0, &p, p_channels, &z0), &kl0, &vec![0.0; n]);
    for (k, &k0) in same.iter().zip(&kl0) {
        assert!((k - k0 as f64).abs() < 1e-12, "{k} vs {k0}");
    }
    // kl0 = log q(z0) − log p(z0) (importance sampling): the result is
    // log q(zk) − log p(zk) with log q(zk) = log q(z0) − ld, exactly.
    let ld = rng.vec(n, -1.0, 0.0);
    let (mu_q, logsig_q) = (rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 0.5));
    let log_normal = |x: f64, mu: f64, logsig: f64| -0.5 * ((x - mu) * (-logsig).exp()).powi(2) - logsig;
    let prior = |i: usize| {
        (
            p[i / zdim * p_channels + i % zdim] as f64,
            p[i / zdim * p_channels + zdim + i % zdim] as f64,
        )
    };
    let ratio0: Vec<f32> = (0..n)
        .map(|i| {
            (log_normal(z0[i] as f64, mu_q[i] as f64, logsig_q[i] as f64)
                - log_normal(z0[i] as f64, prior(i).0, prior(i).1)) as f32
        })
        .collect();
    let got = reference::kl_f64(&level(zdim, &z0, &p, p_channels, &zk), &ratio0, &ld);
    for i in 0..n {
        let log_q_zk = log_normal(z0[i] as f64, mu_q[i] as f64, logsig_q[i] as f64) - ld[i] as f64;
        let want = log_q_zk - log_normal(zk[i] as f64, prior(i).0, prior(i).1);
        assert!((got[i] - want).abs() < 1e-5, "element {i}: {} vs {want}", got[i]);
    }
}
