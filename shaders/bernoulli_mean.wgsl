// The Bernoulli mean: out[i] = sigmoid(logits[i]) (probabilities, for pictures).
// Included after bernoulli_common.wgsl.

struct MeanParams {
    n: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: MeanParams;

@compute @workgroup_size(WG_SMALL)
fn bernoulli_mean(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG_SMALL);
    if (i >= p.n) { return; }
    out[i] = bernoulli_sigmoid(logits[i]);
}
