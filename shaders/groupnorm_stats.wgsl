// Group norm forward, pass 1: each invocation's mean and M2 (sum of squared
// deviations) of its rows of one channel (or 4), from sums of x − x_first
// (shifted, so no cancellation unless |mean| ≫ std within a few rows).
// Included after groupnorm_common.wgsl.

@group(0) @binding(0) var<storage, read> x: array<Elem>;
@group(0) @binding(1) var<storage, read_write> partials: array<Elem>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn gn_stats_partials(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg, WG);
    if (t >= p.images * p.splits * p.channels) { return; }
    let c = t % p.channels;
    let ns = t / p.channels;
    let s = ns % p.splits;
    let n = ns / p.splits;
    let rows = split_rows(s, p);
    var i = (n * p.hw + rows.x) * p.channels + c;
    let shift = x[i];
    var sum = Elem(0.0);
    var sq = Elem(0.0);
    for (var r = rows.x; r < rows.y; r++) {
        let d = x[i] - shift;
        sum += d;
        sq += d * d;
        i += p.channels;
    }
    let count = f32(rows.y - rows.x);
    partials[t] = shift + sum / count;
    partials[p.second + t] = max(sq - sum * sum / count, Elem(0.0));
}
