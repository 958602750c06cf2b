// Fills a tensor with raw Philox bits, uniforms or normals (the rng family's
// kernels; other kernels call rng_bits directly).

const WG: u32 = 64u; // invocations per workgroup; Rust sizes grids from @workgroup_size

struct Params {
    key: RngKey,
    n: u32,
}

@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<uniform> p: Params;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(WG)
fn fill_bits(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = rng_bits(p.key, i).x;
}

@compute @workgroup_size(WG)
fn fill_uniform(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = bitcast<u32>(rng_uniform_from_bits(rng_bits(p.key, i).x));
}

@compute @workgroup_size(WG)
fn fill_normal(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = bitcast<u32>(rng_normal_from_bits(rng_bits(p.key, i)));
}
