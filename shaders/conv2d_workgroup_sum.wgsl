// conv2d, workgroup path: the reduction splits' partial sums of dw (and db) added
// into dw and db. Row r of `partials` (at r · stride) holds dw's w_len sums, then
// db's. Element i < w_len goes to dw[i], the rest to db[i - w_len]; overwritten,
// or added to when `accumulate`.

struct SumParams {
    // Elements summed: w_len, plus cout with db.
    total: u32,
    w_len: u32,
    stride: u32,
    reduction_splits: u32,
    accumulate: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> dw: array<f32>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;
@group(0) @binding(3) var<uniform> p: SumParams;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    if (i >= p.total) {
        return;
    }
    var s = 0.0;
    for (var r = 0u; r < p.reduction_splits; r++) {
        s += partials[r * p.stride + i];
    }
    if (i < p.w_len) {
        dw[i] = select(s, dw[i] + s, p.accumulate != 0u);
    } else {
        let b = i - p.w_len;
        db[b] = select(s, db[b] + s, p.accumulate != 0u);
    }
}
