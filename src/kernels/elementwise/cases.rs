//! The elementwise family's table of checked shapes and benchmark cases.

use super::reference;
use super::{AffineBackward, ChannelRange};
use crate::bench::BenchCase;
use crate::check::{Checker, Tolerance};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::testdata::TestRng;

const FAMILY: &str = "elementwise";
/// The WGSL erfc approximation has fractional error < 1.2e-7, exp a few ulp.
const GELU_TOL: Tolerance = Tolerance::new(1e-6, 1e-5);
/// ELU: exp within a few ulp (Vulkan allows 3 + 2·|x| ulp), and exp(x) − 1
/// cancels near 0 to a few ulp of 1 in absolute terms.
const ELU_TOL: Tolerance = Tolerance::new(1e-6, 1e-5);
/// The leaky ReLU slope of the checks (PyTorch's default is 0.01).
const SLOPE: f32 = 0.1;
/// `x * gain + bias` rounds twice in f32 (or once when fused): within 2 ulp of
/// |x·gain| + |y|; inputs are O(1), so an absolute 1e-6 covers the cancelling case.
const AFFINE_TOL: Tolerance = Tolerance::new(1e-6, 1e-6);
/// f32 sums over N·H·W: each invocation adds ≈ rows·C / 65536 terms in
/// sequence, then a 256-wide tree. Measured error ≤ 3e-8·Σ|terms| per channel
/// over the table (the worst-case bound, terms·eps, is far looser); allowed:
/// 2e-7·Σ|terms| (≈ 3.4 f32 unit roundoffs) plus 1e-6 relative.
const SUM_ERR_PER_ABS: f64 = 2e-7;

/// NHWC shapes: tiny, non-multiples of any tile, batch 1, one channel, VDVAE-like.
fn shapes(c: &Checker) -> Vec<[usize; 4]> {
    let mut s = vec![[1, 1, 1, 1], [1, 5, 7, 1], [3, 7, 5, 13], [2, 9, 11, 24], [4, 8, 8, 97]];
    if c.full() {
        // The largest tensor that fits one storage binding.
        let max = c.ctx.limits.max_storage_buffer_binding_size as usize / 4;
        s.push([max / (64 * 64 * 512), 64, 64, 512]);
    }
    s
}

fn shape_str(s: [usize; 4]) -> String {
    format!("{}x{}x{}x{}", s[0], s[1], s[2], s[3])
}

/// Per-channel reduction tolerance from the reference's Σ|terms| of each channel.
fn sum_tolerance(abs_sums: impl Iterator<Item = f64>) -> Tolerance {
    Tolerance::new(SUM_ERR_PER_ABS * abs_sums.fold(0.0, f64::max), 1e-6)
}

pub fn check(c: &mut Checker) -> Result<()> {
    check_divide(c)?;
    check_gelu(c)?;
    check_activations(c)?;
    check_add_affine(c)?;
    check_channels(c)
}

/// The index division every NHWC kernel of this family (and resample, groupnorm) uses.
fn check_divide(c: &mut Checker) -> Result<()> {
    for d in [1u32, 2, 3, 7, 13, 384, 1000, 65537, 999_983, super::MAX_DIVISOR] {
        let mut n = super::edge_numerators(d);
        n.extend((0..100_000u32).map(|i| i.wrapping_mul(2_654_435_761)));
        let (gn, gq) = (c.ctx.upload(&n), c.ctx.zeros(n.len()));
        c.ctx
            .run(&[&super::divide_on_gpu(c.ctx, gn.view(), d as usize, gq.view())?])?;
        let want: Vec<u32> = n.iter().map(|&v| v / d).collect();
        c.compare_u32(FAMILY, "div_exact", &format!("d={d}"), &c.ctx.read_u32(&gq)?, &want);
    }
    Ok(())
}

fn check_gelu(c: &mut Checker) -> Result<()> {
    let mut sizes = vec![1usize, 255, 4099];
    if c.full() {
        sizes.push(c.ctx.limits.max_storage_buffer_binding_size as usize / 4);
    }
    let mut rng = TestRng::new(1);
    for n in sizes {
        let shapes = format!("n={n}");
        let x = rng.vec(n, -6.0, 6.0);
        let dy = rng.vec(n, -1.0, 1.0);
        let (gx, gdy, gy) = (c.ctx.upload(&x), c.ctx.upload(&dy), c.ctx.zeros(n));
        let d = super::gelu_forward(c.ctx, gx.view(), gy.view())?;
        c.ctx.run(&[&d])?;
        c.compare(
            FAMILY,
            "gelu_forward",
            &shapes,
            &c.ctx.read_f32(&gy)?,
            &reference::gelu(&x),
            GELU_TOL,
        );
        let d = super::gelu_backward(c.ctx, gx.view(), gdy.view(), gy.view())?;
        c.ctx.run(&[&d])?;
        let want = reference::gelu_backward(&x, &dy);
        c.compare(FAMILY, "gelu_backward", &shapes, &c.ctx.read_f32(&gy)?, &want, GELU_TOL);
    }
    Ok(())
}

