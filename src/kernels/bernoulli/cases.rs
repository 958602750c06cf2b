//! The bernoulli family's table of checked shapes and benchmark cases.

use super::reference;
use super::BernoulliSpec;
use crate::bench::BenchCase;
use crate::check::{Checker, Tolerance};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::rng::RngKey;
use crate::kernels::testdata::TestRng;

const FAMILY: &str = "bernoulli";
/// Per-image sums of up to 4M elements, each a few ulp off (exp), accumulated in
/// f32 in four stages (4 per invocation, 256 per workgroup, then the chunks).
const NLL_TOL: Tolerance = Tolerance::new(1e-4, 2e-6);
/// (1 - t) sigmoid(l) - t sigmoid(-l): a division and an exp, a few ulp.
const GRAD_TOL: Tolerance = Tolerance::new(1e-12, 2e-6);
/// Where u and sigmoid(l) are this close, f32 rounding may decide either way:
/// the check accepts the GPU's bit there. Elsewhere samples must match exactly.
const SAMPLE_TIE: f64 = 1e-6;
/// sigmoid: an exp and a division, a few ulp.
const MEAN_TOL: Tolerance = Tolerance::new(1e-12, 2e-6);

fn spec(n: usize, h: usize, w: usize, c: usize) -> BernoulliSpec {
    BernoulliSpec { n, h, w, c }
}

fn table(c: &Checker) -> Vec<BernoulliSpec> {
    let mut t = vec![
        spec(1, 1, 1, 1),
        spec(3, 28, 28, 1),
        spec(2, 5, 7, 3),
        spec(2, 33, 31, 1),
        spec(1, 41, 25, 1),
        spec(2, 300, 300, 1),
    ];
    if c.full() {
        // The largest tensor that fits one storage binding.
        let max = c.ctx.limits.max_storage_buffer_binding_size as usize / 4;
        t.push(spec(8, max / 8 / 2048, 2048, 1));
    }
    t
}

pub struct Inputs {
    pub logits: Vec<f32>,
    pub targets: Vec<f32>,
    pub upstream: Vec<f32>,
}

/// Logits mostly N(0, 3^2)-like with a few saturated ones (|l| 30..100) and exact
/// zeros; targets drawn from the logits' own Bernoulli, some flipped.
pub fn inputs(spec: &BernoulliSpec, seed: u64) -> Inputs {
    let mut rng = TestRng::new(seed);
    let mut logits = Vec::with_capacity(spec.len());
    let mut targets = Vec::with_capacity(spec.len());
    for _ in 0..spec.len() {
        let pick = rng.uniform(0.0, 1.0);
        let l = if pick < 0.03 {
            0.0
        } else if pick < 0.08 {
            rng.uniform(30.0, 100.0) * if rng.uniform(0.0, 1.0) < 0.5 { -1.0 } else { 1.0 }
        } else {
            rng.normal_vec(1, 3.0)[0]
        };
        let p = reference::sigmoid(l as f64) as f32;
        let mut t = rng.uniform(0.0, 1.0) < p;
        if rng.uniform(0.0, 1.0) < 0.1 {
            t = !t;
        }
        logits.push(l);
        targets.push(f32::from(u8::from(t)));
    }
    let upstream = rng.vec(spec.n, 0.5, 2.0);
    Inputs {
        logits,
        targets,
        upstream,
    }
}

pub fn check(c: &mut Checker) -> Result<()> {
    for (i, spec) in table(c).into_iter().enumerate() {
        let shapes = spec.describe();
        let data = inputs(&spec, 200 + i as u64);
        check_loss(c, &spec, &data, &shapes)?;
        check_sample(c, &spec, &data.logits, i as u32, &shapes)?;
        check_mean(c, &spec, &data.logits, &shapes)?;
        check_sample_probs(c, &spec, &probs(&spec, 300 + i as u64), i as u32, &shapes)?;
    }
    Ok(())
}

/// Probabilities as data gives them: exact 0 and 1 (binarized pixels), grey
/// levels k/255, and arbitrary values in (0, 1).
pub fn probs(spec: &BernoulliSpec, seed: u64) -> Vec<f32> {
    let mut rng = TestRng::new(seed);
    (0..spec.len())
        .map(|_| {
            let pick = rng.uniform(0.0, 1.0);
            if pick < 0.2 {
                0.0
            } else if pick < 0.4 {
                1.0
            } else if pick < 0.7 {
                (rng.uniform(0.0, 256.0) as u8) as f32 / 255.0
            } else {
                rng.uniform(0.0, 1.0)
            }
        })
        .collect()
}

