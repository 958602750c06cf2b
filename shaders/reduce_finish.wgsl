// Pass 2 of the reductions: out[m] = scale * Σ_s partials[s * M + m] for the
// [splits][M] partials of pass 1.
//   reduce_finish_tree:   one workgroup per output, strided sums then a tree
//                         (few outputs with many partials each; also the
//                         global squared norm's final sum, M = 1)
//   reduce_finish_serial: one invocation per output, no barriers (many outputs)

struct Params {
    outputs: u32,
    splits: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

var<workgroup> tree: array<f32, WG>;

@compute @workgroup_size(WG)
fn reduce_finish_tree(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let m = flat_workgroup(wid, nwg);
    if (m >= p.outputs) { return; }
    var acc = 0.0;
    for (var s = lid; s < p.splits; s += WG) {
        acc += partials[s * p.outputs + m];
    }
    tree[lid] = acc;
    for (var half = WG / 2u; half > 0u; half >>= 1u) {
        workgroupBarrier();
        if (lid < half) {
            tree[lid] += tree[lid + half];
        }
    }
    if (lid == 0u) {
        out[m] = tree[0] * p.scale;
    }
}

@compute @workgroup_size(WG)
fn reduce_finish_serial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let m = flat_index(gid, nwg, WG);
    if (m >= p.outputs) { return; }
    var acc = 0.0;
    for (var i = m; i < p.splits * p.outputs; i += p.outputs) {
        acc += partials[i];
    }
    out[m] = acc * p.scale;
}
