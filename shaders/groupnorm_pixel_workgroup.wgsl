// Group norm of one-pixel images, GPU-shaped frame: one workgroup of 64
// invocations per (image n, group g); each sums a strided share of the group's
// channels, and a tree in workgroup memory adds the shares. Included after an
// `alias Elem = …;` line, its `elem_sum` and groupnorm_common.wgsl, before the
// body (groupnorm_pixel_forward.wgsl or _backward.wgsl, `pixel_main`).

const PIXEL_STRIDE: u32 = 64u;
var<workgroup> tree: array<vec2<f32>, PIXEL_STRIDE>;

// The sum of `v` over the workgroup (every invocation gets it).
fn group_sum(lid: u32, v: vec2<f32>) -> vec2<f32> {
    tree[lid] = v;
    workgroupBarrier();
    for (var s = PIXEL_STRIDE / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            tree[lid] += tree[lid + s];
        }
        workgroupBarrier();
    }
    let total = tree[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(PIXEL_STRIDE)
fn gn_pixel(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let ng = flat_workgroup(wid, nwg);
    if (ng >= p.images * p.groups) { return; }
    pixel_main(ng, lid);
}
