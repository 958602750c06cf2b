//! The optimizer family's checked scenarios and benchmark case. Each scenario
//! places its tensors as slices of shared arenas (one buffer per role, offsets
//! aligned to 64 elements, gaps left untouched), runs a sequence of steps on the
//! GPU (decide + updates, one submit per step, the squared norm written into the
//! state as the global-norm reduce would) and on the CPU reference, and compares
//! the state after every step and the whole arenas at the end.

use super::reference::{self, TensorRef};
use super::state::{read_state, upload_state, write_grad_sq, StepState};
use super::{AdamW, ParamTensor};
use crate::bench::BenchCase;
use crate::check::{Checker, Tolerance};
use crate::error::Result;
use crate::gpu::{Dispatch, GpuBuffer, GpuContext};
use crate::kernels::testdata::TestRng;

const FAMILY: &str = "optimizer";
/// New parameters: p (1 - lr wd) - step_size m / denom in f32, a few ulp of |p|
/// plus a few ulp of the update (lr <= 1e-2 here); the EMA likewise. Far below the
/// updates themselves (~lr), so a missed or doubled update fails.
const PARAM_TOL: Tolerance = Tolerance::new(1e-7, 1e-6);
/// Moments: one multiply-add each in f32 (a few ulp).
const MOMENT_TOL: Tolerance = Tolerance::new(1e-9, 1e-6);
/// State floats: sqrt, a divide, lr x factor and f32 powers of beta (a few ulp).
const STATE_TOL: Tolerance = Tolerance::new(0.0, 2e-6);

/// Arena offsets are rounded up to this many elements (256 bytes, wgpu's storage offset alignment).
const ALIGN: usize = 64;

/// How the gradients of one step look.
#[derive(Clone, Copy, Debug)]
enum Grads {
    /// Random gradients scaled to this global norm.
    Norm(f64),
    /// Random gradients with one NaN element.
    NaN,
    /// Random gradients with one infinite element.
    Inf,
}

struct Scenario {
    name: &'static str,
    sizes: Vec<usize>,
    ema: Vec<bool>,
    cfg: AdamW,
    start: StepState,
    steps: Vec<Grads>,
    /// Elements per update dispatch (None: the binding limit).
    chunk: Option<usize>,
    /// Start from zero moments (a fresh run) rather than random ones.
    fresh: bool,
}

fn offsets(sizes: &[usize]) -> (Vec<usize>, usize) {
    let mut offs = Vec::with_capacity(sizes.len());
    let mut end = 0;
    for &n in sizes {
        offs.push(end);
        end = (end + n).div_ceil(ALIGN) * ALIGN;
    }
    (offs, end.max(1))
}

/// Concatenates per-tensor vectors into an arena image (gaps zero).
fn arena(offs: &[usize], len: usize, parts: &[&[f32]]) -> Vec<f32> {
    let mut out = vec![0.0; len];
    for (o, p) in offs.iter().zip(parts) {
        out[*o..*o + p.len()].copy_from_slice(p);
    }
    out
}

fn initial_tensors(s: &Scenario, rng: &mut TestRng) -> Vec<TensorRef> {
    s.sizes
        .iter()
        .zip(&s.ema)
        .map(|(&n, &has_ema)| {
            let param = rng.vec(n, -1.0, 1.0);
            let (exp_avg, exp_avg_sq) = if s.fresh {
                (vec![0.0; n], vec![0.0; n])
            } else {
                (rng.vec(n, -0.1, 0.1), rng.vec(n, 0.0, 0.01))
            };
            let ema = has_ema.then(|| param.iter().map(|p| p + rng.uniform(-0.1, 0.1)).collect());
            TensorRef {
                param,
                grad: vec![0.0; n],
                exp_avg,
                exp_avg_sq,
                ema,
            }
        })
        .collect()
}

fn fill_grads(tensors: &mut [TensorRef], g: Grads, rng: &mut TestRng) {
    for t in tensors.iter_mut() {
        t.grad = rng.vec(t.grad.len(), -1.0, 1.0);
    }
    let last = tensors.len() - 1;
    match g {
        Grads::Norm(norm) => {
            let scale = norm / (reference::grad_sq(tensors) as f64).sqrt();
            for t in tensors.iter_mut() {
                t.grad.iter_mut().for_each(|x| *x = (*x as f64 * scale) as f32);
            }
        }
        Grads::NaN => tensors[last].grad[0] = f32::NAN,
        Grads::Inf => tensors[last].grad[0] = f32::INFINITY,
    }
}

/// The arenas of one role for every tensor.
struct Arenas {
    offs: Vec<usize>,
    len: usize,
    param: GpuBuffer,
    grad: GpuBuffer,
    exp_avg: GpuBuffer,
    exp_avg_sq: GpuBuffer,
    ema: GpuBuffer,
}

type Getter = fn(&TensorRef) -> &[f32];

