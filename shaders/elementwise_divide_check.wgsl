// Applies div_exact to a list of numerators (the GPU side of the division check).
// Included after elementwise_divide.wgsl.

struct Params {
    n: u32,
    divisor: u32,
    inv_divisor: f32,
}

@group(0) @binding(0) var<storage, read> numerators: array<u32>;
@group(0) @binding(1) var<storage, read_write> quotients: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn divide_check(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.n) { return; }
    quotients[i] = div_exact(numerators[i], p.divisor, p.inv_divisor);
}
