//! GPU dispatch of the matmul kernels (v1 naive, v2 register-tiled, v3 packed
//! with subgroup broadcasts) and the choice between them.
//!
//! Why v3 looks the way it does (lavapipe / Mesa 22.3 on AVX-512 x86, read off
//! its JIT code and measured): every storage or workgroup-memory load is a
//! per-lane loop (~10 FMA-times per lane and component; vec4 loads amortise the
//! per-lane overhead 2x better than scalars), `fma` compiles to mul + add, and a
//! subgroup broadcast is one register shuffle. v3 therefore loads each value of
//! A once per subgroup and broadcasts it; a 32x32 block per subgroup (128
//! accumulator registers per lane, mostly spilled to the stack, which is cheap
//! next to a load) gives 16 FMAs per loaded float, so loads still take ~40% of
//! the time: the product runs at ~60% of the FMA ceiling. Bigger blocks
//! (48x32, 64x32, 32x64) spilled more than they saved (44-52%), smaller ones
//! load more (16x32: ~50%, 8x32: ~37%). B read in place ran at half speed
//! (4 KiB strides), so B is always packed; row-major A read in place is as fast
//! as packed A, so A is packed only when transposed or K % 8 != 0.

use std::sync::OnceLock;

use super::choose::MatmulPath;
use super::codegen::{self, ASource, K_STEP, ROWS};
use super::MatmulShape;
use crate::error::{shape_err, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuBuffer, GpuContext, Grid, Kernel, KernelSpec, Work};

const PARAMS_WGSL: &str = include_str!("../../../shaders/matmul_params.wgsl");
const WRITE_WGSL: &str = include_str!("../../../shaders/matmul_write.wgsl");
const DIRECT: &[Access] = &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform];
const ONE_IN: &[Access] = &[Access::Read, Access::ReadWrite, Access::Uniform];

const NAIVE: Kernel<Params> = Kernel::portable(
    "matmul_naive",
    &[
        PARAMS_WGSL,
        include_str!("../../../shaders/matmul_naive.wgsl"),
        WRITE_WGSL,
    ],
    "matmul_naive",
    DIRECT,
);
const TILED: Kernel<Params> = Kernel::portable(
    "matmul_tiled",
    &[
        PARAMS_WGSL,
        include_str!("../../../shaders/matmul_tiled.wgsl"),
        WRITE_WGSL,
    ],
    "matmul_tiled",
    DIRECT,
);
const WORKGROUP: Kernel<Params> = Kernel::portable(
    "matmul_workgroup",
    &[
        PARAMS_WGSL,
        include_str!("../../../shaders/matmul_workgroup.wgsl"),
        WRITE_WGSL,
    ],
    "matmul_workgroup",
    DIRECT,
);
const PACK: &[&str] = &[PARAMS_WGSL, include_str!("../../../shaders/matmul_pack.wgsl")];
const PACK_A: Kernel<Params> = Kernel::portable("matmul_pack_a", PACK, "pack_a", ONE_IN);
const PACK_B: Kernel<Params> = Kernel::portable("matmul_pack_b", PACK, "pack_b", ONE_IN);
const PACK_VEC4: &[&str] = &[PARAMS_WGSL, include_str!("../../../shaders/matmul_pack_vec4.wgsl")];
const PACK_A_VEC4: Kernel<Params> = Kernel::portable("matmul_pack_a_vec4", PACK_VEC4, "pack_a_vec4", ONE_IN);
const PACK_B_VEC4: Kernel<Params> = Kernel::portable("matmul_pack_b_vec4", PACK_VEC4, "pack_b_vec4", ONE_IN);

/// Subgroup size the packed kernel is written for.
const LANES: u32 = 8;
/// Subgroups per workgroup of the packed kernel (`SUBGROUPS` in its WGSL).
const SUBGROUPS: usize = 4;
/// Columns of op(B) per subgroup.
const COLS: usize = LANES as usize * 4;