const ROLES: [(&str, Getter, Tolerance); 4] = [
    ("adamw param", |t| &t.param, PARAM_TOL),
    ("adamw exp_avg", |t| &t.exp_avg, MOMENT_TOL),
    ("adamw exp_avg_sq", |t| &t.exp_avg_sq, MOMENT_TOL),
    ("adamw ema", |t| t.ema.as_deref().unwrap_or(&[]), PARAM_TOL),
];

impl Arenas {
    fn image(&self, tensors: &[TensorRef], get: Getter) -> Vec<f32> {
        let parts: Vec<&[f32]> = tensors.iter().map(get).collect();
        arena(&self.offs, self.len, &parts)
    }

    fn upload(ctx: &GpuContext, sizes: &[usize], tensors: &[TensorRef]) -> Arenas {
        let (offs, len) = offsets(sizes);
        let mut a = Arenas {
            offs,
            len,
            param: ctx.zeros(0),
            grad: ctx.zeros(len),
            exp_avg: ctx.zeros(0),
            exp_avg_sq: ctx.zeros(0),
            ema: ctx.zeros(0),
        };
        a.param = ctx.upload(&a.image(tensors, ROLES[0].1));
        a.exp_avg = ctx.upload(&a.image(tensors, ROLES[1].1));
        a.exp_avg_sq = ctx.upload(&a.image(tensors, ROLES[2].1));
        a.ema = ctx.upload(&a.image(tensors, ROLES[3].1));
        a
    }

    fn buffer(&self, role: usize) -> &GpuBuffer {
        [&self.param, &self.exp_avg, &self.exp_avg_sq, &self.ema][role]
    }

    fn tensor(&self, k: usize, n: usize, ema: bool) -> ParamTensor<'_> {
        let o = self.offs[k];
        ParamTensor {
            param: self.param.slice(o, n),
            grad: self.grad.slice(o, n),
            exp_avg: self.exp_avg.slice(o, n),
            exp_avg_sq: self.exp_avg_sq.slice(o, n),
            ema: ema.then(|| self.ema.slice(o, n)),
        }
    }
}

fn compare_state(c: &mut Checker, shapes: &str, got: &StepState, want: &StepState) {
    c.compare(
        FAMILY,
        "decide floats",
        shapes,
        &got.floats(),
        &want.floats(),
        STATE_TOL,
    );
    c.compare_u32(FAMILY, "decide counters", shapes, &got.counters(), &want.counters());
}

fn run_scenario(c: &mut Checker, s: &Scenario, seed: u64) -> Result<()> {
    let ctx = c.ctx;
    let mut rng = TestRng::new(seed);
    let mut tensors = initial_tensors(s, &mut rng);
    let arenas = Arenas::upload(ctx, &s.sizes, &tensors);
    let state = upload_state(ctx, &s.start);
    let mut want_state = s.start;

    let mut dispatches: Vec<Dispatch> = vec![super::decide(ctx, &s.cfg, state.view())?];
    for (k, (&n, &ema)) in s.sizes.iter().zip(&s.ema).enumerate() {
        let t = arenas.tensor(k, n, ema);
        dispatches.extend(match s.chunk {
            Some(chunk) => super::update_in_chunks(ctx, &s.cfg, state.view(), &t, chunk)?,
            None => super::update(ctx, &s.cfg, state.view(), &t)?,
        });
    }
    let ds: Vec<&Dispatch> = dispatches.iter().collect();

    let nsteps = s.steps.len();
    let mut all_skipped = true;
    for (i, &g) in s.steps.iter().enumerate() {
        fill_grads(&mut tensors, g, &mut rng);
        let grads = arenas.image(&tensors, |t| &t.grad);
        ctx.queue
            .write_buffer(&arenas.grad.buffer, 0, bytemuck::cast_slice(&grads));
        want_state.grad_sq = reference::grad_sq(&tensors);
        write_grad_sq(ctx, &state, want_state.grad_sq);
        ctx.run(&ds)?;
        all_skipped &= !reference::step(&s.cfg, &mut want_state, &mut tensors).apply;
        let got = read_state(ctx, state.view())?;
        let shapes = if nsteps > 1 {
            format!("{} {}/{nsteps} {g:?}", s.name, i + 1)
        } else {
            format!("{} {g:?}", s.name)
        };
        compare_state(c, &shapes, &got, &want_state);
    }

    let total: usize = s.sizes.iter().sum();
    let shapes = format!("{} {} tensors, {total} params", s.name, s.sizes.len());
    for (role, (kernel, get, tol)) in ROLES.iter().enumerate() {
        // A skipped step must leave everything bit-for-bit as it was.
        let tol = if all_skipped { Tolerance::EXACT } else { *tol };
        let got = ctx.read_f32(arenas.buffer(role))?;
        c.compare(FAMILY, kernel, &shapes, &got, &arenas.image(&tensors, *get), tol);
    }
    Ok(())
}

