// conv2d_pad_rows.wgsl's source read a pair of channels per load (an even
// channel count): half the loads of conv2d_pad_rows_channels.wgsl.
alias Src = vec2<f32>;
fn quad(r: u32, c: u32) -> vec4<f32> {
    let b = (r * p.channels + c) / 2u;
    var q = vec4<f32>(src[b], 0.0, 0.0);
    if (c + 2u < p.channels) { q = vec4<f32>(q.xy, src[b + 1u]); }
    return q;
}
