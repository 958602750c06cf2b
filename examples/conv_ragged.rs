//! `cargo run --release --example conv_ragged`: the cost of ragged channel
//! counts (no multiple of 4) in the conv kernels. First a model's output conv
//! (16 images of 32x32, 1x1, 64 -> 50 channels: 5 mixtures x 10) against
//! 64 -> 56, dx and dw on the simple path (where a ragged Cout ran before the
//! tiled path took any channel count) and on the path the family picks; then,
//! for a few ragged shapes, the time of forward, dx and dw on the picked path
//! over the time of the same conv with Cin and Cout rounded up to a multiple
//! of 8. Times from `GpuContext::time`, all in this one process.

use vdvae::gpu::{Dispatch, GpuBuffer, GpuContext};
use vdvae::kernels::conv2d::{self, Conv2dShape, Path};
use vdvae::kernels::testdata::TestRng;

/// A conv's buffers: inputs random, outputs and scratch zero.
struct Buffers {
    x: GpuBuffer,
    w: GpuBuffer,
    bias: GpuBuffer,
    dy: GpuBuffer,
    y: GpuBuffer,
    dx: GpuBuffer,
    dw: GpuBuffer,
    db: GpuBuffer,
    scratch: GpuBuffer,
    /// gelu(x) for dw, as the graph gives it (see `conv2d_backward_weight`).
    act: GpuBuffer,
}

