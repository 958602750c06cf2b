// Register-only FMA loop: the adapter's arithmetic ceiling. Eight vec4 chains
// keep every FMA pipe busy; nothing touches memory until the end.
// - Each chain adds its neighbour, so no compiler can fold repeated FMAs by a
//   constant into fewer (a plain `a = fma(a, m, c)` chain, written out, was
//   folded by lavapipe into a figure twice the real one).
// - The inner loop amortises the runtime loop's own cost: on lavapipe a loop
//   whose body is 8 vec4 FMAs measures about a fifth under this kernel.

struct Params {
    iters: u32,
    seed: f32,
}

@group(0) @binding(0) var<storage, read_write> sink: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

// FMA blocks per iteration of the runtime loop (`UNROLL` in ceiling.rs).
const UNROLL: u32 = 4u;

@compute @workgroup_size(WG_SMALL)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = p.seed + f32(gid.x) * 1e-7;
    var a0 = vec4<f32>(s, s + 0.1, s + 0.2, s + 0.3);
    var a1 = a0 + 1.0;
    var a2 = a0 + 2.0;
    var a3 = a0 + 3.0;
    var a4 = a0 + 4.0;
    var a5 = a0 + 5.0;
    var a6 = a0 + 6.0;
    var a7 = a0 + 7.0;
    let m = vec4<f32>(-0.5);
    for (var i = 0u; i < p.iters; i++) {
        for (var u = 0u; u < UNROLL; u++) {
            a0 = fma(a0, m, a1);
            a1 = fma(a1, m, a2);
            a2 = fma(a2, m, a3);
            a3 = fma(a3, m, a4);
            a4 = fma(a4, m, a5);
            a5 = fma(a5, m, a6);
            a6 = fma(a6, m, a7);
            a7 = fma(a7, m, a0);
        }
    }
    let t = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
    sink[gid.x] = t.x + t.y + t.z + t.w;
}
