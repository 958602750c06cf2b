//! Source of the packed matmul kernel (`shaders/matmul_packed.wgsl`) with its
//! loop body unrolled. `subgroupBroadcast` takes a constant lane, and lavapipe
//! does not unroll loops that index private arrays, so the 32 rows x 8 k-steps
//! of broadcasts and FMAs are written out here instead of by hand.

use std::fmt::Write;

/// Rows of op(A) per subgroup (lanes x 4 = columns of op(B) per subgroup).
pub const ROWS: usize = 32;
/// k-steps per loop iteration (two vec4 quads of A per row).
pub const K_STEP: usize = 8;

const TEMPLATE: &str = include_str!("../../../shaders/matmul_packed.wgsl");

/// Where the kernel reads op(A) from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ASource {
    /// Panels written by `pack_a` into the scratch (`packed`).
    Packed,
    /// Row-major A itself, bound as `a4` (needs K % 8 == 0): rows past M are
    /// clamped to the last row (computed, never stored).
    Direct,
}

fn declare() -> String {
    (0..ROWS).fold(String::new(), |mut s, r| {
        let _ = writeln!(s, "    var acc{r} = vec4<f32>(0.0);");
        s
    })
}

/// Loads: `a{q}_{g}` holds row `8g + lane` at k-quad `q`; `b{kk}` holds this
/// lane's 4 columns at k-step `kk`. Then for each row r (accumulator stays in
/// a register across the 8 k-steps): acc_r += broadcast(A[r, kk]) * b_kk.
fn body(a: ASource) -> String {
    let mut s = String::new();
    for q in 0..K_STEP / 4 {
        for g in 0..ROWS / 8 {
            let _ = match a {
                ASource::Packed => writeln!(s, "        let a{q}_{g} = packed[ai + {}u];", q * ROWS + g * 8),
                ASource::Direct => writeln!(s, "        let a{q}_{g} = a4[ai{g} + {q}u];"),
            };
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

/// Binding, start and per-iteration step of the A reads.
fn a_parts(a: ASource) -> (String, String, String) {
    match a {
        ASource::Packed => (
            String::new(),
            "    var ai = p.ap_off + bi * p.ap_batch + pm * p.kp * 8u + lane;\n".into(),
            format!("        ai += {}u;\n", ROWS * K_STEP / 4),
        ),
        ASource::Direct => {
            let binding = "@group(0) @binding(3) var<storage, read> a4: array<vec4<f32>>;\n".to_string();
            let (mut setup, mut step) = (String::new(), String::new());
            for g in 0..ROWS / 8 {
                let row = format!("min(pm * {ROWS}u + {}u + lane, p.m - 1u)", g * 8);
                let _ = writeln!(setup, "    var ai{g} = (bi * p.a_batch + {row} * p.k) / 4u;");
                let _ = writeln!(step, "        ai{g} += {}u;", K_STEP / 4);
            }
            (binding, setup, step)
        }
    }
}

fn generate(a: ASource) -> String {
    let (binding, setup, step) = a_parts(a);
    TEMPLATE
        .replace("//@A_BINDING\n", &binding)
        .replace("//@A_SETUP\n", &setup)
        .replace("//@A_STEP\n", &step)
        .replace("//@DECLARE\n", &declare())
        .replace("//@BODY\n", &body(a))
        .replace("//@STORE\n", &store())
}

/// The complete WGSL of the packed kernel (without the shared params prelude).
pub fn packed_source(a: ASource) -> String {
    generate(a)
}
