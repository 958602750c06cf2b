//! `cargo bench --bench kernels -- sweep [--json] [--k K] [--pass forward|dx|dw]
//! [--hw N] [--cin C] [--cout C] [--budget SECONDS]`: every conv pass over a grid of
//! shapes (Cin, Cout in `SWEEP_CHANNELS`, H = W in `SWEEP_SIZES`, batch 16,
//! k = 1 and 3), each against its twin with Cin and Cout rounded up to a
//! multiple of 8. A shape off the kernels' channel granularity should cost no
//! more than its twin, which does at least as much work: a ratio above 1.25 is
//! a cliff. A table as the shapes are timed, a summary, then with `--json` one
//! JSON object.

use std::collections::HashMap;

use vdvae::bench::{time_dispatches, BenchCase};
use vdvae::gpu::{measure_fma_ceiling, GpuContext};
use vdvae::kernels::conv2d::sweep::{pass_case, sweep_shape, twin, SWEEP_CHANNELS, SWEEP_SIZES};
use vdvae::kernels::conv2d::{Conv2dShape, ConvPass};

/// The ratio to the twin above which a shape is a cliff.
const CLIFF: f64 = 1.25;

#[derive(serde::Serialize)]
struct Row {
    k: usize,
    pass: &'static str,
    hw: usize,
    cin: usize,
    cout: usize,
    ms: f64,
    gflops: f64,
    twin_cin: usize,
    twin_cout: usize,
    twin_ms: f64,
    /// ms / twin_ms (1 when the shape is its own twin).
    ratio: f64,
}

struct Filters {
    k: Option<usize>,
    pass: Option<String>,
    hw: Option<usize>,
    cin: Option<usize>,
    cout: Option<usize>,
}

fn value<T: std::str::FromStr>(args: &[String], flag: &str) -> Option<T> {
    let at = args.iter().position(|a| a == flag)?;
    let v = args
        .get(at + 1)
        .unwrap_or_else(|| die(&format!("{flag} needs a value")));
    Some(v.parse().unwrap_or_else(|_| die(&format!("{flag}: cannot read {v:?}"))))
}

fn die(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2)
}

/// Tries per row, alternating between the shape and its twin: the machine may
/// be shared, and the best of several tries interleaved this way keeps a
/// burst of load from landing on one side of the ratio only.
const TRIES: usize = 4;

/// A pass of a sweep shape, keyed by (k, hw, cin, cout, pass).
type Key = (usize, usize, usize, usize, ConvPass);

/// Each shape's bench case (built and compiled once per run) and its best
/// time so far (a twin is timed again beside each shape it is the twin of).
#[derive(Default)]
struct Timings {
    cases: HashMap<Key, BenchCase>,
    best: HashMap<Key, f64>,
}

impl Timings {
    /// One more try of a pass of a shape; its best time so far and its FLOPs.
    fn time(&mut self, ctx: &GpuContext, s: Conv2dShape, p: ConvPass, budget: f64) -> (f64, f64) {
        let key = (s.k, s.h, s.cin, s.cout, p);
        let case = self
            .cases
            .entry(key)
            .or_insert_with(|| pass_case(ctx, &s, p).unwrap_or_else(|e| die(&format!("{} {s:?}: {e}", p.name()))));
        let seconds = time_dispatches(ctx, &case.dispatches, budget, 1).unwrap_or_else(|e| die(&e.to_string()));
        let best = self.best.entry(key).or_insert(f64::INFINITY);
        *best = best.min(seconds);
        (*best, case.flops)
    }

    /// The best times of a shape and its twin over [`TRIES`] alternating tries, and the shape's FLOPs.
    fn pair(&mut self, ctx: &GpuContext, s: Conv2dShape, t: Conv2dShape, p: ConvPass, budget: f64) -> (f64, f64, f64) {
        let mut out = (0.0, 0.0, 0.0);
        for _ in 0..TRIES {
            let (seconds, flops) = self.time(ctx, s, p, budget);
            let twin_seconds = if t == s {
                seconds
            } else {
                self.time(ctx, t, p, budget).0
            };
            out = (seconds, twin_seconds, flops);
        }
        out
    }
}

