//! `cargo bench --bench kernels [-- FILTER]`: every kernel's time, GFLOP/s,
//! GB/s and ratio to the adapter's FMA ceiling, measured right before and after
//! each case in this same run; the table, then the same figures as one JSON object.

use vdvae::bench::{run_case, BenchResult};
use vdvae::gpu::{measure_fma_ceiling, GpuContext};
use vdvae::ops::BENCHES;

fn main() {
    // cargo passes `--bench`; anything else is a family or case-name filter.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let ctx = match GpuContext::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let ceiling = measure_fma_ceiling(&ctx, 1.0).expect("FMA ceiling kernel");
    println!("adapter: {}", ctx.adapter.name);
    println!("FMA ceiling: {:.1} GFLOP/s", ceiling.gflops);
    println!(
        "{:<34} {:<34} {:>10} {:>9} {:>8} {:>9} {:>8}",
        "kernel", "shapes", "ms", "GFLOP/s", "GB/s", "ceil GF/s", "ratio"
    );
    let mut results: Vec<BenchResult> = Vec::new();
    for (family, cases) in BENCHES {
        let cases = cases(&ctx).unwrap_or_else(|e| panic!("{family} bench cases: {e}"));
        for case in cases {
            let wanted = filter
                .as_ref()
                .is_none_or(|f| family.contains(f.as_str()) || case.name.contains(f.as_str()));
            if !wanted {
                continue;
            }
            let r = run_case(&ctx, &case, 2.0).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            println!(
                "{:<34} {:<34} {:>10.3} {:>9.2} {:>8.2} {:>9.1} {:>7.1}%",
                r.name,
                r.shapes,
                r.seconds * 1e3,
                r.gflops,
                r.gbytes_per_s,
                r.ceiling_gflops,
                r.ceiling_ratio * 100.0
            );
            results.push(r);
        }
    }
    let json = serde_json::json!({
        "adapter": ctx.adapter.name,
        "fma_ceiling_gflops": ceiling.gflops,
        "kernels": results,
    });
    println!("{json}");
}
