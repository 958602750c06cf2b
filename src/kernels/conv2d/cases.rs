//! The conv2d family's table of checked shapes and its benchmark cases.

use super::FlipJob;
use super::{reference, Conv2dShape, ConvPass, Path};
use crate::bench::BenchCase;
use crate::check::{Checker, Tolerance};
use crate::error::Result;
use crate::gpu::{GpuBuffer, GpuContext};
use crate::kernels::testdata::TestRng;

const FAMILY: &str = "conv2d";

/// Tolerance for a result that sums `len` products of inputs bounded by 2 (x, act(x))
/// and 1 (w, dy). f32 accumulation of `len` such terms errs by about
/// sqrt(len)·2^-24·max|partial sum| ≲ len·2^-24·2 in the worst ordering; the tiled
/// and simple kernels sum in different orders, so allow 2^-21 per term (4x margin)
/// plus rtol 1e-5 for the GELU approximation (erfc error < 1.2e-7).
fn reduction_tol(len: usize) -> Tolerance {
    Tolerance::new(len as f64 * 4.8e-7, 1e-5)
}

/// Every shape in the table, checked on both paths where the tiled one applies.
fn shapes(full: bool) -> Vec<Conv2dShape> {
    let s = Conv2dShape::new;
    let mut v = vec![
        // Batch 1, a single pixel, every epilogue option.
        s(1, 1, 1, 4, 4, 3).with_gelu(true).with_bias(true).with_residual(true),
        // 2x2 image, odd channel counts: the tiled path pads x, w and dy.
        s(1, 2, 2, 3, 5, 3).with_bias(true),
        s(2, 5, 7, 8, 4, 3).with_gelu(true).with_residual(true),
        // Single output / input channel.
        s(1, 13, 11, 4, 1, 3).with_bias(true),
        s(2, 5, 7, 1, 8, 3).with_gelu(true),
        s(1, 13, 11, 12, 33, 3).with_gelu(true).with_bias(true),
        s(2, 7, 5, 64, 64, 3),
        // 1x1 convs.
        s(1, 5, 7, 33, 12, 1).with_bias(true),
        s(2, 13, 11, 16, 12, 1)
            .with_gelu(true)
            .with_bias(true)
            .with_residual(true),
        s(1, 1, 1, 5, 1, 1),
        s(3, 2, 2, 8, 40, 1).with_gelu(true),
        // dx with GELU whose input channels take 4- and 2-wide epilogue vectors
        // (32 channels: 4 per lane; 96: 6 per lane in two chunks), the VDVAE's c1 shapes.
        s(2, 5, 9, 32, 8, 1).with_gelu(true).with_bias(true),
        s(1, 6, 5, 96, 24, 1).with_gelu(true).with_bias(true),
        s(1, 9, 7, 32, 12, 3).with_gelu(true),
        // One dw tile over 128 row segments: a reduction split in two even on a CPU adapter,
        // so the reduction-split sums run (smaller convs' dw write dw and db in place).
        s(2, 32, 16, 4, 8, 3).with_gelu(true).with_bias(true),
        // 71680 pixels: more than the 65535 loop iterations llvmpipe allows one
        // invocation, so the reductions must spread over a workgroup.
        s(70, 32, 32, 1, 2, 1).with_gelu(true),
    ];
    v.extend(ragged_shapes());
    if full {
        // Large but quick: the bench layer at batch 2 (the simple dw kernel dominates).
        v.push(
            s(2, 32, 32, 64, 64, 3)
                .with_gelu(true)
                .with_bias(true)
                .with_residual(true),
        );
        v.push(s(2, 32, 32, 64, 96, 1).with_gelu(true).with_bias(true));
    }
    // Channel counts that are no multiple of a tile (1, 3, 30, 50, 100, 384): masked
    // inside the workgroup path's kernels (its f32 variant; the last one its vec4
    // variant with partial tiles along every GEMM dimension: M 99, N 132, K 612).
    v.extend([
        s(1, 3, 5, 30, 50, 3)
            .with_gelu(true)
            .with_bias(true)
            .with_residual(true),
        s(1, 4, 3, 100, 3, 1).with_gelu(true).with_bias(true),
        s(1, 2, 3, 384, 100, 1).with_residual(true),
        s(1, 1, 1, 50, 384, 3).with_gelu(true),
        s(2, 6, 7, 3, 30, 3).with_bias(true),
        s(1, 9, 11, 68, 132, 3).with_gelu(true).with_bias(true),
    ]);
    v
}

