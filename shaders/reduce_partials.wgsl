// Sum over the middle axis of a tensor viewed as [outer, reduced, inner], pass 1:
// invocation t = s * M + m (M = outer * inner outputs) sums rows
// [s * R, (s + 1) * R) (R = rows_per_split) of output m, times `scale`, into
// out[t]. With one split, `out` is the result (scale 1/reduced for a mean);
// otherwise it is the [splits][M] partials reduce_finish.wgsl sums.
// Included after an `alias Elem = f32 | vec4<f32>;` line; with vec4, `inner`
// counts groups of 4 (the f32 layout of `out` is the same).
// Adjacent invocations take adjacent outputs: adjacent memory when inner > 1.

struct Params {
    outer: u32,
    reduced: u32,
    inner: u32, // in Elems
    splits: u32,
    rows_per_split: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> x: array<Elem>;
@group(0) @binding(1) var<storage, read_write> out: array<Elem>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn reduce_partials(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg, WG);
    let outputs = p.outer * p.inner;
    if (t >= p.splits * outputs) { return; }
    let s = t / outputs;
    let m = t - s * outputs;
    let o = m / p.inner;
    let k = m - o * p.inner;
    let first = s * p.rows_per_split;
    let end = min(first + p.rows_per_split, p.reduced);
    // Four independent sums per step: fewer loop trips and more loads in flight.
    var acc = Elem(0.0);
    var acc1 = Elem(0.0);
    var acc2 = Elem(0.0);
    var acc3 = Elem(0.0);
    var i = (o * p.reduced + first) * p.inner + k;
    let step = p.inner;
    var r = first;
    for (; r + 4u <= end; r += 4u) {
        acc += x[i];
        acc1 += x[i + step];
        acc2 += x[i + 2u * step];
        acc3 += x[i + 3u * step];
        i += 4u * step;
    }
    for (; r < end; r++) {
        acc += x[i];
        i += step;
    }
    acc = (acc + acc1) + (acc2 + acc3);
    out[t] = acc * p.scale;
}
