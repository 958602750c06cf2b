// Backward of reparam_kl.wgsl: from dz and dkl to the four inputs, redrawing eps
// from the same key (nothing is stored between forward and backward). Included
// after rng.wgsl and reparam_kl_common.wgsl.

@group(0) @binding(0) var<storage, read> q_mu: array<f32>;
@group(0) @binding(1) var<storage, read> q_logsig: array<f32>;
@group(0) @binding(2) var<storage, read> p_mu: array<f32>;
@group(0) @binding(3) var<storage, read> p_logsig: array<f32>;
@group(0) @binding(4) var<storage, read> dz: array<f32>;
@group(0) @binding(5) var<storage, read> dkl: array<f32>;
@group(0) @binding(6) var<storage, read_write> dq_mu: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq_logsig: array<f32>;
@group(0) @binding(8) var<storage, read_write> dp_mu: array<f32>;
@group(0) @binding(9) var<storage, read_write> dp_logsig: array<f32>;
@group(0) @binding(10) var<uniform> p: Params;

// Gradients of (z, kl) at element i with respect to (mu_q, logsig_q, mu_p, logsig_p).
fn sample_kl_grads(i: u32, mq: f32, lq: f32, mp: f32, lp: f32) -> vec4<f32> {
    return gaussian_sample_kl_grads(i, dz[i], dkl[select(i, 0u, p.dkl_scalar == 1u)], mq, lq, mp, lp);
}

@compute @workgroup_size(WG_SMALL)
fn reparam_kl_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG_SMALL);
    if (i >= p.n) { return; }
    let gr = sample_kl_grads(i, q_mu[i], q_logsig[i], p_mu[i], p_logsig[i]);
    dq_mu[i] = gr.x;
    dq_logsig[i] = gr.y;
    dp_mu[i] = gr.z;
    dp_logsig[i] = gr.w;
}

// Chain rule through the merge: d mu_q / d (md, mp) = (wd, wp), d logsig_q / d (ld, lp) = (wd, wp),
// d mu_q / d ld = -d mu_q / d lp = -2 wd wp (md - mp).
@compute @workgroup_size(WG_SMALL)
fn ladder_reparam_kl_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG_SMALL);
    if (i >= p.n) { return; }
    let md = q_mu[i];
    let mp = p_mu[i];
    let lp = p_logsig[i];
    let q = ladder_merge(md, q_logsig[i], mp, lp);
    let gr = sample_kl_grads(i, q.mu, q.logsig, mp, lp);
    let cross = gr.x * 2.0 * q.wd * q.wp * (md - mp);
    dq_mu[i] = gr.x * q.wd;
    dq_logsig[i] = gr.y * q.wd - cross;
    dp_mu[i] = gr.z + gr.x * q.wp;
    dp_logsig[i] = gr.w + gr.y * q.wp + cross;
}
