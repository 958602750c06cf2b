//! The kl_control family's table of checked schedules and steps.

use super::{reference, Seeds, TermSpec, SPEC_WORDS};
use crate::check::{Checker, Tolerance};
use crate::error::Result;
use crate::kernels::rng::RngKey;
use crate::kernels::testdata::TestRng;

const FAMILY: &str = "kl_control";
/// f32 means of up to a few hundred images, a division or two and a tree sum
/// for the balancing mean: a few ulp against f64.
const COEF_TOL: Tolerance = Tolerance::new(1e-7, 1e-5);
/// The coefficients times 1 / (N · dims), rounded once more.
const SEED_TOL: Tolerance = Tolerance::new(1e-12, 1e-5);

/// (images, terms, balance, steps checked).
fn table(c: &Checker) -> Vec<(usize, usize, bool, Vec<u64>)> {
    let steps = vec![0, 1, 7, 50, 99, 100, 150, 1000, 1 << 33];
    let mut t = vec![
        (1, 1, false, steps.clone()),
        (3, 5, true, steps.clone()),
        (16, 43, true, steps.clone()),
        (5, 43, false, steps.clone()),
        (8, 130, true, steps.clone()),
    ];
    if c.full() {
        t.push((256, 2000, true, vec![0, 60, 5000]));
    }
    t
}

/// A mix of warm-ups (none, 100, 1000 steps), rising and falling ramps, free
/// bits well under or over the term's batch mean, and unequal α.
fn schedule(rng: &mut TestRng, means: &[f64]) -> Vec<TermSpec> {
    means
        .iter()
        .enumerate()
        .map(|(j, &m)| {
            let rising = j % 5 != 4;
            let (beta0, beta1) = if rising {
                (rng.uniform(0.0, 0.5), rng.uniform(0.6, 1.5))
            } else {
                (1.2, 1.0)
            };
            let free_nats = match j % 3 {
                0 => 0.0,
                1 => (m * 0.5) as f32,
                _ => (m * 1.5) as f32,
            };
            TermSpec {
                beta0,
                beta1,
                warmup_steps: [0, 100, 1000][j % 3],
                free_nats,
                balance_weight: rng.uniform(0.5, 4.0),
            }
        })
        .collect()
}

pub fn check(c: &mut Checker) -> Result<()> {
    let mut rng = TestRng::new(61);
    for (images, terms, balance, steps) in table(c) {
        let kl = rng.vec(images * terms, 0.0, 20.0);
        let specs = schedule(&mut rng, &reference::means(&kl, terms));
        let words: Vec<f32> = specs.iter().flat_map(|s| s.words()).collect();
        debug_assert_eq!(words.len(), terms * SPEC_WORDS);
        let dims = 3 * 32 * 32;
        let scale = 1.0 / (images * dims) as f64;
        let (gkl, gspec) = (c.ctx.upload(&kl), c.ctx.upload(&words));
        let (gseeds, gcoef) = (c.ctx.zeros(images * terms), c.ctx.zeros(2 * terms));
        let bufs = Seeds {
            kl: gkl.view(),
            spec: gspec.view(),
            seeds: gseeds.view(),
            coef: gcoef.view(),
        };
        for step in steps {
            let shapes = format!("N={images} J={terms} balance={balance} step={step}");
            let key = RngKey::new(5, step, 0);
            let d = super::seeds(c.ctx, &bufs, images, terms, balance, scale as f32, key)?;
            c.ctx.run(&[&d])?;
            let (want_seeds, want_coef) = reference::seeds(&specs, &kl, step, balance, scale);
            c.compare(
                FAMILY,
                "kl_seeds (coef)",
                &shapes,
                &c.ctx.read_f32(&gcoef)?,
                &want_coef,
                COEF_TOL,
            );
            c.compare(
                FAMILY,
                "kl_seeds (seeds)",
                &shapes,
                &c.ctx.read_f32(&gseeds)?,
                &want_seeds,
                SEED_TOL,
            );
        }
    }
    Ok(())
}
