// Group norm backward, pass 2: one invocation per (image n, group g) adds the
// partials of its group weighted by gamma (Σ dxhat and Σ dxhat * xhat with
// dxhat = dy * gamma[c]) and writes, for each channel c of the group, the
// coefficients of dx = a * dy + b * (x − mean) + e:
//   dx = rstd * (dxhat − mean(dxhat) − xhat * mean(dxhat * xhat))
//   a = rstd * gamma[c],  b = −rstd² * m2,  e = −rstd * m1
// (m1, m2 the two group means). coeffs = [a, b, mean, e], each N×C.
// The partials and coefficients share one scratch binding (coefficients at
// p.coeffs_at). Included after groupnorm_common.wgsl (`alias Elem = f32;`).

@group(0) @binding(0) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG_SMALL)
fn gn_backward_coeffs(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ng = flat_index(gid, nwg, WG_SMALL);
    if (ng >= p.images * p.groups) { return; }
    let n = ng / p.groups;
    let g = ng % p.groups;
    let c_all = p.channels_f32;
    var sum_dxhat = 0.0;
    var sum_dxhat_xhat = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        let base = (n * p.splits + s) * c_all + g * p.group_size;
        for (var j = 0u; j < p.group_size; j++) {
            let w = gamma[g * p.group_size + j];
            sum_dxhat += w * scratch[base + j];
            sum_dxhat_xhat += w * scratch[p.second + base + j];
        }
    }
    let k = f32(p.hw * p.group_size);
    let mean = stats[ng];
    let rstd = stats[p.images * p.groups + ng];
    let b = -rstd * rstd * (sum_dxhat_xhat / k);
    let e = -rstd * (sum_dxhat / k);
    let plane = p.images * c_all;
    for (var j = 0u; j < p.group_size; j++) {
        let c = g * p.group_size + j;
        let at = p.coeffs_at + n * c_all + c;
        scratch[at] = rstd * gamma[c];
        scratch[at + plane] = b;
        scratch[at + 2u * plane] = mean;
        scratch[at + 3u * plane] = e;
    }
}