impl Buffers {
    fn new(ctx: &GpuContext, s: &Conv2dShape) -> Buffers {
        let mut rng = TestRng::new(7);
        let scratch = s
            .forward_scratch_len()
            .max(s.backward_input_scratch_len())
            .max(s.backward_weight_scratch_len());
        Buffers {
            x: ctx.upload(&rng.vec(s.x_len(), -2.0, 2.0)),
            w: ctx.upload(&rng.vec(s.w_len(), -1.0, 1.0)),
            bias: ctx.upload(&rng.vec(s.cout, -1.0, 1.0)),
            dy: ctx.upload(&rng.vec(s.y_len(), -1.0, 1.0)),
            y: ctx.zeros(s.y_len()),
            dx: ctx.zeros(s.x_len()),
            dw: ctx.zeros(s.w_len()),
            db: ctx.zeros(s.cout),
            scratch: ctx.zeros(scratch.max(1)),
            act: ctx.zeros(s.act_len()),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Pass {
    Forward,
    Dx,
    Dw,
}

/// The dispatches of one pass of `s` on `path` (the best one when None).
fn dispatches(ctx: &GpuContext, s: &Conv2dShape, b: &Buffers, pass: Pass, path: Option<Path>) -> Vec<Dispatch> {
    let bias = s.bias.then(|| b.bias.view());
    let ds = match pass {
        Pass::Forward => {
            let path = path.unwrap_or_else(|| Path::best_forward(ctx, s));
            conv2d::forward_with(
                ctx,
                path,
                s,
                b.x.view(),
                b.w.view(),
                bias,
                None,
                b.scratch.view(),
                b.y.view(),
            )
        }
        Pass::Dx => {
            let path = path.unwrap_or_else(|| Path::best_backward_input(ctx, s));
            let (x, w, dy, scratch, dx) = (b.x.view(), b.w.view(), b.dy.view(), b.scratch.view(), b.dx.view());
            conv2d::backward_input_with(ctx, path, s, x, w, dy, scratch, dx)
        }
        Pass::Dw => {
            let path = path.unwrap_or_else(|| Path::best_backward_weight(ctx, s));
            let (x, dy, scratch, dw, db) = (b.x.view(), b.dy.view(), b.scratch.view(), b.dw.view(), b.db.view());
            let act = s.gelu_input.then(|| b.act.view());
            conv2d::backward_weight_with(ctx, path, s, x, dy, scratch, act, dw, bias.map(|_| db), false)
        }
    };
    ds.unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// Seconds per run of each of `runs` (dispatch lists): each once to warm up,
/// then 7 rounds that time each in turn (a mean of enough runs for ~0.05 s),
/// the least per list. The machine may be shared: alternating spreads a slow
/// moment over all lists, and the least is the time least interrupted.
fn times(ctx: &GpuContext, runs: &[Vec<Dispatch>]) -> Vec<f64> {
    let refs: Vec<Vec<&Dispatch>> = runs.iter().map(|ds| ds.iter().collect()).collect();
    let reps: Vec<usize> = refs
        .iter()
        .map(|r| {
            let once = ctx.time(r, 1).expect("timing");
            ((0.05 / once) as usize).clamp(1, 100)
        })
        .collect();
    let mut best = vec![f64::INFINITY; runs.len()];
    for _ in 0..7 {
        for (i, r) in refs.iter().enumerate() {
            best[i] = best[i].min(ctx.time(r, reps[i]).expect("timing"));
        }
    }
    best
}

fn describe(s: &Conv2dShape) -> String {
    format!("{}x{}x{} k{} {}->{}", s.n, s.h, s.w, s.k, s.cin, s.cout)
}

fn main() {
    let ctx = GpuContext::from_env().unwrap_or_else(|e| panic!("no adapter: {e}"));
    println!("adapter: {}", ctx.adapter.name);
    let ragged = Conv2dShape::new(16, 32, 32, 64, 50, 1).with_bias(true);
    let whole = Conv2dShape::new(16, 32, 32, 64, 56, 1).with_bias(true);
    println!(
        "{:<24} {:<5} {:>12} {:>12} {:>10}",
        "conv", "pass", "simple ms", "picked ms", "GFLOP/s"
    );
    let (br, bw) = (Buffers::new(&ctx, &ragged), Buffers::new(&ctx, &whole));
    for (pass, name) in [(Pass::Dx, "dx"), (Pass::Dw, "dw")] {
        let runs = vec![
            dispatches(&ctx, &ragged, &br, pass, Some(Path::Simple)),
            dispatches(&ctx, &ragged, &br, pass, None),
            dispatches(&ctx, &whole, &bw, pass, Some(Path::Simple)),
            dispatches(&ctx, &whole, &bw, pass, None),
        ];
        let t = times(&ctx, &runs);
        for (s, simple, picked) in [(ragged, t[0], t[1]), (whole, t[2], t[3])] {
            let gflops = s.flops() / picked / 1e9;
            println!(
                "{:<24} {name:<5} {:>12.3} {:>12.3} {gflops:>10.2}",
                describe(&s),
                simple * 1e3,
                picked * 1e3
            );
        }
    }
    println!();
    println!("picked path, ragged conv / the conv with Cin and Cout rounded up to 8:");
    println!("{:<28} {:>8} {:>8} {:>8}", "conv", "forward", "dx", "dw");
    let s = Conv2dShape::new;
    let shapes = [
        ragged,
        s(16, 32, 32, 64, 30, 1).with_bias(true),
        // MNIST's output conv: 5 mixtures x 3.
        s(32, 32, 32, 64, 15, 1).with_bias(true),
        s(16, 32, 32, 3, 64, 3).with_bias(true),
        s(16, 32, 32, 30, 100, 3).with_gelu(true).with_bias(true),
        s(16, 16, 16, 16, 10, 3).with_gelu(true).with_bias(true),
        s(16, 8, 8, 5, 64, 1).with_bias(true),
        s(16, 32, 32, 50, 64, 1).with_gelu(true).with_bias(true),
        s(16, 8, 8, 50, 50, 3).with_gelu(true).with_bias(true),
        s(16, 1, 1, 100, 30, 1).with_gelu(true).with_bias(true),
    ];
    for s in shapes {
        let up = Conv2dShape {
            cin: s.cin.next_multiple_of(8),
            cout: s.cout.next_multiple_of(8),
            ..s
        };
        let (b, bu) = (Buffers::new(&ctx, &s), Buffers::new(&ctx, &up));
        let ratio = |pass| {
            let t = times(
                &ctx,
                &[
                    dispatches(&ctx, &s, &b, pass, None),
                    dispatches(&ctx, &up, &bu, pass, None),
                ],
            );
            t[0] / t[1]
        };
        let (f, dx, dw) = (ratio(Pass::Forward), ratio(Pass::Dx), ratio(Pass::Dw));
        println!("{:<28} {f:>8.2} {dx:>8.2} {dw:>8.2}", describe(&s));
    }
}
