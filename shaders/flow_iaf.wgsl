// One inverse-autoregressive cell's update (Kingma et al. 2016) from its
// network's output ms = [m, s] (packed, 2 * zdim channels):
//   z' = sigma * z + (1 - sigma) * m, sigma = sigmoid(s), ls = log sigma
// or, shift only, z' = z - m and ls = 0.

@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> ms: array<f32>;
@group(0) @binding(2) var<storage, read_write> z_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> ls: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn flow_iaf(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.n) { return; }
    let j = packed_index(i);
    let m = ms[j];
    if (p.shift_only == 1u) {
        z_out[i] = z[i] - m;
        ls[i] = 0.0;
        return;
    }
    let s = ms[j + p.zdim];
    let sigma = 1.0 / (1.0 + exp(-s));
    z_out[i] = sigma * z[i] + (1.0 - sigma) * m;
    ls[i] = log_sigmoid(s);
}