/// The packed product, reading A from the packed scratch or in place. Its grid
/// is counted in subgroup blocks, so the workgroup size and `SUBGROUPS` are stated.
fn packed_kernel(a: ASource) -> &'static Kernel<Params> {
    static PACKED: OnceLock<Kernel<Params>> = OnceLock::new();
    static DIRECT: OnceLock<Kernel<Params>> = OnceLock::new();
    let (name, cell, bindings): (_, _, &'static [Access]) = match a {
        ASource::Packed => ("matmul_packed", &PACKED, ONE_IN),
        ASource::Direct => (
            "matmul_packed_direct_a",
            &DIRECT,
            &[Access::Read, Access::ReadWrite, Access::Uniform, Access::Read],
        ),
    };
    cell.get_or_init(|| {
        Kernel::generated(
            name.to_string(),
            &[PARAMS_WGSL],
            codegen::packed_source(a) + WRITE_WGSL,
            "matmul_packed",
            bindings,
        )
        .requiring(wgpu::Features::SUBGROUP)
        .with_workgroup_size([LANES * SUBGROUPS as u32, 1, 1])
        .with_constants(&[("SUBGROUPS", SUBGROUPS as i64)])
    })
}

/// Every kernel of the family, both packed variants included, for the contract test.
pub fn all_kernels() -> Vec<KernelSpec> {
    let mut all: Vec<KernelSpec> = [NAIVE, TILED, WORKGROUP, PACK_A, PACK_B, PACK_A_VEC4, PACK_B_VEC4]
        .iter()
        .map(|k| k.spec())
        .collect();
    all.extend([ASource::Packed, ASource::Direct].map(|a| packed_kernel(a).spec()));
    all
}

/// Whether v3 reads A in place (row-major, whole aligned vec4s per 8 k-steps).
fn a_source(s: &MatmulShape) -> ASource {
    if !s.trans_a && s.k.is_multiple_of(K_STEP) && s.batch_stride_a.is_multiple_of(4) {
        ASource::Direct
    } else {
        ASource::Packed
    }
}

crate::gpu_params! {
    /// Uniform parameters shared by every matmul kernel (`shaders/matmul_params.wgsl`).
    #[derive(Default)]
    struct Params {
        m: u32,
        n: u32,
        k: u32,
        batch: u32,
        a_batch: u32,
        b_batch: u32,
        c_batch: u32,
        /// `op(A)[i,k]` is at `i*a_rs + k*a_cs`, `op(B)[k,j]` at `k*b_rs + j*b_cs`.
        a_rs: u32,
        a_cs: u32,
        b_rs: u32,
        b_cs: u32,
        alpha: f32,
        beta: f32,
        kp: u32,
        m_panels: u32,
        n_panels: u32,
        ap_off: u32,
        ap_batch: u32,
        bp_batch: u32,
        bp_off: u32,
    }
}

impl Params {
    fn new(s: &MatmulShape, alpha: f32, beta: f32) -> Params {
        let (m, k, n) = (s.m as u32, s.k as u32, s.n as u32);
        let (a_rs, a_cs) = if s.trans_a { (1, m) } else { (k, 1) };
        let (b_rs, b_cs) = if s.trans_b { (1, k) } else { (n, 1) };
        Params {
            m,
            n,
            k,
            batch: s.batch as u32,
            a_batch: s.batch_stride_a as u32,
            b_batch: s.batch_stride_b as u32,
            c_batch: s.batch_stride_c as u32,
            a_rs,
            a_cs,
            b_rs,
            b_cs,
            alpha,
            beta,
            ..Params::default()
        }
    }
}

fn groups(what: &str, n: usize, per_group: usize) -> Result<u32> {
    let g = n.div_ceil(per_group);
    if g > 65535 {
        return shape_err(format!(
            "matmul: {what} = {n} needs {g} workgroups along one grid dimension (at most 65535)"
        ));
    }
    Ok(g as u32)
}

