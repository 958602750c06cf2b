// Resampling of NHWC tensors by an integer factor k between a big [N, H, W, C]
// and a small [N, H/k, W/k, C] tensor.
//   block_sum:       small = scale * (sum of each k x k block of big)
//                    (average pool with scale 1/k², nearest-upsample backward with 1)
//   block_broadcast: big = scale * small of the block it lies in
//                    (nearest upsample with scale 1, average-pool backward with 1/k²)
// Included after elementwise_divide.wgsl (index math without integer division)
// and an `alias Elem = f32 | vec4<f32>;` line; with vec4, C counts groups of 4 channels.

struct Params {
    n: u32,        // Elems written (small for block_sum, big for block_broadcast)
    channels: u32, // in Elems
    small_w: u32,
    k: u32,
    scale: f32,
    inv_channels: f32,
    inv_small_w: f32,
    inv_big_w: f32,
    inv_k: f32,
}

// (quotient, remainder) of n / d.
fn divmod(n: u32, d: u32, inv_d: f32) -> vec2<u32> {
    let q = div_exact(n, d, inv_d);
    return vec2<u32>(q, n - q * d);
}

@group(0) @binding(0) var<storage, read> src: array<Elem>;
@group(0) @binding(1) var<storage, read_write> dst: array<Elem>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn block_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.n) { return; }
    let pix_c = divmod(i, p.channels, p.inv_channels);
    let c = pix_c.y;
    let row_ow = divmod(pix_c.x, p.small_w, p.inv_small_w);
    let ow = row_ow.y;
    let row = row_ow.x; // n * (H / k) + oh
    let big_w = p.small_w * p.k;
    let base = ((row * p.k) * big_w + ow * p.k) * p.channels + c;
    let row_step = big_w * p.channels;
    var sum = Elem(0.0);
    for (var dh = 0u; dh < p.k; dh++) {
        let r = base + dh * row_step;
        for (var dw = 0u; dw < p.k; dw++) {
            sum += src[r + dw * p.channels];
        }
    }
    dst[i] = sum * p.scale;
}

@compute @workgroup_size(WG)
fn block_broadcast(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.n) { return; }
    let pix_c = divmod(i, p.channels, p.inv_channels);
    let row_w = divmod(pix_c.x, p.small_w * p.k, p.inv_big_w);
    // row = n * H + h, so row / k = n * (H / k) + h / k.
    let small_row = div_exact(row_w.x, p.k, p.inv_k);
    let small_col = div_exact(row_w.y, p.k, p.inv_k);
    dst[i] = src[(small_row * p.small_w + small_col) * p.channels + pix_c.y] * p.scale;
}
