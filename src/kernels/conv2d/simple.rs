//! The simple path: any shape, any adapter. An invocation per 4 channels of
//! a pixel (forward, dx), per 4x4 channels of a tap (dw over few pixels), or
//! a workgroup per weight (dw over more).
//! The readable version of each kernel and the fallback of the tiled path.

use super::{flag, Conv2dShape, InputLike};
use crate::error::Result;
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec};
use crate::kernels::elementwise::GELU_WGSL;

use Access::{Read, ReadWrite, Uniform};

const FORWARD: Kernel<Params> = Kernel::portable(
    "conv2d_forward",
    &[GELU_WGSL, include_str!("../../../shaders/conv2d_forward.wgsl")],
    "conv2d_forward",
    &[Read, Read, Read, Read, ReadWrite, Uniform, Read],
);
const BACKWARD_INPUT: Kernel<Params> = Kernel::portable(
    "conv2d_backward_input",
    &[GELU_WGSL, include_str!("../../../shaders/conv2d_backward_input.wgsl")],
    "conv2d_backward_input",
    &[Read, Read, Read, ReadWrite, Uniform, Read, ReadWrite, ReadWrite],
);
const WEIGHT_SOURCES: &[&str] = &[GELU_WGSL, include_str!("../../../shaders/conv2d_backward_weight.wgsl")];
/// Invocations sharing one weight or bias gradient's pixel sum (the workgroup
/// size): each walks every `REDUCTION_WORKGROUP`-th pixel, which bounds the pixel count.
pub(super) const REDUCTION_WORKGROUP: usize = 256;
const REDUCTION: [u32; 3] = [REDUCTION_WORKGROUP as u32, 1, 1];
const BACKWARD_WEIGHT: Kernel<Params> = Kernel::portable(
    "conv2d_backward_weight",
    WEIGHT_SOURCES,
    "conv2d_backward_weight",
    &[Read, Read, ReadWrite, Uniform, Read],
)
.with_workgroup_size(REDUCTION);
const BACKWARD_BIAS: Kernel<Params> = Kernel::portable(
    "conv2d_backward_bias",
    WEIGHT_SOURCES,
    "conv2d_backward_bias",
    // Bindings 0 and 4 (x, x2) are declared by the shared module but unused by this entry point.
    &[Read, Read, ReadWrite, Uniform, Read],
)
.with_workgroup_size(REDUCTION);
/// dw and db over few pixels ([`Conv2dShape::few_pixels`]): one invocation per block of
/// 4x4 channels of a tap, in registers.
const BACKWARD_WEIGHT_FEW: Kernel<Params> = Kernel::portable(
    "conv2d_backward_weight_few",
    WEIGHT_SOURCES,
    "conv2d_backward_weight_few",
    &[Read, Read, ReadWrite, Uniform, Read, ReadWrite],
);

/// Every kernel of the simple path, for the contract test. Their override
/// constants (GELU_INPUT, HAS_BIAS, ...) change neither bindings nor workgroup size.
pub(super) fn kernels() -> Vec<KernelSpec> {
    [
        FORWARD,
        BACKWARD_INPUT,
        BACKWARD_WEIGHT,
        BACKWARD_BIAS,
        BACKWARD_WEIGHT_FEW,
    ]
    .iter()
    .map(|k| k.spec())
    .collect()
}

crate::gpu_params! {
    struct Params {
        n: u32,
        h: u32,
        w: u32,
        cin: u32,
        cout: u32,
        k: u32,
        pad: u32,
        /// The work items: invocations of the forward and dx (4 channels of
        /// a pixel each), the few-pixel dw's invocations that write dw (4x4
        /// channels of a tap each; db's follow), or the workgroups of the
        /// other weight and bias gradients (one per element).
        total: u32,
        /// Input channels in the first source (all of them without a cat).
        cat_split: u32,
        pad0: u32,
        pad1: u32,
        pad2: u32,
    }
}

fn params(s: &Conv2dShape, total: usize) -> Params {
    Params {
        n: s.n as u32,
        h: s.h as u32,
        w: s.w as u32,
        cin: s.cin as u32,
        cout: s.cout as u32,
        k: s.k as u32,
        pad: (s.k / 2) as u32,
        total: total as u32,
        cat_split: s.cat_split() as u32,
        pad0: 0,
        pad1: 0,
        pad2: 0,
    }
}

