// conv2d forward, simple path: one invocation per 4 output channels at a pixel,
// y[n,oh,ow,co..co+3], summed in registers (a load of x serves 4 FMAs). A
// ragged last block reads a clamped channel of w and skips its stores.
// Any shape. Included after gelu.wgsl. The fast path is generated (src/kernels/conv2d/codegen.rs).
// The input is cat[x, x2] along channels, read where the two lie: x holds the
// first `cat_split` channels, x2 the other `cin - cat_split` (none without a cat); the
// sum runs over the channels in order, as over one concatenated tensor.

override GELU_INPUT: bool = false;
override HAS_BIAS: bool = false;
override HAS_RESIDUAL: bool = false;

struct Params {
    n: u32,
    h: u32,
    w: u32,
    cin: u32,
    cout: u32,
    k: u32,
    pad: u32,
    // Invocations that do work: pixels x ceil(cout / 4).
    total: u32,
    // Channels of x; x2 holds the rest (cin - cat_split, 0 for one input).
    cat_split: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> residual: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
@group(0) @binding(6) var<storage, read> x2: array<f32>;

fn act(v: f32) -> f32 {
    return select(v, gelu(v), GELU_INPUT);
}

@compute @workgroup_size(WG_SMALL)
fn conv2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG_SMALL);
    if (i >= p.total) { return; }
    let blocks = (p.cout + 3u) / 4u;
    let co = (i % blocks) * 4u;
    let pix = i / blocks;
    let ow = pix % p.w;
    let oh = (pix / p.w) % p.h;
    let n = pix / (p.w * p.h);
    // The weights of channels co..co+3 (clamped to the last) start a row apart.
    let last = p.cout - 1u;
    let row = p.k * p.k * p.cin;
    let rows = vec4(co, min(co + 1u, last), min(co + 2u, last), min(co + 3u, last)) * row;
    var acc = vec4(0.0);
    for (var kh = 0u; kh < p.k; kh++) {
        // Unsigned wrap-around makes taps above/left of the image fail the `< h` test.
        let ih = oh + kh - p.pad;
        for (var kw = 0u; kw < p.k; kw++) {
            let iw = ow + kw - p.pad;
            if (ih < p.h && iw < p.w) {
                let pix_in = (n * p.h + ih) * p.w + iw;
                let wb = rows + vec4((kh * p.k + kw) * p.cin);
                let xb = pix_in * p.cat_split;
                for (var ci = 0u; ci < p.cat_split; ci++) {
                    let wv = vec4(wt[wb.x + ci], wt[wb.y + ci], wt[wb.z + ci], wt[wb.w + ci]);
                    acc = fma(vec4(act(x[xb + ci])), wv, acc);
                }
                let c2 = p.cin - p.cat_split;
                let xb2 = pix_in * c2;
                let wb2 = wb + vec4(p.cat_split);
                for (var ci = 0u; ci < c2; ci++) {
                    let wv = vec4(wt[wb2.x + ci], wt[wb2.y + ci], wt[wb2.z + ci], wt[wb2.w + ci]);
                    acc = fma(vec4(act(x2[xb2 + ci])), wv, acc);
                }
            }
        }
    }
    for (var j = 0u; j < 4u; j++) {
        let cj = co + j;
        if (cj >= p.cout) { break; }
        let at = pix * p.cout + cj;
        var v = acc[j];
        if (HAS_BIAS) {
            v += bias[cj];
        }
        if (HAS_RESIDUAL) {
            v += residual[at];
        }
        y[at] = v;
    }
}
