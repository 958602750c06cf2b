// The dx weights of many convs in one pass: each table entry is one conv's
// weights [cout, kk, cin] at `src_off` in `src`, written flipped and transposed,
// [cin, kk, cout] with the taps reversed, at `dst_off` in `dst` (see
// `flip_transpose` in conv2d_tiled_util.wgsl, the one-conv version).

const ENTRY_WORDS: u32 = 6u; // src_off, dst_off, cout, kk, cin, first element

struct Params {
    total: u32,
    entries: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG_SMALL)
fn flip_transpose_many(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG_SMALL);
    if (i >= p.total) { return; }
    // The last entry whose first element is at or before i.
    var lo = 0u;
    var hi = p.entries - 1u;
    while (lo < hi) {
        let mid = (lo + hi + 1u) / 2u;
        if (table[mid * ENTRY_WORDS + 5u] <= i) { lo = mid; } else { hi = mid - 1u; }
    }
    let e = lo * ENTRY_WORDS;
    let j = i - table[e + 5u];
    let cout = table[e + 2u];
    let kk = table[e + 3u];
    let cin = table[e + 4u];
    let co = j % cout;
    let t = (j / cout) % kk;
    let ci = j / (cout * kk);
    dst[table[e + 1u] + j] = src[table[e] + (co * kk + (kk - 1u - t)) * cin + ci];
}
