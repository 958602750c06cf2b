// The Ladder VAE's merged posterior written out, packed [mu_q, logsig_q]
// (zdim channels each), for a flowed level whose later ops read it as a
// tensor; and its backward. Included after rng.wgsl and reparam_kl_common.wgsl.
//   d mu_q / d mu_d = wd, d mu_q / d mu_p = wp,
//   d mu_q / d logsig_d = -2 wd (mu_d - mu_q), d mu_q / d logsig_p = -2 wp (mu_p - mu_q),
//   d logsig_q / d logsig_d = wd, d logsig_q / d logsig_p = wp.

@group(0) @binding(0) var<storage, read> d_mu: array<f32>;
@group(0) @binding(1) var<storage, read> d_logsig: array<f32>;
@group(0) @binding(2) var<storage, read> p_mu: array<f32>;
@group(0) @binding(3) var<storage, read> p_logsig: array<f32>;
@group(0) @binding(4) var<storage, read_write> q: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn ladder_merge_packed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.n) { return; }
    let m = ladder_merge(d_mu[i], d_logsig[i], p_mu[i], p_logsig[i]);
    let j = packed_pair_index(i, p.zdim);
    q[j] = m.mu;
    q[j + p.zdim] = m.logsig;
}
