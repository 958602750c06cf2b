// Backward of flow_kl.wgsl, g = dkl (d kl0 = g, passed on as it is):
//   dz0 = -g c / sig_p, dzk = g b / sig_p, dmu_p = g (c - b) / sig_p,
//   dlogsig_p = g (c^2 - b^2), dld = -g.

@group(0) @binding(0) var<storage, read> dkl: array<f32>;
@group(0) @binding(1) var<storage, read> z0: array<f32>;
@group(0) @binding(2) var<storage, read> pst: array<f32>;
@group(0) @binding(3) var<storage, read> zk: array<f32>;
@group(0) @binding(4) var<storage, read_write> dz0: array<f32>;
@group(0) @binding(5) var<storage, read_write> dp: array<f32>;
@group(0) @binding(6) var<storage, read_write> dzk: array<f32>;
@group(0) @binding(7) var<storage, read_write> dld: array<f32>;
@group(0) @binding(8) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn flow_kl_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.n) { return; }
    let j = packed_index(i);
    let k = prior_index(i);
    let g = dkl[select(i, 0u, p.dkl_scalar == 1u)];
    let inv_p = exp(-pst[k + p.zdim]);
    let c = (z0[i] - pst[k]) * inv_p;
    let b = (zk[i] - pst[k]) * inv_p;
    dz0[i] = -g * c * inv_p;
    dzk[i] = g * b * inv_p;
    dp[j] = g * (c - b) * inv_p;
    dp[j + p.zdim] = g * (c * c - b * b);
    dld[i] = -g;
}
