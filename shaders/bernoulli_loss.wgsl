// Per-image Bernoulli NLL, forward only. Included after bernoulli_common.wgsl.
// Workgroup (chunk, image) sums 1024 elements of one image (4 per invocation,
// strided so loads coalesce) into partials[chunk * images + image];
// the reduce family's sum_partials adds each image's chunks.

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;
@group(0) @binding(3) var<uniform> p: BernoulliParams;

var<workgroup> sums: array<f32, WG>;

@compute @workgroup_size(WG)
fn bernoulli_loss(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let image = wid.y;
    var sum = 0.0;
    for (var r = 0u; r < BERNOULLI_CHUNK / WG; r++) {
        let e = wid.x * BERNOULLI_CHUNK + r * WG + lid.x;
        if (e < p.per_image) {
            let i = image * p.per_image + e;
            sum += bernoulli_nll(logits[i], targets[i]);
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
