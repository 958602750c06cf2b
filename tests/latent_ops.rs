//! The latent graph op's Ladder posterior and importance-sampling mode: the
//! Ladder level's forward and backward on the GPU against the CPU, its CPU
//! backward against finite differences at graph level; the importance log
//! ratio on the GPU against the CPU (direct, Ladder, packed), against log q(z)
//! − log p(z) computed independently from the drawn z, its mean over many
//! draws against the analytic KL, and its refused backward.

mod common;

use common::assert_close;

use vdvae::gpu::GpuContext;
use vdvae::graph::autodiff::append_backward;
use vdvae::graph::executor::cpu::{run, Noise, Values};
use vdvae::graph::executor::GpuGraph;
use vdvae::graph::{Graph, Role, Sampling, TensorId};
use vdvae::kernels::testdata::{finite_difference, TestRng};

const SEED: u64 = 23;
const LN_2PI: f64 = 1.8378770664093453;

fn context() -> GpuContext {
    GpuContext::from_env().unwrap_or_else(|e| panic!("latent op tests need an adapter: {e}"))
}

fn cpu(g: &Graph, values: &Values, read: &[TensorId]) -> Vec<Vec<f32>> {
    let mut v = values.clone();
    run(g, &mut v, Noise::new(SEED, 3)).unwrap();
    read.iter().map(|&t| v[t].clone().unwrap()).collect()
}

fn gpu(ctx: &GpuContext, g: &Graph, values: &Values, read: &[TensorId]) -> Vec<Vec<f32>> {
    let gg = GpuGraph::build(ctx, g, SEED, None).unwrap();
    gg.write_values(ctx, g, values).unwrap();
    gg.run(ctx, 3).unwrap();
    read.iter().map(|&t| gg.read(ctx, t).unwrap()).collect()
}

/// (mu, logsig) of a level in the ranges the networks produce.
fn level(n: usize, rng: &mut TestRng) -> [Vec<f32>; 4] {
    [
        rng.vec(n, -2.0, 2.0),
        rng.vec(n, -2.0, 1.0),
        rng.vec(n, -2.0, 2.0),
        rng.vec(n, -2.0, 1.0),
    ]
}

/// A Ladder level on four parameters (mu_d, logsig_d, mu_p, logsig_p); the
/// loss weighs z and the KL by per-channel gains, so every element's dz and
/// dkl differ by channel. Returns the graph, the inputs, (z, kl) and the grads.
struct LadderGraph {
    g: Graph,
    inputs: [TensorId; 4],
    gains: [TensorId; 2],
    z: TensorId,
    kl: TensorId,
    grads: [TensorId; 4],
}

fn ladder_graph(shape: [usize; 4]) -> LadderGraph {
    let mut g = Graph::default();
    let names = ["mu_d", "logsig_d", "mu_p", "logsig_p"];
    let inputs = names.map(|n| g.tensor(n, shape.to_vec(), Role::Param));
    let c = shape[3];
    let gains = ["gz", "gk"].map(|n| g.tensor(n, vec![c], Role::Input));
    let zero = g.tensor("zero", vec![c], Role::Input);
    let (z, kl) = g
        .reparam_kl_ladder(
            "lat",
            (inputs[0], inputs[1]),
            (inputs[2], inputs[3]),
            Sampling::Posterior,
            4,
        )
        .unwrap();
    let wz = g.affine("wz", z, gains[0], zero).unwrap();
    let wk = g.affine("wk", kl, gains[1], zero).unwrap();
    let sz = g.sum_per_image("sz", wz).unwrap();
    let sk = g.sum_per_image("sk", wk).unwrap();
    let loss = g.elbo("loss", sz, &[sk], 1).unwrap();
    g.outputs.extend([z, kl, loss]);
    append_backward(&mut g).unwrap();
    let grads = inputs.map(|p| g.param_grads.iter().find(|&&(q, _)| q == p).unwrap().1);
    LadderGraph {
        g,
        inputs,
        gains,
        z,
        kl,
        grads,
    }
}

