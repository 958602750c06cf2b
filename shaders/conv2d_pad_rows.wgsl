// Rows of `channels` channels copied into rows of `vecs` vec4s (4 * vecs >=
// channels), the channels past `channels` zero: a ragged operand of the tiled
// conv path copied into whole vec4s (src/kernels/conv2d/pad.rs). One vec4 of
// dst per invocation, so that each invocation stores once: on lavapipe every
// storage access is a loop over the lanes, and a store per channel cost four.
// Included after elementwise_divide.wgsl and conv2d_pad_rows_channels.wgsl
// (Src = f32, any channel count) or conv2d_pad_rows_pairs.wgsl (Src =
// vec2<f32>, an even count), each defining `quad(r, c)`: channels c..c+3 of
// row r, those past the row's channels zero.

struct Params {
    // vec4s written: rows * vecs.
    total: u32,
    channels: u32,
    vecs: u32,
    inv_vecs: f32, // 1 / vecs
}

@group(0) @binding(0) var<storage, read> src: array<Src>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn pad_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.total) { return; }
    let r = div_exact(i, p.vecs, p.inv_vecs);
    dst[i] = quad(r, 4u * (i - r * p.vecs));
}