pub fn run(args: &[String]) {
    let json = args.iter().any(|a| a == "--json");
    let budget: f64 = value(args, "--budget").unwrap_or(0.05);
    let f = Filters {
        k: value(args, "--k"),
        pass: value(args, "--pass"),
        hw: value(args, "--hw"),
        cin: value(args, "--cin"),
        cout: value(args, "--cout"),
    };
    if let Some(p) = &f.pass {
        if !ConvPass::ALL.iter().any(|q| q.name() == p) {
            die(&format!("--pass {p:?}: the passes are forward, dx and dw"));
        }
    }
    let ctx = GpuContext::from_env().unwrap_or_else(|e| die(&e.to_string()));
    let ceiling = measure_fma_ceiling(&ctx, 1.0)
        .unwrap_or_else(|e| die(&e.to_string()))
        .gflops;
    println!("adapter: {}; FMA ceiling {ceiling:.1} GFLOP/s", ctx.adapter.name);
    println!(
        "{:>2} {:<8} {:>3} {:>4} {:>5} {:>10} {:>8} {:>11} {:>10} {:>6}",
        "k", "pass", "hw", "cin", "cout", "ms", "GFLOP/s", "twin", "twin ms", "ratio"
    );
    let mut timings = Timings::default();
    let mut rows = Vec::new();
    for k in [1, 3].into_iter().filter(|&k| f.k.is_none_or(|x| x == k)) {
        for pass in ConvPass::ALL
            .into_iter()
            .filter(|p| f.pass.as_deref().is_none_or(|x| x == p.name()))
        {
            for hw in SWEEP_SIZES.into_iter().filter(|&h| f.hw.is_none_or(|x| x == h)) {
                // A size's shapes share no twin with another size's: free their buffers.
                timings.cases.clear();
                for cin in SWEEP_CHANNELS.into_iter().filter(|&c| f.cin.is_none_or(|x| x == c)) {
                    for cout in SWEEP_CHANNELS.into_iter().filter(|&c| f.cout.is_none_or(|x| x == c)) {
                        let s = sweep_shape(k, hw, cin, cout);
                        let t = twin(&s);
                        let (seconds, twin_seconds, flops) = timings.pair(&ctx, s, t, pass, budget);
                        let row = Row {
                            k,
                            pass: pass.name(),
                            hw,
                            cin,
                            cout,
                            ms: seconds * 1e3,
                            gflops: flops / seconds / 1e9,
                            twin_cin: t.cin,
                            twin_cout: t.cout,
                            twin_ms: twin_seconds * 1e3,
                            ratio: seconds / twin_seconds,
                        };
                        let flag = if row.ratio > CLIFF { "  <- cliff" } else { "" };
                        println!(
                            "{:>2} {:<8} {:>3} {:>4} {:>5} {:>10.4} {:>8.2} {:>11} {:>10.4} {:>6.2}{flag}",
                            k,
                            row.pass,
                            hw,
                            cin,
                            cout,
                            row.ms,
                            row.gflops,
                            format!("{}x{}", t.cin, t.cout),
                            row.twin_ms,
                            row.ratio
                        );
                        rows.push(row);
                    }
                }
            }
        }
    }
    let worst = rows.iter().max_by(|a, b| a.ratio.total_cmp(&b.ratio));
    let cliffs = rows.iter().filter(|r| r.ratio > CLIFF).count();
    match worst {
        Some(w) => println!(
            "{} shapes; {cliffs} over {CLIFF}x their twin; worst {:.2}x: k={} {} {}x{} {}->{}",
            rows.len(),
            w.ratio,
            w.k,
            w.pass,
            w.hw,
            w.hw,
            w.cin,
            w.cout
        ),
        None => println!("no shape matches the filters"),
    }
    if json {
        let out = serde_json::json!({
            "adapter": ctx.adapter.name,
            "fma_ceiling_gflops": ceiling,
            "batch": vdvae::kernels::conv2d::sweep::SWEEP_BATCH,
            "cliff_ratio": CLIFF,
            "shapes_over_cliff": cliffs,
            "worst_ratio": worst.map(|w| w.ratio),
            "sweep": rows,
        });
        println!("{out}");
    }
}
