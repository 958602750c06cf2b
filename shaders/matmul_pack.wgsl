// Packing for matmul v3 (matmul_packed.wgsl): copies op(A) and op(B), any
// transposes, into zero-padded panels of the scratch buffer so the product
// kernel reads only contiguous, in-range vec4s. Included after matmul_params.wgsl.
//   A panel pm (32 rows), k-quad q:  scratch[((ba*m_panels + pm)*kp/4 + q)*32 + r]
//                                  = op(A)[pm*32 + r, 4q .. 4q+3]
//   B panel pn (32 columns), k:      scratch[bp_off + ((bb*n_panels + pn)*kp + k)*8 + l]
//                                  = op(B)[k, pn*32 + 4l .. 4l+3]

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> p: Params;

// op(A)[i, kk] of batch ba, 0 outside the matrix.
fn a_at(ba: u32, i: u32, kk: u32) -> f32 {
    if (i >= p.m || kk >= p.k) { return 0.0; }
    return src[ba * p.a_batch + i * p.a_rs + kk * p.a_cs];
}

// op(B)[kk, j] of batch bb, 0 outside the matrix.
fn b_at(bb: u32, kk: u32, j: u32) -> f32 {
    if (kk >= p.k || j >= p.n) { return 0.0; }
    return src[bb * p.b_batch + kk * p.b_rs + j * p.b_cs];
}

// Grids are (panel size / 256, panels, batches): no integer division per element
// (lavapipe runs those lane by lane), and workgroups of 256 because lavapipe's
// cost per workgroup is close to a microsecond. A panel holds kp*8 vec4s.

@compute @workgroup_size(WG)
fn pack_a(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    if (gid.x >= p.kp * 8u) { return; }
    let pm = gid.y;
    let ba = gid.z;
    let i = pm * 32u + x % 32u;
    let k0 = (x / 32u) * 4u;
    let v = vec4<f32>(a_at(ba, i, k0), a_at(ba, i, k0 + 1u), a_at(ba, i, k0 + 2u), a_at(ba, i, k0 + 3u));
    dst[p.ap_off + (ba * p.m_panels + pm) * p.kp * 8u + x] = v;
}

@compute @workgroup_size(WG)
fn pack_b(@builtin(global_invocation_id) gid: vec3<u32>) {
    // When B's columns are contiguous, permute x within each 64 so the 8 lanes of a
    // SIMD vector step along k rather than read one 128-byte run (measured 1.9x
    // faster on lavapipe). Each invocation still writes the vec4 its x names.
    var x = gid.x;
    if (p.b_cs == 1u) { x = (x & ~63u) | ((x & 7u) << 3u) | ((x >> 3u) & 7u); }
    if (gid.x >= p.kp * 8u) { return; }
    let pn = gid.y;
    let bb = gid.z;
    let kk = x / 8u;
    let j = pn * 32u + (x % 8u) * 4u;
    let v = vec4<f32>(b_at(bb, kk, j), b_at(bb, kk, j + 1u), b_at(bb, kk, j + 2u), b_at(bb, kk, j + 3u));
    dst[p.bp_off + (bb * p.n_panels + pn) * p.kp * 8u + x] = v;
}
