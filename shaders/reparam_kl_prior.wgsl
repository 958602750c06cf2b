// Prior sampling at temperature t: z = mu_p + exp(logsig_p + ln t) * eps, no KL
// (official VDVAE adds ln t to logsig_p). Included after rng.wgsl and
// reparam_kl_common.wgsl.

@group(0) @binding(0) var<storage, read> p_mu: array<f32>;
@group(0) @binding(1) var<storage, read> p_logsig: array<f32>;
@group(0) @binding(2) var<storage, read_write> z: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG_SMALL)
fn prior_sample(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG_SMALL);
    if (i >= p.n) { return; }
    // mode MODE_SAMPLE; any other mode (temperature 0) gives the prior mean.
    var zi = p_mu[i];
    if (p.mode == MODE_SAMPLE) {
        zi += exp(p_logsig[i] + p.ln_t) * standard_normal(p.key, i);
    }
    z[i] = zi;
}
