//! The dmol family's table of checked shapes and benchmark cases.

use super::conditioning::{self, compare_with_allowance, ulp_spread};
use super::inputs::{self, Kind};
use super::reference;
use super::{DataBits, DmolSpec};
use crate::bench::BenchCase;
use crate::check::{Checker, Tolerance};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::rng::RngKey;

const FAMILY: &str = "dmol";
/// Per-image NLL sums over up to 4096 pixels of terms each a few f32 ulp
/// off (built-in exp/log, f32 sums of up to 31 terms per pixel, per-tile sums).
const NLL_TOL: Tolerance = Tolerance::new(1e-3, 2e-6);
/// Gradient elements, beyond the per-element f32 conditioning and rounding
/// allowance of `conditioning.rs`: a few ulp of exp/log per term.
const GRAD_TOL: Tolerance = Tolerance::new(1e-6, 1e-5);
/// Samples: the branch-free logistic path, a few ulp of exp/tanh/ln times the
/// scale e^log_scale (<= e^4 in the extreme inputs) before the clamp.
const SAMPLE_TOL: Tolerance = Tolerance::new(2e-5, 1e-5);
/// Gumbel scores closer than this to the best one are a tie within f32 rounding:
/// the check accepts the GPU's choice among them.
const GUMBEL_TIE: f64 = 1e-5;

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

fn table(full: bool) -> Vec<(DmolSpec, Kind)> {
    use DataBits::{Eight, Five};
    let mut t = vec![
        (spec(1, 1, 1, 3, 1, Eight), Kind::Typical),
        (spec(2, 5, 7, 3, 3, Eight), Kind::Typical),
        (spec(3, 9, 5, 3, 10, Eight), Kind::Extreme),
        (spec(2, 7, 3, 1, 1, Eight), Kind::Typical),
        (spec(2, 11, 13, 1, 10, Eight), Kind::Extreme),
        (spec(2, 6, 9, 3, 10, Five), Kind::Extreme),
        (spec(1, 13, 11, 3, 3, Five), Kind::Typical),
        (spec(2, 9, 9, 1, 3, Five), Kind::Extreme),
        (spec(1, 70, 70, 3, 2, Eight), Kind::Typical),
    ];
    if full {
        t.push((spec(8, 64, 64, 3, 10, Eight), Kind::Typical));
        t.push((spec(2, 100, 101, 1, 5, Eight), Kind::Extreme));
    }
    t
}

pub fn check(c: &mut Checker) -> Result<()> {
    for (i, (spec, kind)) in table(c.full()).into_iter().enumerate() {
        let data = inputs::generate(&spec, kind, 100 + i as u64);
        let [low, high, delta, density] = inputs::branch_counts(&spec, &data.l, &data.x);
        let shapes = format!("{} {kind:?} (branches {low}/{high}/{delta}/{density})", spec.describe());
        check_loss(c, &spec, &data, &shapes)?;
        check_sample(c, &spec, &data.l, i as u32, &shapes)?;
    }
    Ok(())
}

fn check_loss(c: &mut Checker, spec: &DmolSpec, data: &inputs::Inputs, shapes: &str) -> Result<()> {
    let ctx = c.ctx;
    let (l, x, up) = (ctx.upload(&data.l), ctx.upload(&data.x), ctx.upload(&data.upstream));
    let (partials, nll, dl) = (
        ctx.zeros(spec.partials_len()),
        ctx.zeros(spec.n),
        ctx.zeros(spec.l_len()),
    );
    let want_nll = reference::nll(spec, &data.l, &data.x);

    let ds = super::nll(ctx, spec, l.view(), x.view(), partials.view(), nll.view())?;
    ctx.run(&ds.iter().collect::<Vec<_>>())?;
    c.compare(FAMILY, "dmol_nll", shapes, &ctx.read_f32(&nll)?, &want_nll, NLL_TOL);

    let ds = super::nll_grad(
        ctx,
        spec,
        l.view(),
        x.view(),
        up.view(),
        dl.view(),
        partials.view(),
        nll.view(),
    )?;
    ctx.run(&ds.iter().collect::<Vec<_>>())?;
    c.compare(
        FAMILY,
        "dmol_nll_grad (nll)",
        shapes,
        &ctx.read_f32(&nll)?,
        &want_nll,
        NLL_TOL,
    );
    let want_dl = reference::nll_grad(spec, &data.l, &data.x, &data.upstream);
    let spread = ulp_spread(&data.l, |l| reference::nll_grad(spec, l, &data.x, &data.upstream));
    let rounding = conditioning::rounding_bound(spec, &data.l, &data.x, &data.upstream, &want_dl);
    let extra: Vec<f64> = spread
        .iter()
        .zip(&rounding)
        .map(|(s, r)| conditioning::SPREAD_FACTOR * s + conditioning::ROUNDING_FACTOR * r)
        .collect();
    let got_dl = ctx.read_f32(&dl)?;
    let kernel = "dmol_nll_grad (dl)";
    compare_with_allowance(c, FAMILY, kernel, shapes, &got_dl, &want_dl, &extra, GRAD_TOL);
    Ok(())
}

