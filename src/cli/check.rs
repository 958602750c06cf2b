//! `vdvae check`: every kernel on the adapter against its CPU reference.

use std::process::ExitCode;

use vdvae::check::{format_table, CaseSize, Checker};
use vdvae::gpu::{AdapterChoice, GpuContext};
use vdvae::kernels::run_checks;

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Only this kernel family (e.g. matmul, conv2d, rng)
    #[arg(long)]
    kernel: Option<String>,
    /// Also run the large shapes (the biggest tensor one binding holds); slower
    #[arg(long)]
    full: bool,
    /// Corrupt one element of every GPU result, to prove the check catches it
    #[arg(long, hide = true)]
    perturb: bool,
}

/// Fails the process (after the table) when any kernel differs from its reference.
pub fn run(choice: &AdapterChoice, a: &CheckArgs) -> vdvae::Result<ExitCode> {
    let ctx = GpuContext::new(choice)?;
    println!("adapter: [{}] {}", ctx.adapter_index, ctx.adapter.name);
    let mut checker = Checker::new(&ctx, if a.full { CaseSize::Full } else { CaseSize::Quick });
    checker.perturb = a.perturb;
    run_checks(&mut checker, a.kernel.as_deref())?;
    print!("{}", format_table(&checker.rows));
    for (family, kernels, why) in &checker.skipped {
        println!("not checked: {family} {kernels}: {why}");
    }
    let failed = checker.failures();
    println!("{} passed, {} failed", checker.rows.len() - failed, failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