/// Leaky ReLU and ELU, forward and backward, scalar (odd lengths) and vec4
/// kernels; x includes exact zeros (the kink, where both take the x ≤ 0 side).
fn check_activations(c: &mut Checker) -> Result<()> {
    let mut sizes = vec![1usize, 255, 4099, 4100];
    if c.full() {
        sizes.push(c.ctx.limits.max_storage_buffer_binding_size as usize / 4);
    }
    let mut rng = TestRng::new(13);
    let ctx = c.ctx;
    for n in sizes {
        let shapes = format!("n={n}");
        let mut x = rng.vec(n, -6.0, 6.0);
        x.iter_mut().step_by(7).for_each(|v| *v = 0.0);
        let dy = rng.vec(n, -1.0, 1.0);
        let (gx, gdy, gy) = (ctx.upload(&x), ctx.upload(&dy), ctx.zeros(n));
        // One f32 multiply (or none) per element: correctly rounded on both sides.
        ctx.run(&[&super::leaky_relu_forward(ctx, gx.view(), gy.view(), SLOPE)?])?;
        let want = reference::leaky_relu(&x, SLOPE);
        c.compare(
            FAMILY,
            "leaky_relu",
            &shapes,
            &ctx.read_f32(&gy)?,
            &want,
            Tolerance::EXACT,
        );
        ctx.run(&[&super::leaky_relu_backward(
            ctx,
            gx.view(),
            gdy.view(),
            gy.view(),
            SLOPE,
        )?])?;
        let want = reference::leaky_relu_backward(&x, &dy, SLOPE);
        c.compare(
            FAMILY,
            "leaky_relu_backward",
            &shapes,
            &ctx.read_f32(&gy)?,
            &want,
            Tolerance::EXACT,
        );
        ctx.run(&[&super::elu_forward(ctx, gx.view(), gy.view())?])?;
        c.compare(
            FAMILY,
            "elu",
            &shapes,
            &ctx.read_f32(&gy)?,
            &reference::elu(&x),
            ELU_TOL,
        );
        ctx.run(&[&super::elu_backward(ctx, gx.view(), gdy.view(), gy.view())?])?;
        let want = reference::elu_backward(&x, &dy);
        c.compare(FAMILY, "elu_backward", &shapes, &ctx.read_f32(&gy)?, &want, ELU_TOL);
    }
    Ok(())
}

fn check_add_affine(c: &mut Checker) -> Result<()> {
    let mut rng = TestRng::new(11);
    let ctx = c.ctx;
    for s in shapes(c) {
        let (n, ch) = (s.iter().product::<usize>(), s[3]);
        let name = shape_str(s);
        let a = rng.vec(n, -2.0, 2.0);
        let b = rng.vec(n, -2.0, 2.0);
        let gain = rng.vec(ch, -2.0, 2.0);
        let bias = rng.vec(ch, -1.0, 1.0);
        let (ga, gb, gy) = (ctx.upload(&a), ctx.upload(&b), ctx.zeros(n));
        let (ggain, gbias) = (ctx.upload(&gain), ctx.upload(&bias));

        // Odd lengths take the scalar kernel, lengths divisible by 4 the vec4 one; both exact.
        ctx.run(&[&super::add(ctx, ga.view(), gb.view(), gy.view())?])?;
        let want = reference::add(&a, &b);
        c.compare(FAMILY, "add", &name, &ctx.read_f32(&gy)?, &want, Tolerance::EXACT);

        ctx.run(&[&super::affine(ctx, ga.view(), ggain.view(), gbias.view(), gy.view())?])?;
        let want = reference::affine(&a, &gain, &bias);
        c.compare(FAMILY, "affine", &name, &ctx.read_f32(&gy)?, &want, AFFINE_TOL);

        // Backward with x = a, dy = b.
        let (gdgain, gdbias) = (ctx.zeros(ch), ctx.zeros(ch));
        let scratch = ctx.zeros(super::affine_backward_scratch_len(n, ch));
        let ds = super::affine_backward(
            ctx,
            &AffineBackward {
                x: ga.view(),
                dy: gb.view(),
                gain: ggain.view(),
                dx: gy.view(),
                dgain: gdgain.view(),
                dbias: gdbias.view(),
                scratch: scratch.view(),
            },
        )?;
        ctx.run(&ds.iter().collect::<Vec<_>>())?;
        let (dx, dgain, dbias) = reference::affine_backward(&a, &b, &gain);
        // dy * gain is one correctly rounded f32 multiply.
        c.compare(
            FAMILY,
            "affine_backward dx",
            &name,
            &ctx.read_f32(&gy)?,
            &dx,
            Tolerance::EXACT,
        );
        let mut abs_dyx = vec![0f64; ch];
        let mut abs_dy = vec![0f64; ch];
        for (i, (&x, &g)) in a.iter().zip(&b).enumerate() {
            abs_dyx[i % ch] += (x as f64 * g as f64).abs();
            abs_dy[i % ch] += (g as f64).abs();
        }
        let tol = sum_tolerance(abs_dyx.into_iter());
        c.compare(
            FAMILY,
            "affine_backward dgain",
            &name,
            &ctx.read_f32(&gdgain)?,
            &dgain,
            tol,
        );
        let tol = sum_tolerance(abs_dy.into_iter());
        c.compare(
            FAMILY,
            "affine_backward dbias",
            &name,
            &ctx.read_f32(&gdbias)?,
            &dbias,
            tol,
        );
    }
    Ok(())
}

