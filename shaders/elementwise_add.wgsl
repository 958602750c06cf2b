// y = a + b over flat tensors. Included after an `alias Elem = f32;` or
// `alias Elem = vec4<f32>;` line (the vec4 variant serves lengths divisible by 4).

struct Params {
    n: u32, // in Elems
}

@group(0) @binding(0) var<storage, read> a: array<Elem>;
@group(0) @binding(1) var<storage, read> b: array<Elem>;
@group(0) @binding(2) var<storage, read_write> y: array<Elem>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.n) { return; }
    y[i] = a[i] + b[i];
}
