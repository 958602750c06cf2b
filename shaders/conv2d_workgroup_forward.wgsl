// conv2d forward, workgroup path: y[q, co] = Σ_k act(x)[q, k] · w[co, k] + bias[co] + residual[q, co]
// for output pixel q and k = tap · cin + ci (the weights' own layout, [cout, k, k, cin]).
// The GEMM, its tiles and its edges: conv2d_workgroup_common.wgsl. Over a cat, channel ci
// reads x (ci < cat_split) or x2, so the sum runs in the same order as over one tensor.

override HAS_BIAS: bool = false;
override HAS_RESIDUAL: bool = false;

// A[q, k]: act(x) at the input pixel that tap k / cin of output pixel q reads.
fn a_at(q: Pixel, k: u32) -> f32 {
    if (k >= p.kdim) {
        return 0.0;
    }
    let tap = k / p.cin;
    let src = input_pixel(q, tap);
    if (src == NO_PIXEL) {
        return 0.0;
    }
    return act(input_at(src, k - tap * p.cin));
}

// A[m, k..k+3] (k a multiple of 4); `q` is pixel m.
fn a_piece(m: u32, q: Pixel, k: u32) -> vec4<f32> {
    if (m >= p.m) {
        return vec4<f32>(0.0);
    }
    if (VEC4) {
        // cin % 4 == 0: the four lie in one tap, one source.
        if (k >= p.kdim) {
            return vec4<f32>(0.0);
        }
        let tap = k / p.cin;
        let src = input_pixel(q, tap);
        if (src == NO_PIXEL) {
            return vec4<f32>(0.0);
        }
        return act4(input_quad(src, k - tap * p.cin));
    }
    return vec4<f32>(a_at(q, k), a_at(q, k + 1u), a_at(q, k + 2u), a_at(q, k + 3u));
}

// B[k, co] = w[co, k].
fn b_at(base: u32, k: u32) -> f32 {
    if (k >= p.kdim) {
        return 0.0;
    }
    return w_at(base + k);
}

// B[k..k+3, co] (k a multiple of 4).
fn b_piece(co: u32, k: u32) -> vec4<f32> {
    if (co >= p.cout) {
        return vec4<f32>(0.0);
    }
    let base = co * p.kdim;
    if (VEC4) {
        if (k >= p.kdim) {
            return vec4<f32>(0.0);
        }
        return w_quad(base + k);
    }
    return vec4<f32>(b_at(base, k), b_at(base, k + 1u), b_at(base, k + 2u), b_at(base, k + 3u));
}

// y[m, co..co+3] = v + bias + residual, the columns past cout skipped.
fn store(m: u32, co: u32, v: vec4<f32>) {
    if (m >= p.m || co >= p.cout) {
        return;
    }
    let i = m * p.cout + co;
    if (VEC4) {
        var r = v;
        if (HAS_BIAS) {
            r += bias_quad(co);
        }
        if (HAS_RESIDUAL) {
            r += residual_quad(i);
        }
        y_set_quad(i, r);
        return;
    }
    for (var j = 0u; j < MICRO; j++) {
        if (co + j < p.cout) {
            var r = v[j];
            if (HAS_BIAS) {
                r += bias_at(co + j);
            }
            if (HAS_RESIDUAL) {
                r += residual_at(i + j);
            }
            y_set(i + j, r);
        }
    }
}

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    // Row tiles folded into x and y (uniform over the workgroup), column tiles along z.
    let m0 = flat_workgroup(wid, nwg) * TILE;
    if (m0 >= p.m) {
        return;
    }
    let n0 = wid.z * TILE;
    // Staging: this invocation loads K elements sk..sk+3 of A's row sr and of B's column sr.
    let sr = lid / MICRO;
    let sk = (lid % MICRO) * MICRO;
    let am = m0 + sr;
    let aq = pixel(min(am, p.m - 1u));
    let bco = n0 + sr;
    // Its micro-tile: rows m0 + 4 ty.., columns n0 + 4 tx...
    let tx = lid % TILE_SIDE;
    let ty = lid / TILE_SIDE;
    var acc = Micro(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var k0 = 0u; k0 < p.kdim; k0 += TILE_K) {
        stage_k_major(true, sk, sr, a_piece(am, aq, k0 + sk));
        stage_k_major(false, sk, sr, b_piece(bco, k0 + sk));
        workgroupBarrier();
        acc = tile_product(ty, tx, acc);
        workgroupBarrier();
    }
    for (var i = 0u; i < MICRO; i++) {
        store(m0 + ty * MICRO + i, n0 + tx * MICRO, micro_row(acc, i));
    }
}
