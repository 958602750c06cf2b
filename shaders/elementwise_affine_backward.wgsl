// Backward of the per-channel affine, pass 1 of 2. Included after an
// `alias Elem = f32 | vec4<f32>;` line; with vec4, C counts groups of 4 channels
// (the partials land in the same [S][C] f32 layout either way).
// Invocation t = s * C + c owns channel c of rows [s * R, (s + 1) * R) (R =
// rows_per_split): it writes dx = dy * gain[c] for those elements and its partial
// sums of dy * x and dy into partials[t] and partials[S * C + t] (S = splits).
// Adjacent invocations touch adjacent channels, so a SIMD group reads contiguous
// memory, and each walks its rows in order.

struct Params {
    rows: u32,
    channels: u32, // in Elems
    splits: u32,
    rows_per_split: u32,
}

@group(0) @binding(0) var<storage, read> x: array<Elem>;
@group(0) @binding(1) var<storage, read> dy: array<Elem>;
@group(0) @binding(2) var<storage, read> gain: array<Elem>;
@group(0) @binding(3) var<storage, read_write> dx: array<Elem>;
@group(0) @binding(4) var<storage, read_write> partials: array<Elem>;
@group(0) @binding(5) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn affine_backward_partials(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg, WG);
    let total = p.splits * p.channels;
    if (t >= total) { return; }
    let c = t % p.channels;
    let s = t / p.channels;
    let g = gain[c];
    var sum_dyx = Elem(0.0);
    var sum_dy = Elem(0.0);
    let first = s * p.rows_per_split;
    let end = min(first + p.rows_per_split, p.rows) * p.channels;
    for (var i = first * p.channels + c; i < end; i += p.channels) {
        let d = dy[i];
        dx[i] = d * g;
        sum_dyx += d * x[i];
        sum_dy += d;
    }
    partials[t] = sum_dyx;
    partials[total + t] = sum_dy;
}
