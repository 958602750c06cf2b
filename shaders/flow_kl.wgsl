// A flowed level's one-sample KL estimate, per element:
//   kl = log q(z0) - ld - log p(zk)
//      = 0.5 b^2 + logsig_p - 0.5 a^2 - logsig_q - ld
// with a = (z0 - mu_q) / sig_q, b = (zk - mu_p) / sig_p (the 1/2 ln 2 pi terms
// cancel), q = [mu_q, logsig_q] and pst's first 2 * zdim channels [mu_p, logsig_p], and ld the
// cells' summed log |det| of the element.

@group(0) @binding(0) var<storage, read> z0: array<f32>;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> pst: array<f32>;
@group(0) @binding(3) var<storage, read> zk: array<f32>;
@group(0) @binding(4) var<storage, read> ld: array<f32>;
@group(0) @binding(5) var<storage, read_write> kl: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn flow_kl(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.n) { return; }
    let j = packed_index(i);
    let k = prior_index(i);
    let lq = q[j + p.zdim];
    let lp = pst[k + p.zdim];
    let a = (z0[i] - q[j]) * exp(-lq);
    let b = (zk[i] - pst[k]) * exp(-lp);
    kl[i] = 0.5 * b * b + lp - 0.5 * a * a - lq - ld[i];
}
