// Rows of `channels` channels copied into rows of `vecs` vec4s (4 * vecs >=
// channels), the channels past `channels` zero: a ragged operand of the tiled
// conv path copied into whole vec4s (src/kernels/conv2d/pad.rs). One vec4 of
// dst per invocation, so that each invocation stores once: on lavapipe every
// storage access is a loop over the lanes, and a store per channel cost four.
// Included after elementwise_divide.wgsl.

struct Params {
    // vec4s written: rows * vecs.
    total: u32,
    channels: u32,
    vecs: u32,
    inv_vecs: f32, // 1 / vecs
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> p: Params;

// Channel c of the row starting at base, 0 past the row's channels (which
// read its channel 0, in bounds, instead).
fn channel(base: u32, c: u32) -> f32 {
    let inside = c < p.channels;
    return select(0.0, src[base + select(0u, c, inside)], inside);
}

@compute @workgroup_size(WG)
fn pad_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.total) { return; }
    let r = div_exact(i, p.vecs, p.inv_vecs);
    let c = 4u * (i - r * p.vecs);
    let base = r * p.channels;
    dst[i] = vec4<f32>(channel(base, c), channel(base, c + 1u), channel(base, c + 2u), channel(base, c + 3u));
}