/// Channel counts that are no multiple of 4 (1, 3, 5, 30, 50 and 100 against
/// each other and whole vec4s), which the tiled path pads (`pad.rs`): 1x1 and
/// 3x3, one image and several, 1x1 up to 8x8 images and odd sizes, each
/// epilogue the graph uses. `check_shape` runs the forward, dx (+ addend,
/// + act) and dw (overwrite, accumulate, dw and db in one buffer) of each.
fn ragged_shapes() -> Vec<Conv2dShape> {
    let s = Conv2dShape::new;
    vec![
        // One pixel: every tap but the centre reads padding.
        s(1, 1, 1, 3, 5, 1).with_gelu(true).with_bias(true),
        s(2, 1, 1, 50, 30, 3).with_bias(true).with_residual(true),
        // A thin input (an image's channels) into a ragged Cout.
        s(1, 4, 4, 1, 50, 3).with_gelu(true).with_bias(true),
        s(3, 4, 4, 100, 3, 1).with_bias(true).with_residual(true),
        // The output conv: 1x1, whole-vec4 Cin into 5 mixtures x 10 (CIFAR)
        // and 3 x 10 (MNIST) channels: dx and dw pad dy only.
        s(2, 8, 8, 64, 50, 1).with_bias(true),
        s(1, 7, 7, 32, 30, 1).with_bias(true),
        // Ragged Cin only (z_proj from an odd latent), 3x3 with every epilogue.
        s(1, 8, 8, 30, 100, 3)
            .with_gelu(true)
            .with_bias(true)
            .with_residual(true),
        s(2, 7, 7, 5, 1, 3).with_gelu(true),
        s(1, 5, 5, 100, 30, 1).with_gelu(true).with_bias(true),
        s(2, 5, 5, 30, 5, 3).with_bias(true),
        // 13 input vec4s read in pairs: dw workgroups of 7 and 6 (one masked).
        s(2, 6, 6, 50, 12, 1).with_gelu(true).with_bias(true),
        // A block's last conv into 2 zdim (+ width) channels: 2·5 and 2·3 + 16.
        s(2, 8, 8, 16, 10, 3).with_gelu(true).with_bias(true),
        s(3, 4, 4, 8, 22, 1).with_gelu(true).with_bias(true).with_residual(true),
        // 144 row segments: dw reduces in several splits and sums them after.
        s(4, 36, 7, 5, 30, 1).with_gelu(true).with_bias(true),
        s(2, 9, 16, 3, 50, 3).with_gelu(true).with_bias(true),
        // Over more than `shape::FEW_PIXELS` pixels: the forward copies its ragged
        // weights padded (over fewer, the shapes above, it reads them in place).
        s(2, 24, 24, 5, 12, 3).with_gelu(true).with_bias(true),
    ]
}

/// Random inputs of one case (x in [-2, 2], w and dy in [-1, 1]).
struct Inputs {
    x: Vec<f32>,
    w: Vec<f32>,
    bias: Vec<f32>,
    residual: Vec<f32>,
    dy: Vec<f32>,
    /// Existing gradients, for the accumulate checks.
    dw0: Vec<f32>,
    db0: Vec<f32>,
    /// Another gradient of x, for the dx-plus-addend check.
    residual_x: Vec<f32>,
}

impl Inputs {
    fn new(s: &Conv2dShape, seed: u64) -> Inputs {
        let mut rng = TestRng::new(seed);
        Inputs {
            x: rng.vec(s.x_len(), -2.0, 2.0),
            w: rng.vec(s.w_len(), -1.0, 1.0),
            bias: rng.vec(s.cout, -1.0, 1.0),
            residual: rng.vec(s.y_len(), -1.0, 1.0),
            dy: rng.vec(s.y_len(), -1.0, 1.0),
            dw0: rng.vec(s.w_len(), -1.0, 1.0),
            db0: rng.vec(s.cout, -1.0, 1.0),
            residual_x: rng.vec(s.x_len(), -1.0, 1.0),
        }
    }
}

