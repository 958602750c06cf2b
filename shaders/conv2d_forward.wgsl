// conv2d forward, simple path: one invocation per output element y[n,oh,ow,co].
// Any shape. Included after gelu.wgsl. The fast path is generated (src/ops/conv2d/codegen.rs).

const WG: u32 = 64u; // invocations per workgroup; Rust sizes grids from @workgroup_size

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
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> residual: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

fn act(v: f32) -> f32 {
    return select(v, gelu(v), GELU_INPUT);
}

@compute @workgroup_size(WG)
fn conv2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
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
                let xb = ((n * p.h + ih) * p.w + iw) * p.cin;
                let wb = ((co * p.k + kh) * p.k + kw) * p.cin;
                for (var ci = 0u; ci < p.cin; ci++) {
                    acc = fma(act(x[xb + ci]), wt[wb + ci], acc);
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
