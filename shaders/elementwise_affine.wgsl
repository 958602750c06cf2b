// Per-channel affine over an NHWC tensor viewed as [rows, C]: y = x * gain[c] + bias[c].
// Included after elementwise_divide.wgsl and an `alias Elem = f32 | vec4<f32>;`
// line; with vec4, C counts groups of 4 channels.

struct Params {
    n: u32,        // in Elems
    channels: u32, // in Elems
    inv_channels: f32,
}

@group(0) @binding(0) var<storage, read> x: array<Elem>;
@group(0) @binding(1) var<storage, read> gain: array<Elem>;
@group(0) @binding(2) var<storage, read> bias: array<Elem>;
@group(0) @binding(3) var<storage, read_write> y: array<Elem>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn affine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.n) { return; }
    let c = i - div_exact(i, p.channels, p.inv_channels) * p.channels;
    y[i] = x[i] * gain[c] + bias[c];
}
