//! Leaky ReLU and ELU, forward and backward (from the forward's input), for
//! the MLP models. GELU has its own kernels (`gelu_forward`, `gelu_backward`).
//! WGSL: `shaders/elementwise_activation*.wgsl`.

use super::{same_len, ELEM_F32, ELEM_VEC4};
use crate::error::Result;
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec, Work};

const FORWARD_WGSL: &str = include_str!("../../../shaders/elementwise_activation.wgsl");
const BACKWARD_WGSL: &str = include_str!("../../../shaders/elementwise_activation_backward.wgsl");
const FORWARD_BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite, Access::Uniform];
const BACKWARD_BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform];

/// Each kernel as (one f32, a vec4) per invocation.
const LEAKY_RELU: [Kernel<Params>; 2] = [
    Kernel::portable("leaky_relu", &[ELEM_F32, FORWARD_WGSL], "leaky_relu", FORWARD_BINDINGS),
    Kernel::portable(
        "leaky_relu_vec4",
        &[ELEM_VEC4, FORWARD_WGSL],
        "leaky_relu",
        FORWARD_BINDINGS,
    ),
];
const ELU: [Kernel<Params>; 2] = [
    Kernel::portable("elu", &[ELEM_F32, FORWARD_WGSL], "elu", FORWARD_BINDINGS),
    Kernel::portable("elu_vec4", &[ELEM_VEC4, FORWARD_WGSL], "elu", FORWARD_BINDINGS),
];
const LEAKY_RELU_BWD: [Kernel<Params>; 2] = [
    Kernel::portable(
        "leaky_relu_backward",
        &[ELEM_F32, BACKWARD_WGSL],
        "leaky_relu_backward",
        BACKWARD_BINDINGS,
    ),
    Kernel::portable(
        "leaky_relu_backward_vec4",
        &[ELEM_VEC4, BACKWARD_WGSL],
        "leaky_relu_backward",
        BACKWARD_BINDINGS,
    ),
];
const ELU_BWD: [Kernel<Params>; 2] = [
    Kernel::portable(
        "elu_backward",
        &[ELEM_F32, BACKWARD_WGSL],
        "elu_backward",
        BACKWARD_BINDINGS,
    ),
    Kernel::portable(
        "elu_backward_vec4",
        &[ELEM_VEC4, BACKWARD_WGSL],
        "elu_backward",
        BACKWARD_BINDINGS,
    ),
];

crate::gpu_params! {
    struct Params {
        n: u32,
        slope: f32,
    }
}

pub(super) fn kernels() -> Vec<KernelSpec> {
    [LEAKY_RELU, ELU, LEAKY_RELU_BWD, ELU_BWD]
        .iter()
        .flatten()
        .map(|k| k.spec())
        .collect()
}

/// One dispatch of `kernels` (scalar, vec4) over `views`, all of `n` elements.
fn run(ctx: &GpuContext, kernels: &[Kernel<Params>; 2], views: &[BufView<'_>], slope: f32) -> Result<Dispatch> {
    let refs: Vec<&BufView<'_>> = views.iter().collect();
    let n = same_len(kernels[0].name, &refs)?;
    // Four elements per invocation when the length allows (vec4 loads amortise the per-lane cost).
    let v = if n.is_multiple_of(4) { 4 } else { 1 };
    let params = Params {
        n: (n / v) as u32,
        slope,
    };
    let d = ctx.dispatch(
        &kernels[(v == 4) as usize],
        &[],
        views,
        &params,
        Grid::Invocations(n / v),
    )?;
    Ok(d.with_work(Work::f32s(views.len() * n)))
}

/// `y = x if x > 0 else slope · x`.
pub fn leaky_relu_forward(ctx: &GpuContext, x: BufView<'_>, y: BufView<'_>, slope: f32) -> Result<Dispatch> {
    run(ctx, &LEAKY_RELU, &[x, y], slope)
}

/// `dx = dy if x > 0 else slope · dy`.
pub fn leaky_relu_backward(
    ctx: &GpuContext,
    x: BufView<'_>,
    dy: BufView<'_>,
    dx: BufView<'_>,
    slope: f32,
) -> Result<Dispatch> {
    run(ctx, &LEAKY_RELU_BWD, &[x, dy, dx], slope)
}

/// `y = x if x > 0 else exp(x) − 1`.
pub fn elu_forward(ctx: &GpuContext, x: BufView<'_>, y: BufView<'_>) -> Result<Dispatch> {
    run(ctx, &ELU, &[x, y], 0.0)
}

/// `dx = dy if x > 0 else dy · exp(x)`.
pub fn elu_backward(ctx: &GpuContext, x: BufView<'_>, dy: BufView<'_>, dx: BufView<'_>) -> Result<Dispatch> {
    run(ctx, &ELU_BWD, &[x, dy, dx], 0.0)
}