/// The reference sample, where a pixel's best Gumbel scores tie within
/// [`GUMBEL_TIE`], taken with the tied mixture whose sample is nearest the GPU's.
fn reference_sample_near(spec: &DmolSpec, l: &[f32], key: &RngKey, got: &[f32]) -> (Vec<f32>, usize) {
    let ch = spec.channels;
    let mut ties = 0;
    let mut want = Vec::with_capacity(spec.x_len());
    for p in 0..spec.pixels() {
        let scores = reference::gumbel_scores(spec, l, key, p);
        let top = scores[reference::argmax(&scores)];
        let candidates: Vec<usize> = (0..spec.mixtures).filter(|&k| scores[k] >= top - GUMBEL_TIE).collect();
        ties += usize::from(candidates.len() > 1);
        let distance = |s: &[f32]| -> f64 {
            s.iter()
                .zip(&got[p * ch..(p + 1) * ch])
                .map(|(a, b)| (a - b).abs() as f64)
                .sum()
        };
        let best = candidates
            .iter()
            .map(|&k| reference::sample_pixel_with(spec, l, key, p, k))
            .min_by(|a, b| distance(a).total_cmp(&distance(b)))
            .unwrap();
        want.extend(best);
    }
    (want, ties)
}

fn check_sample(c: &mut Checker, spec: &DmolSpec, l_host: &[f32], tensor: u32, shapes: &str) -> Result<()> {
    let ctx = c.ctx;
    let key = RngKey::new(0xD301_5EED, 3 + (1u64 << 32), tensor);
    let (l, out) = (ctx.upload(l_host), ctx.zeros(spec.x_len()));
    let d = super::sample(ctx, spec, l.view(), key, out.view())?;
    ctx.run(&[&d])?;
    let got = ctx.read_f32(&out)?;
    let (want, ties) = reference_sample_near(spec, l_host, &key, &got);
    let shapes = format!("{shapes} ties={ties}");
    c.compare(FAMILY, "dmol_sample", &shapes, &got, &want, SAMPLE_TOL);
    Ok(())
}

pub fn bench_cases(ctx: &GpuContext) -> Result<Vec<BenchCase>> {
    let spec = spec(16, 32, 32, 3, 10, DataBits::Eight);
    let data = inputs::generate(&spec, Kind::Typical, 7);
    let (l, x, up) = (ctx.upload(&data.l), ctx.upload(&data.x), ctx.upload(&data.upstream));
    let (partials, nll, dl) = (
        ctx.zeros(spec.partials_len()),
        ctx.zeros(spec.n),
        ctx.zeros(spec.l_len()),
    );
    let out = ctx.zeros(spec.x_len());
    let grad = super::nll_grad(
        ctx,
        &spec,
        l.view(),
        x.view(),
        up.view(),
        dl.view(),
        partials.view(),
        nll.view(),
    )?;
    let forward = super::nll(ctx, &spec, l.view(), x.view(), partials.view(), nll.view())?;
    let sample = super::sample(ctx, &spec, l.view(), RngKey::new(1, 0, 0), out.view())?;
    // Sampling: M + C draws (Philox calls shared by 4) and one mixture's logistic per colour.
    let sample_flops = (spec.pixels() * (spec.mixtures * 20 + spec.channels * 30)) as f64;
    let sample_bytes = 4.0 * (spec.l_len() + spec.x_len()) as f64;
    let forward_case = BenchCase::new(
        "dmol_nll",
        spec.describe(),
        super::nll_flops(&spec),
        4.0 * (spec.l_len() + spec.x_len() + spec.n) as f64,
        forward,
        vec![],
    );
    let grad_case = BenchCase::new(
        "dmol_nll_grad",
        spec.describe(),
        super::nll_grad_flops(&spec),
        super::nll_grad_bytes(&spec),
        grad,
        vec![x, up, partials, nll, dl],
    );
    let sample_case = BenchCase::new(
        "dmol_sample",
        spec.describe(),
        sample_flops,
        sample_bytes,
        vec![sample],
        vec![l, out],
    );
    Ok(vec![forward_case, grad_case, sample_case])
}
