//! Ranks as MPI processes (cargo feature `mpi`, through rsmpi): one process per
//! adapter, started by `mpirun`.

use ::mpi::collective::{CommunicatorCollectives, SystemOperation};
use ::mpi::environment::Universe;
use ::mpi::topology::{Communicator, SimpleCommunicator};
use ::mpi::Threading;

use super::{check_lengths, own, Buckets, Collective};
use crate::{Error, Result};

/// This process's rank in `MPI_COMM_WORLD`.
///
/// Holds the MPI universe: dropping it finalizes MPI, so drop it on the thread
/// that called [`MpiRanks::init`] (the end of `main`). The world communicator is
/// taken from the universe at each call (a constant handle), which keeps this
/// type `Send` without an `unsafe impl`: MPI is initialised asking for
/// `MPI_THREAD_SERIALIZED`, so the rank may be moved to the thread that drives
/// training, its calls serialised by `&mut self`.
pub struct MpiRanks {
    universe: Universe,
    rank: usize,
    ranks: usize,
    local_rank: usize,
}

impl MpiRanks {
    /// Initialises MPI; an error when it is already initialised in this process
    /// (rsmpi gives no second universe) or MPI cannot start.
    pub fn init() -> Result<MpiRanks> {
        let (universe, _granted) = ::mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| Error::Parallel("MPI could not be initialised: it already is in this process".into()))?;
        let world = universe.world();
        let (rank, ranks) = (world.rank() as usize, world.size() as usize);
        let local_rank = match local_rank_from_env() {
            Some(r) => r,
            // A collective: every rank takes this branch, since one launcher
            // sets (or does not set) the variable for all of them.
            None => world.split_shared(world.rank()).rank() as usize,
        };
        Ok(MpiRanks {
            universe,
            rank,
            ranks,
            local_rank,
        })
    }

    /// The rank among the processes on this node, to choose this process's
    /// adapter: Open MPI's `OMPI_COMM_WORLD_LOCAL_RANK` when set, else the rank
    /// in the node's shared-memory communicator (`MPI_Comm_split_type` with
    /// `MPI_COMM_TYPE_SHARED`, computed once by `init`).
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    fn world(&self) -> SimpleCommunicator {
        self.universe.world()
    }

    /// Every rank calls this with its own values; an error on every rank when
    /// one rank's differ (MPI itself would fail or read past a buffer).
    fn agree(&self, what: &str, values: [u64; 2]) -> Result<()> {
        // The max of v and of !v: the max and the min of v over the ranks.
        let mine = [values[0], values[1], !values[0], !values[1]];
        let mut most = [0u64; 4];
        self.world()
            .all_reduce_into(&mine[..], &mut most[..], SystemOperation::max());
        if most == mine {
            return Ok(());
        }
        Err(Error::Parallel(format!(
            "{what}: the ranks disagree on the lengths: this rank (rank {}) has {values:?}, \
             the ranks range over {:?}..={:?}",
            self.rank,
            [!most[2], !most[3]],
            [most[0], most[1]],
        )))
    }
}

/// `OMPI_COMM_WORLD_LOCAL_RANK`, set by Open MPI's `mpirun` in each process.
fn local_rank_from_env() -> Option<usize> {
    std::env::var("OMPI_COMM_WORLD_LOCAL_RANK").ok()?.parse().ok()
}

impl Collective for MpiRanks {
    fn rank(&self) -> usize {
        self.rank
    }

    fn ranks(&self) -> usize {
        self.ranks
    }

    /// `MPI_Allreduce` with `MPI_SUM`. Open MPI's algorithms give every rank the
    /// same bits (each part is reduced once, in a fixed order, and distributed).
    fn all_reduce_sum(&mut self, send: &[f32], sum: &mut [f32]) -> Result<()> {
        check_lengths(send, sum)?;
        self.agree("all-reduce", [send.len() as u64, 0])?;
        self.world().all_reduce_into(send, sum, SystemOperation::sum());
        Ok(())
    }

    /// Bucket k's `MPI_Iallreduce` is started as soon as it is filled; bucket
    /// k − 1 is then waited for and drained, so two reductions are in flight while
    /// this rank copies. A failing `fill` or `drain` stops every process once
    /// the reductions in flight have completed.
    fn all_reduce_buckets(
        &mut self,
        buckets: &mut Buckets,
        fill: &mut dyn FnMut(usize, &mut [f32]) -> Result<()>,
        drain: &mut dyn FnMut(usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        self.agree(
            "bucketed all-reduce",
            [buckets.total() as u64, buckets.bucket_len() as u64],
        )?;
        let world = self.world();
        let (sends, sums) = (&mut buckets.send, &mut buckets.sum);
        let result = ::mpi::request::scope(|scope| {
            let mut in_flight = None;
            let mut result = Ok(());
            for (k, (send, sum)) in sends.iter_mut().zip(sums.iter_mut()).enumerate() {
                if let Err(e) = fill(k, send) {
                    result = Err(e);
                    break;
                }
                let send: &[f32] = send;
                let request = world.immediate_all_reduce_into(scope, send, &mut sum[..], SystemOperation::sum());
                if let Some((j, previous)) = in_flight.replace((k, request)) {
                    if let Err(e) = drain(j, previous.wait_for_data()) {
                        result = Err(e);
                        break;
                    }
                }
            }
            // Every started request completes before the scope ends, error or not.
            if let Some((j, last)) = in_flight.take() {
                let data = last.wait_for_data();
                result = result.and_then(|()| drain(j, data));
            }
            result
        });
        // Only `fill` and `drain` fail in the scope: this rank's own errors.
        own(self, result)
    }

    fn abort(&mut self, message: &str) {
        log::error!("rank {}: {message}", self.rank);
        self.world().abort(1)
    }
}
