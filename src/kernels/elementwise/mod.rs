//! Elementwise ops on flat (NHWC) tensors: GELU (erf form), leaky ReLU and
//! ELU with their gradients, `add`, the per-channel affine `x * gain + bias` with its backward, and channel
//! concat / split / range copies.
//! WGSL: `shaders/elementwise*.wgsl`, `shaders/gelu.wgsl`.

mod activation;
mod affine;
mod cases;
mod channels;
mod divide;
pub mod reference;

pub use activation::{elu_backward, elu_forward, leaky_relu_backward, leaky_relu_forward};
pub use affine::{add, affine, affine_backward, affine_backward_scratch_len, AffineBackward};
pub use cases::{bench_cases, check};
pub use channels::{
    add_channels, concat_channels, copy_channels, slice_channels, slice_channels_backward, split_channels,
    ChannelRange, CopyMode,
};
pub use divide::{div_exact, divide_on_gpu, edge_numerators, reciprocal, DIVIDE_WGSL, MAX_DIVISOR};

use crate::error::{shape_err, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec, Work};

/// Prepended to kernels written over `Elem`: one f32 per invocation, or four
/// (a vec4 of consecutive channels) when the channel counts allow it.
pub const ELEM_F32: &str = "alias Elem = f32;\n";
pub const ELEM_VEC4: &str = "alias Elem = vec4<f32>;\n";

pub const GELU_WGSL: &str = include_str!("../../../shaders/gelu.wgsl");
const FORWARD: &[&str] = &[GELU_WGSL, include_str!("../../../shaders/elementwise.wgsl")];
const BACKWARD: &[&str] = &[GELU_WGSL, include_str!("../../../shaders/elementwise_backward.wgsl")];

const GELU_FWD: Kernel<Params> = Kernel::portable(
    "gelu_forward",
    FORWARD,
    "gelu_forward",
    &[Access::Read, Access::ReadWrite, Access::Uniform],
);
const GELU_BWD: Kernel<Params> = Kernel::portable(
    "gelu_backward",
    BACKWARD,
    "gelu_backward",
    &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform],
);

crate::gpu_params! {
    struct Params {
        n: u32,
    }
}

/// Every kernel of the family, for the contract test.
pub fn all_kernels() -> Vec<KernelSpec> {
    let mut all = vec![GELU_FWD.spec(), GELU_BWD.spec()];
    all.extend(activation::kernels());
    all.extend(affine::kernels());
    all.extend(channels::kernels());
    all.extend(divide::kernels());
    all
}

fn same_len(op: &str, views: &[&BufView<'_>]) -> Result<usize> {
    let n = views[0].len;
    if views.iter().any(|v| v.len != n) {
        let lens: Vec<_> = views.iter().map(|v| v.len).collect();
        return shape_err(format!("{op}: tensors must have equal lengths, got {lens:?}"));
    }
    Ok(n)
}

/// `y = gelu(x)`.
pub fn gelu_forward(ctx: &GpuContext, x: BufView<'_>, y: BufView<'_>) -> Result<Dispatch> {
    let n = same_len("gelu_forward", &[&x, &y])?;
    let d = ctx.dispatch(&GELU_FWD, &[], &[x, y], &Params { n: n as u32 }, Grid::Invocations(n))?;
    Ok(d.with_work(Work::f32s(2 * n)))
}

/// `dx = dy * gelu'(x)`.
pub fn gelu_backward(ctx: &GpuContext, x: BufView<'_>, dy: BufView<'_>, dx: BufView<'_>) -> Result<Dispatch> {
    let n = same_len("gelu_backward", &[&x, &dy, &dx])?;
    let d = ctx.dispatch(
        &GELU_BWD,
        &[],
        &[x, dy, dx],
        &Params { n: n as u32 },
        Grid::Invocations(n),
    )?;
    Ok(d.with_work(Work::f32s(3 * n)))
}
