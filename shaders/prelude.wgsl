// The prelude: every kernel's module starts with this file (src/gpu/kernel.rs
// puts it before the kernel's own WGSL, hand-written or generated), so no
// shader declares these names again.
//
// Workgroup sizes. The Rust side sizes each grid from the @workgroup_size naga
// reads from the shader, so a kernel states its size once, here by name.

// Invocations per workgroup of the kernels with light invocations (elementwise,
// reductions, norms): many per workgroup, as lavapipe pays about a microsecond
// per workgroup.
const WG: u32 = 256u;
// Invocations per workgroup of the kernels whose invocations each do much work
// (Philox draws, a pixel's mixture, a direct conv output) or are few (one per
// norm group): smaller workgroups, more of them to spread the work over.
const WG_SMALL: u32 = 64u;

// Grids are 2-D: the Rust side (gpu::Grid) folds a long 1-D grid into x and y,
// at most 65535 workgroups along x.

// Index of invocation `gid` of a 1-D kernel whose @workgroup_size is `wg`
// (pass the same constant), over its folded grid of `nwg` workgroups.
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>, wg: u32) -> u32 {
    return gid.x + gid.y * nwg.x * wg;
}

// Index of workgroup `wid` over its folded grid of `nwg` workgroups (one
// workgroup per output, tile, ...).
fn flat_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

