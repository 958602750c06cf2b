// Shared parts of the flow family: its uniform and the IAF gate. Included
// before the family's kernel files.

// Same layout as `Params` in src/kernels/flow/mod.rs.
struct Params {
    // Elements of z ([N, H, W, zdim]); of `a` for flow_mask.
    n: u32,
    // Latent channels: m, s and (mu, logsig) are packed [.., 2 * zdim].
    zdim: u32,
    // 1: NVAE's volume-preserving cell z - m (no gate, log det 0).
    shift_only: u32,
    // 1 when dkl is one value broadcast over every element.
    dkl_scalar: u32,
    // Channels of the prior tensor whose first 2 * zdim are (mu_p, logsig_p).
    p_stride: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

// Element i of z at pixel i / zdim, channel i % zdim: its place in a packed
// [.., 2 * zdim] tensor (the first half; the second half is zdim further).
fn packed_index(i: u32) -> u32 {
    let c = i % p.zdim;
    return (i - c) * 2u + c;
}

// The same in the prior tensor, p_stride channels per pixel.
fn prior_index(i: u32) -> u32 {
    let c = i % p.zdim;
    return (i / p.zdim) * p.p_stride + c;
}

// log sigmoid(s) = -softplus(-s), without overflow for large |s|.
fn log_sigmoid(s: f32) -> f32 {
    return min(s, 0.0) - log(1.0 + exp(-abs(s)));
}