/// Every path that runs `pass` of `s` here (the workgroup path runs every
/// case on every adapter, though `best_*` picks it only by tuning or `--kernels gpu`).
fn paths(ctx: &GpuContext, s: &Conv2dShape, pass: ConvPass) -> Vec<Path> {
    Path::ALL.into_iter().filter(|p| p.runs(ctx, s, pass)).collect()
}

fn label(path: Path, kernel: &str) -> String {
    match path {
        Path::Simple => kernel.to_string(),
        _ => format!("{kernel} ({})", path.name()),
    }
}

pub(super) fn describe(s: &Conv2dShape) -> String {
    let mut d = format!("{}x{}x{}x{} k{} ->{}", s.n, s.h, s.w, s.cin, s.k, s.cout);
    for (on, tag) in [(s.gelu_input, " gelu"), (s.bias, " b"), (s.residual, " r")] {
        if on {
            d += tag;
        }
    }
    d
}

pub fn check(c: &mut Checker) -> Result<()> {
    if !super::tiled::usable(c.ctx) {
        let why = format!(
            "need subgroups of at least 8 lanes; this adapter's are {} (the simple kernels run instead)",
            c.subgroups()
        );
        c.skip(FAMILY, "tiled forward, dx and dw", why);
    }
    for (i, s) in shapes(c.full()).iter().enumerate() {
        check_shape(c, s, 100 + i as u64)?;
    }
    for (i, s) in cat_shapes().iter().enumerate() {
        check_cat_shape(c, s, 300 + i as u64)?;
    }
    check_flip_many(c)
}

/// Every shape `check` runs (with the full table's large ones when `full`), cats included.
pub fn checked_shapes(full: bool) -> Vec<Conv2dShape> {
    let mut all = shapes(full);
    all.extend(cat_shapes());
    all
}

/// Convs over `cat[x1, x2]` read from two tensors (`Conv2dShape::cat`).
fn cat_shapes() -> Vec<Conv2dShape> {
    let s = Conv2dShape::new;
    vec![
        // The posterior's first conv: 1x1, GELU, bias, halves of whole vec4s.
        // 64 dx channels: 8 per lane, 4-wide epilogue vectors, one chunk.
        s(2, 5, 9, 64, 16, 1).with_gelu(true).with_bias(true).with_cat(32),
        // 96 dx channels in two chunks of 48 (2-wide vectors); the cat split at 20
        // falls inside the first chunk and inside a lane's channels' workgroup.
        s(1, 6, 5, 96, 24, 1).with_gelu(true).with_bias(true).with_cat(20),
        // 40 dx channels: 5 per lane, one channel per access; uneven halves.
        s(3, 2, 3, 40, 12, 1).with_gelu(true).with_cat(28),
        // No GELU: dx's plain store with the addends as residuals.
        s(1, 3, 5, 12, 8, 1).with_residual(true).with_cat(4),
        // A 3x3 over a cat: the tiled forward copies the halves side by side,
        // dx runs the simple kernel, dw reads the halves in place.
        s(1, 5, 6, 8, 8, 3).with_gelu(true).with_bias(true).with_cat(4),
        // Halves not of whole vec4s: the tiled forward and dw copy them side by
        // side into padded channels, dx runs the simple kernel.
        s(1, 3, 4, 7, 5, 1).with_gelu(true).with_cat(3),
        // A 3x3 over a cat of 30 + 20 channels into 30 (the workgroup path's f32 variant).
        s(1, 4, 5, 50, 30, 3).with_gelu(true).with_bias(true).with_cat(30),
        // The posterior's first conv into a ragged middle width: dx and dw pad
        // dy, the halves read in place.
        s(2, 5, 5, 16, 30, 1).with_gelu(true).with_bias(true).with_cat(8),
        s(1, 4, 4, 64, 50, 1).with_gelu(true).with_bias(true).with_cat(32),
        // Ragged halves and Cout, 3x3.
        s(1, 5, 7, 7, 10, 3).with_gelu(true).with_bias(true).with_cat(3),
    ]
}

