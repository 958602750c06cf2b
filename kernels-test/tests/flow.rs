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
    let (rows, zdim) = (4, 2);
    let n = rows * zdim;
    let mut rng = TestRng::new(8);
    let (z0, zk, ld) = (rng.vec(n, -2.0, 2.0), rng.vec(n, -2.0, 2.0), rng.vec(n, -1.0, 0.0));
    let (q, p) = (rng.vec(2 * n, -1.0, 1.0), rng.vec(2 * n, -1.0, 1.0));
    let dkl = rng.vec(n, -1.0, 1.0);
    let level = |z0: &[f32], q: &[f32], p: &[f32], zk: &[f32], ld: &[f32]| -> f64 {
        let l = reference::FlowLevelRef {
            zdim,
            z0,
            q,
            p,
            p_channels: 2 * zdim,
            zk,
        };
        reference::kl_f64(&l, ld)
            .iter()
            .zip(&dkl)
            .map(|(k, &g)| k * g as f64)
            .sum()
    };
    let r = reference::FlowLevelRef {
        zdim,
        z0: &z0,
        q: &q,
        p: &p,
        p_channels: 2 * zdim,
        zk: &zk,
    };
    let d = reference::kl_backward(&r, &dkl);
    let checks = [
        (
            "dz0",
            d.z0,
            finite_difference(&z0, 1e-3, |v| level(v, &q, &p, &zk, &ld)),
        ),
        ("dq", d.q, finite_difference(&q, 1e-3, |v| level(&z0, v, &p, &zk, &ld))),
        ("dp", d.p, finite_difference(&p, 1e-3, |v| level(&z0, &q, v, &zk, &ld))),
        (
            "dzk",
            d.zk,
            finite_difference(&zk, 1e-3, |v| level(&z0, &q, &p, v, &ld)),
        ),
        (
            "dld",
            d.ld,
            finite_difference(&ld, 1e-3, |v| level(&z0, &q, &p, &zk, v)),
        ),
    ];
    for (name, analytic, fd) in checks {
        assert_close_f64(name, &analytic, &fd, 1e-3, 1e-3);
    }
}
