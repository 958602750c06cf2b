// Per-image DMoL NLL and its gradient in one pass (fused: docs/design-notes.md#principles, point 4).
// Included after dmol_common.wgsl. Loss L = sum_n upstream[n] * NLL[n];
// dl = dL/dl has the layout of l. One pixel per invocation: pass 1 writes each
// (mixture, colour) term's derivatives into dl unscaled and the mixture's
// log-probability into dl's logit slot; pass 2 scales them by the mixture's
// responsibility. NLL partial sums per 64-pixel tile as in dmol_loss.wgsl.

@group(0) @binding(0) var<storage, read> l: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> upstream: array<f32>;
@group(0) @binding(3) var<storage, read_write> dl: array<f32>;
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;
@group(0) @binding(5) var<uniform> p: DmolParams;

var<workgroup> tile_nll: array<f32, WG_SMALL>;

fn term(xv: f32, mean: f32, raw_log_scale: f32) -> DmolTerm {
    return dmol_term(xv, mean, max(raw_log_scale, DMOL_LOG_SCALE_MIN), p.half_bin, p.log_half_bins);
}

// Pass 1 for mixture k: returns its log-probability; leaves d lp / d(param) in dl.
fn mixture_log_prob_and_derivs(base: u32, xb: u32, k: u32, log_norm: f32) -> f32 {
    let m = p.mixtures;
    let c0 = base + m;
    let x0 = x[xb];
    let raw0 = l[c0 + m + k];
    let t0 = term(x0, l[c0 + k], raw0);
    dl[c0 + k] = t0.d_mean;
    dl[c0 + m + k] = t0.d_log_scale * dmol_floor_grad(raw0);
    var lp = l[base + k] - log_norm + t0.lp;
    if (p.channels == 3u) {
        let c1 = c0 + p.stride;
        let c2 = c1 + p.stride;
        let x1 = x[xb + 1u];
        let x2 = x[xb + 2u];
        // coeff_0 (block 0) adjusts mean 1 by x0; coeff_1, coeff_2 (blocks 1, 2) adjust mean 2 by x0, x1.
        let q0 = dmol_tanh(l[c0 + 2u * m + k]);
        let q1 = dmol_tanh(l[c1 + 2u * m + k]);
        let q2 = dmol_tanh(l[c2 + 2u * m + k]);
        let raw1 = l[c1 + m + k];
        let raw2 = l[c2 + m + k];
        let t1 = term(x1, l[c1 + k] + q0 * x0, raw1);
        let t2 = term(x2, l[c2 + k] + q1 * x0 + q2 * x1, raw2);
        dl[c1 + k] = t1.d_mean;
        dl[c1 + m + k] = t1.d_log_scale * dmol_floor_grad(raw1);
        dl[c2 + k] = t2.d_mean;
        dl[c2 + m + k] = t2.d_log_scale * dmol_floor_grad(raw2);
        dl[c0 + 2u * m + k] = t1.d_mean * x0 * dmol_tanh_grad(l[c0 + 2u * m + k]);
        dl[c1 + 2u * m + k] = t2.d_mean * x0 * dmol_tanh_grad(l[c1 + 2u * m + k]);
        dl[c2 + 2u * m + k] = t2.d_mean * x1 * dmol_tanh_grad(l[c2 + 2u * m + k]);
        lp += t1.lp + t2.lp;
    }
    return lp;
}

fn pixel_nll_and_grad(pixel: u32, image: u32) -> f32 {
    let m = p.mixtures;
    let base = pixel * p.out_channels;
    let xb = pixel * p.channels;
    let log_norm = logit_normaliser(base);
    var top = -3.0e38;
    var top_k = 0u;
    for (var k = 0u; k < m; k++) {
        let lp = mixture_log_prob_and_derivs(base, xb, k, log_norm);
        dl[base + k] = lp;
        if (lp > top) {
            top = lp;
            top_k = k;
        }
    }
    var rest = 0.0;
    for (var k = 0u; k < m; k++) {
        if (k != top_k) {
            rest += exp(dl[base + k] - top);
        }
    }
    let ll = top + dmol_log1p_nonneg(rest);
    // dL/d ll = -upstream; d ll / d logit_k = resp_k - softmax_k; d ll / d term_k = resp_k.
    let g = -upstream[image];
    for (var k = 0u; k < m; k++) {
        let resp = exp(dl[base + k] - ll);
        dl[base + k] = g * (resp - exp(l[base + k] - log_norm));
        let gk = g * resp;
        for (var c = 0u; c < p.channels; c++) {
            let cb = base + m + c * p.stride + k;
            dl[cb] *= gk;
            dl[cb + m] *= gk;
            if (p.channels == 3u) {
                dl[cb + 2u * m] *= gk;
            }
        }
    }
    return -ll;
}

@compute @workgroup_size(WG_SMALL)
fn dmol_loss_grad(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let image = wid.y;
    let px = wid.x * WG_SMALL + lid.x;
    var nll = 0.0;
    if (px < p.pixels) {
        nll = pixel_nll_and_grad(image * p.pixels + px, image);
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
