// Backward of the per-channel affine, pass 2 of 2: sums the S partials of each
// channel c (layout of pass 1) into dgain[c] and dbias[c]. affine_backward_finish
// gives each channel a workgroup and sums in a tree (few channels, many partials).

struct Params {
    channels: u32,
    splits: u32,
}

@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> dgain: array<f32>;
@group(0) @binding(2) var<storage, read_write> dbias: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> tree_g: array<f32, WG>;
var<workgroup> tree_b: array<f32, WG>;

@compute @workgroup_size(WG)
fn affine_backward_finish(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let c = flat_workgroup(wid, nwg);
    if (c >= p.channels) { return; }
    let total = p.splits * p.channels;
    var g = 0.0;
    var b = 0.0;
    for (var s = lid; s < p.splits; s += WG) {
        g += partials[s * p.channels + c];
        b += partials[total + s * p.channels + c];
    }
    tree_g[lid] = g;
    tree_b[lid] = b;
    for (var half = WG / 2u; half > 0u; half >>= 1u) {
        workgroupBarrier();
        if (lid < half) {
            tree_g[lid] += tree_g[lid + half];
            tree_b[lid] += tree_b[lid + half];
        }
    }
    if (lid == 0u) {
        dgain[c] = tree_g[0];
        dbias[c] = tree_b[0];
    }
}

// The same with one invocation per channel and no barriers, for many channels
// (each then has few partials; workgroup barriers are costly on some adapters).
@compute @workgroup_size(WG)
fn affine_backward_finish_serial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = flat_index(gid, nwg, WG);
    if (c >= p.channels) { return; }
    let total = p.splits * p.channels;
    var g = 0.0;
    var b = 0.0;
    for (var i = c; i < total; i += p.channels) {
        g += partials[i];
        b += partials[total + i];
    }
    dgain[c] = g;
    dbias[c] = b;
}