pub(super) fn forward(
    ctx: &GpuContext,
    s: &Conv2dShape,
    x: InputLike<'_>,
    w: BufView<'_>,
    bias: Option<BufView<'_>>,
    residual: Option<BufView<'_>>,
    y: BufView<'_>,
) -> Result<Dispatch> {
    let constants = [
        ("GELU_INPUT", flag(s.gelu_input)),
        ("HAS_BIAS", flag(s.bias)),
        ("HAS_RESIDUAL", flag(s.residual)),
    ];
    // Absent optional inputs bind x in their place; the kernel never reads them.
    let x1 = x.first;
    let views = [
        x1,
        w,
        bias.unwrap_or(x1),
        residual.unwrap_or(x1),
        y,
        x.second_or_first(),
    ];
    // An invocation per 4 channels of a pixel.
    let total = s.n * s.h * s.w * s.cout.div_ceil(4);
    let p = params(s, total);
    ctx.dispatch(&FORWARD, &constants, &views, &p, Grid::Invocations(total))
}

/// dx (two halves for a cat) and, when `act` is given, gelu(x) in the
/// layout of the concatenated input.
pub(super) fn backward_input(
    ctx: &GpuContext,
    s: &Conv2dShape,
    x: InputLike<'_>,
    w: BufView<'_>,
    dy: BufView<'_>,
    dx: InputLike<'_>,
    act: Option<BufView<'_>>,
) -> Result<Dispatch> {
    // An invocation per 4 channels of a pixel.
    let total = s.n * s.h * s.w * s.cin.div_ceil(4);
    let p = params(s, total);
    let constants = [("GELU_INPUT", flag(s.gelu_input)), ("WRITE_ACT", flag(act.is_some()))];
    // Absent bindings take x's and dx's place; the kernel never touches them.
    let views = [
        x.first,
        w,
        dy,
        dx.first,
        x.second_or_first(),
        dx.second_or_first(),
        act.unwrap_or(dx.first),
    ];
    ctx.dispatch(&BACKWARD_INPUT, &constants, &views, &p, Grid::Invocations(total))
}

/// One workgroup per output element (see the WGSL for why).
fn per_element_grid(n: usize) -> Grid {
    Grid::Groups(n)
}

/// dw and, when given, db: one dispatch over few pixels,
/// else a workgroup per element for each.
pub(super) fn backward_weight(
    ctx: &GpuContext,
    s: &Conv2dShape,
    x: InputLike<'_>,
    dy: BufView<'_>,
    dw: BufView<'_>,
    db: Option<BufView<'_>>,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    let gelu = ("GELU_INPUT", flag(s.gelu_input));
    let acc = ("ACCUMULATE", flag(accumulate));
    if s.few_pixels() {
        // An invocation per block of 4x4 channels of one tap, and per 4 of db.
        let out_blocks = s.cout.div_ceil(4);
        let blocks = s.k * s.k * s.cin.div_ceil(4) * out_blocks;
        let p = params(s, blocks);
        let constants = [gelu, acc, ("HAS_BIAS", flag(db.is_some()))];
        // Without db, dw takes its binding; the kernel never touches it.
        let views = [x.first, dy, dw, x.second_or_first(), db.unwrap_or(dw)];
        let invocations = blocks + db.map_or(0, |_| out_blocks);
        let d = ctx.dispatch(
            &BACKWARD_WEIGHT_FEW,
            &constants,
            &views,
            &p,
            Grid::Invocations(invocations),
        )?;
        return Ok(vec![d]);
    }
    let p = params(s, s.w_len());
    let views = [x.first, dy, dw, x.second_or_first()];
    let mut ds = vec![ctx.dispatch(&BACKWARD_WEIGHT, &[gelu, acc], &views, &p, per_element_grid(s.w_len()))?];
    if let Some(db) = db {
        ds.push(backward_bias(ctx, s, dy, db, accumulate)?);
    }
    Ok(ds)
}

pub(super) fn backward_bias(
    ctx: &GpuContext,
    s: &Conv2dShape,
    dy: BufView<'_>,
    db: BufView<'_>,
    accumulate: bool,
) -> Result<Dispatch> {
    let p = params(s, s.cout);
    ctx.dispatch(
        &BACKWARD_BIAS,
        &[("ACCUMULATE", flag(accumulate))],
        &[dy, dy, db, dy],
        &p,
        per_element_grid(s.cout),
    )
}
