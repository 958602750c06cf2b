// conv2d_pad_rows.wgsl's source read a channel per load (any channel count).
// The first load is always in the row (c < channels); the loads past it are
// branched around, not masked, so a subgroup whose lanes all end there (rows
// of at most 4 channels) skips them.
alias Src = f32;
fn quad(r: u32, c: u32) -> vec4<f32> {
    let b = r * p.channels + c;
    var q = vec4<f32>(src[b], 0.0, 0.0, 0.0);
    if (c + 1u < p.channels) { q.y = src[b + 1u]; }
    if (c + 2u < p.channels) { q.z = src[b + 2u]; }
    if (c + 3u < p.channels) { q.w = src[b + 3u]; }
    return q;
}