/// Hyperparameters large enough that every term of the update is visible in f32.
fn test_cfg() -> AdamW {
    AdamW {
        lr: 1e-2,
        warmup_iters: 100.0,
        beta1: 0.9,
        beta2: 0.9,
        eps: 1e-8,
        weight_decay: 0.1,
        grad_clip: 1e3,
        skip_threshold: 1e4,
        ema_rate: 0.99,
    }
}

fn single_step(name: &'static str, cfg: AdamW, g: Grads) -> Scenario {
    Scenario {
        name,
        sizes: vec![1, 255, 4099],
        ema: vec![true, false, true],
        cfg,
        // A resumed run: 10 applied + 2 skipped steps, 12% into the warm-up.
        start: StepState::resumed(10, 2, 12),
        steps: vec![g],
        chunk: None,
        fresh: false,
    }
}

fn scenarios(full: bool, max_binding_elems: usize) -> Vec<Scenario> {
    let cfg = test_cfg();
    let mut list = vec![
        single_step("applied", cfg, Grads::Norm(5.0)),
        single_step("clipped", AdamW { grad_clip: 1.0, ..cfg }, Grads::Norm(7.0)),
        single_step(
            "clipped, no skip threshold",
            AdamW {
                grad_clip: 1.0,
                skip_threshold: -1.0,
                ..cfg
            },
            Grads::Norm(1e6),
        ),
        single_step(
            "skip at threshold",
            AdamW {
                skip_threshold: 10.0,
                ..cfg
            },
            Grads::Norm(10.5),
        ),
        single_step("skip NaN", cfg, Grads::NaN),
        single_step(
            "skip inf, no threshold",
            AdamW {
                skip_threshold: -1.0,
                ..cfg
            },
            Grads::Inf,
        ),
        Scenario {
            name: "steps",
            sizes: vec![100, 1, 777, 64, 3000],
            ema: vec![true, false, true, true, false],
            cfg: AdamW {
                warmup_iters: 3.0,
                grad_clip: 2.5,
                skip_threshold: 40.0,
                ..cfg
            },
            start: StepState::default(),
            steps: vec![
                Grads::Norm(2.0),
                Grads::Norm(3.0),
                Grads::Norm(50.0),
                Grads::Norm(1.5),
                Grads::NaN,
                Grads::Norm(0.5),
                Grads::Norm(100.0),
                Grads::Norm(1.0),
            ],
            chunk: None,
            fresh: true,
        },
        Scenario {
            name: "chunks of 960",
            sizes: vec![5000, 70],
            ema: vec![true, true],
            cfg,
            start: StepState::default(),
            steps: vec![Grads::Norm(3.0), Grads::Norm(4.0)],
            chunk: Some(960),
            fresh: true,
        },
    ];
    if full {
        // One tensor longer than a storage binding: split into two dispatches.
        let mut s = single_step("large", cfg, Grads::Norm(50.0));
        s.sizes = vec![max_binding_elems + 1_000_003];
        s.ema = vec![true];
        list.push(s);
    }
    list
}

pub fn check(c: &mut Checker) -> Result<()> {
    let max_binding_elems = c.ctx.limits.max_storage_buffer_binding_size as usize / 4;
    for (i, s) in scenarios(c.full(), max_binding_elems).iter().enumerate() {
        run_scenario(c, s, 40 + i as u64)?;
    }
    Ok(())
}

pub fn bench_cases(ctx: &GpuContext) -> Result<Vec<BenchCase>> {
    // 10M parameters in one arena with EMA: decide + update.
    let n = 10_000_000;
    let mut rng = TestRng::new(5);
    let (param, grad) = (ctx.upload(&rng.vec(n, -1.0, 1.0)), ctx.upload(&rng.vec(n, -1e-3, 1e-3)));
    let (exp_avg, exp_avg_sq, ema) = (ctx.zeros(n), ctx.zeros(n), ctx.upload(&rng.vec(n, -1.0, 1.0)));
    let state = upload_state(
        ctx,
        &StepState {
            grad_sq: 10.0,
            ..StepState::default()
        },
    );
    let cfg = AdamW::default();
    let t = ParamTensor {
        param: param.view(),
        grad: grad.view(),
        exp_avg: exp_avg.view(),
        exp_avg_sq: exp_avg_sq.view(),
        ema: Some(ema.view()),
    };
    let mut dispatches = vec![super::decide(ctx, &cfg, state.view())?];
    dispatches.extend(super::update(ctx, &cfg, state.view(), &t)?);
    Ok(vec![BenchCase::new(
        "adamw_step_ema",
        "10M params",
        super::UPDATE_FLOPS_PER_PARAM * n as f64,
        super::UPDATE_EMA_BYTES_PER_PARAM * n as f64,
        dispatches,
        vec![param, grad, exp_avg, exp_avg_sq, ema, state],
    )])
}