/// One cat conv against the reference on the concatenated input (and, where the
/// kernels sum in the same order, bit for bit against the one-input kernel on
/// the concatenation): forward, dx with each addend and act, dw (+ db).
fn check_cat_shape(c: &mut Checker, s: &Conv2dShape, seed: u64) -> Result<()> {
    use crate::kernels::elementwise::reference::split_channels;
    let ctx = c.ctx;
    let shapes = format!("{} cat {}", describe(s), s.cat_split());
    let (c1, c2) = (s.cat_split(), s.cin - s.cat_split());
    let plain = Conv2dShape { cat: None, ..*s };
    let inp = Inputs::new(&plain, seed);
    let (x1, x2) = split_channels(&inp.x, c1, c2);
    let (add1, add2) = split_channels(&inp.residual_x, c1, c2);
    let up = |v: &[f32]| ctx.upload(v);
    let (xb, x1b, x2b) = (up(&inp.x), up(&x1), up(&x2));
    let (w, dy, bias, residual) = (up(&inp.w), up(&inp.dy), up(&inp.bias), up(&inp.residual));
    let (add1b, add2b) = (up(&add1), up(&add2));
    let cat = || super::InputLike::cat(x1b.view(), x2b.view());
    let taps = s.k * s.k;

    // Forward.
    let want = reference::forward(
        &plain,
        &inp.x,
        &inp.w,
        s.bias.then_some(&inp.bias[..]),
        s.residual.then_some(&inp.residual[..]),
    );
    let scratch = ctx.zeros(s.forward_scratch_len().max(1));
    for path in paths(ctx, s, ConvPass::Forward) {
        let (bv, rv) = (s.bias.then(|| bias.view()), s.residual.then(|| residual.view()));
        let run = |shape: &Conv2dShape, x: super::InputLike<'_>| -> Result<Vec<f32>> {
            let y = ctx.zeros(s.y_len());
            let args = super::Forward {
                x,
                w: w.view(),
                bias: bv,
                residual: rv,
                scratch: scratch.view(),
                y: y.view(),
            };
            let ds = super::forward(ctx, path, shape, &args)?;
            ctx.run(&ds.iter().collect::<Vec<_>>())?;
            ctx.read_f32(&y)
        };
        let got = run(s, cat())?;
        let tol = reduction_tol(taps * s.cin + 2);
        c.compare(FAMILY, &label(path, "forward cat"), &shapes, &got, &want, tol);
        let one = run(&plain, xb.view().into())?;
        let what = label(path, "forward cat = over the concatenation");
        c.compare(FAMILY, &what, &shapes, &got, &one, Tolerance::EXACT);
    }

    // dx (two halves), with either addend and with act = gelu(cat[x1, x2]).
    let want = reference::backward_input(&plain, &inp.x, &inp.w, &inp.dy);
    let (want1, want2) = split_channels(&want, c1, c2);
    let plus = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| p + q).collect::<Vec<f32>>();
    let want_act = crate::kernels::elementwise::reference::gelu(&inp.x);
    let scratch = ctx.zeros(s.backward_input_scratch_len());
    let tol = reduction_tol(taps * s.cout);
    for path in paths(ctx, s, ConvPass::BackwardInput) {
        let mut halves_one = None;
        for (first, second) in [(false, false), (true, false), (false, true), (true, true)] {
            let act_too = s.gelu_input && first && second;
            let (dx1, dx2, act) = (ctx.zeros(x1.len()), ctx.zeros(x2.len()), ctx.zeros(s.x_len()));
            let plain_args = super::BackwardInput::plain(
                cat(),
                w.view(),
                dy.view(),
                scratch.view(),
                super::InputLike::cat(dx1.view(), dx2.view()),
            );
            let args = super::BackwardInput {
                addend: first.then(|| add1b.view()),
                addend2: second.then(|| add2b.view()),
                act: act_too.then(|| act.view()),
                ..plain_args
            };
            ctx.run(&super::backward_input(ctx, path, s, &args)?.iter().collect::<Vec<_>>())?;
            let (got1, got2) = (ctx.read_f32(&dx1)?, ctx.read_f32(&dx2)?);
            let mut what = String::from("backward_input cat");
            if first {
                what += " + addend";
            }
            if second {
                what += " + addend2";
            }
            if act_too {
                what += " +act";
            }
            let w1 = if first { plus(&want1, &add1) } else { want1.clone() };
            let w2 = if second { plus(&want2, &add2) } else { want2.clone() };
            c.compare(
                FAMILY,
                &label(path, &format!("{what}, first half")),
                &shapes,
                &got1,
                &w1,
                tol,
            );
            c.compare(
                FAMILY,
                &label(path, &format!("{what}, second half")),
                &shapes,
                &got2,
                &w2,
                tol,
            );
            if act_too {
                let what = label(path, "gelu(cat) beside dx cat");
                c.compare(
                    FAMILY,
                    &what,
                    &shapes,
                    &ctx.read_f32(&act)?,
                    &want_act,
                    Tolerance::new(1e-6, 1e-5),
                );
            }
            if !first && !second {
                halves_one = Some(crate::kernels::elementwise::reference::concat_channels(
                    &got1, c1, &got2, c2,
                ));
            }
        }
        // The same dx over the concatenation, bit for bit.
        let dx = ctx.zeros(s.x_len());
        let args = super::BackwardInput::plain(xb.view(), w.view(), dy.view(), scratch.view(), dx.view());
        let ds = super::backward_input(ctx, path, &plain, &args)?;
        ctx.run(&ds.iter().collect::<Vec<_>>())?;
        let what = label(path, "backward_input cat = over the concatenation");
        c.compare(
            FAMILY,
            &what,
            &shapes,
            &halves_one.unwrap(),
            &ctx.read_f32(&dx)?,
            Tolerance::EXACT,
        );
    }

    // dw and db, GELU applied in the kernel or once into act (two halves).
    let want_dw = reference::backward_weight(&plain, &inp.x, &inp.dy);
    let want_db = reference::backward_bias(&plain, &inp.dy);
    let scratch = ctx.zeros(s.backward_weight_scratch_len());
    let act = ctx.zeros(s.act_len());
    let dw_tol = reduction_tol(s.pixels() + 1);
    for path in paths(ctx, s, ConvPass::BackwardWeight) {
        for with_act in [false, true] {
            let (dw, db) = (ctx.zeros(s.w_len()), ctx.zeros(s.cout));
            let args = super::BackwardWeight {
                x: cat(),
                dy: dy.view(),
                scratch: scratch.view(),
                act: with_act.then(|| act.view()),
                dw: dw.view(),
                db: Some(db.view()),
                accumulate: false,
            };
            let ds = super::backward_weight(ctx, path, s, &args)?;
            ctx.run(&ds.iter().collect::<Vec<_>>())?;
            let suffix = if with_act && s.gelu_input { ", act given" } else { "" };
            let kernel = label(path, &format!("backward_weight cat{suffix}"));
            c.compare(FAMILY, &kernel, &shapes, &ctx.read_f32(&dw)?, &want_dw, dw_tol);
            let kernel = label(path, &format!("backward_bias cat{suffix}"));
            c.compare(FAMILY, &kernel, &shapes, &ctx.read_f32(&db)?, &want_db, dw_tol);
        }
    }
    Ok(())
}

