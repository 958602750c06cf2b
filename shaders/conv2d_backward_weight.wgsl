// conv2d weight and bias gradients, simple path. Included after gelu.wgsl.
// dw[co,kh,kw,ci] = sum over n,oh,ow of dy[n,oh,ow,co] * act(x)[n, oh+kh-pad, ow+kw-pad, ci]
// db[co]          = sum over n,oh,ow of dy[n,oh,ow,co]
// ACCUMULATE adds to the existing gradient instead of overwriting it.
// For a conv over cat[x, x2], input channel ci < cat_split is read from x, the rest from x2.
//
// One workgroup per output element: its 256 invocations take every 256th pixel and a
// tree in workgroup memory adds their sums. (llvmpipe ends an invocation after 65535
// loop iterations in total, so one invocation must not walk every pixel itself.)

override GELU_INPUT: bool = false;
override ACCUMULATE: bool = false;

struct Params {
    n: u32,
    h: u32,
    w: u32,
    cin: u32,
    cout: u32,
    k: u32,
    pad: u32,
    total: u32,
    // Channels of x; x2 holds the rest (cin - cat_split, 0 for one input).
    cat_split: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> x2: array<f32>;

var<workgroup> partial: array<f32, WG>;

fn act(v: f32) -> f32 {
    return select(v, gelu(v), GELU_INPUT);
}

// Sums every invocation's `v`; invocation 0 stores the total into grad[i].
fn reduce_and_store(lid: u32, i: u32, v: f32) {
    partial[lid] = v;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if (lid < half) {
            partial[lid] += partial[lid + half];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        grad[i] = select(partial[0], grad[i] + partial[0], ACCUMULATE);
    }
}

@compute @workgroup_size(WG)
fn conv2d_backward_weight(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    // Uniform per workgroup, so every invocation reaches the barriers.
    let i = flat_workgroup(wid, nwg);
    if (i >= p.total) { return; }
    let ci = i % p.cin;
    let kw = (i / p.cin) % p.k;
    let kh = (i / (p.cin * p.k)) % p.k;
    let co = i / (p.cin * p.k * p.k);
    // The source of channel ci, uniform over the workgroup.
    let first = ci < p.cat_split;
    let c2 = p.cin - p.cat_split;
    var acc = 0.0;
    for (var q = lid; q < p.n * p.h * p.w; q += WG) {
        let ow = q % p.w;
        let row = q / p.w;
        let ih = row % p.h + kh - p.pad;
        let iw = ow + kw - p.pad;
        if (ih < p.h && iw < p.w) {
            let pix_in = (row / p.h * p.h + ih) * p.w + iw;
            var xv: f32;
            if (first) {
                xv = x[pix_in * p.cat_split + ci];
            } else {
                xv = x2[pix_in * c2 + ci - p.cat_split];
            }
            acc = fma(dy[q * p.cout + co], act(xv), acc);
        }
    }
    reduce_and_store(lid, i, acc);
}

@compute @workgroup_size(WG)
fn conv2d_backward_bias(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let co = flat_workgroup(wid, nwg);
    if (co >= p.cout) { return; }
    var acc = 0.0;
    for (var q = lid; q < p.n * p.h * p.w; q += WG) {
        acc += dy[q * p.cout + co];
    }
    reduce_and_store(lid, co, acc);
}
