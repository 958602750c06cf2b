//! Data parallelism: the ranks of a run and the sums among them.
//!
//! Each rank computes the gradient of its shard of the global batch; the
//! gradients are summed over the ranks on the host (GPU → host → all-reduce →
//! GPU) through a [`Collective`]: [`Single`] for one process, [`ThreadRank`]s for
//! threads of one process (one adapter each), [`MpiRanks`] for MPI processes
//! (cargo feature `mpi`).
//!
//! Any rank's error stops every rank: a rank that fails calls
//! [`Collective::abort`] with its message; the others' collectives then fail
//! with that message (threads) or the whole job ends (MPI).

mod buckets;
#[cfg(feature = "mpi")]
mod mpi;
mod threads;

#[cfg(feature = "mpi")]
pub use self::mpi::MpiRanks;
pub use buckets::Buckets;
pub use threads::{thread_group, ThreadRank};

use crate::{Error, Result};

/// The ranks of a data-parallel run. One value per rank; a rank's collectives
/// are called in the same order on every rank.
///
/// An `Err` from a collective leaves the ranks out of step: the caller stops,
/// and calls [`abort`](Collective::abort) when the error is its own so that no
/// other rank waits for it. A `fill` or `drain` that fails is such an error:
/// [`all_reduce_buckets`](Collective::all_reduce_buckets) aborts with it itself.
pub trait Collective: Send {
    fn rank(&self) -> usize;
    fn ranks(&self) -> usize;

    /// Element-wise sum over every rank, `send` -> `sum` (same length on every rank,
    /// or an error). Every rank gets identical bits.
    fn all_reduce_sum(&mut self, send: &[f32], sum: &mut [f32]) -> Result<()>;

    /// Bucketed sum: for k in order, `fill(k, send_k)` writes this rank's values of
    /// bucket k; the sum of bucket k is given to `drain(k, sum_k)`. Implementations
    /// may start bucket k's reduction before calling `fill(k + 1)` (MPI: a
    /// non-blocking all-reduce, so the reduction of one bucket overlaps the copy of
    /// the next); the default runs them one after another with `all_reduce_sum`.
    /// A failing `fill` or `drain` stops every rank with its message.
    fn all_reduce_buckets(
        &mut self,
        buckets: &mut Buckets,
        fill: &mut dyn FnMut(usize, &mut [f32]) -> Result<()>,
        drain: &mut dyn FnMut(usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        for k in 0..buckets.count() {
            let (send, sum) = buckets.pair(k);
            own(self, fill(k, send))?;
            self.all_reduce_sum(send, sum)?;
            own(self, drain(k, sum))?;
        }
        Ok(())
    }

    /// This rank failed with `message`: stop every rank. Threads: every other
    /// rank's current or next collective returns an error naming this rank and the
    /// message. MPI: prints "rank R: MESSAGE" to stderr and calls MPI_Abort, so
    /// `mpirun` ends every process (does not return).
    fn abort(&mut self, message: &str);
}

/// `result`, after stopping every rank with its message when it is an error:
/// for errors of this rank's own, which no other rank knows of.
pub(crate) fn own<C: Collective + ?Sized>(ranks: &mut C, result: Result<()>) -> Result<()> {
    if let Err(e) = &result {
        ranks.abort(&e.to_string());
    }
    result
}

/// One process, one rank: the sums are copies.
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }

    fn ranks(&self) -> usize {
        1
    }

    fn all_reduce_sum(&mut self, send: &[f32], sum: &mut [f32]) -> Result<()> {
        check_lengths(send, sum)?;
        sum.copy_from_slice(send);
        Ok(())
    }

    /// No other rank to stop: the caller reports its own error.
    fn abort(&mut self, _message: &str) {}
}

/// The error for an all-reduce whose two buffers differ in length on one rank.
pub(crate) fn check_lengths(send: &[f32], sum: &[f32]) -> Result<()> {
    if send.len() == sum.len() {
        return Ok(());
    }
    Err(Error::Parallel(format!(
        "all-reduce: {} elements to send but {} to receive the sum",
        send.len(),
        sum.len()
    )))
}

/// The environment variables that MPI launchers set in every process they start:
/// Open MPI's `mpirun`, MPICH/Hydra's `mpiexec` (PMI) and PMIx launchers (srun).
const LAUNCHER_VARS: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"];

/// Whether this process was started by an MPI launcher (`mpirun`, `mpiexec`,
/// `srun`), read from the variables they set. Lets a binary built without the
/// `mpi` feature say so instead of running every process as rank 0 of 1.
pub fn launched_by_mpirun() -> bool {
    LAUNCHER_VARS
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}