fn check_loss(c: &mut Checker, spec: &BernoulliSpec, data: &Inputs, shapes: &str) -> Result<()> {
    let ctx = c.ctx;
    let (l, t, up) = (
        ctx.upload(&data.logits),
        ctx.upload(&data.targets),
        ctx.upload(&data.upstream),
    );
    let (partials, nll, dl) = (ctx.zeros(spec.partials_len()), ctx.zeros(spec.n), ctx.zeros(spec.len()));
    let want_nll = reference::nll(spec, &data.logits, &data.targets);

    let ds = super::nll(ctx, spec, l.view(), t.view(), partials.view(), nll.view())?;
    ctx.run(&ds.iter().collect::<Vec<_>>())?;
    c.compare(
        FAMILY,
        "bernoulli_nll",
        shapes,
        &ctx.read_f32(&nll)?,
        &want_nll,
        NLL_TOL,
    );

    let ds = super::nll_grad(
        ctx,
        spec,
        l.view(),
        t.view(),
        up.view(),
        dl.view(),
        partials.view(),
        nll.view(),
    )?;
    ctx.run(&ds.iter().collect::<Vec<_>>())?;
    c.compare(
        FAMILY,
        "bernoulli_nll_grad (nll)",
        shapes,
        &ctx.read_f32(&nll)?,
        &want_nll,
        NLL_TOL,
    );
    let want = reference::nll_grad(spec, &data.logits, &data.targets, &data.upstream);
    c.compare(
        FAMILY,
        "bernoulli_nll_grad (dl)",
        shapes,
        &ctx.read_f32(&dl)?,
        &want,
        GRAD_TOL,
    );
    Ok(())
}

fn check_sample(c: &mut Checker, spec: &BernoulliSpec, logits: &[f32], tensor: u32, shapes: &str) -> Result<()> {
    let ctx = c.ctx;
    let key = RngKey::new(0xBE5A_3D1E, 11 + (1u64 << 32), tensor);
    let (l, out) = (ctx.upload(logits), ctx.zeros(spec.len()));
    let d = super::sample(ctx, spec, l.view(), key, 0, out.view())?;
    ctx.run(&[&d])?;
    let got = ctx.read_f32(&out)?;
    let mut want = reference::sample(spec, logits, &key, 0);
    let mut ties = 0;
    for (i, w) in want.iter_mut().enumerate() {
        if (reference::uniform(&key, i) - reference::sigmoid(logits[i] as f64)).abs() < SAMPLE_TIE {
            ties += 1;
            *w = got[i];
        }
    }
    let shapes = format!("{shapes} ties={ties}");
    c.compare(FAMILY, "bernoulli_sample", &shapes, &got, &want, Tolerance::EXACT);
    Ok(())
}

fn check_mean(c: &mut Checker, spec: &BernoulliSpec, logits: &[f32], shapes: &str) -> Result<()> {
    let ctx = c.ctx;
    let (l, out) = (ctx.upload(logits), ctx.zeros(spec.len()));
    ctx.run(&[&super::mean(ctx, spec, l.view(), out.view())?])?;
    let want = reference::mean(logits);
    c.compare(FAMILY, "bernoulli_mean", shapes, &ctx.read_f32(&out)?, &want, MEAN_TOL);
    Ok(())
}

/// The whole tensor in one dispatch, then in three dispatches starting at
/// elements that are not multiples of 4 (a Philox block's elements split
/// between dispatches): both must give the reference's bits exactly.
fn check_sample_probs(c: &mut Checker, spec: &BernoulliSpec, probs: &[f32], tensor: u32, shapes: &str) -> Result<()> {
    let ctx = c.ctx;
    let key = RngKey::new(0x05EE_DB1A, 3 + (5u64 << 32), tensor);
    let want = reference::sample_probs(probs, &key, 0);
    let n = spec.len();
    let (p, out) = (ctx.upload(probs), ctx.zeros(n));
    ctx.run(&[&super::sample_probs(ctx, spec, p.view(), key, 0, out.view())?])?;
    c.compare(
        FAMILY,
        "bernoulli_sample_probs",
        shapes,
        &ctx.read_f32(&out)?,
        &want,
        Tolerance::EXACT,
    );
    // The largest case is checked whole only (its copies would double the memory).
    if !(8..=1 << 22).contains(&n) {
        return Ok(());
    }
    let cuts = [0, (n / 3) | 1, (2 * n / 3) | 2, n];
    let mut got = Vec::with_capacity(n);
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let part = BernoulliSpec {
            n: 1,
            h: 1,
            w: b - a,
            c: 1,
        };
        let (p, out) = (ctx.upload(&probs[a..b]), ctx.zeros(b - a));
        ctx.run(&[&super::sample_probs(ctx, &part, p.view(), key, a, out.view())?])?;
        got.extend(ctx.read_f32(&out)?);
    }
    let shapes = format!("{shapes} cut at {:?}", &cuts[1..3]);
    c.compare(FAMILY, "bernoulli_sample_probs", &shapes, &got, &want, Tolerance::EXACT);
    Ok(())
}

pub fn bench_cases(ctx: &GpuContext) -> Result<Vec<BenchCase>> {
    let spec = spec(64, 28, 28, 1);
    let data = inputs(&spec, 9);
    let (l, t, up) = (
        ctx.upload(&data.logits),
        ctx.upload(&data.targets),
        ctx.upload(&data.upstream),
    );
    let (partials, nll, dl) = (ctx.zeros(spec.partials_len()), ctx.zeros(spec.n), ctx.zeros(spec.len()));
    let grad = super::nll_grad(
        ctx,
        &spec,
        l.view(),
        t.view(),
        up.view(),
        dl.view(),
        partials.view(),
        nll.view(),
    )?;
    Ok(vec![BenchCase::new(
        "bernoulli_nll_grad",
        spec.describe(),
        super::nll_grad_flops(&spec),
        super::nll_grad_bytes(&spec),
        grad,
        vec![l, t, up, partials, nll, dl],
    )])
}
