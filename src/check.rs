//! `vdvae check`: every kernel on the chosen adapter against its CPU reference.
//!
//! Each kernel family registers (in `crate::kernels::FAMILIES`) a `check`
//! function that runs its table of shapes and hands GPU and reference results
//! to [`Checker::compare`], which records the max abs / rel error and the worst
//! element (llm.c's `validate_result`).
//!
//! This module is the harness only; the registry of families that `vdvae
//! check` runs lives with the kernels (`crate::kernels::FAMILIES`, run by
//! `crate::kernels::run_checks`), so the dependency goes one way: kernels use
//! the harness.

use crate::gpu::GpuContext;

/// `|gpu - ref| <= atol + rtol * |ref|`, stated per kernel.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub atol: f64,
    pub rtol: f64,
}

impl Tolerance {
    pub const fn new(atol: f64, rtol: f64) -> Tolerance {
        Tolerance { atol, rtol }
    }
    /// Bit-for-bit equality.
    pub const EXACT: Tolerance = Tolerance::new(0.0, 0.0);
}

/// The element that came closest to (or furthest past) its tolerance.
#[derive(Clone, Debug)]
pub struct Worst {
    pub index: usize,
    pub got: f64,
    pub want: f64,
}

#[derive(Clone, Debug)]
pub struct CheckRow {
    pub family: &'static str,
    pub kernel: String,
    pub shapes: String,
    pub max_abs: f64,
    pub max_rel: f64,
    pub tol: Tolerance,
    pub worst: Option<Worst>,
    pub pass: bool,
}

/// How big the table of shapes is: `Quick` for `vdvae check`, `Full` adds the
/// large cases (the biggest tensor that fits one binding) for kernels-test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaseSize {
    Quick,
    Full,
}

pub struct Checker<'a> {
    pub ctx: &'a GpuContext,
    pub size: CaseSize,
    /// Deliberately corrupt one element of every GPU result (proves the check can fail).
    pub perturb: bool,
    pub rows: Vec<CheckRow>,
    /// Kernels this adapter cannot run, with why: (family, kernels, reason).
    pub skipped: Vec<(&'static str, String, String)>,
}

