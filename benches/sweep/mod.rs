//! `cargo bench --bench kernels -- sweep [--json] [--k K] [--pass forward|dx|dw]
//! [--hw N] [--cin C] [--cout C] [--budget SECONDS]`: every conv pass over a grid of
//! shapes (Cin, Cout in `SWEEP_CHANNELS`, H = W in `SWEEP_SIZES`, batch 16,
//! k = 1 and 3), each against its twin with Cin and Cout rounded up to a
//! multiple of 8. A shape off the kernels' channel granularity should cost no
//! more than its twin, which does at least as much work: a ratio above 1.25 is
//! a cliff. A table as each size is timed (after its rounds), a summary, then with `--json` one
//! JSON object.

use std::collections::HashMap;

use vdvae::bench::{time_dispatches, BenchCase};
use vdvae::gpu::{measure_fma_ceiling, GpuContext};
use vdvae::kernels::conv2d::sweep::{pass_case, sweep_shape, twin, SWEEP_CHANNELS, SWEEP_SIZES};
use vdvae::kernels::conv2d::{Conv2dShape, ConvPass, Path};

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
    /// The path the shape ran on (the adapter's tuned choice), and its twin's.
    path: &'static str,
    twin_path: &'static str,
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

/// Tries per shape and twin, each in its own round over every shape of one
/// size, pass and k (a shape, then its twin): the machine may be shared, and
/// a slow spell of a second or more would land on one side of a ratio timed
/// in one go; tries spread over rounds seconds apart, best kept, do not.
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

    /// One more try of a shape, then of its twin; their best times so far and the shape's FLOPs.
    fn pair(&mut self, ctx: &GpuContext, s: Conv2dShape, t: Conv2dShape, p: ConvPass, budget: f64) -> (f64, f64, f64) {
        let (seconds, flops) = self.time(ctx, s, p, budget);
        let twin_seconds = if t == s {
            seconds
        } else {
            self.time(ctx, t, p, budget).0
        };
        (seconds, twin_seconds, flops)
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
        "{:>2} {:<8} {:>3} {:>4} {:>5} {:>10} {:>8} {:>9} {:>11} {:>10} {:>9} {:>6}",
        "k", "pass", "hw", "cin", "cout", "ms", "GFLOP/s", "path", "twin", "twin ms", "twin path", "ratio"
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
                let shapes: Vec<(usize, usize)> = SWEEP_CHANNELS
                    .into_iter()
                    .filter(|&c| f.cin.is_none_or(|x| x == c))
                    .flat_map(|cin| {
                        let couts = SWEEP_CHANNELS.into_iter().filter(|&c| f.cout.is_none_or(|x| x == c));
                        couts.map(move |cout| (cin, cout))
                    })
                    .collect();
                let mut last = Vec::new();
                for round in 0..TRIES {
                    if round > 0 {
                        eprint!("\r  k={k} {} {hw}x{hw}: round {} of {TRIES}   ", pass.name(), round + 1);
                    }
                    last = shapes
                        .iter()
                        .map(|&(cin, cout)| {
                            let s = sweep_shape(k, hw, cin, cout);
                            timings.pair(&ctx, s, twin(&s), pass, budget)
                        })
                        .collect();
                }
                eprint!("\r{:40}\r", "");
                for (&(cin, cout), &(seconds, twin_seconds, flops)) in shapes.iter().zip(&last) {
                    let s = sweep_shape(k, hw, cin, cout);
                    let t = twin(&s);
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
                        path: Path::best(&ctx, &s, pass).name(),
                        twin_path: Path::best(&ctx, &t, pass).name(),
                    };
                    let flag = if row.ratio > CLIFF { "  <- cliff" } else { "" };
                    println!(
                        "{:>2} {:<8} {:>3} {:>4} {:>5} {:>10.4} {:>8.2} {:>9} {:>11} {:>10.4} {:>9} {:>6.2}{flag}",
                        k,
                        row.pass,
                        hw,
                        cin,
                        cout,
                        row.ms,
                        row.gflops,
                        row.path,
                        format!("{}x{}", t.cin, t.cout),
                        row.twin_ms,
                        row.twin_path,
                        row.ratio
                    );
                    rows.push(row);
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
