//! The shape sweep behind `cargo bench --bench kernels -- sweep`: one conv
//! pass of one shape as a bench case, and the grid of shapes whose times are
//! compared with their twins (Cin and Cout rounded up to a multiple of 8), so
//! that a channel count off the fast kernels' granularity shows as a cliff.

use super::{Conv2dShape, ConvPass};
use crate::bench::BenchCase;
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::testdata::TestRng;

/// Channel counts of the sweep (Cin and Cout each take every one).
pub const SWEEP_CHANNELS: [usize; 10] = [1, 3, 16, 30, 32, 50, 64, 100, 128, 384];
/// Heights (= widths) of the sweep.
pub const SWEEP_SIZES: [usize; 5] = [1, 4, 8, 16, 32];
/// Images per batch in the sweep.
pub const SWEEP_BATCH: usize = 16;

/// The sweep's shape: batch [`SWEEP_BATCH`], `hw` x `hw`, with a bias (as the
/// model's convs have).
pub fn sweep_shape(k: usize, hw: usize, cin: usize, cout: usize) -> Conv2dShape {
    Conv2dShape::new(SWEEP_BATCH, hw, hw, cin, cout, k).with_bias(true)
}

/// The shape's twin: Cin and Cout rounded up to a multiple of 8.
pub fn twin(s: &Conv2dShape) -> Conv2dShape {
    Conv2dShape {
        cin: s.cin.next_multiple_of(8),
        cout: s.cout.next_multiple_of(8),
        ..*s
    }
}

/// One pass of `s` as a bench case over random data, its buffers held by the case.
pub fn pass_case(ctx: &GpuContext, s: &Conv2dShape, pass: ConvPass) -> Result<BenchCase> {
    let mut rng = TestRng::new(7);
    let x = ctx.upload(&rng.vec(s.x_len(), -2.0, 2.0));
    let w = ctx.upload(&rng.vec(s.w_len(), -1.0, 1.0));
    let shapes = super::cases::describe(s);
    let name = format!("conv{k}x{k} {}", pass.name(), k = s.k);
    let case = match pass {
        ConvPass::Forward => {
            let bias = ctx.upload(&rng.vec(s.cout, -1.0, 1.0));
            let (y, scratch) = (ctx.zeros(s.y_len()), ctx.zeros(s.forward_scratch_len().max(1)));
            let (bv, sv) = (Some(bias.view()), scratch.view());
            let ds = super::conv2d_forward(ctx, s, x.view(), w.view(), bv, None, sv, y.view())?;
            BenchCase::new(name, shapes, s.flops(), s.bytes(), ds, vec![x, w, bias, y, scratch])
        }
        ConvPass::BackwardInput => {
            let dy = ctx.upload(&rng.vec(s.y_len(), -1.0, 1.0));
            let (dx, scratch) = (ctx.zeros(s.x_len()), ctx.zeros(s.backward_input_scratch_len()));
            let ds = super::conv2d_backward_input(ctx, s, x.view(), w.view(), dy.view(), scratch.view(), dx.view())?;
            let bytes = 4.0 * (2 * s.x_len() + s.w_len() + s.y_len()) as f64;
            BenchCase::new(name, shapes, s.flops(), bytes, ds, vec![x, w, dy, dx, scratch])
        }
        ConvPass::BackwardWeight => {
            let dy = ctx.upload(&rng.vec(s.y_len(), -1.0, 1.0));
            let (dw, db) = (ctx.zeros(s.w_len()), ctx.zeros(s.cout));
            let scratch = ctx.zeros(s.backward_weight_scratch_len());
            let (sv, dwv, dbv) = (scratch.view(), dw.view(), Some(db.view()));
            let ds = super::conv2d_backward_weight(ctx, s, x.view(), dy.view(), sv, None, dwv, dbv, false)?;
            let bytes = 4.0 * (s.x_len() + s.y_len() + s.w_len() + s.cout) as f64;
            let flops = s.flops() + s.y_len() as f64;
            BenchCase::new(name, shapes, flops, bytes, ds, vec![x, w, dy, dw, db, scratch])
        }
    };
    Ok(case)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twins_round_channels_up_to_eight() {
        let s = sweep_shape(3, 8, 50, 3);
        let t = twin(&s);
        assert_eq!((t.cin, t.cout, t.k, t.h, t.n, t.bias), (56, 8, 3, 8, SWEEP_BATCH, true));
        assert_eq!(twin(&sweep_shape(1, 4, 64, 384)), sweep_shape(1, 4, 64, 384));
    }
}
