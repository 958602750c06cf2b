// Backward of flow_iaf.wgsl: from dz' and dls to dz and d[m, s].
//   dz = g sigma, dm = g (1 - sigma), ds = g (z - m) sigma (1 - sigma) + gl (1 - sigma)
// (shift only: dz = g, dm = -g, ds = 0).

@group(0) @binding(0) var<storage, read> dz_out: array<f32>;
@group(0) @binding(1) var<storage, read> dls: array<f32>;
@group(0) @binding(2) var<storage, read> z: array<f32>;
@group(0) @binding(3) var<storage, read> ms: array<f32>;
@group(0) @binding(4) var<storage, read_write> dz: array<f32>;
@group(0) @binding(5) var<storage, read_write> dms: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn flow_iaf_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.n) { return; }
    let j = packed_index(i);
    let g = dz_out[i];
    if (p.shift_only == 1u) {
        dz[i] = g;
        dms[j] = -g;
        dms[j + p.zdim] = 0.0;
        return;
    }
    let m = ms[j];
    let sigma = 1.0 / (1.0 + exp(-ms[j + p.zdim]));
    let rest = 1.0 - sigma;
    dz[i] = g * sigma;
    dms[j] = g * rest;
    dms[j + p.zdim] = (g * (z[i] - m) * sigma + dls[i]) * rest;
}
