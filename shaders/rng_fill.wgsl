// Fills a tensor with raw Philox bits, uniforms or normals (the rng family's
// kernels; other kernels call rng_bits directly).

struct Params {
    key: RngKey,
    n: u32,
}

@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<uniform> p: Params;

@compute @workgroup_size(WG_SMALL)
fn fill_bits(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG_SMALL);
    if (i >= p.n) { return; }
    out[i] = rng_bits(p.key, i).x;
}

@compute @workgroup_size(WG_SMALL)
fn fill_uniform(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG_SMALL);
    if (i >= p.n) { return; }
    out[i] = bitcast<u32>(rng_uniform_from_bits(rng_bits(p.key, i).x));
}

@compute @workgroup_size(WG_SMALL)
fn fill_normal(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG_SMALL);
    if (i >= p.n) { return; }
    out[i] = bitcast<u32>(rng_normal_from_bits(rng_bits(p.key, i)));
}