fn ladder_values(m: &LadderGraph, x: &[Vec<f32>; 4], c: usize) -> Values {
    let mut values: Values = vec![None; m.g.tensors.len()];
    for (t, v) in m.inputs.iter().zip(x) {
        values[*t] = Some(v.clone());
    }
    values[m.gains[0]] = Some((0..c).map(|k| 0.5 + k as f32 * 0.25).collect());
    values[m.gains[1]] = Some((0..c).map(|k| 1.5 - k as f32 * 0.5).collect());
    let zero = m.g.tensors.iter().position(|t| t.name == "zero").unwrap();
    values[zero] = Some(vec![0.0; c]);
    values
}

#[test]
fn ladder_level_forward_and_backward_match_on_gpu_and_cpu() {
    let ctx = context();
    let shape = [2, 5, 7, 3];
    let m = ladder_graph(shape);
    let x = level(shape.iter().product(), &mut TestRng::new(1));
    let values = ladder_values(&m, &x, shape[3]);
    let read = [m.z, m.kl, m.grads[0], m.grads[1], m.grads[2], m.grads[3]];
    let want = cpu(&m.g, &values, &read);
    let got = gpu(&ctx, &m.g, &values, &read);
    // Tolerances of the reparam_kl family's check (Z_TOL, KL_TOL, GRAD_TOL).
    let names = ["z", "kl", "dmu_d", "dlogsig_d", "dmu_p", "dlogsig_p"];
    for ((name, a), b) in names.iter().zip(&got).zip(&want) {
        assert_close(name, a, b, 2e-5, 2e-5);
    }
    // The merged posterior is not the bottom-up one: the prior gets gradient through it.
    assert!(want[4].iter().any(|&v| v.abs() > 1e-3));
}

#[test]
fn ladder_level_cpu_backward_matches_finite_differences() {
    let shape = [2, 2, 3, 2];
    let n: usize = shape.iter().product();
    let m = ladder_graph(shape);
    let x = level(n, &mut TestRng::new(2));
    let values = ladder_values(&m, &x, shape[3]);
    let analytic = cpu(&m.g, &values, &m.grads);
    let (gz, gk) = (values[m.gains[0]].clone().unwrap(), values[m.gains[1]].clone().unwrap());
    // The loss in f64 from the graph's z and KL (each element rounded to f32 once).
    let loss = |x: &[Vec<f32>; 4]| -> f64 {
        let out = cpu(&m.g, &ladder_values(&m, x, shape[3]), &[m.z, m.kl]);
        let dot = |y: &[f32], gain: &[f32]| -> f64 {
            y.iter()
                .enumerate()
                .map(|(i, &v)| v as f64 * gain[i % shape[3]] as f64)
                .sum()
        };
        (dot(&out[0], &gz) + dot(&out[1], &gk)) / shape[0] as f64
    };
    let names = ["mu_d", "logsig_d", "mu_p", "logsig_p"];
    for k in 0..4 {
        let fd = finite_difference(&x[k], 1e-3, |v| {
            let mut y = x.clone();
            y[k] = v.to_vec();
            loss(&y)
        });
        for (i, (&a, &f)) in analytic[k].iter().zip(&fd).enumerate() {
            assert!(
                (a as f64 - f).abs() <= 1e-3 + 1e-3 * f.abs(),
                "d{}[{i}]: analytic {a} vs finite difference {f}",
                names[k]
            );
        }
    }
}

/// log N(z; mu, e^logsig) in f64.
fn log_normal(z: f64, mu: f64, logsig: f64) -> f64 {
    let t = (z - mu) * (-logsig).exp();
    -0.5 * t * t - logsig - 0.5 * LN_2PI
}

