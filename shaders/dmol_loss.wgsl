// Per-image DMoL negative log-likelihood, forward only. Included after
// dmol_common.wgsl. Workgroup (tile, image) covers 64 pixels of one image, one
// pixel per invocation, and writes their summed NLL to partials[tile * images +
// image]; the reduce family's sum_partials then adds each image's tiles.

@group(0) @binding(0) var<storage, read> l: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;
@group(0) @binding(3) var<uniform> p: DmolParams;

var<workgroup> tile_nll: array<f32, WG_SMALL>;

// log_softmax(logits)_k + sum over colours of the discretized logistic log-probability.
fn mixture_log_prob(base: u32, xb: u32, k: u32, log_norm: f32) -> f32 {
    let m = p.mixtures;
    let c0 = base + m;
    let x0 = x[xb];
    var lp = l[base + k] - log_norm;
    lp += dmol_term(x0, l[c0 + k], max(l[c0 + m + k], DMOL_LOG_SCALE_MIN), p.half_bin, p.log_half_bins).lp;
    if (p.channels == 3u) {
        let c1 = c0 + p.stride;
        let c2 = c1 + p.stride;
        let x1 = x[xb + 1u];
        let x2 = x[xb + 2u];
        let mean1 = l[c1 + k] + dmol_tanh(l[c0 + 2u * m + k]) * x0;
        let mean2 = l[c2 + k] + dmol_tanh(l[c1 + 2u * m + k]) * x0 + dmol_tanh(l[c2 + 2u * m + k]) * x1;
        lp += dmol_term(x1, mean1, max(l[c1 + m + k], DMOL_LOG_SCALE_MIN), p.half_bin, p.log_half_bins).lp;
        lp += dmol_term(x2, mean2, max(l[c2 + m + k], DMOL_LOG_SCALE_MIN), p.half_bin, p.log_half_bins).lp;
    }
    return lp;
}

fn pixel_nll(pixel: u32) -> f32 {
    let base = pixel * p.out_channels;
    let xb = pixel * p.channels;
    let log_norm = logit_normaliser(base);
    // Online logsumexp over mixtures: top = running max, rest = sum of the other exp(lp - top).
    var top = mixture_log_prob(base, xb, 0u, log_norm);
    var rest = 0.0;
    for (var k = 1u; k < p.mixtures; k++) {
        let lp = mixture_log_prob(base, xb, k, log_norm);
        if (lp > top) {
            rest = (rest + 1.0) * exp(top - lp);
            top = lp;
        } else {
            rest += exp(lp - top);
        }
    }
    return -(top + dmol_log1p_nonneg(rest));
}

@compute @workgroup_size(WG_SMALL)
fn dmol_loss(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let image = wid.y;
    let px = wid.x * WG_SMALL + lid.x;
    var nll = 0.0;
    if (px < p.pixels) {
        nll = pixel_nll(image * p.pixels + px);
    }
    tile_nll[lid.x] = nll;
    workgroupBarrier();
    if (lid.x == 0u) {
        var sum = 0.0;
        for (var i = 0u; i < WG_SMALL; i++) {
            sum += tile_nll[i];
        }
        partials[wid.x * nwg.y + image] = sum;
    }
}
