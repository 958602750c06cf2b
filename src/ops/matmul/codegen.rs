//! Source of the packed matmul kernel (`shaders/matmul_packed.wgsl`) with its
//! loop body unrolled. `subgroupBroadcast` takes a constant lane, and lavapipe
//! does not unroll loops that index private arrays, so the 32 rows x 8 k-steps
//! of broadcasts and FMAs are written out here instead of by hand.

use std::fmt::Write;
use std::sync::OnceLock;

/// Rows of op(A) per subgroup (lanes x 4 = columns of op(B) per subgroup).
pub const ROWS: usize = 32;
/// k-steps per loop iteration (two vec4 quads of A per row).
pub const K_STEP: usize = 8;

const TEMPLATE: &str = include_str!("../../../shaders/matmul_packed.wgsl");

fn declare() -> String {
    (0..ROWS).fold(String::new(), |mut s, r| {
        let _ = writeln!(s, "    var acc{r} = vec4<f32>(0.0);");
        s
    })
}

/// Loads: `a{q}_{g}` holds row `8g + lane` at k-quad `q`; `b{kk}` holds this
/// lane's 4 columns at k-step `kk`. Then for each row r (accumulator stays in
/// a register across the 8 k-steps): acc_r += broadcast(A[r, kk]) * b_kk.
fn body() -> String {
    let mut s = String::new();
    for q in 0..K_STEP / 4 {
        for g in 0..ROWS / 8 {
            let _ = writeln!(s, "        let a{q}_{g} = packed[ai + {}u];", q * ROWS + g * 8);
        }
    }
    for kk in 0..K_STEP {
        let _ = writeln!(s, "        let b{kk} = packed[bj + {}u];", kk * 8);
    }
    for r in 0..ROWS {
        for kk in 0..K_STEP {
            let (q, comp) = (kk / 4, ["x", "y", "z", "w"][kk % 4]);
            let _ = writeln!(
                s,
                "        acc{r} = fma(vec4<f32>(subgroupBroadcast(a{q}_{}.{comp}, {}u)), b{kk}, acc{r});",
                r / 8,
                r % 8
            );
        }
    }
    s
}

fn store() -> String {
    (0..ROWS).fold(String::new(), |mut s, r| {
        let _ = writeln!(s, "    store_row(base, row0 + {r}u, col, acc{r});");
        s
    })
}

/// The complete WGSL of the packed kernel (without the shared params prelude).
pub fn packed_source() -> &'static str {
    static SRC: OnceLock<String> = OnceLock::new();
    SRC.get_or_init(|| {
        TEMPLATE
            .replace("//@DECLARE\n", &declare())
            .replace("//@BODY\n", &body())
            .replace("//@STORE\n", &store())
    })
}
