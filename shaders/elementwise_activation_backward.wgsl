// Backward of leaky ReLU and ELU from the forward's input: dx = dy * f'(x).
// Included after an `alias Elem = f32;` or `alias Elem = vec4<f32>;` line.
//   leaky_relu: f'(x) = 1 if x > 0 else slope
//   elu:        f'(x) = 1 if x > 0 else exp(x)

struct Params {
    n: u32, // in Elems
    slope: f32,
}

@group(0) @binding(0) var<storage, read> x: array<Elem>;
@group(0) @binding(1) var<storage, read> dy: array<Elem>;
@group(0) @binding(2) var<storage, read_write> dx: array<Elem>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn leaky_relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.n) { return; }
    dx[i] = dy[i] * select(Elem(p.slope), Elem(1.0), x[i] > Elem(0.0));
}

@compute @workgroup_size(WG)
fn elu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.n) { return; }
    let v = x[i];
    dx[i] = dy[i] * select(exp(min(v, Elem(0.0))), Elem(1.0), v > Elem(0.0));
}
