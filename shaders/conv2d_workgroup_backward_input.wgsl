// conv2d input gradient, workgroup path: dx[q, ci] = Σ_k dy[q', co] · w[co, tap, ci] · act'(x[q, ci])
// for input pixel q and k = tap · cout + co, q' the output pixel whose tap `tap` reads q
// (the weights are read where they lie, no flipped copy). The GEMM, its tiles and its edges:
// conv2d_workgroup_common.wgsl.
// Over a cat, channel ci < cat_split goes to dx (plus `addend`), the rest to dx2 (plus
// `addend2`). WRITE_ACT also writes act_out = gelu(cat[x, x2]) in one tensor, for the
// weight gradient. Without the addends' bindings (an adapter with few storage buffers per
// stage) their accessors return 0 and the Rust side adds them in passes of their own.

override WRITE_ACT: bool = false;
override HAS_ADDEND: bool = false;
override HAS_ADDEND2: bool = false;

// A[q, k]: dy at the output pixel whose tap k / cout reads input pixel q, channel k % cout.
fn a_at(q: Pixel, k: u32) -> f32 {
    if (k >= p.kdim) {
        return 0.0;
    }
    let tap = k / p.cout;
    let src = output_pixel(q, tap);
    if (src == NO_PIXEL) {
        return 0.0;
    }
    return dy_at(src * p.cout + k - tap * p.cout);
}

// A[m, k..k+3] (k a multiple of 4); `q` is pixel m.
fn a_piece(m: u32, q: Pixel, k: u32) -> vec4<f32> {
    if (m >= p.m) {
        return vec4<f32>(0.0);
    }
    if (VEC4) {
        // cout % 4 == 0: the four lie in one tap.
        if (k >= p.kdim) {
            return vec4<f32>(0.0);
        }
        let tap = k / p.cout;
        let src = output_pixel(q, tap);
        if (src == NO_PIXEL) {
            return vec4<f32>(0.0);
        }
        return dy_quad(src * p.cout + k - tap * p.cout);
    }
    return vec4<f32>(a_at(q, k), a_at(q, k + 1u), a_at(q, k + 2u), a_at(q, k + 3u));
}

// B[k, ci] = w[co, tap, ci] for k = tap · cout + co; `base` is where w[co, tap, 0] lies.
fn b_at(base: u32, ci: u32) -> f32 {
    if (ci >= p.cin) {
        return 0.0;
    }
    return w_at(base + ci);
}

// B[k, ci..ci+3] (ci a multiple of 4).
fn b_piece(k: u32, ci: u32) -> vec4<f32> {
    if (k >= p.kdim) {
        return vec4<f32>(0.0);
    }
    let tap = k / p.cout;
    let co = k - tap * p.cout;
    let base = (co * p.k * p.k + tap) * p.cin;
    if (VEC4) {
        if (ci >= p.cin) {
            return vec4<f32>(0.0);
        }
        return w_quad(base + ci);
    }
    return vec4<f32>(b_at(base, ci), b_at(base, ci + 1u), b_at(base, ci + 2u), b_at(base, ci + 3u));
}

fn gelu_grad4(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(gelu_grad(v.x), gelu_grad(v.y), gelu_grad(v.z), gelu_grad(v.w));
}

fn gelu4(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(gelu(v.x), gelu(v.y), gelu(v.z), gelu(v.w));
}

// dx (or dx2) at pixel m, channel ci of cat[x, x2]: v plus the addend.
fn store_dx(m: u32, ci: u32, v: f32) {
    if (ci < p.cat_split) {
        let i = m * p.cat_split + ci;
        var r = v;
        if (HAS_ADDEND) {
            r += addend_at(i);
        }
        dx_set(i, r);
    } else {
        let i = m * (p.cin - p.cat_split) + ci - p.cat_split;
        var r = v;
        if (HAS_ADDEND2) {
            r += addend2_at(i);
        }
        dx2_set(i, r);
    }
}

// Channels ci..ci+3 (one source: cat_split % 4 == 0 with VEC4).
fn store_dx_quad(m: u32, ci: u32, v: vec4<f32>) {
    if (ci < p.cat_split) {
        let i = m * p.cat_split + ci;
        var r = v;
        if (HAS_ADDEND) {
            r += addend_quad(i);
        }
        dx_set_quad(i, r);
    } else {
        let i = m * (p.cin - p.cat_split) + ci - p.cat_split;
        var r = v;
        if (HAS_ADDEND2) {
            r += addend2_quad(i);
        }
        dx2_set_quad(i, r);
    }
}

// dx[m, ci..ci+3] = v · act'(x) (+ addend), act_out = gelu(x); channels past cin skipped.
fn store(m: u32, ci: u32, v: vec4<f32>) {
    if (m >= p.m || ci >= p.cin) {
        return;
    }
    if (VEC4) {
        var xv = vec4<f32>(0.0);
        if (GELU_INPUT || WRITE_ACT) {
            xv = input_quad(m, ci);
        }
        var r = v;
        if (GELU_INPUT) {
            r *= gelu_grad4(xv);
        }
        store_dx_quad(m, ci, r);
        if (WRITE_ACT) {
            act_out_set_quad(m * p.cin + ci, gelu4(xv));
        }
        return;
    }
    for (var j = 0u; j < MICRO; j++) {
        let c = ci + j;
        if (c < p.cin) {
            var xv = 0.0;
            if (GELU_INPUT || WRITE_ACT) {
                xv = input_at(m, c);
            }
            var r = v[j];
            if (GELU_INPUT) {
                r *= gelu_grad(xv);
            }
            store_dx(m, c, r);
            if (WRITE_ACT) {
                act_out_set(m * p.cin + c, gelu(xv));
            }
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
    // Staging A: K elements sk..sk+3 of row sr. B: columns 4 bc..4 bc+3 of K row bk
    // (the weights are contiguous along ci, one 4-element piece per invocation).
    let sr = lid / MICRO;
    let sk = (lid % MICRO) * MICRO;
    let am = m0 + sr;
    let aq = pixel(min(am, p.m - 1u));
    let bk = lid / TILE_SIDE;
    let bc = lid % TILE_SIDE;
    let tx = lid % TILE_SIDE;
    let ty = lid / TILE_SIDE;
    var acc = Micro(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var k0 = 0u; k0 < p.kdim; k0 += TILE_K) {
        stage_k_major(true, sk, sr, a_piece(am, aq, k0 + sk));
        tile_b[bk * TILE_SIDE + bc] = b_piece(k0 + bk, n0 + bc * MICRO);
        workgroupBarrier();
        acc = tile_product(ty, tx, acc);
        workgroupBarrier();
    }
    for (var i = 0u; i < MICRO; i++) {
        store(m0 + ty * MICRO + i, n0 + tx * MICRO, micro_row(acc, i));
    }
}