/// The posterior (mu_q, logsig_q) of element i: direct, or the Ladder merge
/// written out here (sig_q² = 1 / (sig_d⁻² + sig_p⁻²), mu_q = (mu_d sig_d⁻² + mu_p sig_p⁻²) sig_q²).
fn posterior(x: &[Vec<f32>; 4], i: usize, ladder: bool) -> (f64, f64) {
    let [a, b, mp, lp] = [0, 1, 2, 3].map(|k| x[k][i] as f64);
    if !ladder {
        return (a, b);
    }
    let (pd, pp) = ((-2.0 * b).exp(), (-2.0 * lp).exp());
    let var = 1.0 / (pd + pp);
    ((a * pd + mp * pp) * var, 0.5 * var.ln())
}

/// An importance-mode level (direct or Ladder) on inputs, forward only.
fn importance_graph(shape: [usize; 4], ladder: bool) -> (Graph, [TensorId; 4], TensorId, TensorId) {
    let mut g = Graph::default();
    let inputs = ["a", "b", "mu_p", "logsig_p"].map(|n| g.tensor(n, shape.to_vec(), Role::Input));
    let (q, p) = ((inputs[0], inputs[1]), (inputs[2], inputs[3]));
    let (z, r) = if ladder {
        g.reparam_kl_ladder("lat", q, p, Sampling::Importance, 6).unwrap()
    } else {
        g.reparam_kl("lat", q, p, Sampling::Importance, 6).unwrap()
    };
    g.outputs.extend([z, r]);
    (g, inputs, z, r)
}

fn input_values(g: &Graph, inputs: &[TensorId], x: &[Vec<f32>]) -> Values {
    let mut values: Values = vec![None; g.tensors.len()];
    for (t, v) in inputs.iter().zip(x) {
        values[*t] = Some(v.clone());
    }
    values
}

#[test]
fn importance_log_ratio_matches_on_gpu_and_cpu_and_is_log_q_minus_log_p() {
    let ctx = context();
    let shape = [3, 6, 5, 4];
    let n: usize = shape.iter().product();
    for ladder in [false, true] {
        let (g, inputs, z, r) = importance_graph(shape, ladder);
        let x = level(n, &mut TestRng::new(3));
        let values = input_values(&g, &inputs, &x);
        let want = cpu(&g, &values, &[z, r]);
        let got = gpu(&ctx, &g, &values, &[z, r]);
        // The reparam_kl family's Z_TOL and LOG_RATIO_TOL.
        assert_close("z", &got[0], &want[0], 1e-5, 1e-5);
        assert_close("log ratio", &got[1], &want[1], 1e-4, 1e-4);
        // From the GPU's own z: log q(z) − log p(z) with both normalisers.
        for i in 0..n {
            let (mq, lq) = posterior(&x, i, ladder);
            let (zi, mp, lp) = (got[0][i] as f64, x[2][i] as f64, x[3][i] as f64);
            let independent = log_normal(zi, mq, lq) - log_normal(zi, mp, lp);
            // z is f32: its rounding (at most 6e-8 |z|) moves the independent value
            // by that times d/dz (log q − log p) = −(z − mu_q)/sig_q² + (z − mu_p)/sig_p².
            let slope = (-(zi - mq) * (-2.0 * lq).exp() + (zi - mp) * (-2.0 * lp).exp()).abs();
            let tol = 1e-4 + 1e-4 * independent.abs() + 6e-8 * zi.abs() * slope;
            let err = (got[1][i] as f64 - independent).abs();
            assert!(
                err <= tol,
                "ladder {ladder} element {i}: log ratio {} vs independent {independent} (tolerance {tol:.2e})",
                got[1][i]
            );
        }
    }
}

/// KL(N(mq, e^lq) ‖ N(mp, e^lp)) in closed form.
fn analytic_kl(mq: f64, lq: f64, mp: f64, lp: f64) -> f64 {
    lp - lq + ((2.0 * lq).exp() + (mq - mp).powi(2)) / (2.0 * (2.0 * lp).exp()) - 0.5
}

