//! Counter-based RNG (Philox4x32-10) with identical bits on CPU and GPU, so a
//! training step can be compared between the two paths and a resumed run
//! continues the same noise stream. WGSL: `shaders/rng.wgsl`.

use crate::check::{Checker, Tolerance};
use crate::error::Result;
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec, Work};

/// The RNG WGSL every noise-drawing kernel includes before its own source.
pub const RNG_WGSL: &str = include_str!("../../shaders/rng.wgsl");

crate::gpu_params! {
    /// Where in the noise stream a tensor's draws come from; `RngKey` in
    /// `shaders/rng.wgsl`, first member of every noisy kernel's params.
    #[derive(Debug, Default, PartialEq, Eq)]
    pub struct RngKey {
        pub seed_lo: u32,
        pub seed_hi: u32,
        pub step_lo: u32,
        pub step_hi: u32,
        pub tensor: u32,
        /// Added to every element index: a dispatch over part of a tensor (see
        /// `graph::executor::split`) draws the noise of the elements it covers.
        pub offset: u32,
        /// Pad the WGSL struct to 32 bytes (uniform layout rounds struct members up to 16).
        pub pad1: u32,
        pub pad2: u32,
    }
}

/// Word of a noisy kernel's params holding the noise step (`key.step_lo`):
/// the GPU overwrites it before each run.
pub const RNG_STEP_WORD: usize = std::mem::offset_of!(RngKey, step_lo) / 4;

impl RngKey {
    pub fn new(seed: u64, step: u64, tensor: u32) -> RngKey {
        RngKey {
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            step_lo: step as u32,
            step_hi: (step >> 32) as u32,
            tensor,
            offset: 0,
            pad1: 0,
            pad2: 0,
        }
    }

    /// The same stream, its element 0 at element `first` of this one.
    pub fn skip(self, first: usize) -> RngKey {
        RngKey {
            offset: self.offset.wrapping_add(first as u32),
            ..self
        }
    }

    /// The four Philox words for one element.
    pub fn bits(&self, element: u32) -> [u32; 4] {
        philox4x32_10(
            [
                element.wrapping_add(self.offset),
                self.tensor,
                self.step_lo,
                self.step_hi,
            ],
            [self.seed_lo, self.seed_hi],
        )
    }

    pub fn uniform(&self, element: u32) -> f32 {
        uniform_from_bits(self.bits(element)[0])
    }

    pub fn normal(&self, element: u32) -> f32 {
        normal_from_bits(self.bits(element))
    }
}

fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = a as u64 * b as u64;
    (p as u32, (p >> 32) as u32)
}

pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for _ in 0..10 {
        let (lo0, hi0) = mulhilo(0xD251_1F53, c[0]);
        let (lo1, hi1) = mulhilo(0xCD9E_8D57, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
        k = [k[0].wrapping_add(0x9E37_79B9), k[1].wrapping_add(0xBB67_AE85)];
    }
    c
}

/// Uniform in (0, 1) from the top 23 bits, centred in their bin (24 bits would
/// let the top bin round to 1.0).
pub fn uniform_from_bits(b: u32) -> f32 {
    ((b >> 9) as f32 + 0.5) * 1.192_092_9e-7
}

/// Box-Muller on the first two words; computed in f64 and rounded once.
pub fn normal_from_bits(bits: [u32; 4]) -> f32 {
    let u1 = uniform_from_bits(bits[0]) as f64;
    let u2 = uniform_from_bits(bits[1]) as f64;
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// What a fill kernel writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    Bits,
    Uniform,
    Normal,
}

crate::gpu_params! {
    struct FillParams {
        key: RngKey,
        n: u32,
    }
}

const FILL_SOURCES: &[&str] = &[RNG_WGSL, include_str!("../../shaders/rng_fill.wgsl")];
const FILL_BINDINGS: &[Access] = &[Access::ReadWrite, Access::Uniform];
const FILL_BITS: Kernel<FillParams> = Kernel::portable("rng_bits", FILL_SOURCES, "fill_bits", FILL_BINDINGS);
const FILL_UNIFORM: Kernel<FillParams> = Kernel::portable("rng_uniform", FILL_SOURCES, "fill_uniform", FILL_BINDINGS);
const FILL_NORMAL: Kernel<FillParams> = Kernel::portable("rng_normal", FILL_SOURCES, "fill_normal", FILL_BINDINGS);

