// reparam_kl.wgsl and reparam_kl_backward.wgsl on packed tensors: the posterior
// q and the prior pk hold (mu, logsig) in their first 2 * zdim channels (the
// prior has more: the state update xpp), read in place instead of sliced out.
// The backward writes dq (2 * zdim channels) and the (mu, logsig) part of the
// prior's gradient (2 * zdim channels). Included after rng.wgsl and
// reparam_kl_common.wgsl; element i of z is (row i / zdim, channel i % zdim).

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> pk: array<f32>;
@group(0) @binding(2) var<storage, read> dz: array<f32>;
@group(0) @binding(3) var<storage, read> dkl: array<f32>;
@group(0) @binding(4) var<storage, read_write> out_a: array<f32>;
@group(0) @binding(5) var<storage, read_write> out_b: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;
// Forward only: (mu_p, logsig_p) copied out of pk (2 * zdim channels), so the
// backward reads them there and the prior's whole output need not be kept.
@group(0) @binding(7) var<storage, read_write> p_stash: array<f32>;

// (mu_q, logsig_q, mu_p, logsig_p) of element i.
fn packed_latents(i: u32) -> vec4<f32> {
    let row = i / p.zdim;
    let c = i % p.zdim;
    let qi = row * p.q_stride + c;
    let pi = row * p.p_stride + c;
    return vec4<f32>(q[qi], q[qi + p.zdim], pk[pi], pk[pi + p.zdim]);
}

// out_a = z, out_b = kl (or the log ratio), and p_stash (dz and dkl are not read).
@compute @workgroup_size(WG_SMALL)
fn reparam_kl_forward_packed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG_SMALL);
    if (i >= p.n) { return; }
    let l = packed_latents(i);
    let d = latent_draw(i, l.x, l.y, l.z, l.w);
    out_a[i] = d.x;
    out_b[i] = d.y;
    let o = packed_pair_index(i, p.zdim);
    p_stash[o] = l.z;
    p_stash[o + p.zdim] = l.w;
}

// out_a = dq, out_b = d(mu_p, logsig_p), both 2 * zdim channels per row (pk is
// the forward's p_stash here: p_stride = 2 * zdim).
@compute @workgroup_size(WG_SMALL)
fn reparam_kl_backward_packed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG_SMALL);
    if (i >= p.n) { return; }
    let l = packed_latents(i);
    let k = dkl[select(i, 0u, p.dkl_scalar == 1u)];
    let gr = gaussian_sample_kl_grads(i, dz[i], k, l.x, l.y, l.z, l.w);
    let o = packed_pair_index(i, p.zdim);
    out_a[o] = gr.x;
    out_a[o + p.zdim] = gr.y;
    out_b[o] = gr.z;
    out_b[o + p.zdim] = gr.w;
}
