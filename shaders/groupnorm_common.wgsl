// Shared by the groupnorm kernels (NHWC x of shape [N, HW, C], G groups of
// Cg = C / G channels). Included after an `alias Elem = f32 | vec4<f32>;` line:
// with vec4 (Cg divisible by 4) `channels` counts groups of 4 channels, which
// never straddle two norm groups. Pass-1 partials are [2][N][S][C] (f32 layout
// the same either way): invocation t = (n * S + s) * C + c covers rows
// [s * R, (s + 1) * R) of image n, channel c (S = splits, R = rows_per_split).

struct Params {
    images: u32,
    hw: u32,
    channels: u32,     // in Elems
    channels_f32: u32, // in f32
    groups: u32,
    group_size: u32,   // Cg, in f32 channels
    splits: u32,
    rows_per_split: u32,
    second: u32,       // offset of the second half of the partials, in Elems
    eps: f32,
    inv_channels: f32, // 1 / channels, for div_exact
    coeffs_at: u32,    // offset of the coefficients in the scratch (pass-2 kernels), in f32
}

// Rows [first, end) of split s.
fn split_rows(s: u32, p: Params) -> vec2<u32> {
    let first = s * p.rows_per_split;
    return vec2<u32>(first, min(first + p.rows_per_split, p.hw));
}

// Where group ng (= image n · groups + g) of one-pixel images lies, in Elems
// (groupnorm_pixel_*.wgsl).
struct PixelGroup {
    first: u32, // its first channel
    base: u32,  // its first element
    len: u32,   // its channels
}

fn pixel_group(ng: u32, p: Params) -> PixelGroup {
    let len = p.channels / p.groups;
    let first = (ng % p.groups) * len;
    return PixelGroup(first, (ng / p.groups) * p.channels + first, len);
}
