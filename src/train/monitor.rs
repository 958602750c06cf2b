//! Looks at a run's EMA weights every so many steps and at the end of the
//! run: the progress pictures and the held-out ELBO. Steps between looks pay
//! nothing; a look reads the EMA weights back from the GPU once for both.

use super::checkpoint::read_ema_weights;
use super::held_out::HeldOut;
use super::pictures::Pictures;
use super::progress::Progress;
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::graph::executor::GpuGraph;
use crate::model::assemble::ModelGraph;
use crate::model::HParams;

/// Pictures every `image_every` steps (none at all when 0); the held-out ELBO
/// every `eval_every` steps (only at the end when 0). Steps count the whole
/// run, resumed ones included, so looks land on the same steps either way.
pub struct Monitor {
    pub pictures: Option<Pictures>,
    pub image_every: u32,
    pub held_out: Option<HeldOut>,
    pub eval_every: u32,
}

/// What a look draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Look {
    pub pictures: bool,
    pub eval: bool,
}

impl Look {
    pub fn any(self) -> bool {
        self.pictures || self.eval
    }
}

fn every(n: u32, trained: u32) -> bool {
    n > 0 && trained.is_multiple_of(n)
}

impl Monitor {
    /// The look due after `trained` steps of the run.
    pub fn due(&self, trained: u32) -> Look {
        Look {
            pictures: self.pictures.is_some() && every(self.image_every, trained),
            eval: self.held_out.is_some() && every(self.eval_every, trained),
        }
    }

    /// The look at the end of a run.
    pub fn at_end(&self) -> Look {
        Look {
            pictures: self.pictures.is_some(),
            eval: self.held_out.is_some(),
        }
    }

    /// Draws `look` from the EMA weights of `gpu` after `trained` steps: the
    /// pictures into `dir`, the eval into the log and above the progress bar.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        look: Look,
        ctx: &GpuContext,
        h: &HParams,
        m: &ModelGraph,
        gpu: &GpuGraph,
        dir: &str,
        trained: u32,
        progress: &mut Progress,
    ) -> Result<()> {
        if !look.any() {
            return Ok(());
        }
        let ema = read_ema_weights(ctx, m, gpu)?;
        if let (true, Some(pictures)) = (look.pictures, &self.pictures) {
            pictures.write(ctx, dir, h, &ema)?;
        }
        if let (true, Some(held_out)) = (look.eval, &self.held_out) {
            // eval draws its own bar; the training bar steps aside meanwhile.
            let report = progress.bar.suspend(|| held_out.evaluate(ctx, h, &ema))?;
            progress.eval(trained, &report)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_land_on_multiples_of_their_period() {
        assert!(every(2, 4) && !every(2, 3));
        assert!(!every(0, 4), "0 = no periodic look");
        assert!(every(500, 1000) && !every(500, 999));
    }
}
