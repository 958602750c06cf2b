// Bernoulli samples, from logits (bernoulli_sample: out[i] = 1 if u_i < sigmoid(x[i]))
// or from probabilities (bernoulli_sample_probs: out[i] = 1 if u_i < x[i], so
// probabilities 0 and 1 give 0 and 1). Included after rng.wgsl and
// bernoulli_common.wgsl.
//
// Element i of this dispatch is element e = first + i of the tensor, whose
// uniform is word e % 4 of rng_bits(key, e / 4): a dispatch over part of a
// tensor (any first, not only multiples of 4) draws that part's values. Each
// invocation draws one Philox block and writes its elements in [first, first + n).

struct SampleParams {
    key: RngKey,
    n: u32,
    first: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: SampleParams;

// Draws the block of invocation gid; `probs` says whether x holds probabilities or logits.
fn sample_block(gid: vec3<u32>, nwg: vec3<u32>, probs: bool) {
    let block = p.first / 4u + flat_index(gid, nwg, WG_SMALL);
    let end = p.first + p.n;
    if (block * 4u >= end) { return; }
    let words = rng_bits(p.key, block);
    for (var w = 0u; w < 4u; w++) {
        let e = block * 4u + w;
        if (e >= p.first && e < end) {
            let i = e - p.first;
            let u = rng_uniform_from_bits(words[w]);
            let threshold = select(bernoulli_sigmoid(x[i]), x[i], probs);
            out[i] = select(0.0, 1.0, u < threshold);
        }
    }
}

@compute @workgroup_size(WG_SMALL)
fn bernoulli_sample(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    sample_block(gid, nwg, false);
}

@compute @workgroup_size(WG_SMALL)
fn bernoulli_sample_probs(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    sample_block(gid, nwg, true);
}
