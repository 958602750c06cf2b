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
