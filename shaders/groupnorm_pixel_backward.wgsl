// Group norm backward of one-pixel images (the body of
// groupnorm_pixel_workgroup.wgsl or _serial.wgsl: PIXEL_STRIDE invocations
// share group `ng`, `lid` the one running), with
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

fn pixel_main(ng: u32, lid: u32) {
    let group = pixel_group(ng, p);
    let mean = stats[ng];
    let rstd = stats[p.images * p.groups + ng];
    var sums = vec2<f32>(0.0);
    for (var j = lid; j < group.len; j += PIXEL_STRIDE) {
        let d = dy[group.base + j];
        let xhat = (x[group.base + j] - Elem(mean)) * Elem(rstd);
        let dxhat = d * gamma[group.first + j];
        sums += vec2<f32>(elem_sum(dxhat), elem_sum(dxhat * xhat));
        partials[group.base + j] = d;
        partials[p.second + group.base + j] = d * xhat;
    }
    let means = group_sum(lid, sums) / f32(p.group_size);
    for (var j = lid; j < group.len; j += PIXEL_STRIDE) {
        let xhat = (x[group.base + j] - Elem(mean)) * Elem(rstd);
        dx[group.base + j] = Elem(rstd) * (dy[group.base + j] * gamma[group.first + j] - Elem(means.x) - xhat * Elem(means.y));
    }
}
