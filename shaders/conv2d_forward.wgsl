// conv2d forward, simple path: one invocation per output element y[n,oh,ow,co].
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
    let co = i % p.cout;
    let pix = i / p.cout;
    let ow = pix % p.w;
    let oh = (pix / p.w) % p.h;
    let n = pix / (p.w * p.h);
    var acc = 0.0;
    for (var kh = 0u; kh < p.k; kh++) {
        // Unsigned wrap-around makes taps above/left of the image fail the `< h` test.
        let ih = oh + kh - p.pad;
        for (var kw = 0u; kw < p.k; kw++) {
            let iw = ow + kw - p.pad;
            if (ih < p.h && iw < p.w) {
                let pix_in = (n * p.h + ih) * p.w + iw;
                let wb = ((co * p.k + kh) * p.k + kw) * p.cin;
                let xb = pix_in * p.cat_split;
                for (var ci = 0u; ci < p.cat_split; ci++) {
                    acc = fma(act(x[xb + ci]), wt[wb + ci], acc);
                }
                let c2 = p.cin - p.cat_split;
                let xb2 = pix_in * c2;
                for (var ci = 0u; ci < c2; ci++) {
                    acc = fma(act(x2[xb2 + ci]), wt[wb + p.cat_split + ci], acc);
                }
            }
        }
    }
    if (HAS_BIAS) {
        acc += bias[co];
    }
    if (HAS_RESIDUAL) {
        acc += residual[i];
    }
    y[i] = acc;
}
