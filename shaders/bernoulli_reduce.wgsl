// Adds each image's per-chunk NLL partial sums into nll[image]. One workgroup per image.

struct ReduceParams {
    images: u32,
    chunks: u32,
}

@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> nll: array<f32>;
@group(0) @binding(2) var<uniform> p: ReduceParams;

var<workgroup> sums: array<f32, 64>;

@compute @workgroup_size(64)
fn bernoulli_reduce(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let image = wid.x;
    var sum = 0.0;
    for (var c = lid.x; c < p.chunks; c += 64u) {
        sum += partials[image * p.chunks + c];
    }
    sums[lid.x] = sum;
    workgroupBarrier();
    if (lid.x == 0u) {
        var total = 0.0;
        for (var i = 0u; i < 64u; i++) {
            total += sums[i];
        }
        nll[image] = total;
    }
}
