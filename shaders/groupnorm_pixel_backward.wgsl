// Group norm backward of one-pixel images (see groupnorm_pixel.wgsl), with
// xhat = (x − mean) · rstd and dxhat = dy · gamma:
//   dx = rstd · (dxhat − mean(dxhat) − xhat · mean(dxhat · xhat)),
// and the per-(image, channel) terms of dbeta and dgamma, dy and dy · xhat,
// written where the general path's pass-1 partials go (one split), for the
// reduce family to sum over the images.

@group(0) @binding(0) var<storage, read> x: array<Elem>;
@group(0) @binding(1) var<storage, read> dy: array<Elem>;
@group(0) @binding(2) var<storage, read> gamma: array<Elem>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<Elem>;
@group(0) @binding(5) var<storage, read_write> partials: array<Elem>;
@group(0) @binding(6) var<uniform> p: Params;

@compute @workgroup_size(GN_PIXEL_WG)
fn gn_pixel_backward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let ng = flat_workgroup(wid, nwg);
    if (ng >= p.images * p.groups) { return; }
    let g = ng % p.groups;
    let per_group = p.channels / p.groups;
    let first = g * per_group;
    let base = (ng / p.groups) * p.channels + first;
    let mean = stats[ng];
    let rstd = stats[p.images * p.groups + ng];
    var sums = vec2<f32>(0.0);
    for (var j = lid; j < per_group; j += GN_PIXEL_WG) {
        let d = dy[base + j];
        let xhat = (x[base + j] - Elem(mean)) * Elem(rstd);
        let dxhat = d * gamma[first + j];
        sums += vec2<f32>(elem_sum(dxhat), elem_sum(dxhat * xhat));
        partials[base + j] = d;
        partials[p.second + base + j] = d * xhat;
    }
    let means = workgroup_sum(lid, sums) / f32(p.group_size);
    for (var j = lid; j < per_group; j += GN_PIXEL_WG) {
        let xhat = (x[base + j] - Elem(mean)) * Elem(rstd);
        dx[base + j] = Elem(rstd) * (dy[base + j] * gamma[first + j] - Elem(means.x) - xhat * Elem(means.y));
    }
}
