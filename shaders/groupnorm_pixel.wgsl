// Group norm of images of one pixel (H = W = 1: the MLP models' layer norm),
// one workgroup of 64 invocations per (image n, group g), forward and backward
// each in one dispatch: the group's Cg channels are summed by the invocations
// (a strided share each) and a tree in workgroup memory. The general kernels'
// per-(image, group) serial passes cost more than the whole norm here.
// Included after an `alias Elem = …;` line, its `elem_sum`, and
// groupnorm_common.wgsl (`channels` counts Elems).

const GN_PIXEL_WG: u32 = 64u;
var<workgroup> tree: array<vec2<f32>, GN_PIXEL_WG>;

// The sum of `v` over the workgroup (every invocation gets it).
fn workgroup_sum(lid: u32, v: vec2<f32>) -> vec2<f32> {
    tree[lid] = v;
    workgroupBarrier();
    for (var s = GN_PIXEL_WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            tree[lid] += tree[lid + s];
        }
        workgroupBarrier();
    }
    let total = tree[0];
    workgroupBarrier();
    return total;
}
