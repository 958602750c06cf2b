// Counter-based RNG shared by every kernel that draws noise: Philox4x32-10
// (Salmon et al. 2011), keyed by the 64-bit seed, counter (element, tensor,
// step lo, step hi). src/kernels/rng.rs computes the same bits on the CPU.

// 32x32 -> 64-bit product as (lo, hi), from 16-bit halves (WGSL has no u64).
fn philox_mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xFFFFu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xFFFFu;
    let b_hi = b >> 16u;
    let lolo = a_lo * b_lo;
    let lohi = a_lo * b_hi;
    let hilo = a_hi * b_lo;
    let hihi = a_hi * b_hi;
    let cross = (lolo >> 16u) + (lohi & 0xFFFFu) + (hilo & 0xFFFFu);
    let hi = hihi + (lohi >> 16u) + (hilo >> 16u) + (cross >> 16u);
    return vec2<u32>(a * b, hi);
}

fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var r = 0u; r < 10u; r++) {
        let p0 = philox_mulhilo(0xD2511F53u, c.x);
        let p1 = philox_mulhilo(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.y ^ c.y ^ k.x, p1.x, p0.y ^ c.w ^ k.y, p0.x);
        k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    }
    return c;
}

// Noise stream position: seed (lo, hi), step (lo, hi), tensor id, and an offset
// added to every element index (a dispatch over part of a tensor). Padded to
// 32 bytes so it can sit first in any uniform params struct (uniform layout
// rounds struct members up to 16 bytes).
struct RngKey {
    seed_lo: u32,
    seed_hi: u32,
    step_lo: u32,
    step_hi: u32,
    tensor: u32,
    offset: u32,
    pad1: u32,
    pad2: u32,
}

fn rng_bits(key: RngKey, element: u32) -> vec4<u32> {
    return philox4x32_10(vec4<u32>(element + key.offset, key.tensor, key.step_lo, key.step_hi), vec2<u32>(key.seed_lo, key.seed_hi));
}

// Uniform in (0, 1): the top 23 bits, centred in their bin, so never 0 or 1
// (with 24 bits the top bin would round to 1.0 in f32).
fn rng_uniform_from_bits(b: u32) -> f32 {
    return (f32(b >> 9u) + 0.5) * 1.1920928955078125e-7;
}

// Natural log for u in (0, 1], written out so every adapter rounds alike
// (built-in log precision varies by driver): u = m * 2^e, m in [sqrt(1/2), sqrt(2)),
// ln m = 2 atanh(s), s = (m - 1) / (m + 1).
fn rng_ln(u: f32) -> f32 {
    let fe = frexp(u);
    var m = fe.fract;
    var e = f32(fe.exp);
    if (m < 0.70710678) {
        m = m * 2.0;
        e = e - 1.0;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series = 1.0 + s2 * (0.33333333 + s2 * (0.2 + s2 * (0.14285714 + s2 * 0.11111111)));
    return e * 0.69314718 + 2.0 * s * series;
}

// cos(2 pi u) = -sin(2 pi c), c = |u - round(u)| - 1/4 in [-1/4, 1/4]; Taylor sin to x^13.
fn rng_cos_2pi(u: f32) -> f32 {
    let c = abs(u - round(u)) - 0.25;
    let x = 6.2831853 * c;
    let x2 = x * x;
    let sin_x = x * (1.0 + x2 * (-1.6666667e-1 + x2 * (8.3333333e-3 + x2 * (-1.9841270e-4
        + x2 * (2.7557319e-6 + x2 * (-2.5052108e-8 + x2 * 1.6059044e-10))))));
    return -sin_x;
}

// Standard normal by Box-Muller on the first two words.
fn rng_normal_from_bits(bits: vec4<u32>) -> f32 {
    let u1 = rng_uniform_from_bits(bits.x);
    let u2 = rng_uniform_from_bits(bits.y);
    return sqrt(-2.0 * rng_ln(u1)) * rng_cos_2pi(u2);
}