impl<'a> Checker<'a> {
    pub fn new(ctx: &'a GpuContext, size: CaseSize) -> Checker<'a> {
        Checker {
            ctx,
            size,
            perturb: false,
            rows: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// Records that `kernels` of `family` were not checked on this adapter, and why.
    pub fn skip(&mut self, family: &'static str, kernels: &str, why: String) {
        self.skipped.push((family, kernels.to_string(), why));
    }

    /// The adapter's subgroup sizes, for skip reasons.
    pub fn subgroups(&self) -> String {
        let (lo, hi) = (self.ctx.subgroup_min_size, self.ctx.subgroup_max_size);
        if lo == hi {
            format!("{lo} lanes")
        } else {
            format!("{lo} to {hi} lanes")
        }
    }

    pub fn full(&self) -> bool {
        self.size == CaseSize::Full
    }

    /// Compares a GPU result with its reference and records a row.
    pub fn compare(
        &mut self,
        family: &'static str,
        kernel: &str,
        shapes: &str,
        got: &[f32],
        want: &[f32],
        tol: Tolerance,
    ) {
        let mut got = got.to_vec();
        if self.perturb && !got.is_empty() {
            let i = got.len() / 2;
            got[i] += 1e-2 * (1.0 + got[i].abs());
        }
        let row = compare_slices(family, kernel, shapes, &got, want, tol);
        self.rows.push(row);
    }

    /// Same for integer results (RNG bits, sample indices): exact match required.
    pub fn compare_u32(&mut self, family: &'static str, kernel: &str, shapes: &str, got: &[u32], want: &[u32]) {
        let to_f = |v: &[u32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        let mut g = to_f(got);
        if self.perturb && !g.is_empty() {
            let i = g.len() / 2;
            g[i] += 1.0;
        }
        self.rows
            .push(compare_f64(family, kernel, shapes, &g, &to_f(want), Tolerance::EXACT));
    }

    pub fn failures(&self) -> usize {
        self.rows.iter().filter(|r| !r.pass).count()
    }
}

pub fn compare_slices(
    family: &'static str,
    kernel: &str,
    shapes: &str,
    got: &[f32],
    want: &[f32],
    tol: Tolerance,
) -> CheckRow {
    let g: Vec<f64> = got.iter().map(|&x| x as f64).collect();
    let w: Vec<f64> = want.iter().map(|&x| x as f64).collect();
    compare_f64(family, kernel, shapes, &g, &w, tol)
}

fn compare_f64(
    family: &'static str,
    kernel: &str,
    shapes: &str,
    got: &[f64],
    want: &[f64],
    tol: Tolerance,
) -> CheckRow {
    let mut row = CheckRow {
        family,
        kernel: kernel.to_string(),
        shapes: shapes.to_string(),
        max_abs: 0.0,
        max_rel: 0.0,
        tol,
        worst: None,
        pass: got.len() == want.len(),
    };
    if !row.pass {
        row.shapes = format!("{shapes} (length {} != reference {})", got.len(), want.len());
        row.max_abs = f64::INFINITY;
        return row;
    }
    // The worst element is the one with the largest error relative to its allowance.
    let mut worst_excess = -1.0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let abs = (g - w).abs();
        let bad = !(abs.is_finite() || g == w || g.is_nan() && w.is_nan());
        let abs = if bad {
            f64::INFINITY
        } else if abs.is_nan() {
            0.0
        } else {
            abs
        };
        let rel = if w != 0.0 {
            abs / w.abs()
        } else if abs == 0.0 {
            0.0
        } else {
            f64::INFINITY
        };
        row.max_abs = row.max_abs.max(abs);
        row.max_rel = row.max_rel.max(rel);
        let allowance = tol.atol + tol.rtol * w.abs();
        let excess = if allowance > 0.0 {
            abs / allowance
        } else if abs == 0.0 {
            0.0
        } else {
            f64::INFINITY
        };
        if excess > worst_excess {
            worst_excess = excess;
            row.worst = Some(Worst {
                index: i,
                got: g,
                want: w,
            });
        }
        if abs > allowance {
            row.pass = false;
        }
    }
    row
}

/// The table `vdvae check` prints.
pub fn format_table(rows: &[CheckRow]) -> String {
    let mut out = format!(
        "{:<12} {:<28} {:<34} {:>11} {:>11}  {}\n",
        "family", "kernel", "shapes", "max abs", "max rel", "result"
    );
    for r in rows {
        out += &format!(
            "{:<12} {:<28} {:<34} {:>11.3e} {:>11.3e}  {}\n",
            r.family,
            r.kernel,
            r.shapes,
            r.max_abs,
            r.max_rel,
            if r.pass { "PASS" } else { "FAIL" }
        );
        if !r.pass {
            if let Some(w) = &r.worst {
                out += &format!(
                    "    worst element [{}]: gpu {:.9e} ref {:.9e} (tolerance atol {:e} + rtol {:e}·|ref|)\n",
                    w.index, w.got, w.want, r.tol.atol, r.tol.rtol
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_tolerance_passes_and_reports_errors() {
        let r = compare_slices("f", "k", "s", &[1.0, 2.0001], &[1.0, 2.0], Tolerance::new(0.0, 1e-4));
        assert!(r.pass);
        assert!((r.max_abs - 1e-4).abs() < 1e-6 && r.max_rel > 0.0);
    }

    #[test]
    fn the_worst_element_is_reported_on_failure() {
        let r = compare_slices(
            "f",
            "k",
            "s",
            &[1.0, 5.0, 3.1],
            &[1.0, 2.0, 3.0],
            Tolerance::new(1e-3, 0.0),
        );
        assert!(!r.pass);
        assert_eq!(r.worst.as_ref().unwrap().index, 1);
        assert!(format_table(&[r]).contains("worst element [1]"));
    }

    #[test]
    fn nan_and_length_mismatch_fail() {
        assert!(!compare_slices("f", "k", "s", &[f32::NAN], &[1.0], Tolerance::new(1.0, 1.0)).pass);
        assert!(compare_slices("f", "k", "s", &[f32::NAN], &[f32::NAN], Tolerance::EXACT).pass);
        assert!(!compare_slices("f", "k", "s", &[1.0], &[1.0, 2.0], Tolerance::new(1.0, 1.0)).pass);
        assert!(!compare_slices("f", "k", "s", &[f32::INFINITY], &[1.0], Tolerance::new(1.0, 1.0)).pass);
    }
}