/// Channel splits `ca + cb = ch` to check: an uneven one (one channel per
/// invocation) and, when ch divides by 4, one on a multiple of 4 (the vec4 kernel).
fn channel_splits(ch: usize) -> Vec<usize> {
    let mut v = vec![ch / 3 + 1];
    if ch.is_multiple_of(4) && ch >= 8 {
        v.push(ch / 8 * 4);
    }
    v.retain(|&ca| ca < ch);
    v
}

/// Channel ranges to slice: one starting and ending inside the channels where
/// possible, and when ch divides by 4 one on multiples of 4.
fn channel_ranges(ch: usize) -> Vec<(usize, usize)> {
    let mut v = vec![(ch / 4, ch - ch / 5)];
    if ch.is_multiple_of(4) && ch >= 12 {
        v.push((4, ch / 8 * 4 + 4));
    }
    v
}

fn check_channels(c: &mut Checker) -> Result<()> {
    let mut rng = TestRng::new(12);
    let ctx = c.ctx;
    for s in shapes(c) {
        let (n, ch) = (s.iter().product::<usize>(), s[3]);
        let rows = n / ch;
        let name = shape_str(s);
        let x = rng.vec(n, -2.0, 2.0);
        let gx = ctx.upload(&x);
        for ca in channel_splits(ch) {
            let cb = ch - ca;
            let (ga, gb) = (ctx.zeros(rows * ca), ctx.zeros(rows * cb));
            let ds = super::split_channels(ctx, gx.view(), ga.view(), ca, gb.view(), cb)?;
            ctx.run(&ds.iter().collect::<Vec<_>>())?;
            let (wa, wb) = reference::split_channels(&x, ca, cb);
            let got = [ctx.read_f32(&ga)?, ctx.read_f32(&gb)?].concat();
            let what = format!("{name} -> {ca}+{cb}");
            c.compare(
                FAMILY,
                "split_channels",
                &what,
                &got,
                &[wa.clone(), wb.clone()].concat(),
                Tolerance::EXACT,
            );

            let gy = ctx.zeros(n);
            let ds = super::concat_channels(ctx, ga.view(), ca, gb.view(), cb, gy.view())?;
            ctx.run(&ds.iter().collect::<Vec<_>>())?;
            let want = reference::concat_channels(&wa, ca, &wb, cb);
            c.compare(
                FAMILY,
                "concat_channels",
                &what,
                &ctx.read_f32(&gy)?,
                &want,
                Tolerance::EXACT,
            );
        }

        for (start, end) in channel_ranges(ch) {
            let range = ChannelRange::new(ch, start, end);
            let w = end - start;
            let what = format!("{name} [{start}..{end})");
            let gs = ctx.zeros(rows * w);
            ctx.run(&[&super::slice_channels(ctx, gx.view(), range, gs.view())?])?;
            let want = reference::slice_channels(&x, ch, start, end);
            c.compare(
                FAMILY,
                "slice_channels",
                &what,
                &ctx.read_f32(&gs)?,
                &want,
                Tolerance::EXACT,
            );

            // a + x[.., range], the window read in place: one f32 add, exact.
            let a = rng.vec(rows * w, -2.0, 2.0);
            let (ga, gy) = (ctx.upload(&a), ctx.zeros(rows * w));
            ctx.run(&[&super::add_channels(ctx, ga.view(), gx.view(), range, gy.view())?])?;
            let want = reference::add_channels(&a, &x, ch, start);
            c.compare(
                FAMILY,
                "add_channels",
                &what,
                &ctx.read_f32(&gy)?,
                &want,
                Tolerance::EXACT,
            );

            let dy = rng.vec(rows * w, -1.0, 1.0);
            let gdy = ctx.upload(&dy);
            let before = rng.vec(n, -1.0, 1.0);
            let gdx = ctx.upload(&before);
            ctx.run(&[&super::slice_channels_backward(
                ctx,
                gdy.view(),
                gdx.view(),
                range,
                false,
            )?])?;
            let padded = reference::slice_channels_backward(&dy, ch, start, end);
            c.compare(
                FAMILY,
                "slice_backward",
                &what,
                &ctx.read_f32(&gdx)?,
                &padded,
                Tolerance::EXACT,
            );

            let gdx = ctx.upload(&before);
            ctx.run(&[&super::slice_channels_backward(
                ctx,
                gdy.view(),
                gdx.view(),
                range,
                true,
            )?])?;
            // One f32 add per element: correctly rounded on both sides.
            let want = reference::add(&before, &padded);
            let got = ctx.read_f32(&gdx)?;
            c.compare(
                FAMILY,
                "slice_backward accumulate",
                &what,
                &got,
                &want,
                Tolerance::EXACT,
            );
        }
    }
    Ok(())
}

