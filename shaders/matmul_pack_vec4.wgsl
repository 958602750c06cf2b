// Packing (see matmul_pack.wgsl for the layouts) when a packed vec4 is one
// aligned vec4 of the source: A not transposed with K % 4 == 0, B not
// transposed with N % 4 == 0 (and batch strides multiples of 4). One load per
// vec4 instead of four; lavapipe loads lane by lane, so this is what counts.
// Included after matmul_params.wgsl.

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn pack_a_vec4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    if (gid.x >= p.kp * 8u) { return; }
    let pm = gid.y;
    let ba = gid.z;
    let i = pm * 32u + x % 32u;
    let k0 = (x / 32u) * 4u;
    var v = vec4<f32>(0.0);
    if (i < p.m && k0 < p.k) {
        v = src[(ba * p.a_batch + i * p.k + k0) / 4u];
    }
    dst[p.ap_off + (ba * p.m_panels + pm) * p.kp * 8u + x] = v;
}

@compute @workgroup_size(WG)
fn pack_b_vec4(@builtin(global_invocation_id) gid: vec3<u32>) {
    // Lanes step along k (see pack_b).
    let x = (gid.x & ~63u) | ((gid.x & 7u) << 3u) | ((gid.x >> 3u) & 7u);
    if (gid.x >= p.kp * 8u) { return; }
    let pn = gid.y;
    let bb = gid.z;
    let kk = x / 8u;
    let j = pn * 32u + (x % 8u) * 4u;
    var v = vec4<f32>(0.0);
    if (kk < p.k && j < p.n) {
        v = src[(bb * p.b_batch + kk * p.n + j) / 4u];
    }
    dst[p.bp_off + (bb * p.n_panels + pn) * p.kp * 8u + x] = v;
}