fn direct(
    ctx: &GpuContext,
    kernel: &Kernel<Params>,
    per_invocation: usize,
    shape: &MatmulShape,
    alpha: f32,
    beta: f32,
    views: [BufView<'_>; 3],
) -> Result<Dispatch> {
    shape.validate(views[0].len, views[1].len, views[2].len)?;
    // Invocation (x, y, z) computes a per_invocation² block at column x, row y of batch z.
    let grid = Grid::Cover {
        extent: [shape.n, shape.m, shape.batch],
        per_invocation: [per_invocation, per_invocation, 1],
    };
    let params = Params::new(shape, alpha, beta);
    let d = ctx.dispatch(kernel, &[], &views, &params, grid)?;
    Ok(d.with_work(Work::new(shape.flops(), shape.bytes(beta))))
}

/// v1: one invocation per output element, any shape.
pub fn matmul_naive(
    ctx: &GpuContext,
    shape: &MatmulShape,
    alpha: f32,
    beta: f32,
    a: BufView<'_>,
    b: BufView<'_>,
    c: BufView<'_>,
) -> Result<Dispatch> {
    direct(ctx, &NAIVE, 1, shape, alpha, beta, [a, b, c])
}

/// v2: a 4x4 register block per invocation, any shape, any adapter.
pub fn matmul_tiled(
    ctx: &GpuContext,
    shape: &MatmulShape,
    alpha: f32,
    beta: f32,
    a: BufView<'_>,
    b: BufView<'_>,
    c: BufView<'_>,
) -> Result<Dispatch> {
    direct(ctx, &TILED, 4, shape, alpha, beta, [a, b, c])
}

/// GPU-shaped: 16x16 invocations per workgroup, each a 4x4 block of a 64x64
/// block of C, op(A) and op(B) staged through workgroup memory; any shape, any
/// adapter, no subgroup operations.
pub fn matmul_workgroup(
    ctx: &GpuContext,
    shape: &MatmulShape,
    alpha: f32,
    beta: f32,
    a: BufView<'_>,
    b: BufView<'_>,
    c: BufView<'_>,
) -> Result<Dispatch> {
    direct(ctx, &WORKGROUP, 4, shape, alpha, beta, [a, b, c])
}

/// Sizes of the packed operands (f32 elements; A's is 0 when read in place) and
/// the panel counts: `(A, B, m_panels, n_panels)`.
fn packed_lens(s: &MatmulShape) -> (usize, usize, usize, usize) {
    let kp = s.k.next_multiple_of(K_STEP);
    let (m_panels, n_panels) = (s.m.div_ceil(ROWS), s.n.div_ceil(COLS));
    let a_batches = if s.batch_stride_a == 0 { 1 } else { s.batch };
    let b_batches = if s.batch_stride_b == 0 { 1 } else { s.batch };
    let a_len = match a_source(s) {
        ASource::Packed => a_batches * m_panels * ROWS * kp,
        ASource::Direct => 0,
    };
    (a_len, b_batches * n_panels * COLS * kp, m_panels, n_panels)
}

/// Scratch elements [`matmul_packed`] needs for `shape` (packed A then packed B).
pub fn packed_scratch_len(shape: &MatmulShape) -> usize {
    let (a, b, ..) = packed_lens(shape);
    4 * PACKED_SKEW + a + b
}

/// Packed A starts this many vec4s (2 KiB) into the scratch. The pack passes
/// read and write in lockstep; with source and destination at the same offset
/// within a 4 KiB page every load waits on the previous store (4K aliasing),
/// which made packing 2.5x slower for some transposes.
const PACKED_SKEW: usize = 128;

/// Whether this adapter can run [`matmul_packed`] (subgroups of exactly 8 lanes).
pub fn packed_supported(ctx: &GpuContext) -> bool {
    ctx.has(wgpu::Features::SUBGROUP) && ctx.subgroup_min_size == LANES && ctx.subgroup_max_size == LANES
}

/// v3: packs op(B) (and op(A) unless it can be read in place: row-major with
/// K % 8 == 0) into `scratch` (at least [`packed_scratch_len`] elements), then
/// multiplies: two or three dispatches, to be run in order.
#[allow(clippy::too_many_arguments)]
pub fn matmul_packed(
    ctx: &GpuContext,
    shape: &MatmulShape,
    alpha: f32,
    beta: f32,
    a: BufView<'_>,
    b: BufView<'_>,
    c: BufView<'_>,
    scratch: BufView<'_>,
) -> Result<Vec<Dispatch>> {
    shape.validate(a.len, b.len, c.len)?;
    if !packed_supported(ctx) {
        return shape_err(format!(
            "matmul_packed needs subgroups of exactly {LANES} lanes; this adapter has {}..{}",
            ctx.subgroup_min_size, ctx.subgroup_max_size
        ));
    }
    let (a_len, b_len, m_panels, n_panels) = packed_lens(shape);
    if scratch.len < packed_scratch_len(shape) {
        return shape_err(format!(
            "matmul_packed: scratch holds {} elements, {} needed for packed A and B",
            scratch.len,
            packed_scratch_len(shape)
        ));
    }
    if packed_scratch_len(shape) > u32::MAX as usize {
        return shape_err("matmul_packed: packed operands must fit 32-bit indices");
    }
    let kp = shape.k.next_multiple_of(K_STEP);
    let batched = |stride: usize, len: usize| if stride == 0 { 0 } else { len / 4 / shape.batch };
    let mut p = Params::new(shape, alpha, beta);
    p.kp = kp as u32;
    p.m_panels = m_panels as u32;
    p.n_panels = n_panels as u32;
    p.ap_batch = batched(shape.batch_stride_a, a_len) as u32;
    p.bp_batch = batched(shape.batch_stride_b, b_len) as u32;
    p.ap_off = PACKED_SKEW as u32;
    p.bp_off = (PACKED_SKEW + a_len / 4) as u32;

    let params = &p;
    // One invocation per vec4 of a panel (kp * 8), one grid row per panel, one layer per batch.
    let pack_grid = |panels: usize, batches: usize| Grid::Cover {
        extent: [kp * 8, panels, batches],
        per_invocation: [1, 1, 1],
    };
    let a_batches = if shape.batch_stride_a == 0 { 1 } else { shape.batch };
    let b_batches = if shape.batch_stride_b == 0 { 1 } else { shape.batch };
    // Elements of A and B a pass must read (a broadcast operand once).
    let (distinct_a, distinct_b) = (a_batches * shape.m * shape.k, b_batches * shape.k * shape.n);
    let mut dispatches = Vec::with_capacity(3);
    let a_src = a_source(shape);
    if a_src == ASource::Packed {
        // Whole aligned vec4 rows of the source when the layout allows (one load, not four).
        let a_vec4 = !shape.trans_a && shape.k.is_multiple_of(4) && shape.batch_stride_a.is_multiple_of(4);
        let pack_a_kernel = if a_vec4 { &PACK_A_VEC4 } else { &PACK_A };
        let grid_a = pack_grid(m_panels, a_batches);
        let d = ctx.dispatch(pack_a_kernel, &[], &[a, scratch], params, grid_a)?;
        dispatches.push(d.with_work(Work::f32s(distinct_a + a_len)));
    }
    let b_vec4 = !shape.trans_b && shape.n.is_multiple_of(4) && shape.batch_stride_b.is_multiple_of(4);
    let pack_b_kernel = if b_vec4 { &PACK_B_VEC4 } else { &PACK_B };
    let grid_b = pack_grid(n_panels, b_batches);
    let d = ctx.dispatch(pack_b_kernel, &[], &[b, scratch], params, grid_b)?;
    dispatches.push(d.with_work(Work::f32s(distinct_b + b_len)));
    // A workgroup's SUBGROUPS subgroups each compute a ROWS x COLS block.
    let grid = Grid::Workgroups([
        groups("N", shape.n, COLS)?,
        groups("M", shape.m, ROWS * SUBGROUPS)?,
        groups("batch", shape.batch, 1)?,
    ]);
    let product = match a_src {
        ASource::Packed => ctx.dispatch(packed_kernel(a_src), &[], &[scratch, c], params, grid)?,
        ASource::Direct => ctx.dispatch(packed_kernel(a_src), &[], &[scratch, c, a], params, grid)?,
    };
    // The product reads the packed operands (A in place when it is not packed) and writes C.
    let a_read = if a_src == ASource::Packed { a_len } else { distinct_a };
    let c_len = shape.batch * shape.m * shape.n * if beta == 0.0 { 1 } else { 2 };
    dispatches.push(product.with_work(Work::new(shape.flops(), 4.0 * (a_read + b_len + c_len) as f64)));
    Ok(dispatches)
}

/// A recorded matmul: its dispatches, in order, and the scratch they share.
pub struct MatmulDispatch {
    pub dispatches: Vec<Dispatch>,
    /// Packed operands of the fast path; kept alive with the dispatches.
    pub scratch: Option<GpuBuffer>,
}

impl MatmulDispatch {
    pub fn refs(&self) -> Vec<&Dispatch> {
        self.dispatches.iter().collect()
    }
}

/// `C = alpha·op(A)·op(B) + beta·C` on the kernel [`MatmulPath::best`] picks
/// for this adapter and shape.
pub fn matmul(
    ctx: &GpuContext,
    shape: &MatmulShape,
    alpha: f32,
    beta: f32,
    a: BufView<'_>,
    b: BufView<'_>,
    c: BufView<'_>,
) -> Result<MatmulDispatch> {
    shape.validate(a.len, b.len, c.len)?;
    MatmulPath::best(ctx, shape).with_own_scratch(ctx, shape, alpha, beta, a, b, c)
}
