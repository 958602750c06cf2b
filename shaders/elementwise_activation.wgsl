// Leaky ReLU and ELU over flat tensors: y = f(x). Included after an
// `alias Elem = f32;` or `alias Elem = vec4<f32>;` line (the vec4 variant
// serves lengths divisible by 4).
//   leaky_relu: x if x > 0 else slope * x
//   elu:        x if x > 0 else exp(x) - 1

struct Params {
    n: u32, // in Elems
    slope: f32,
}

@group(0) @binding(0) var<storage, read> x: array<Elem>;
@group(0) @binding(1) var<storage, read_write> y: array<Elem>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn leaky_relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.n) { return; }
    let v = x[i];
    y[i] = select(p.slope * v, v, v > Elem(0.0));
}

@compute @workgroup_size(WG)
fn elu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.n) { return; }
    let v = x[i];
    // exp of the positive side is never used: min keeps it from overflowing.
    y[i] = select(exp(min(v, Elem(0.0))) - Elem(1.0), v, v > Elem(0.0));
}
