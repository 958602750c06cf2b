// Matmul v2, portable: each invocation accumulates a 4x4 block of C in
// registers (8 loads feed 16 FMAs per k), a workgroup of 8x8 covers 32x32.
// Any shape: rows/columns past the edge are clamped to the last valid one so
// every load stays in range without a test in the loop, and never stored.
// Included after matmul_params.wgsl.

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(8, 8)
fn matmul_tiled(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * 4u;
    let j0 = gid.x * 4u;
    let bi = gid.z;
    if (i0 >= p.m || j0 >= p.n) { return; }
    // Start of each of the 4 rows of op(A) and 4 columns of op(B), clamped
    // (plain variables: lavapipe keeps indexed private arrays in memory).
    let a0 = bi * p.a_batch + min(i0, p.m - 1u) * p.a_rs;
    let a1 = bi * p.a_batch + min(i0 + 1u, p.m - 1u) * p.a_rs;
    let a2 = bi * p.a_batch + min(i0 + 2u, p.m - 1u) * p.a_rs;
    let a3 = bi * p.a_batch + min(i0 + 3u, p.m - 1u) * p.a_rs;
    let b0 = bi * p.b_batch + min(j0, p.n - 1u) * p.b_cs;
    let b1 = bi * p.b_batch + min(j0 + 1u, p.n - 1u) * p.b_cs;
    let b2 = bi * p.b_batch + min(j0 + 2u, p.n - 1u) * p.b_cs;
    let b3 = bi * p.b_batch + min(j0 + 3u, p.n - 1u) * p.b_cs;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < p.k; kk++) {
        let ka = kk * p.a_cs;
        let kb = kk * p.b_rs;
        let bv = vec4<f32>(b[b0 + kb], b[b1 + kb], b[b2 + kb], b[b3 + kb]);
        acc0 = fma(vec4<f32>(a[a0 + ka]), bv, acc0);
        acc1 = fma(vec4<f32>(a[a1 + ka]), bv, acc1);
        acc2 = fma(vec4<f32>(a[a2 + ka]), bv, acc2);
        acc3 = fma(vec4<f32>(a[a3 + ka]), bv, acc3);
    }
    write_row4(bi, i0, j0, acc0);
    write_row4(bi, i0 + 1u, j0, acc1);
    write_row4(bi, i0 + 2u, j0, acc2);
    write_row4(bi, i0 + 3u, j0, acc3);
}
