// Bernoulli samples: out[i] = 1 if u_i < sigmoid(logits[i]) else 0. Included
// after rng.wgsl and bernoulli_common.wgsl. Element i's uniform is word i % 4 of
// rng_bits(key, i / 4); each invocation draws one Philox block for 4 elements.

const WG: u32 = 64u; // invocations per workgroup; Rust sizes grids from @workgroup_size

struct SampleParams {
    key: RngKey,
    n: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: SampleParams;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(WG)
fn bernoulli_sample(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let block = flat_index(gid, nwg);
    if (block * 4u >= p.n) { return; }
    let words = rng_bits(p.key, block);
    for (var w = 0u; w < 4u; w++) {
        let i = block * 4u + w;
        if (i < p.n) {
            let u = rng_uniform_from_bits(words[w]);
            out[i] = select(0.0, 1.0, u < bernoulli_sigmoid(logits[i]));
        }
    }
}
