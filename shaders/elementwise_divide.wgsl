// Exact u32 division by a divisor d < 2^23 whose f32 reciprocal the host passes
// in the params (`divide_params`). GPUs (and lavapipe, which scalarises vector
// integer division) divide integers slowly; this is a handful of f32 and integer
// ops. Mirrored and tested exhaustively near the edges in src/kernels/elementwise/divide.rs.

// Quotient of n / d, given inv_d = f32(1 / d).
fn div_exact(n: u32, d: u32, inv_d: f32) -> u32 {
    // Estimate within 768 + 1 of the quotient (three f32 roundings on n < 2^32).
    var q = u32(f32(n) * inv_d);
    // The remainder of the estimate is small: |r| < 2^24, exact in f32 and in i32.
    let r = bitcast<i32>(n - q * d);
    q = bitcast<u32>(bitcast<i32>(q) + i32(floor(f32(r) * inv_d)));
    // Now off by at most one.
    let r2 = bitcast<i32>(n - q * d);
    if (r2 < 0) {
        q -= 1u;
    } else if (r2 >= bitcast<i32>(d)) {
        q += 1u;
    }
    return q;
}
