// Group norm forward, pass 3: y = (x − center[n, c]) * scale[n, c] + shift[n, c]. The grid's z
// is the image n. Included after elementwise_divide.wgsl and groupnorm_common.wgsl.

@group(0) @binding(0) var<storage, read> x: array<Elem>;
@group(0) @binding(1) var<storage, read> coeffs: array<Elem>;
@group(0) @binding(2) var<storage, read_write> y: array<Elem>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn gn_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    let per_image = p.hw * p.channels;
    if (i >= per_image) { return; }
    let n = gid.z;
    let c = i - div_exact(i, p.channels, p.inv_channels) * p.channels;
    let k = n * p.channels + c;
    let at = n * per_image + i;
    let plane = p.images * p.channels;
    y[at] = (x[at] - coeffs[k + plane]) * coeffs[k] + coeffs[k + 2u * plane];
}
