// Group norm forward, pass 2: one invocation per (image n, group g) merges the
// S × Cg (mean, M2) partials of its group (Chan et al.'s update), writes
// stats = [mean (N×G), rstd (N×G)] and the per-(n, c) coefficients
// coeffs = [scale (N×C), center (N×C), shift (N×C)] of
// y = (x − center) * scale + shift (centering first: no cancellation when |mean| ≫ std).
// The partials and coefficients share one scratch binding (coefficients at
// p.coeffs_at). Included after groupnorm_common.wgsl (`alias Elem = f32;`).

@group(0) @binding(0) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(WG_SMALL)
fn gn_stats_finish(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ng = flat_index(gid, nwg, WG_SMALL);
    if (ng >= p.images * p.groups) { return; }
    let n = ng / p.groups;
    let g = ng % p.groups;
    let c_all = p.channels_f32;
    // Two levels of Chan's update (the channels of one split, then the splits)
    // keep the sequences short: rounding grows with their length.
    var count = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        let rows = split_rows(s, p);
        let nb = f32(rows.y - rows.x);
        let base = (n * p.splits + s) * c_all + g * p.group_size;
        // Equal counts within the split: the merged mean is the plain average.
        var split_mean = 0.0;
        for (var j = 0u; j < p.group_size; j++) {
            split_mean += scratch[base + j];
        }
        split_mean /= f32(p.group_size);
        var split_m2 = 0.0;
        for (var j = 0u; j < p.group_size; j++) {
            let delta = scratch[base + j] - split_mean;
            split_m2 += scratch[p.second + base + j] + delta * delta * nb;
        }
        let n_split = nb * f32(p.group_size);
        let total = count + n_split;
        let delta = split_mean - mean;
        mean += delta * (n_split / total);
        m2 += split_m2 + delta * delta * (count * n_split / total);
        count = total;
    }
    let rstd = inverseSqrt(m2 / count + p.eps);
    stats[ng] = mean;
    stats[p.images * p.groups + ng] = rstd;
    for (var j = 0u; j < p.group_size; j++) {
        let c = g * p.group_size + j;
        let at = p.coeffs_at + n * c_all + c;
        let plane = p.images * c_all;
        scratch[at] = rstd * gamma[c];
        scratch[at + plane] = mean;
        scratch[at + 2u * plane] = beta[c];
    }
}
