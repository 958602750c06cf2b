// Copies a channel range between NHWC tensors viewed as [rows, channels]:
// dst[r, dst_start + j] (=, +=) src[r, src_start + j] for j < width. With
// `zero_rest` the invocations cover every channel of dst and the ones outside
// the window are set to zero (the backward of taking a channel range).
// Included after elementwise_divide.wgsl and an `alias Elem = f32 | vec4<f32>;`
// line; with vec4 every channel count, start and width is in groups of 4.

struct Params {
    rows: u32,
    width: u32,
    src_stride: u32,
    src_start: u32,
    dst_stride: u32,
    dst_start: u32,
    accumulate: u32,
    zero_rest: u32,
    inv_cols: f32, // 1 / (zero_rest ? dst_stride : width)
}

@group(0) @binding(0) var<storage, read> src: array<Elem>;
@group(0) @binding(1) var<storage, read_write> dst: array<Elem>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn copy_channels(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    let cols = select(p.width, p.dst_stride, p.zero_rest != 0u);
    if (i >= p.rows * cols) { return; }
    let r = div_exact(i, cols, p.inv_cols);
    let col = i - r * cols;
    // Window column j and destination channel c of this invocation.
    let j = select(col, col - p.dst_start, p.zero_rest != 0u);
    let c = select(p.dst_start + col, col, p.zero_rest != 0u);
    let d = r * p.dst_stride + c;
    if (j >= p.width) {
        // Only reached with zero_rest (col < dst_start wraps j around to a huge value).
        dst[d] = Elem(0.0);
        return;
    }
    let v = src[r * p.src_stride + p.src_start + j];
    if (p.accumulate != 0u) {
        dst[d] += v;
    } else {
        dst[d] = v;
    }
}
