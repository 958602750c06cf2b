// Group norm backward, pass 3: dx = a * dy + b * (x − mean) + e, coefficients per (n, c). The
// grid's z is the image n. Included after elementwise_divide.wgsl and groupnorm_common.wgsl.

@group(0) @binding(0) var<storage, read> x: array<Elem>;
@group(0) @binding(1) var<storage, read> dy: array<Elem>;
@group(0) @binding(2) var<storage, read> coeffs: array<Elem>;
@group(0) @binding(3) var<storage, read_write> dx: array<Elem>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn gn_backward_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    let per_image = p.hw * p.channels;
    if (i >= per_image) { return; }
    let n = gid.z;
    let c = i - div_exact(i, p.channels, p.inv_channels) * p.channels;
    let k = n * p.channels + c;
    let plane = p.images * p.channels;
    let at = n * per_image + i;
    dx[at] = coeffs[k] * dy[at] + coeffs[k + plane] * (x[at] - coeffs[k + 2u * plane]) + coeffs[k + 3u * plane];
}
