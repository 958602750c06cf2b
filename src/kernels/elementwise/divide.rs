//! Exact u32 division without integer division instructions, for index math in
//! memory-bound kernels (`shaders/elementwise_divide.wgsl`; the resample and
//! groupnorm families include it too). Integer division is slow on GPUs and
//! lavapipe scalarises it: with it, NHWC index math costs more than the memory
//! traffic. This is the CPU mirror of the WGSL, op for op, so the unit tests
//! below cover the shader's arithmetic.

use crate::error::{shape_err, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec};

pub const DIVIDE_WGSL: &str = include_str!("../../../shaders/elementwise_divide.wgsl");

/// Largest divisor `div_exact` supports (its remainder arithmetic stays exact in f32).
pub const MAX_DIVISOR: u32 = (1 << 23) - 1;

/// The f32 reciprocal a kernel needs beside divisor `d`; errors when `d` is 0 or too large.
pub fn reciprocal(op: &str, d: usize) -> Result<f32> {
    if d == 0 || d > MAX_DIVISOR as usize {
        return shape_err(format!("{op}: an index divisor of {d} is outside 1..={MAX_DIVISOR}"));
    }
    Ok(1.0 / d as f32)
}

const DIVIDE_CHECK: Kernel<Params> = Kernel::portable(
    "divide_check",
    &[
        DIVIDE_WGSL,
        include_str!("../../../shaders/elementwise_divide_check.wgsl"),
    ],
    "divide_check",
    &[Access::Read, Access::ReadWrite, Access::Uniform],
);

crate::gpu_params! {
    struct Params {
        n: u32,
        divisor: u32,
        inv_divisor: f32,
    }
}

pub(super) fn kernels() -> Vec<KernelSpec> {
    vec![DIVIDE_CHECK.spec()]
}

/// `quotients[i] = numerators[i] / divisor` on the GPU through `div_exact` (for checking it).
pub fn divide_on_gpu(
    ctx: &GpuContext,
    numerators: BufView<'_>,
    divisor: usize,
    quotients: BufView<'_>,
) -> Result<Dispatch> {
    let params = Params {
        n: numerators.len.min(quotients.len) as u32,
        divisor: divisor as u32,
        inv_divisor: reciprocal("divide_on_gpu", divisor)?,
    };
    let grid = Grid::Invocations(numerators.len);
    ctx.dispatch(&DIVIDE_CHECK, &[], &[numerators, quotients], &params, grid)
}

/// Numerators around multiples of `d` at small, 2^24, 2^25 and top-of-range
/// magnitudes: where an f32 quotient estimate is most likely to be off.
pub fn edge_numerators(d: u32) -> Vec<u32> {
    let mut v = vec![u32::MAX];
    for base in [0u32, 1 << 24, 1 << 25, 33_554_432 * 3, u32::MAX - 3 * d] {
        let q0 = base / d;
        for q in q0.saturating_sub(2)..q0.saturating_add(3) {
            let m = q as u64 * d as u64;
            for n in [m.wrapping_sub(1), m, m + 1, m + d as u64 - 1] {
                if n <= u32::MAX as u64 {
                    v.push(n as u32);
                }
            }
        }
    }
    v
}

/// The WGSL `div_exact`, op for op.
pub fn div_exact(n: u32, d: u32, inv_d: f32) -> u32 {
    let mut q = (n as f32 * inv_d) as u32;
    let r = n.wrapping_sub(q.wrapping_mul(d)) as i32;
    q = (q as i32).wrapping_add((r as f32 * inv_d).floor() as i32) as u32;
    let r2 = n.wrapping_sub(q.wrapping_mul(d)) as i32;
    if r2 < 0 {
        q = q.wrapping_sub(1);
    } else if r2 >= d as i32 {
        q += 1;
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Divisors the CPU tests sweep (the GPU check takes a sample of them).
    fn test_divisors() -> impl Iterator<Item = u32> {
        (1..=1100u32).chain([
            3 << 10,
            65535,
            65536,
            65537,
            999_983,
            1 << 22,
            MAX_DIVISOR - 1,
            MAX_DIVISOR,
        ])
    }

    fn check(n: u32, d: u32) {
        let inv = reciprocal("test", d as usize).unwrap();
        assert_eq!(div_exact(n, d, inv), n / d, "{n} / {d}");
    }

    #[test]
    fn exact_for_edge_numerators_and_divisors() {
        for d in test_divisors() {
            for n in edge_numerators(d) {
                check(n, d);
            }
        }
    }

    #[test]
    fn exact_on_random_numerators() {
        let mut rng = crate::kernels::testdata::TestRng::new(9);
        for d in test_divisors() {
            for _ in 0..10_000 {
                check(rng.next_u64() as u32, d);
            }
        }
    }

    #[test]
    fn exact_on_a_dense_sweep() {
        for d in [1u32, 3, 7, 13, 24, 97, 384, 512, 768, 4096] {
            for n in (0..40_000_000u32).step_by(997) {
                check(n, d);
            }
        }
    }
}
