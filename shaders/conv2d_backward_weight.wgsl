// conv2d weight and bias gradients, simple path. Included after gelu.wgsl.
// dw[co,kh,kw,ci] = sum over n,oh,ow of dy[n,oh,ow,co] * act(x)[n, oh+kh-pad, ow+kw-pad, ci]
// db[co]          = sum over n,oh,ow of dy[n,oh,ow,co]
// ACCUMULATE adds to the existing gradient instead of overwriting it.
// For a conv over cat[x, x2], input channel ci < cat_split is read from x, the rest from x2.
//
// conv2d_backward_weight and _bias: one workgroup per output element, whose 256
// invocations take every 256th pixel, a tree in workgroup memory adding their sums.
// (llvmpipe ends an invocation after 65535 loop iterations in total, so one
// invocation must not walk every pixel of a large conv itself.)
//
// conv2d_backward_weight_few, over few pixels (`Conv2dShape::few_pixels`, well
// inside that limit): each invocation walks every pixel itself for a block of 4
// output x 4 input channels of one tap, held in registers: no workgroup per
// element, no barriers, dw and db in one dispatch, and 8 loads per 16 FMAs.
// Invocations [0, total) each write a block of dw (blocks ordered tap-major, so
// neighbouring invocations share a tap and its padding test); with HAS_BIAS the
// next ceil(cout / 4) each write 4 channels of db. Ragged blocks read a clamped
// channel and skip its store.

override GELU_INPUT: bool = false;
override ACCUMULATE: bool = false;
override HAS_BIAS: bool = false;

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
// db of the few-pixel entry point (the others write db through `grad`).
@group(0) @binding(5) var<storage, read_write> db: array<f32>;

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

// act(x) at pixel `pix`, channel min(ci, cin - 1), from x or x2.
fn x_at(pix: u32, ci: u32) -> f32 {
    let c = min(ci, p.cin - 1u);
    if (c < p.cat_split) {
        return act(x[pix * p.cat_split + c]);
    }
    let c2 = p.cin - p.cat_split;
    return act(x2[pix * c2 + c - p.cat_split]);
}

// dy at pixel `q`, channels co..co+3 (clamped to the last).
fn dy4(q: u32, co: u32) -> vec4<f32> {
    let row = q * p.cout;
    let last = p.cout - 1u;
    return vec4(dy[row + co], dy[row + min(co + 1u, last)], dy[row + min(co + 2u, last)], dy[row + min(co + 3u, last)]);
}

@compute @workgroup_size(WG_SMALL)
fn conv2d_backward_weight_few(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG_SMALL);
    let in_blocks = (p.cin + 3u) / 4u;
    let out_blocks = (p.cout + 3u) / 4u;
    let pixels = p.n * p.h * p.w;
    if (i < p.total) {
        let ci = (i % in_blocks) * 4u;
        let co = (i / in_blocks) % out_blocks * 4u;
        let tap = i / (in_blocks * out_blocks);
        let kh = tap / p.k;
        let kw = tap % p.k;
        // acc[j][c]: the gradient of w[co + j, kh, kw, ci + c].
        var acc = array<vec4<f32>, 4>();
        // (oh, ow) of pixel q, stepped along with it (no division per pixel).
        var oh = 0u;
        var ow = 0u;
        for (var q = 0u; q < pixels; q++) {
            // Unsigned wrap-around makes taps above/left of the image fail the `< h` test.
            let ih = oh + kh - p.pad;
            let iw = ow + kw - p.pad;
            if (ih < p.h && iw < p.w) {
                let pix = q - oh * p.w - ow + ih * p.w + iw;
                let xv = vec4(x_at(pix, ci), x_at(pix, ci + 1u), x_at(pix, ci + 2u), x_at(pix, ci + 3u));
                let d = dy4(q, co);
                acc[0] = fma(vec4(d.x), xv, acc[0]);
                acc[1] = fma(vec4(d.y), xv, acc[1]);
                acc[2] = fma(vec4(d.z), xv, acc[2]);
                acc[3] = fma(vec4(d.w), xv, acc[3]);
            }
            ow += 1u;
            if (ow == p.w) {
                ow = 0u;
                oh += 1u;
                if (oh == p.h) {
                    oh = 0u;
                }
            }
        }
        for (var j = 0u; j < 4u; j++) {
            if (co + j < p.cout) {
                let base = ((co + j) * p.k * p.k + tap) * p.cin;
                for (var c = 0u; c < 4u; c++) {
                    if (ci + c < p.cin) {
                        let at = base + ci + c;
                        grad[at] = select(acc[j][c], grad[at] + acc[j][c], ACCUMULATE);
                    }
                }
            }
        }
    } else if (HAS_BIAS && i < p.total + out_blocks) {
        let co = (i - p.total) * 4u;
        var acc = vec4(0.0);
        for (var q = 0u; q < pixels; q++) {
            acc += dy4(q, co);
        }
        for (var j = 0u; j < 4u; j++) {
            if (co + j < p.cout) {
                db[co + j] = select(acc[j], db[co + j] + acc[j], ACCUMULATE);
            }
        }
    }
}