/// Every kernel of the family, for the contract test.
pub fn all_kernels() -> Vec<KernelSpec> {
    vec![FILL_BITS.spec(), FILL_UNIFORM.spec(), FILL_NORMAL.spec()]
}

/// Fills `out` (u32 bits or f32 values) with draws `0..out.len` of `key`.
pub fn fill(ctx: &GpuContext, fill: Fill, key: RngKey, out: BufView<'_>) -> Result<Dispatch> {
    let kernel = match fill {
        Fill::Bits => &FILL_BITS,
        Fill::Uniform => &FILL_UNIFORM,
        Fill::Normal => &FILL_NORMAL,
    };
    let params = FillParams { key, n: out.len as u32 };
    let d = ctx.dispatch(kernel, &[], &[out], &params, Grid::Invocations(out.len))?;
    Ok(d.with_work(Work::f32s(out.len)))
}

/// CPU reference of [`fill`] for f32 fills.
pub fn fill_ref(fill: Fill, key: RngKey, n: usize) -> Vec<f32> {
    (0..n as u32)
        .map(|i| match fill {
            Fill::Bits => f32::from_bits(key.bits(i)[0]),
            Fill::Uniform => key.uniform(i),
            Fill::Normal => key.normal(i),
        })
        .collect()
}

pub fn check(c: &mut Checker) -> Result<()> {
    let mut sizes = vec![1usize, 63, 1000, 70_001];
    if c.full() {
        // More than 65535 workgroups of 64: exercises the folded 2-D grid.
        sizes.push(5_000_003);
    }
    for (t, &n) in sizes.iter().enumerate() {
        // Odd cases start part-way into the stream, as a dispatch over part of a tensor does.
        let key = RngKey::new(0x0123_4567_89AB_CDEF + t as u64, 7 + (1u64 << 33), t as u32).skip(t % 2 * 4097);
        let out = c.ctx.zeros(n);
        let shapes = format!("n={n}");
        for fill_kind in [Fill::Bits, Fill::Uniform, Fill::Normal] {
            let d = fill(c.ctx, fill_kind, key, out.view())?;
            c.ctx.run(&[&d])?;
            match fill_kind {
                Fill::Bits => {
                    let want: Vec<u32> = (0..n as u32).map(|i| key.bits(i)[0]).collect();
                    c.compare_u32("rng", "rng_bits", &shapes, &c.ctx.read_u32(&out)?, &want);
                }
                Fill::Uniform => {
                    // Exact: the conversion is one multiply of a 23-bit integer.
                    let got = c.ctx.read_f32(&out)?;
                    c.compare(
                        "rng",
                        "rng_uniform",
                        &shapes,
                        &got,
                        &fill_ref(fill_kind, key, n),
                        Tolerance::EXACT,
                    );
                }
                Fill::Normal => {
                    // The GPU's own f32 ln/cos polynomials are a few ulp from the f64 path.
                    let got = c.ctx.read_f32(&out)?;
                    let tol = Tolerance::new(1e-6, 1e-6);
                    c.compare("rng", "rng_normal", &shapes, &got, &fill_ref(fill_kind, key, n), tol);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_matches_random123_known_answers() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn a_skipped_key_continues_the_stream() {
        let key = RngKey::new(5, 3, 2);
        let part = key.skip(1000).skip(24);
        for i in [0u32, 1, 77] {
            assert_eq!(part.bits(i), key.bits(1024 + i));
        }
    }

    #[test]
    fn uniforms_stay_inside_the_open_interval() {
        assert!(uniform_from_bits(0) > 0.0);
        assert!(uniform_from_bits(u32::MAX) < 1.0);
    }

    #[test]
    fn normals_have_unit_moments() {
        let key = RngKey::new(42, 0, 0);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|i| key.normal(i) as f64).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
    }
}