/// Several convs' weights flipped in one pass from one buffer into another (at
/// 256-byte-aligned offsets with gaps, as the executor lays them), and a dx that
/// reads its flipped weights from there instead of flipping them itself.
fn check_flip_many(c: &mut Checker) -> Result<()> {
    let ctx = c.ctx;
    let convs = [
        Conv2dShape::new(2, 5, 7, 8, 12, 3).with_gelu(true),
        Conv2dShape::new(1, 4, 4, 4, 4, 1),
        Conv2dShape::new(1, 3, 3, 12, 20, 3),
    ];
    let mut rng = TestRng::new(77);
    let weights: Vec<Vec<f32>> = convs.iter().map(|s| rng.vec(s.w_len(), -1.0, 1.0)).collect();
    let (mut offsets, mut src) = (Vec::new(), Vec::new());
    for w in &weights {
        src.resize((src.len() + 3).next_multiple_of(64), 0.0f32);
        offsets.push(src.len());
        src.extend(w);
    }
    let (src, dst) = (ctx.upload(&src), ctx.zeros(src.len()));
    let jobs: Vec<FlipJob<'_>> = convs
        .iter()
        .zip(&offsets)
        .map(|(s, &o)| FlipJob {
            shape: *s,
            w: src.slice(o, s.w_len()),
            wt: dst.slice(o, s.w_len()),
        })
        .collect();
    let table = ctx.upload(&super::flip_table(&jobs)?);
    ctx.run(&[&super::flip_transpose_many(ctx, &jobs, table.view())?])?;
    let got = ctx.read_f32(&dst)?;
    for ((s, w), &o) in convs.iter().zip(&weights).zip(&offsets) {
        let want = reference::flip_transpose(s, w);
        c.compare(
            FAMILY,
            "flip_transpose_many",
            &describe(s),
            &got[o..o + s.w_len()],
            &want,
            Tolerance::EXACT,
        );
    }
    let s = &convs[0];
    if Path::Tiled.runs(ctx, s, ConvPass::BackwardInput) {
        let inp = Inputs::new(s, 5);
        let (x, dy) = (ctx.upload(&inp.x), ctx.upload(&inp.dy));
        let (dx, scratch) = (ctx.zeros(s.x_len()), ctx.zeros(s.backward_input_scratch_len()));
        let w = ctx.upload(&weights[0]);
        let plain = super::BackwardInput::plain(x.view(), w.view(), dy.view(), scratch.view(), dx.view());
        let args = super::BackwardInput {
            transposed: Some(jobs[0].wt),
            ..plain
        };
        ctx.run(
            &super::backward_input(ctx, Path::best(ctx, s, ConvPass::BackwardInput), s, &args)?
                .iter()
                .collect::<Vec<_>>(),
        )?;
        let want = reference::backward_input(s, &inp.x, &weights[0], &inp.dy);
        let tol = reduction_tol(s.k * s.k * s.cout);
        c.compare(
            FAMILY,
            "backward_input, flipped weights given",
            &describe(s),
            &ctx.read_f32(&dx)?,
            &want,
            tol,
        );
    }
    Ok(())
}

