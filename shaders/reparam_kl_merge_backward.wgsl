// Backward of reparam_kl_merge.wgsl (see there). Included after rng.wgsl and
// reparam_kl_common.wgsl.

@group(0) @binding(0) var<storage, read> dq: array<f32>;
@group(0) @binding(1) var<storage, read> d_mu: array<f32>;
@group(0) @binding(2) var<storage, read> d_logsig: array<f32>;
@group(0) @binding(3) var<storage, read> p_mu: array<f32>;
@group(0) @binding(4) var<storage, read> p_logsig: array<f32>;
@group(0) @binding(5) var<storage, read_write> g_d_mu: array<f32>;
@group(0) @binding(6) var<storage, read_write> g_d_logsig: array<f32>;
@group(0) @binding(7) var<storage, read_write> g_p_mu: array<f32>;
@group(0) @binding(8) var<storage, read_write> g_p_logsig: array<f32>;
@group(0) @binding(9) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn ladder_merge_packed_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.n) { return; }
    let md = d_mu[i];
    let mp = p_mu[i];
    let m = ladder_merge(md, d_logsig[i], mp, p_logsig[i]);
    let j = packed_pair_index(i, p.zdim);
    let g_mu = dq[j];
    let g_ls = dq[j + p.zdim];
    g_d_mu[i] = g_mu * m.wd;
    g_p_mu[i] = g_mu * m.wp;
    g_d_logsig[i] = m.wd * (g_ls - 2.0 * g_mu * (md - m.mu));
    g_p_logsig[i] = m.wp * (g_ls - 2.0 * g_mu * (mp - m.mu));
}
