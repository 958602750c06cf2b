// Helpers of the tiled conv2d path: weight flip/transpose for dx, and the sum of
// the per-reduction-split partial weight/bias gradients.

struct Params {
    // Elements written.
    total: u32,
    // flip_transpose: the weights' shape [cout, kk, cin] (kk taps), and the
    // channels of each row of the copy, cout4 >= cout (those past cout zero).
    cout: u32,
    kk: u32,
    cin: u32,
    cout4: u32,
    // The sums: elements in one reduction split's partial sums, the number of
    // reduction splits, and whether dst is added to (1) or overwritten (0).
    stride: u32,
    reduction_splits: u32,
    accumulate: u32,
    // Where the summed elements start in each reduction split's partial sums.
    offset: u32,
    // sum_reduction_splits_pair: sums below dw_len (dw) go to dst[i], the rest
    // (db) to dst[i + db_gap], past the db_gap elements between dw and db.
    dw_len: u32,
    db_gap: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

// dst[ci, t, co] = src[co, kk-1-t, ci]: the weights of dx = conv(dy, dst) (taps reversed,
// in and out channels swapped); dst rows of cout4 channels, 0 past cout (a
// ragged Cout padded to whole vec4s, for a dy padded alike).
@compute @workgroup_size(WG_SMALL)
fn flip_transpose(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG_SMALL);
    if (i >= p.total) { return; }
    let co = i % p.cout4;
    let t = (i / p.cout4) % p.kk;
    let ci = i / (p.cout4 * p.kk);
    let v = src[(min(co, p.cout - 1u) * p.kk + (p.kk - 1u - t)) * p.cin + ci];
    dst[i] = select(0.0, v, co < p.cout);
}

// The sum over reduction_splits s of src[s * stride + offset + i].
fn reduction_split_sum(i: u32) -> f32 {
    var acc = 0.0;
    for (var s = 0u; s < p.reduction_splits; s++) {
        acc += src[s * p.stride + p.offset + i];
    }
    return acc;
}

// dst[i] (+)= reduction_split_sum(i), for i < total.
@compute @workgroup_size(WG_SMALL)
fn sum_reduction_splits(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG_SMALL);
    if (i >= p.total) { return; }
    let acc = reduction_split_sum(i);
    dst[i] = select(acc, dst[i] + acc, p.accumulate != 0u);
}

// sum_reduction_splits over dw and db at once: the first `p.dw_len` sums (dw) go to dst[i],
// the rest (db) to dst[i + p.db_gap], past the gap of `p.db_gap` elements between the two.
@compute @workgroup_size(WG_SMALL)
fn sum_reduction_splits_pair(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG_SMALL);
    if (i >= p.total) { return; }
    let acc = reduction_split_sum(i);
    let j = select(i, i + p.db_gap, i >= p.dw_len);
    dst[j] = select(acc, dst[j] + acc, p.accumulate != 0u);
}