fn check_shape(c: &mut Checker, s: &Conv2dShape, seed: u64) -> Result<()> {
    let ctx = c.ctx;
    let shapes = describe(s);
    let inp = Inputs::new(s, seed);
    let (x, w, dy) = (ctx.upload(&inp.x), ctx.upload(&inp.w), ctx.upload(&inp.dy));
    let bias = ctx.upload(&inp.bias);
    let residual = ctx.upload(&inp.residual);
    let taps = s.k * s.k;

    let want = reference::forward(
        s,
        &inp.x,
        &inp.w,
        s.bias.then_some(&inp.bias[..]),
        s.residual.then_some(&inp.residual[..]),
    );
    let scratch = ctx.zeros(s.forward_scratch_len().max(1));
    for path in paths(ctx, s, ConvPass::Forward) {
        let y = ctx.zeros(s.y_len());
        let args = super::Forward {
            x: x.view().into(),
            w: w.view(),
            bias: s.bias.then(|| bias.view()),
            residual: s.residual.then(|| residual.view()),
            scratch: scratch.view(),
            y: y.view(),
        };
        let ds = super::forward(ctx, path, s, &args)?;
        ctx.run(&ds.iter().collect::<Vec<_>>())?;
        let tol = reduction_tol(taps * s.cin + 2);
        c.compare(FAMILY, &label(path, "forward"), &shapes, &ctx.read_f32(&y)?, &want, tol);
    }

    let want = reference::backward_input(s, &inp.x, &inp.w, &inp.dy);
    let scratch = ctx.zeros(s.backward_input_scratch_len());
    for path in paths(ctx, s, ConvPass::BackwardInput) {
        let dx = ctx.zeros(s.x_len());
        let args = super::BackwardInput::plain(x.view(), w.view(), dy.view(), scratch.view(), dx.view());
        let ds = super::backward_input(ctx, path, s, &args)?;
        ctx.run(&ds.iter().collect::<Vec<_>>())?;
        let tol = reduction_tol(taps * s.cout);
        c.compare(
            FAMILY,
            &label(path, "backward_input"),
            &shapes,
            &ctx.read_f32(&dx)?,
            &want,
            tol,
        );
        // dx with another gradient of x added on the way out.
        let (dx, addend) = (ctx.zeros(s.x_len()), ctx.upload(&inp.residual_x));
        let plain = super::BackwardInput::plain(x.view(), w.view(), dy.view(), scratch.view(), dx.view());
        let args = super::BackwardInput {
            addend: Some(addend.view()),
            ..plain
        };
        let ds = super::backward_input(ctx, path, s, &args)?;
        ctx.run(&ds.iter().collect::<Vec<_>>())?;
        let want_sum: Vec<f32> = want.iter().zip(&inp.residual_x).map(|(a, b)| a + b).collect();
        let what = label(path, "backward_input + addend");
        c.compare(FAMILY, &what, &shapes, &ctx.read_f32(&dx)?, &want_sum, tol);
        if s.gelu_input {
            // dx together with act = gelu(x), written by the same pass on the tiled path.
            let (dx, act) = (ctx.zeros(s.x_len()), ctx.zeros(s.x_len()));
            let plain = super::BackwardInput::plain(x.view(), w.view(), dy.view(), scratch.view(), dx.view());
            let args = super::BackwardInput {
                act: Some(act.view()),
                ..plain
            };
            let ds = super::backward_input(ctx, path, s, &args)?;
            ctx.run(&ds.iter().collect::<Vec<_>>())?;
            let what = label(path, "backward_input+act");
            c.compare(FAMILY, &what, &shapes, &ctx.read_f32(&dx)?, &want, tol);
            let want_act = crate::kernels::elementwise::reference::gelu(&inp.x);
            let gelu_tol = Tolerance::new(1e-6, 1e-5);
            c.compare(
                FAMILY,
                &label(path, "gelu(x) beside dx"),
                &shapes,
                &ctx.read_f32(&act)?,
                &want_act,
                gelu_tol,
            );
        }
    }

    let want_dw = reference::backward_weight(s, &inp.x, &inp.dy);
    let want_db = reference::backward_bias(s, &inp.dy);
    let plus = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| p + q).collect::<Vec<f32>>();
    let scratch = ctx.zeros(s.backward_weight_scratch_len());
    let act = ctx.zeros(s.x_len());
    let dw_tol = reduction_tol(s.pixels() + 1);
    for path in paths(ctx, s, ConvPass::BackwardWeight) {
        // The accumulate run also checks the dw kernel's own GELU (no act buffer).
        for accumulate in [false, true] {
            let (dw, db) = if accumulate {
                (ctx.upload(&inp.dw0), ctx.upload(&inp.db0))
            } else {
                (ctx.zeros(s.w_len()), ctx.zeros(s.cout))
            };
            let args = super::BackwardWeight {
                x: x.view().into(),
                dy: dy.view(),
                scratch: scratch.view(),
                act: (!accumulate).then(|| act.view()),
                dw: dw.view(),
                db: Some(db.view()),
                accumulate,
            };
            let ds = super::backward_weight(ctx, path, s, &args)?;
            ctx.run(&ds.iter().collect::<Vec<_>>())?;
            let (wdw, wdb) = if accumulate {
                (plus(&want_dw, &inp.dw0), plus(&want_db, &inp.db0))
            } else {
                (want_dw.clone(), want_db.clone())
            };
            let suffix = if accumulate { " +=" } else { "" };
            let kernel = label(path, &format!("backward_weight{suffix}"));
            c.compare(FAMILY, &kernel, &shapes, &ctx.read_f32(&dw)?, &wdw, dw_tol);
            let kernel = label(path, &format!("backward_bias{suffix}"));
            c.compare(FAMILY, &kernel, &shapes, &ctx.read_f32(&db)?, &wdb, dw_tol);
        }
        // dw and db in one buffer, a gap between them (as parameter gradients lie):
        // the tiled path sums both in one pass and leaves the gap alone.
        // db at the next 256-byte boundary, as the memory plan aligns tensors.
        let gap = (s.w_len() + 1).next_multiple_of(64) - s.w_len();
        let mut init = vec![0.0f32; s.w_len() + gap + s.cout];
        init[s.w_len()..s.w_len() + gap].fill(7.0);
        let both = ctx.upload(&init);
        let args = super::BackwardWeight {
            x: x.view().into(),
            dy: dy.view(),
            scratch: scratch.view(),
            act: None,
            dw: both.slice(0, s.w_len()),
            db: Some(both.slice(s.w_len() + gap, s.cout)),
            accumulate: false,
        };
        let ds = super::backward_weight(ctx, path, s, &args)?;
        ctx.run(&ds.iter().collect::<Vec<_>>())?;
        let got = ctx.read_f32(&both)?;
        let mut want = want_dw.clone();
        want.extend(vec![7.0; gap]);
        want.extend(&want_db);
        c.compare(
            FAMILY,
            &label(path, "backward_weight+bias, one buffer"),
            &shapes,
            &got,
            &want,
            dw_tol,
        );
    }
    let db = ctx.zeros(s.cout);
    let d = super::backward_bias(ctx, s, dy.view(), db.view(), false)?;
    ctx.run(&[&d])?;
    c.compare(FAMILY, "backward_bias", &shapes, &ctx.read_f32(&db)?, &want_db, dw_tol);
    Ok(())
}

