//! The shape sweep behind `cargo bench --bench kernels -- sweep`: one conv
//! pass of one shape as a bench case, and the grid of shapes whose times are
//! compared with their twins (Cin and Cout rounded up to a multiple of 8), so
//! that a channel count off the fast kernels' granularity shows as a cliff.

use super::{Conv2dShape, ConvPass, Path};
use crate::bench::BenchCase;
use crate::error::Result;
use crate::gpu::GpuContext;

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

/// One pass of `s` on the path the adapter takes for it, as a bench case over
/// zeroed data, its buffers held by the case.
pub fn pass_case(ctx: &GpuContext, s: &Conv2dShape, pass: ConvPass) -> Result<BenchCase> {
    let (ds, buffers) = super::choose::pass_dispatches(ctx, s, pass, Path::best(ctx, s, pass))?;
    let (flops, bytes) = match pass {
        ConvPass::Forward => (s.flops(), s.bytes()),
        ConvPass::BackwardInput => (s.flops(), 4.0 * (2 * s.x_len() + s.w_len() + s.y_len()) as f64),
        ConvPass::BackwardWeight => (
            s.flops() + s.y_len() as f64,
            4.0 * (s.x_len() + s.y_len() + s.w_len() + s.cout) as f64,
        ),
    };
    let name = format!("conv{k}x{k} {}", pass.name(), k = s.k);
    Ok(BenchCase::new(
        name,
        super::cases::describe(s),
        flops,
        bytes,
        ds,
        buffers,
    ))
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
