// Group norm forward of one-pixel images (the body of
// groupnorm_pixel_workgroup.wgsl or _serial.wgsl: PIXEL_STRIDE invocations
// share group `ng`, `lid` the one running): the mean,
// then the biased variance about it (two passes over the group: no
// cancellation), then y = (x − mean) · rstd · gamma + beta; stats as the
// general path writes them ([mean (N×G), rstd (N×G)]).

@group(0) @binding(0) var<storage, read> x: array<Elem>;
@group(0) @binding(1) var<storage, read> gamma: array<Elem>;
@group(0) @binding(2) var<storage, read> beta: array<Elem>;
@group(0) @binding(3) var<storage, read_write> y: array<Elem>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

fn pixel_main(ng: u32, lid: u32) {
    let group = pixel_group(ng, p);
    let count = f32(p.group_size);
    var s = 0.0;
    for (var j = lid; j < group.len; j += PIXEL_STRIDE) {
        s += elem_sum(x[group.base + j]);
    }
    let mean = group_sum(lid, vec2<f32>(s, 0.0)).x / count;
    var q = 0.0;
    for (var j = lid; j < group.len; j += PIXEL_STRIDE) {
        let d = x[group.base + j] - Elem(mean);
        q += elem_sum(d * d);
    }
    let rstd = inverseSqrt(group_sum(lid, vec2<f32>(q, 0.0)).x / count + p.eps);
    for (var j = lid; j < group.len; j += PIXEL_STRIDE) {
        y[group.base + j] = (x[group.base + j] - Elem(mean)) * Elem(rstd) * gamma[group.first + j] + beta[group.first + j];
    }
    if (lid == 0u) {
        stats[ng] = mean;
        stats[p.images * p.groups + ng] = rstd;
    }
}
