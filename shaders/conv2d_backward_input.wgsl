// conv2d input gradient, simple path: one invocation per 4 channels of dx at a
// pixel, dx[n,ih,iw,ci..ci+3], summed in registers (a load of dy serves 4 FMAs).
// A ragged last block reads a clamped channel of w and skips its stores.
// dx = sum over taps and co of dy[n, ih-kh+pad, iw-kw+pad, co] * w[co,kh,kw,ci], times
// gelu'(x) when the forward applied GELU to its input. Included after gelu.wgsl.
// For a conv over cat[x, x2] (x the first `cat_split` channels, x2 the other
// `cin - cat_split`), channel ci < cat_split reads x and writes dx, the rest x2 and dx2.
// WRITE_ACT also writes act = gelu(x) (of cat[x, x2], in its layout) for the weight gradient.

override GELU_INPUT: bool = false;
override WRITE_ACT: bool = false;

struct Params {
    n: u32,
    h: u32,
    w: u32,
    cin: u32,
    cout: u32,
    k: u32,
    pad: u32,
    // Invocations that do work: pixels x ceil(cin / 4).
    total: u32,
    // Channels of x; x2 holds the rest (cin - cat_split, 0 for one input).
    cat_split: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<storage, read> x2: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx2: array<f32>;
@group(0) @binding(7) var<storage, read_write> act: array<f32>;

@compute @workgroup_size(WG_SMALL)
fn conv2d_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG_SMALL);
    if (i >= p.total) { return; }
    let blocks = (p.cin + 3u) / 4u;
    let ci = (i % blocks) * 4u;
    let pix = i / blocks;
    let iw = pix % p.w;
    let ih = (pix / p.w) % p.h;
    let n = pix / (p.w * p.h);
    // w's channels ci..ci+3, clamped to the last.
    let last = p.cin - 1u;
    let c = vec4(ci, min(ci + 1u, last), min(ci + 2u, last), min(ci + 3u, last));
    var acc = vec4(0.0);
    for (var kh = 0u; kh < p.k; kh++) {
        let oh = ih + p.pad - kh;
        for (var kw = 0u; kw < p.k; kw++) {
            let ow = iw + p.pad - kw;
            if (oh < p.h && ow < p.w) {
                let yb = ((n * p.h + oh) * p.w + ow) * p.cout;
                for (var co = 0u; co < p.cout; co++) {
                    let wb = ((co * p.k + kh) * p.k + kw) * p.cin;
                    let wv = vec4(wt[wb + c.x], wt[wb + c.y], wt[wb + c.z], wt[wb + c.w]);
                    acc = fma(vec4(dy[yb + co]), wv, acc);
                }
            }
        }
    }
    for (var j = 0u; j < 4u; j++) {
        let cj = ci + j;
        if (cj >= p.cin) { break; }
        // Where element (pix, cj) of cat[x, x2] lies.
        let first = cj < p.cat_split;
        let i1 = pix * p.cat_split + cj;
        let i2 = select(pix * (p.cin - p.cat_split) + cj - p.cat_split, 0u, first);
        var xv = 0.0;
        if (GELU_INPUT || WRITE_ACT) {
            if (first) {
                xv = x[i1];
            } else {
                xv = x2[i2];
            }
        }
        var v = acc[j];
        if (GELU_INPUT) {
            v *= gelu_grad(xv);
        }
        if (first) {
            dx[i1] = v;
        } else {
            dx2[i2] = v;
        }
        if (WRITE_ACT) {
            act[pix * p.cin + cj] = gelu(xv);
        }
    }
}