#[test]
fn the_mean_log_ratio_over_many_draws_is_the_kl() {
    let ctx = context();
    let shape = [4, 64, 64, 4];
    let n: usize = shape.iter().product();
    let (md, ld, mp, lp) = (0.8f32, -0.7f32, -0.3f32, 0.2f32);
    for ladder in [false, true] {
        let (g, inputs, _, r) = importance_graph(shape, ladder);
        let x = [vec![md; n], vec![ld; n], vec![mp; n], vec![lp; n]];
        let got = &gpu(&ctx, &g, &input_values(&g, &inputs, &x), &[r])[0];
        let mean = got.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = got.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let se = (var / n as f64).sqrt();
        let (mq, lq) = posterior(&x, 0, ladder);
        let kl = analytic_kl(mq, lq, mp as f64, lp as f64);
        println!("ladder {ladder}: mean log ratio {mean:.5} ± {se:.5}, KL {kl:.5}");
        assert!(
            (mean - kl).abs() < 5.0 * se,
            "ladder {ladder}: mean {mean} vs KL {kl} (se {se})"
        );
    }
}

#[test]
fn importance_packed_matches_the_unpacked_reference_on_gpu() {
    // Packed q (mu_q, logsig_q) and p (mu_p, logsig_p, 5 more channels).
    let ctx = context();
    let (rows, zdim, extra) = ([2, 7, 5], 3, 5);
    let n = rows.iter().product::<usize>() * zdim;
    let x = level(n, &mut TestRng::new(4));
    let mut g = Graph::default();
    let shape = |c| vec![rows[0], rows[1], rows[2], c];
    let q = g.tensor("q", shape(2 * zdim), Role::Input);
    let p = g.tensor("p", shape(2 * zdim + extra), Role::Input);
    let (z, r) = g.reparam_kl_packed("lat", q, p, zdim, Sampling::Importance, 6).unwrap();
    g.outputs.extend([z, r]);
    let pack = |a: &[f32], b: &[f32], tail: usize| -> Vec<f32> {
        a.chunks(zdim)
            .zip(b.chunks(zdim))
            .flat_map(|(u, v)| u.iter().chain(v).copied().chain(std::iter::repeat_n(0.25, tail)))
            .collect()
    };
    let values = input_values(&g, &[q, p], &[pack(&x[0], &x[1], 0), pack(&x[2], &x[3], extra)]);
    let got = gpu(&ctx, &g, &values, &[z, r]);
    // The same draw as the unpacked op on the sliced inputs (same tensor number).
    let (gu, inputs, zu, ru) = importance_graph([rows[0], rows[1], rows[2], zdim], false);
    let unpacked = cpu(&gu, &input_values(&gu, &inputs, &x), &[zu, ru]);
    let want = cpu(&g, &values, &[z, r]);
    assert_eq!(want, unpacked, "packed CPU vs unpacked CPU");
    assert_close("z", &got[0], &want[0], 1e-5, 1e-5);
    assert_close("log ratio", &got[1], &want[1], 1e-4, 1e-4);
}

#[test]
fn importance_mode_has_no_backward() {
    for packed in [false, true] {
        let mut g = Graph::default();
        let (z, r) = if packed {
            let q = g.tensor("q", vec![1, 2, 2, 4], Role::Param);
            let p = g.tensor("p", vec![1, 2, 2, 4], Role::Param);
            g.reparam_kl_packed("lat", q, p, 2, Sampling::Importance, 1).unwrap()
        } else {
            let t = ["a", "b", "c", "d"].map(|n| g.tensor(n, vec![1, 2, 2, 2], Role::Param));
            g.reparam_kl_ladder("lat", (t[0], t[1]), (t[2], t[3]), Sampling::Importance, 1)
                .unwrap()
        };
        let sz = g.sum_per_image("sz", z).unwrap();
        let sr = g.sum_per_image("sr", r).unwrap();
        g.elbo("loss", sz, &[sr], 1).unwrap();
        let err = append_backward(&mut g).unwrap_err().to_string();
        assert!(err.contains("no backward"), "packed {packed}: {err}");
    }
}
