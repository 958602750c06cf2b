// Uniform parameters shared by every matmul kernel; included first. Same field
// order as `Params` in src/kernels/matmul/kernels.rs. op(A)[i,k] of batch b is at
// a[b*a_batch + i*a_rs + k*a_cs] and op(B)[k,j] at b[b*b_batch + k*b_rs + j*b_cs]:
// the strides encode the transposes.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    a_batch: u32,
    b_batch: u32,
    c_batch: u32,
    a_rs: u32,
    a_cs: u32,
    b_rs: u32,
    b_cs: u32,
    alpha: f32,
    beta: f32,
    // Packed path only (see matmul_pack.wgsl): K padded to the k-step, panel
    // counts, packed batch strides and B's offset in the scratch (vec4 units).
    kp: u32,
    m_panels: u32,
    n_panels: u32,
    ap_off: u32,
    ap_batch: u32,
    bp_batch: u32,
    bp_off: u32,
}