pub fn bench_cases(ctx: &GpuContext) -> Result<Vec<BenchCase>> {
    let shape = [16usize, 32, 32, 384];
    let n: usize = shape.iter().product();
    let c = shape[3];
    let name = shape_str(shape);
    let mut rng = TestRng::new(2);
    let mut cases = Vec::new();

    let x = ctx.upload(&rng.vec(n, -3.0, 3.0));
    let y = ctx.zeros(n);
    let d = super::gelu_forward(ctx, x.view(), y.view())?;
    cases.push(BenchCase::new(
        "gelu_forward",
        format!("n={n}"),
        20.0 * n as f64,
        8.0 * n as f64,
        vec![d],
        vec![x, y],
    ));

    let (a, b, y) = (
        ctx.upload(&rng.vec(n, -1.0, 1.0)),
        ctx.upload(&rng.vec(n, -1.0, 1.0)),
        ctx.zeros(n),
    );
    let d = super::add(ctx, a.view(), b.view(), y.view())?;
    cases.push(BenchCase::new(
        "add (vec4)",
        &name,
        n as f64,
        12.0 * n as f64,
        vec![d],
        vec![a, b, y],
    ));

    let m = n - 1;
    let (a, b, y) = (
        ctx.upload(&rng.vec(m, -1.0, 1.0)),
        ctx.upload(&rng.vec(m, -1.0, 1.0)),
        ctx.zeros(m),
    );
    let d = super::add(ctx, a.view(), b.view(), y.view())?;
    cases.push(BenchCase::new(
        "add (scalar)",
        format!("n={m}"),
        m as f64,
        12.0 * m as f64,
        vec![d],
        vec![a, b, y],
    ));

    let (x, dy, dx) = (
        ctx.upload(&rng.vec(n, -1.0, 1.0)),
        ctx.upload(&rng.vec(n, -1.0, 1.0)),
        ctx.zeros(n),
    );
    let (gain, bias) = (ctx.upload(&rng.vec(c, -1.0, 1.0)), ctx.upload(&rng.vec(c, -1.0, 1.0)));
    let (dgain, dbias) = (ctx.zeros(c), ctx.zeros(c));
    let scratch = ctx.zeros(super::affine_backward_scratch_len(n, c));
    let fwd = super::affine(ctx, x.view(), gain.view(), bias.view(), dx.view())?;
    let bwd = super::affine_backward(
        ctx,
        &AffineBackward {
            x: x.view(),
            dy: dy.view(),
            gain: gain.view(),
            dx: dx.view(),
            dgain: dgain.view(),
            dbias: dbias.view(),
            scratch: scratch.view(),
        },
    )?;
    cases.push(BenchCase::new(
        "affine",
        &name,
        2.0 * n as f64,
        8.0 * n as f64,
        vec![fwd],
        vec![],
    ));
    cases.push(BenchCase::new(
        "affine_backward",
        &name,
        4.0 * n as f64,
        12.0 * n as f64,
        bwd,
        vec![x, dy, dx, gain, bias, dgain, dbias, scratch],
    ));

    let (ca, cb) = (c / 2, c - c / 2);
    let rows = n / c;
    let (a, b, y) = (ctx.zeros(rows * ca), ctx.zeros(rows * cb), ctx.zeros(n));
    let ds = super::concat_channels(ctx, a.view(), ca, b.view(), cb, y.view())?;
    cases.push(BenchCase::new(
        "concat_channels",
        format!("{name} = {ca}+{cb}"),
        0.0,
        8.0 * n as f64,
        ds,
        vec![a, b, y],
    ));
    Ok(cases)
}
