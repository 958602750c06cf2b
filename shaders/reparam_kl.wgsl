// Forward: z and the per-element KL (or, in MODE_IMPORTANCE, the log density
// ratio) from (mu_q, logsig_q, mu_p, logsig_p), or, for the ladder entry point,
// from the bottom-up (mu_d, logsig_d) merged with the prior. Included after
// rng.wgsl and reparam_kl_common.wgsl.

@group(0) @binding(0) var<storage, read> q_mu: array<f32>;
@group(0) @binding(1) var<storage, read> q_logsig: array<f32>;
@group(0) @binding(2) var<storage, read> p_mu: array<f32>;
@group(0) @binding(3) var<storage, read> p_logsig: array<f32>;
@group(0) @binding(4) var<storage, read_write> z: array<f32>;
@group(0) @binding(5) var<storage, read_write> kl: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

fn write_sample_and_kl(i: u32, mq: f32, lq: f32, mp: f32, lp: f32) {
    let d = latent_draw(i, mq, lq, mp, lp);
    z[i] = d.x;
    kl[i] = d.y;
}

@compute @workgroup_size(WG_SMALL)
fn reparam_kl_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG_SMALL);
    if (i >= p.n) { return; }
    write_sample_and_kl(i, q_mu[i], q_logsig[i], p_mu[i], p_logsig[i]);
}

@compute @workgroup_size(WG_SMALL)
fn ladder_reparam_kl_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG_SMALL);
    if (i >= p.n) { return; }
    let mp = p_mu[i];
    let lp = p_logsig[i];
    let q = ladder_merge(q_mu[i], q_logsig[i], mp, lp);
    write_sample_and_kl(i, q.mu, q.logsig, mp, lp);
}
