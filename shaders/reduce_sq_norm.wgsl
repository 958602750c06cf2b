// Global squared norm, pass 1 for one tensor (or a piece of one): workgroup w
// sums x² over elements [w * CHUNK, (w + 1) * CHUNK) of x[start .. start + len)
// and writes partials[first_partial + w]. Invocations read interleaved
// (adjacent invocations, adjacent elements), each adds CHUNK / WG = 64 terms,
// then 16 invocations add 16 sums each and one adds those 16: two barriers per
// workgroup. reduce_finish_tree then adds the partials of every tensor.

const CHUNK: u32 = 16384u;

struct Params {
    start: u32,
    len: u32,
    first_partial: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

// The two-level sum adds 16 x 16 invocations' sums.
const_assert WG == 256u;

var<workgroup> sums: array<f32, WG>;

@compute @workgroup_size(WG)
fn sq_norm_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let first = wid.x * CHUNK;
    let end = min(first + CHUNK, p.len);
    var acc = 0.0;
    for (var i = first + lid; i < end; i += WG) {
        let v = x[p.start + i];
        acc += v * v;
    }
    sums[lid] = acc;
    workgroupBarrier();
    if (lid < 16u) {
        var s = 0.0;
        for (var j = 0u; j < 16u; j++) {
            s += sums[lid * 16u + j];
        }
        sums[lid * 16u] = s;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var s = 0.0;
        for (var j = 0u; j < 16u; j++) {
            s += sums[j * 16u];
        }
        partials[p.first_partial + wid.x] = s;
    }
}
