// Matmul, GPU-shaped: a workgroup of 16x16 invocations computes a 64x64 block
// of C, each invocation a 4x4 block in registers. K is walked 16 at a time:
// the workgroup stages op(A)'s 64x16 and op(B)'s 16x64 slices in workgroup
// memory (each invocation loads one vec4 of each), then every invocation reads
// its 4 rows and 4 columns as two vec4s per k, 16 FMAs per 2 loads.
// No subgroup operations and no assumption on the subgroup width.
// Any shape and strides (the transposes): rows and columns past the edges are
// clamped to the last valid one so every load stays in range and never stored;
// k past the end reads zeros. Included after matmul_params.wgsl.

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// k per staged slice; the slices hold TK rows of 16 vec4s (64 rows of op(A),
// resp. 64 columns of op(B), at one k).
const TK: u32 = 16u;
var<workgroup> sa: array<vec4<f32>, 256>;
var<workgroup> sb: array<vec4<f32>, 256>;

@compute @workgroup_size(16, 16)
fn matmul_workgroup(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let bi = wid.z;
    let i0 = wid.y * 64u;
    let j0 = wid.x * 64u;
    // What this invocation stages: k row `sk` of the slice, vec4 `sq` (rows,
    // resp. columns, 4sq..4sq+3 of the block).
    let l = lid.y * 16u + lid.x;
    let sk = l / 16u;
    let sq = l % 16u;
    let ar = bi * p.a_batch + min(i0 + 4u * sq, p.m - 1u) * p.a_rs;
    let ar1 = bi * p.a_batch + min(i0 + 4u * sq + 1u, p.m - 1u) * p.a_rs;
    let ar2 = bi * p.a_batch + min(i0 + 4u * sq + 2u, p.m - 1u) * p.a_rs;
    let ar3 = bi * p.a_batch + min(i0 + 4u * sq + 3u, p.m - 1u) * p.a_rs;
    let bc = bi * p.b_batch + min(j0 + 4u * sq, p.n - 1u) * p.b_cs;
    let bc1 = bi * p.b_batch + min(j0 + 4u * sq + 1u, p.n - 1u) * p.b_cs;
    let bc2 = bi * p.b_batch + min(j0 + 4u * sq + 2u, p.n - 1u) * p.b_cs;
    let bc3 = bi * p.b_batch + min(j0 + 4u * sq + 3u, p.n - 1u) * p.b_cs;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        let k = k0 + sk;
        let kc = min(k, p.k - 1u);
        let ka = kc * p.a_cs;
        let kb = kc * p.b_rs;
        let av = vec4<f32>(a[ar + ka], a[ar1 + ka], a[ar2 + ka], a[ar3 + ka]);
        let bv = vec4<f32>(b[bc + kb], b[bc1 + kb], b[bc2 + kb], b[bc3 + kb]);
        workgroupBarrier();
        sa[l] = select(vec4<f32>(0.0), av, k < p.k);
        sb[l] = bv;
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let x = sa[kk * 16u + lid.y];
            let y = sb[kk * 16u + lid.x];
            acc0 = fma(vec4<f32>(x.x), y, acc0);
            acc1 = fma(vec4<f32>(x.y), y, acc1);
            acc2 = fma(vec4<f32>(x.z), y, acc2);
            acc3 = fma(vec4<f32>(x.w), y, acc3);
        }
    }
    let i = i0 + 4u * lid.y;
    let j = j0 + 4u * lid.x;
    write_row4(bi, i, j, acc0);
    write_row4(bi, i + 1u, j, acc1);
    write_row4(bi, i + 2u, j, acc2);
    write_row4(bi, i + 3u, j, acc3);
}
