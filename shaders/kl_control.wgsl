// KL controls of the loss (src/kernels/kl_control/mod.rs states the formulas):
// every term's β·γ, its free-bits gate and its gradient seeds, in one
// workgroup. Included after rng.wgsl for RngKey: the step is the key's step
// word, which the GPU overwrites before each run. Each invocation owns the
// terms j ≡ lid (mod WG_SMALL); the balancing mean is a tree over the workgroup.

const SPEC_WORDS: u32 = 8u;
const BALANCE_EPS: f32 = 0.01;

struct SeedsParams {
    key: RngKey,
    images: u32,
    terms: u32,
    balance: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> kl: array<f32>;            // [images, terms]
@group(0) @binding(1) var<storage, read> spec: array<f32>;          // [terms, SPEC_WORDS]
@group(0) @binding(2) var<storage, read_write> seeds: array<f32>;   // [images, terms]
@group(0) @binding(3) var<storage, read_write> coef: array<f32>;    // [2 * terms]
@group(0) @binding(4) var<uniform> p: SeedsParams;

var<workgroup> ratio_sum: array<f32, WG_SMALL>;
var<workgroup> ratio_count: array<u32, WG_SMALL>;

fn term_mean(j: u32) -> f32 {
    var acc = 0.0;
    for (var n = 0u; n < p.images; n++) {
        acc += kl[n * p.terms + j];
    }
    return acc / f32(p.images);
}

fn warmup_steps(j: u32) -> u32 {
    return u32(spec[j * SPEC_WORDS + 2u]);
}

// Whether the step is still inside the term's warm-up (steps past 2^32 never are).
fn in_warmup(j: u32) -> bool {
    return p.key.step_hi == 0u && p.key.step_lo < warmup_steps(j);
}

fn beta(j: u32) -> f32 {
    let beta0 = spec[j * SPEC_WORDS];
    let beta1 = spec[j * SPEC_WORDS + 1u];
    if (!in_warmup(j)) {
        return beta1;
    }
    return beta0 + (beta1 - beta0) * (f32(p.key.step_lo) / f32(warmup_steps(j)));
}

// Balanced: balancing on and the term still rising towards β1.
fn balanced(j: u32) -> bool {
    return p.balance != 0u && in_warmup(j) && spec[j * SPEC_WORDS] < spec[j * SPEC_WORDS + 1u];
}

fn ratio(j: u32, m: f32) -> f32 {
    return (m + BALANCE_EPS) / spec[j * SPEC_WORDS + 4u];
}

@compute @workgroup_size(WG_SMALL)
fn kl_seeds(@builtin(local_invocation_index) lid: u32) {
    var sum = 0.0;
    var count = 0u;
    for (var j = lid; j < p.terms; j += WG_SMALL) {
        if (balanced(j)) {
            sum += ratio(j, term_mean(j));
            count += 1u;
        }
    }
    ratio_sum[lid] = sum;
    ratio_count[lid] = count;
    for (var half = WG_SMALL / 2u; half > 0u; half >>= 1u) {
        workgroupBarrier();
        if (lid < half) {
            ratio_sum[lid] += ratio_sum[lid + half];
            ratio_count[lid] += ratio_count[lid + half];
        }
    }
    workgroupBarrier();
    let mean_ratio = ratio_sum[0] / f32(max(ratio_count[0], 1u));
    for (var j = lid; j < p.terms; j += WG_SMALL) {
        let m = term_mean(j);
        var gamma = 1.0;
        if (balanced(j)) {
            gamma = ratio(j, m) / mean_ratio;
        }
        let weight = beta(j) * gamma;
        let free_nats = spec[j * SPEC_WORDS + 3u];
        let applied = select(0.0, weight, free_nats <= 0.0 || m >= free_nats);
        coef[j] = weight;
        coef[p.terms + j] = applied;
        let seed = applied * p.scale;
        for (var n = 0u; n < p.images; n++) {
            seeds[n * p.terms + j] = seed;
        }
    }
}
