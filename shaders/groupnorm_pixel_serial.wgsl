// Group norm of one-pixel images, serial frame: one invocation per (image n,
// group g) walks the group's channels alone. No workgroup memory and no
// barriers, which on a CPU driver (lavapipe switches coroutines at each
// barrier) cost more than the loop. Included as groupnorm_pixel_workgroup.wgsl.

const PIXEL_STRIDE: u32 = 1u;

fn group_sum(lid: u32, v: vec2<f32>) -> vec2<f32> {
    return v;
}

@compute @workgroup_size(WG)
fn gn_pixel(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ng = flat_index(gid, nwg, WG);
    if (ng >= p.images * p.groups) { return; }
    pixel_main(ng, 0u);
}
