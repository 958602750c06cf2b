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

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

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

@compute @workgroup_size(64)
fn pack_a(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let f = flat(gid, nwg);
    if (f >= p.count) { return; }
    let r = f % 32u;
    let t = f / 32u;
    let quads = p.kp / 4u;
    let q = t % quads;
    let pm = (t / quads) % p.m_panels;
    let ba = t / quads / p.m_panels;
    let i = pm * 32u + r;
    let k0 = q * 4u;
    dst[f] = vec4<f32>(a_at(ba, i, k0), a_at(ba, i, k0 + 1u), a_at(ba, i, k0 + 2u), a_at(ba, i, k0 + 3u));
}

@compute @workgroup_size(64)
fn pack_b(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let f = flat(gid, nwg);
    if (f >= p.count) { return; }
    let l = f % 8u;
    let t = f / 8u;
    let kk = t % p.kp;
    let pn = (t / p.kp) % p.n_panels;
    let bb = t / p.kp / p.n_panels;
    let j = pn * 32u + l * 4u;
    dst[p.bp_off + f] = vec4<f32>(b_at(bb, kk, j), b_at(bb, kk, j + 1u), b_at(bb, kk, j + 2u), b_at(bb, kk, j + 3u));
}
