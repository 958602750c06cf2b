// Matmul v1, the readable one: one invocation per output element, any
// transposes and batch strides. Included after matmul_params.wgsl.
//   C[b][i,j] = alpha * sum_k op(A)[i,k] * op(B)[k,j] + beta * C[b][i,j]

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(8, 8)
fn matmul_naive(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let i = gid.y;
    let bi = gid.z;
    if (i >= p.m || j >= p.n) { return; }
    let a0 = bi * p.a_batch + i * p.a_rs;
    let b0 = bi * p.b_batch + j * p.b_cs;
    var acc = 0.0;
    for (var kk = 0u; kk < p.k; kk++) {
        acc = fma(a[a0 + kk * p.a_cs], b[b0 + kk * p.b_rs], acc);
    }
    write_c(bi * p.c_batch + i * p.n + j, acc);
}
