// Group norm backward, pass 1: per invocation, Σ dy and Σ dy * xhat over its
// rows of one channel (or 4), xhat = (x − mean) * rstd of its (image, group).
// Included after groupnorm_common.wgsl.

@group(0) @binding(0) var<storage, read> x: array<Elem>;
@group(0) @binding(1) var<storage, read> dy: array<Elem>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> partials: array<Elem>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn gn_backward_partials(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg, WG);
    if (t >= p.images * p.splits * p.channels) { return; }
    let c = t % p.channels;
    let ns = t / p.channels;
    let s = ns % p.splits;
    let n = ns / p.splits;
    // First f32 channel of this invocation, and its group.
    let g = c * (p.channels_f32 / p.channels) / p.group_size;
    let mean = stats[n * p.groups + g];
    let rstd = stats[p.images * p.groups + n * p.groups + g];
    let rows = split_rows(s, p);
    var i = (n * p.hw + rows.x) * p.channels + c;
    var sum_dy = Elem(0.0);
    var sum_dy_xc = Elem(0.0);
    for (var r = rows.x; r < rows.y; r++) {
        let d = dy[i];
        sum_dy += d;
        sum_dy_xc += d * (x[i] - mean);
        i += p.channels;
    }
    partials[t] = sum_dy;
    partials[p.second + t] = sum_dy_xc * rstd;
}
