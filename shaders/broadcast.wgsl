// Broadcasts that the graph's backward passes and start states need:
//   broadcast_batch:     y[i] = x[i % per]   ([1, ...] repeated over the batch)
//   broadcast_per_image: y[i] = x[i / per]   ([N] spread over each image's elements)

struct Params {
    n: u32,
    per: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn broadcast_batch(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.n) { return; }
    y[i] = x[i % p.per];
}

@compute @workgroup_size(WG)
fn broadcast_per_image(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.n) { return; }
    y[i] = x[i / p.per];
}
