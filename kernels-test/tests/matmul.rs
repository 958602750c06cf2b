//! Matmul kernels against the CPU reference; CPU backward against finite differences.

use kernels_test::assert_close_f64;
use vdvae::kernels::matmul::{reference, MatmulShape};
use vdvae::kernels::testdata::{finite_difference, weighted_sum, TestRng};

#[test]
fn matmul_matches_reference() {
    kernels_test::assert_family_passes("matmul");
}

/// dA and dB of `loss = Σ w ⊙ C` (as matmuls with transposes) against f64 finite
/// differences, for every transpose combination, batched and with a broadcast operand.
#[test]
fn matmul_backward_matches_finite_differences() {
    let mut rng = TestRng::new(13);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        for (bcast_a, bcast_b) in [(false, false), (true, false), (false, true)] {
            let s = MatmulShape::new(2, 3, 5, 4).transposes(ta, tb);
            let s = s.batch_strides(
                if bcast_a { 0 } else { s.batch_stride_a },
                if bcast_b { 0 } else { s.batch_stride_b },
                s.batch_stride_c,
            );
            let (la, lb, lc) = s.lens();
            let a = rng.vec(la, -1.0, 1.0);
            let b = rng.vec(lb, -1.0, 1.0);
            let w = rng.vec(lc, -1.0, 1.0);
            let alpha = 0.75;
            let forward = |a: &[f32], b: &[f32]| {
                let mut c = vec![0.0; lc];
                reference::matmul(&s, alpha, 0.0, a, b, &mut c);
                c
            };
            let (da, db) = reference::matmul_backward(&s, alpha, &a, &b, &w);
            let fd_a = finite_difference(&a, 1e-3, |a| weighted_sum(&forward(a, &b), &w));
            let fd_b = finite_difference(&b, 1e-3, |b| weighted_sum(&forward(&a, b), &w));
            let what = format!("{} dA", s.label());
            assert_close_f64(&what, &da, &fd_a, 1e-4, 1e-3);
            let what = format!("{} dB", s.label());
            assert_close_f64(&what, &db, &fd_b, 1e-4, 1e-3);
        }
    }
}

/// CPU time of all this process's threads (lavapipe's workers included). On a
/// shared machine wall-clock ratios swing with other load; CPU-time ratios hold.
fn cpu_seconds() -> f64 {
    let mut ns = 0u64;
    for t in std::fs::read_dir("/proc/self/task").unwrap() {
        let f = std::fs::read_to_string(t.unwrap().path().join("schedstat")).unwrap_or_default();
        ns += f.split_whitespace().next().and_then(|x| x.parse().ok()).unwrap_or(0);
    }
    ns as f64 * 1e-9
}

/// Profiling aid (ignored; `MM_SHAPE=b,m,k,n MM_T=ta,tb`): the matmul path and each
/// of its dispatches as GFLOP per CPU-second against the FMA ceiling kernel's.
#[test]
#[ignore]
fn profile() {
    use vdvae::gpu::Dispatch;
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let dims: Vec<usize> = env("MM_SHAPE", "1,1024,1024,1024")
        .split(',')
        .map(|x| x.parse().unwrap())
        .collect();
    let t: Vec<bool> = env("MM_T", "0,0").split(',').map(|x| x == "1").collect();
    let s = MatmulShape::new(dims[0], dims[1], dims[2], dims[3]).transposes(t[0], t[1]);
    let ctx = kernels_test::context();
    let (la, lb, lc) = s.lens();
    let mut rng = TestRng::new(5);
    let (a, b, c) = (
        ctx.upload(&rng.vec(la, -1.0, 1.0)),
        ctx.upload(&rng.vec(lb, -1.0, 1.0)),
        ctx.zeros(lc),
    );
    let m = vdvae::kernels::matmul::matmul(&ctx, &s, 1.0, 0.0, a.view(), b.view(), c.view()).unwrap();
    let sink = ctx.zeros(vdvae::gpu::FMA_SINK_LEN);
    let iters = 4096u32;
    let fd = vdvae::gpu::fma_ceiling_dispatch(&ctx, sink.view(), iters).unwrap();
    let fma_flops = 64.0 * iters as f64 * vdvae::gpu::FMA_SINK_LEN as f64;
    // (wall seconds, cpu seconds) per repetition, best of 3.
    let time = |ds: &[&Dispatch]| {
        let once = ctx.time(ds, 1).unwrap();
        let reps = ((0.5 / once) as usize).clamp(1, 200);
        let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..3 {
            let c0 = cpu_seconds();
            wall = wall.min(ctx.time(ds, reps).unwrap());
            cpu = cpu.min((cpu_seconds() - c0) / reps as f64);
        }
        (wall, cpu)
    };
    let (fw, fc) = time(&[&fd]);
    println!(
        "ceiling: {:.1} GFLOP/s wall, {:.1} GFLOP per CPU-s",
        fma_flops / fw / 1e9,
        fma_flops / fc / 1e9
    );
    let ceiling_per_cpu = fma_flops / fc;
    let mut rows = vec![("whole".to_string(), m.refs())];
    for d in &m.dispatches {
        rows.push((d.kernel.to_string(), vec![d]));
    }
    for (name, ds) in rows {
        let (w, cpu) = time(&ds);
        println!(
            "{name:<16} {:>9.3} ms wall {:>9.3} ms cpu  {:>6.1}% of ceiling per CPU-s (whole product's flops)",
            w * 1e3,
            cpu * 1e3,
            100.0 * s.flops() / cpu / ceiling_per_cpu
        );
    }
}
