// conv2d weight and bias gradients, workgroup path:
//   dw[co, j] = Σ_q dy[q, co] · act(x)[input pixel tap j / cin of q, channel j % cin]
//   db[co]    = Σ_q dy[q, co]
// over output pixels q, j = tap · cin + ci (dw's own layout). The GEMM (M = cout,
// N = taps·cin, K = pixels), its tiles and its edges: conv2d_workgroup_common.wgsl.
// Workgroup z is one reduction split: the pixels [z · per_reduction_split, (z + 1) · per_reduction_split).
// Its sums go to gw (row z of partials, `stride` elements apart, dw first) and gb
// (db, at `db_offset` in the row); with stride 0 there is one split and gw, gb are
// dw and db themselves, overwritten or, with ACCUMULATE, added to. The workgroups of
// the first column tile also sum db from the staged dy.

override ACCUMULATE: bool = false;
override HAS_DB: bool = false;

// A[co..co+3, q] = dy[q, co..co+3] (co a multiple of 4), for q in [.., end).
fn a_piece(q: u32, end: u32, co: u32) -> vec4<f32> {
    if (q >= end || co >= p.cout) {
        return vec4<f32>(0.0);
    }
    let i = q * p.cout + co;
    if (VEC4) {
        return dy_quad(i);
    }
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < MICRO; j++) {
        if (co + j < p.cout) {
            v[j] = dy_at(i + j);
        }
    }
    return v;
}

// B[q, j..j+3]: act(x) where taps[e] of output pixel q reads, channels cis[e] (j = 4 · ..).
fn b_piece(q: u32, end: u32, j: u32, taps: vec4<u32>, cis: vec4<u32>) -> vec4<f32> {
    if (q >= end || j >= p.ncols) {
        return vec4<f32>(0.0);
    }
    let out = pixel(q);
    if (VEC4) {
        // cin % 4 == 0: the four lie in one tap, one source.
        let src = input_pixel(out, taps.x);
        if (src == NO_PIXEL) {
            return vec4<f32>(0.0);
        }
        return act4(input_quad(src, cis.x));
    }
    var v = vec4<f32>(0.0);
    for (var e = 0u; e < MICRO; e++) {
        if (j + e < p.ncols) {
            let src = input_pixel(out, taps[e]);
            if (src != NO_PIXEL) {
                v[e] = act(input_at(src, cis[e]));
            }
        }
    }
    return v;
}

// One gradient element: overwritten, or added to with ACCUMULATE (one split only).
fn put_w(i: u32, v: f32) {
    gw_set(i, select(v, gw_at(i) + v, ACCUMULATE));
}

fn put_b(i: u32, v: f32) {
    gb_set(i, select(v, gb_at(i) + v, ACCUMULATE));
}

// dw[co, j..j+3] of this split; columns past taps·cin skipped.
fn store(base: u32, co: u32, j: u32, v: vec4<f32>) {
    if (co >= p.cout || j >= p.ncols) {
        return;
    }
    let i = base + co * p.ncols + j;
    if (VEC4) {
        var r = v;
        if (ACCUMULATE) {
            r += gw_quad(i);
        }
        gw_set_quad(i, r);
        return;
    }
    for (var e = 0u; e < MICRO; e++) {
        if (j + e < p.ncols) {
            put_w(i + e, v[e]);
        }
    }
}

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let n0 = wid.x * TILE;
    let m0 = wid.y * TILE;
    let split = wid.z;
    let begin = split * p.per_reduction_split;
    let end = min(begin + p.per_reduction_split, p.kdim);
    // Staging: this invocation loads pixel begin + .. + sq of dy (4 output channels)
    // and of act(x) (4 columns of dw).
    let sq = lid / TILE_SIDE;
    let sc = lid % TILE_SIDE;
    let aco = m0 + sc * MICRO;
    let bj = n0 + sc * MICRO;
    let js = vec4<u32>(bj, bj + 1u, bj + 2u, bj + 3u);
    let taps = js / p.cin;
    let cis = js - taps * p.cin;
    let tx = lid % TILE_SIDE;
    let ty = lid / TILE_SIDE;
    // The invocations that also sum db: one per 4 output channels, in the first column tile.
    let sums_db = HAS_DB && n0 == 0u && tx == 0u;
    var db = vec4<f32>(0.0);
    var acc = Micro(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var k0 = begin; k0 < end; k0 += TILE_K) {
        tile_a[sq * TILE_SIDE + sc] = a_piece(k0 + sq, end, aco);
        tile_b[sq * TILE_SIDE + sc] = b_piece(k0 + sq, end, bj, taps, cis);
        workgroupBarrier();
        acc = tile_product(ty, tx, acc);
        if (sums_db) {
            for (var kk = 0u; kk < TILE_K; kk++) {
                db += tile_a[kk * TILE_SIDE + ty];
            }
        }
        workgroupBarrier();
    }
    let base = split * p.stride;
    for (var i = 0u; i < MICRO; i++) {
        store(base, m0 + ty * MICRO + i, n0 + tx * MICRO, micro_row(acc, i));
    }
    let co = m0 + ty * MICRO;
    if (sums_db && co < p.cout) {
        let i = base + p.db_offset + co;
        if (VEC4) {
            var r = db;
            if (ACCUMULATE) {
                r += gb_quad(i);
            }
            gb_set_quad(i, r);
        } else {
            for (var e = 0u; e < MICRO; e++) {
                if (co + e < p.cout) {
                    put_b(i + e, db[e]);
                }
            }
        }
    }
}
