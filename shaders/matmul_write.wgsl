// Shared by the kernels that write C; included after their own file.
// Writes alpha*acc + beta*C[ci] to C[ci]; with beta == 0 the old C is not read
// (it may hold NaN). Every kernel declares C as `c` at its own binding.
fn write_c(ci: u32, acc: f32) {
    if (p.beta == 0.0) {
        c[ci] = p.alpha * acc;
    } else {
        c[ci] = fma(p.beta, c[ci], p.alpha * acc);
    }
}

// Up to 4 consecutive outputs of row i of batch bi from column j0, skipping
// those past the edges.
fn write_row4(bi: u32, i: u32, j0: u32, v: vec4<f32>) {
    if (i >= p.m) { return; }
    let row = bi * p.c_batch + i * p.n;
    for (var t = 0u; t < 4u; t++) {
        if (j0 + t < p.n) {
            write_c(row + j0 + t, v[t]);
        }
    }
}
