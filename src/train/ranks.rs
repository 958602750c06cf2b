//! The two ways to run data-parallel training: threads of one process, one
//! adapter each (`--adapters 0,1`), and MPI processes (`mpirun`, cargo
//! feature `mpi`). Both run [`train_rank`] on every rank; a rank that fails
//! stops the others with its message.

use super::{train_rank, StopSignal, TrainOptions, TrainOutcome};
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::gpu::{AdapterChoice, GpuContext};
use crate::model::config::HParams;
use crate::parallel::{thread_group, Collective};

/// Runs `work` as this rank; when it fails with an error of its own (not
/// another rank's, which already stopped every rank), stops the others.
fn as_rank<T>(ranks: &mut dyn Collective, work: impl FnOnce(&mut dyn Collective) -> Result<T>) -> Result<T> {
    let result = work(&mut *ranks);
    if let Err(e) = &result {
        if !matches!(e, Error::Parallel(_)) {
            ranks.abort(&e.to_string());
        }
    }
    result
}

/// Opens `choice` and trains on it as this rank.
fn on_adapter(
    choice: &AdapterChoice,
    h: &HParams,
    images: &ImageSet,
    o: &TrainOptions,
    stop: &StopSignal,
    ranks: &mut dyn Collective,
) -> Result<TrainOutcome> {
    let ctx = GpuContext::new(choice)?;
    train_rank(&ctx, h, images, o, stop, ranks)
}

/// Trains with one thread per adapter of `adapters` (an adapter may appear
/// twice: two devices on it), each thread a rank of batch `o.batch`. Returns
/// rank 0's outcome, or the error that stopped the run: the failing rank's
/// own, not the others' report of it.
pub fn train_threads(
    adapters: &[AdapterChoice],
    h: &HParams,
    images: &ImageSet,
    o: &TrainOptions,
    stop: &StopSignal,
) -> Result<TrainOutcome> {
    if adapters.is_empty() {
        return Err(Error::Input("--adapters needs at least one adapter".into()));
    }
    let results: Vec<Result<TrainOutcome>> = std::thread::scope(|s| {
        let handles: Vec<_> = thread_group(adapters.len())
            .into_iter()
            .zip(adapters)
            .map(|(mut rank, choice)| {
                s.spawn(move || as_rank(&mut rank, |ranks| on_adapter(choice, h, images, o, stop, ranks)))
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(r, handle)| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(Error::Parallel(format!("rank {r} panicked"))))
            })
            .collect()
    });
    first_cause(results)
}

/// Rank 0's outcome when every rank succeeded; else the first error that is
/// a rank's own, before any rank's report of another's.
fn first_cause(results: Vec<Result<TrainOutcome>>) -> Result<TrainOutcome> {
    let mut own = None;
    let mut reported = None;
    let mut first = None;
    for (r, result) in results.into_iter().enumerate() {
        match result {
            Ok(outcome) if r == 0 => first = Some(outcome),
            Ok(_) => {}
            Err(e @ Error::Parallel(_)) => {
                reported.get_or_insert(e);
            }
            Err(e) => {
                own.get_or_insert(Error::Input(format!("rank {r}: {e}")));
            }
        }
    }
    match (own.or(reported), first) {
        (Some(e), _) => Err(e),
        (None, Some(outcome)) => Ok(outcome),
        (None, None) => Err(Error::Parallel("no rank ran".into())),
    }
}

/// Trains as this MPI process's rank on `choice` (see [`crate::parallel::MpiRanks`]).
/// An error stops every process through `MPI_Abort`, after printing it.
#[cfg(feature = "mpi")]
pub fn train_mpi(
    ranks: &mut crate::parallel::MpiRanks,
    choice: &AdapterChoice,
    h: &HParams,
    images: &ImageSet,
    o: &TrainOptions,
    stop: &StopSignal,
) -> Result<TrainOutcome> {
    as_rank(ranks, |ranks| on_adapter(choice, h, images, o, stop, ranks))
}
