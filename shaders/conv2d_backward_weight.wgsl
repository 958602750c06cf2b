// conv2d weight and bias gradients, simple path. Included after gelu.wgsl.
// dw[co,kh,kw,ci] = sum over n,oh,ow of dy[n,oh,ow,co] * act(x)[n, oh+kh-pad, ow+kw-pad, ci]
// db[co]          = sum over n,oh,ow of dy[n,oh,ow,co]
// ACCUMULATE adds to the existing gradient instead of overwriting it.

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
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

fn act(v: f32) -> f32 {
    return select(v, gelu(v), GELU_INPUT);
}

fn store(i: u32, v: f32) {
    grad[i] = select(v, grad[i] + v, ACCUMULATE);
}

// One invocation per dw element; the reduction runs over every pixel.
@compute @workgroup_size(64)
fn conv2d_backward_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.total) { return; }
    let ci = i % p.cin;
    let kw = (i / p.cin) % p.k;
    let kh = (i / (p.cin * p.k)) % p.k;
    let co = i / (p.cin * p.k * p.k);
    var acc = 0.0;
    for (var n = 0u; n < p.n; n++) {
        for (var oh = 0u; oh < p.h; oh++) {
            let ih = oh + kh - p.pad;
            if (ih >= p.h) { continue; }
            for (var ow = 0u; ow < p.w; ow++) {
                let iw = ow + kw - p.pad;
                if (iw >= p.w) { continue; }
                let g = dy[((n * p.h + oh) * p.w + ow) * p.cout + co];
                acc = fma(g, act(x[((n * p.h + ih) * p.w + iw) * p.cin + ci]), acc);
            }
        }
    }
    store(i, acc);
}

// One invocation per output channel.
@compute @workgroup_size(64)
fn conv2d_backward_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let co = gid.x + gid.y * nwg.x * 64u;
    if (co >= p.cout) { return; }
    var acc = 0.0;
    let pixels = p.n * p.h * p.w;
    for (var q = 0u; q < pixels; q++) {
        acc += dy[q * p.cout + co];
    }
    store(co, acc);
}
