//! Shared driver for the kernel tests: every family's table of shapes on the
//! real adapter (lavapipe on machines without a GPU) against the CPU reference.
//! A machine with no adapter fails these tests; they never skip.

use vdvae::check::{format_table, CaseSize, Checker};
use vdvae::gpu::GpuContext;
use vdvae::kernels::run_checks;

/// The adapter the tests run on (honours `VDVAE_ADAPTER`). Panics with the fix
/// when there is none: a GPU test must not pass without a GPU.
pub fn context() -> GpuContext {
    match GpuContext::from_env() {
        Ok(ctx) => ctx,
        Err(e) => panic!("kernel tests need a GPU adapter: {e}"),
    }
}

/// Runs one family's full table of shapes and fails with the table (worst
/// element of each failing kernel) if any kernel is out of tolerance.
pub fn assert_family_passes(family: &str) {
    let ctx = context();
    let mut checker = Checker::new(&ctx, CaseSize::Full);
    run_checks(&mut checker, Some(family)).unwrap_or_else(|e| panic!("{family}: {e}"));
    let table = format_table(&checker.rows);
    println!("adapter {}\n{table}", ctx.adapter.name);
    assert!(!checker.rows.is_empty(), "{family}: no kernel was checked");
    assert_eq!(checker.failures(), 0, "{family}: kernels out of tolerance:\n{table}");
}

/// Asserts a CPU backward against f64 finite differences.
pub fn assert_close_f64(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= atol + rtol * w.abs(),
            "{what}: element {i}: analytic {g:.9e} vs finite difference {w:.9e} (|diff| {err:.3e}, atol {atol:e}, rtol {rtol:e})"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn every_family_has_its_test_file() {
        for family in vdvae::kernels::FAMILIES {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests")
                .join(format!("{}.rs", family.name));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("family `{}`: {}: {e}", family.name, path.display()));
            let call = format!("assert_family_passes(\"{}\")", family.name);
            assert!(text.contains(&call), "{} does not call {call}", path.display());
        }
    }
}
