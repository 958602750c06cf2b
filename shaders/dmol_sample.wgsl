// Samples from the DMoL (official sample_from_discretized_mix_logistic), one
// pixel per invocation. Included after rng.wgsl and dmol_common.wgsl.
//
// Random draws: pixel p (flat NHW index) uses draws i = 0 .. M + C - 1, draw i
// being word (i % 4) of rng_bits(key, p * groups + i / 4), groups = ceil((M + C) / 4).
// Draws 0 .. M-1 are the Gumbel uniforms of the mixtures, draws M .. M+C-1 the
// logistic uniforms of the colours. A uniform U maps to u = 1e-5 + (1 - 2e-5) U
// (torch's uniform_(1e-5, 1 - 1e-5)); 1 - u = 1e-5 + (1 - 2e-5)(1 - U).

struct SampleParams {
    key: RngKey,
    pixels: u32,       // N*H*W
    channels: u32,
    mixtures: u32,
    out_channels: u32,
    stride: u32,
    groups: u32,       // Philox calls per pixel
}

@group(0) @binding(0) var<storage, read> l: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: SampleParams;

const UNIFORM_LO: f32 = 1e-5;
const UNIFORM_SPAN: f32 = 0.99998;

// (ln u, ln(1 - u)): the smaller of u, 1 - u through the Philox log, the other
// as log1p of minus it, so both stay accurate near 0 and 1.
fn log_u_pair(bits: u32) -> vec2<f32> {
    let uni = rng_uniform_from_bits(bits);
    let u = UNIFORM_LO + UNIFORM_SPAN * uni;
    let v = UNIFORM_LO + UNIFORM_SPAN * (1.0 - uni);
    if (uni < 0.5) {
        return vec2<f32>(rng_ln(u), dmol_log1p(-u));
    }
    return vec2<f32>(dmol_log1p(-v), rng_ln(v));
}

@compute @workgroup_size(WG_SMALL)
fn dmol_sample(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pixel = flat_index(gid, nwg, WG_SMALL);
    if (pixel >= p.pixels) { return; }
    let m = p.mixtures;
    let base = pixel * p.out_channels;
    var words = vec4<u32>(0u);
    // Gumbel-max: argmax_k logit_k - log(-log u_k); the first maximum wins, as torch.argmax.
    var best = -3.0e38;
    var best_k = 0u;
    for (var k = 0u; k < m; k++) {
        if (k % 4u == 0u) {
            words = rng_bits(p.key, pixel * p.groups + k / 4u);
        }
        let score = l[base + k] - rng_ln(-log_u_pair(words[k % 4u]).x);
        if (score > best) {
            best = score;
            best_k = k;
        }
    }
    // Logistic sample of each colour with the chosen mixture's parameters.
    var raw = vec3<f32>(0.0);
    for (var c = 0u; c < p.channels; c++) {
        let i = m + c;
        if (i % 4u == 0u || c == 0u) {
            words = rng_bits(p.key, pixel * p.groups + i / 4u);
        }
        let lu = log_u_pair(words[i % 4u]);
        let cb = base + m + c * p.stride;
        let log_scale = max(l[cb + m + best_k], DMOL_LOG_SCALE_MIN);
        raw[c] = l[cb + best_k] + exp(log_scale) * (lu.x - lu.y);
    }
    let xb = pixel * p.channels;
    let x0 = clamp(raw.x, -1.0, 1.0);
    out[xb] = x0;
    if (p.channels == 3u) {
        let c1 = base + m + p.stride;
        let c2 = c1 + p.stride;
        let q0 = dmol_tanh(l[base + m + 2u * m + best_k]);
        let q1 = dmol_tanh(l[c1 + 2u * m + best_k]);
        let q2 = dmol_tanh(l[c2 + 2u * m + best_k]);
        let x1 = clamp(raw.y + q0 * x0, -1.0, 1.0);
        let x2 = clamp(raw.z + q1 * x0 + q2 * x1, -1.0, 1.0);
        out[xb + 1u] = x1;
        out[xb + 2u] = x2;
    }
}
