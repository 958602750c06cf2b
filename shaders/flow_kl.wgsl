// A flowed level's KL term, per element:
//   kl = kl0 + log p(z0) - log p(zk) - ld = kl0 + 0.5 (b^2 - c^2) - ld
// with c = (z0 - mu_p) / sig_p, b = (zk - mu_p) / sig_p (log sig_p and the
// 1/2 ln 2 pi terms cancel), (mu_p, logsig_p) the first 2 * zdim channels of
// pst, ld the cells' summed log |det| of the element, and kl0 the Gaussian
// draw's second output: its analytic KL(q0 || p) in training (then kl is an
// unbiased estimate of the flowed KL that equals kl0 where the cells are the
// identity) or its log ratio log q(z0) - log p(z0) for importance sampling
// (then kl is exactly log q(zk) - log p(zk)).

@group(0) @binding(0) var<storage, read> kl0: array<f32>;
@group(0) @binding(1) var<storage, read> z0: array<f32>;
@group(0) @binding(2) var<storage, read> pst: array<f32>;
@group(0) @binding(3) var<storage, read> zk: array<f32>;
@group(0) @binding(4) var<storage, read> ld: array<f32>;
@group(0) @binding(5) var<storage, read_write> kl: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn flow_kl(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.n) { return; }
    let k = prior_index(i);
    let inv_p = exp(-pst[k + p.zdim]);
    let c = (z0[i] - pst[k]) * inv_p;
    let b = (zk[i] - pst[k]) * inv_p;
    kl[i] = kl0[i] + 0.5 * (b * b - c * c) - ld[i];
}
