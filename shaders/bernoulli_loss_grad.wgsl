// Per-image Bernoulli NLL and dlogits = upstream[image] * (sigmoid(l) - t) in one
// pass. Included after bernoulli_common.wgsl; partial sums as in bernoulli_loss.wgsl.

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<f32>;
@group(0) @binding(2) var<storage, read> upstream: array<f32>;
@group(0) @binding(3) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;
@group(0) @binding(5) var<uniform> p: BernoulliParams;

var<workgroup> sums: array<f32, WG>;

@compute @workgroup_size(WG)
fn bernoulli_loss_grad(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let image = wid.y;
    let g = upstream[image];
    var sum = 0.0;
    for (var r = 0u; r < BERNOULLI_CHUNK / WG; r++) {
        let e = wid.x * BERNOULLI_CHUNK + r * WG + lid.x;
        if (e < p.per_image) {
            let i = image * p.per_image + e;
            let l = logits[i];
            let t = targets[i];
            sum += bernoulli_nll(l, t);
            dlogits[i] = g * bernoulli_nll_grad(l, t);
        }
    }
    sums[lid.x] = sum;
    workgroupBarrier();
    if (lid.x == 0u) {
        var total = 0.0;
        for (var j = 0u; j < WG; j++) {
            total += sums[j];
        }
        partials[wid.x * nwg.y + image] = total;
    }
}
