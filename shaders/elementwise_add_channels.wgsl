// y[r, j] = a[r, j] + b[r, b_start + j] for j < width: an add whose second
// operand is a channel window of a wider NHWC tensor, read in place (VDVAE's
// `x + xpp`, xpp being channels of the prior block's output). Included after
// elementwise_divide.wgsl and an `alias Elem = f32 | vec4<f32>;` line; with
// vec4 every channel count and start is in groups of 4.

struct Params {
    rows: u32,
    width: u32,
    b_stride: u32,
    b_start: u32,
    inv_width: f32,
}

@group(0) @binding(0) var<storage, read> a: array<Elem>;
@group(0) @binding(1) var<storage, read> b: array<Elem>;
@group(0) @binding(2) var<storage, read_write> y: array<Elem>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn add_channels(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.rows * p.width) { return; }
    let r = div_exact(i, p.width, p.inv_width);
    let j = i - r * p.width;
    y[i] = a[i] + b[r * p.b_stride + p.b_start + j];
}