/// The benchmarked layer: VDVAE's 3x3 at width 64 on 32x32 images, batch 16.
fn bench_layer(k: usize, gelu: bool) -> Conv2dShape {
    Conv2dShape::new(16, 32, 32, 64, 64, k).with_gelu(gelu).with_bias(true)
}

pub fn bench_cases(ctx: &GpuContext) -> Result<Vec<BenchCase>> {
    let mut cases = Vec::new();
    for (k, gelu) in [(3, false), (3, true), (1, false)] {
        let s = bench_layer(k, gelu);
        let conv = format!("conv{k}x{k}");
        let g = if gelu { " gelu" } else { "" };
        let mut rng = TestRng::new(7);
        let x = ctx.upload(&rng.vec(s.x_len(), -2.0, 2.0));
        let w = ctx.upload(&rng.vec(s.w_len(), -1.0, 1.0));
        let bias = ctx.upload(&rng.vec(s.cout, -1.0, 1.0));
        let dy = ctx.upload(&rng.vec(s.y_len(), -1.0, 1.0));
        let (y, dx, dw, db) = (
            ctx.zeros(s.y_len()),
            ctx.zeros(s.x_len()),
            ctx.zeros(s.w_len()),
            ctx.zeros(s.cout),
        );
        let scratch_in = ctx.zeros(s.backward_input_scratch_len());
        let scratch_w = ctx.zeros(s.backward_weight_scratch_len());
        let act = ctx.zeros(s.x_len());
        let shapes = describe(&s);
        let scratch_f = ctx.zeros(s.forward_scratch_len().max(1));
        let best = |pass| Path::best(ctx, &s, pass);
        let fwd = || {
            let args = super::Forward {
                x: x.view().into(),
                w: w.view(),
                bias: Some(bias.view()),
                residual: None,
                scratch: scratch_f.view(),
                y: y.view(),
            };
            super::forward(ctx, best(ConvPass::Forward), &s, &args)
        };
        let bwd_in = || {
            let args = super::BackwardInput::plain(x.view(), w.view(), dy.view(), scratch_in.view(), dx.view());
            super::backward_input(ctx, best(ConvPass::BackwardInput), &s, &args)
        };
        let bwd_w = || {
            let args = super::BackwardWeight {
                x: x.view().into(),
                dy: dy.view(),
                scratch: scratch_w.view(),
                act: Some(act.view()),
                dw: dw.view(),
                db: Some(db.view()),
                accumulate: false,
            };
            super::backward_weight(ctx, best(ConvPass::BackwardWeight), &s, &args)
        };
        let name = |what: &str| format!("{conv} {what}{g}");
        cases.push(BenchCase::new(
            name("forward"),
            &shapes,
            s.flops(),
            s.bytes(),
            fwd()?,
            vec![],
        ));
        let bytes_in = 4.0 * (2 * s.x_len() + s.w_len() + s.y_len()) as f64;
        cases.push(BenchCase::new(
            name("dx"),
            &shapes,
            s.flops(),
            bytes_in,
            bwd_in()?,
            vec![],
        ));
        let bytes_w = 4.0 * (s.x_len() + s.y_len() + s.w_len() + s.cout) as f64;
        let flops_w = s.flops() + s.y_len() as f64;
        cases.push(BenchCase::new(
            name("dw+db"),
            &shapes,
            flops_w,
            bytes_w,
            bwd_w()?,
            vec![],
        ));
        let mut all = fwd()?;
        all.extend(bwd_in()?);
        all.extend(bwd_w()?);
        let buffers: Vec<GpuBuffer> = vec![x, w, bias, dy, y, dx, dw, db, scratch_f, scratch_in, scratch_w, act];
        let (flops, bytes) = (s.flops() + s.backward_flops(), s.bytes() + s.backward_bytes());
        cases.push(BenchCase::new(name("fwd+bwd"), &shapes, flops, bytes, all, buffers));
    }
    Ok(cases)
}

#[cfg(test)]
mod reduction_splits_tests {
    #[test]
    fn the_reduction_split_check_shape_really_splits() {
        let s = super::Conv2dShape::new(2, 32, 16, 4, 8, 3);
        assert_eq!(super::super::tiled::reduction_splits(&s), 2);
    }
}
