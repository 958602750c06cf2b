//! `cargo bench --bench kernels [-- FILTER]`: every kernel's time, GFLOP/s,
//! GB/s and ratio to the adapter's FMA ceiling, all measured in this same run.
//! `cargo bench --bench kernels -- sweep [--json]`: the conv shape sweep (see
//! `sweep/mod.rs`).
//!
//! On a shared machine the speed drifts, so the ceiling is measured before and
//! after every case and each ratio divides by the highest ceiling seen in the
//! whole run: a case timed in a fast moment is never flattered by a ceiling
//! taken in a slow one. The table, then the same figures as one JSON object.

use vdvae::bench::{run_case, BenchResult};
use vdvae::gpu::{measure_fma_ceiling, GpuContext};
use vdvae::kernels::FAMILIES;

mod sweep;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().is_some_and(|a| a == "sweep") {
        return sweep::run(&args[1..]);
    }
    // cargo passes `--bench`; anything else is a family or case-name filter.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let ctx = match GpuContext::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let mut ceiling = measure_fma_ceiling(&ctx, 1.0).expect("FMA ceiling kernel").gflops;
    println!("adapter: {}", ctx.adapter.name);
    let mut results: Vec<BenchResult> = Vec::new();
    for (family, cases) in FAMILIES.iter().filter_map(|f| Some((f.name, f.bench?))) {
        let cases = cases(&ctx).unwrap_or_else(|e| panic!("{family} bench cases: {e}"));
        for case in cases {
            let wanted = filter
                .as_ref()
                .is_none_or(|f| family.contains(f.as_str()) || case.name.contains(f.as_str()));
            if !wanted {
                continue;
            }
            let r = run_case(&ctx, &case, 2.0).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            eprintln!("  {} {}: {:.3} ms", r.name, r.shapes, r.seconds * 1e3);
            ceiling = ceiling.max(r.ceiling_gflops);
            results.push(r);
        }
    }
    for r in &mut results {
        r.ceiling_gflops = ceiling;
        r.ceiling_ratio = r.gflops / ceiling;
    }
    println!("FMA ceiling (highest measured in this run): {ceiling:.1} GFLOP/s");
    println!(
        "{:<34} {:<36} {:>10} {:>9} {:>8} {:>8}",
        "kernel", "shapes", "ms", "GFLOP/s", "GB/s", "ceiling"
    );
    for r in &results {
        println!(
            "{:<34} {:<36} {:>10.3} {:>9.2} {:>8.2} {:>7.1}%",
            r.name,
            r.shapes,
            r.seconds * 1e3,
            r.gflops,
            r.gbytes_per_s,
            r.ceiling_ratio * 100.0
        );
    }
    let json = serde_json::json!({
        "adapter": ctx.adapter.name,
        "fma_ceiling_gflops": ceiling,
        "kernels": results,
    });
    println!("{json}");
}
