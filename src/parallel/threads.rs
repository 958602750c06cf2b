//! Ranks as threads of one process (one adapter each): the sums meet in shared
//! host memory.
//!
//! Every rank copies its contribution into its own deposit buffer; the last to
//! arrive adds the deposits in rank order (rank 0 + rank 1 + ..., so every rank
//! gets the same bits whatever the arrival order) into the shared sum, bumps the
//! generation and wakes the others, who copy the sum out. The sum is not
//! overwritten before every rank has read it: the next sum is taken by the last
//! arrival of the next collective, and a rank only arrives there after reading.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

use super::{check_lengths, own, Collective};
use crate::{Error, Result};

/// What the ranks of a group share.
struct Group {
    state: Mutex<State>,
    changed: Condvar,
    /// Per rank, its contribution to the current collective. Grown on first use
    /// for a length, reused afterwards.
    deposits: Vec<Mutex<Vec<f32>>>,
    sum: RwLock<Vec<f32>>,
}

struct State {
    /// Collectives completed so far.
    generation: u64,
    /// Ranks that have deposited for the current collective.
    arrived: usize,
    /// The length each rank deposited for the current collective.
    lens: Vec<usize>,
    /// Once set, every collective fails with this message.
    failed: Option<String>,
    /// Ranks whose `ThreadRank` was dropped.
    ended: Vec<bool>,
}

/// One rank of a [`thread_group`]; move it into the thread that drives the rank.
pub struct ThreadRank {
    rank: usize,
    group: Arc<Group>,
}

/// `ranks` ranks that sum among themselves, rank k at index k.
pub fn thread_group(ranks: usize) -> Vec<ThreadRank> {
    let group = Arc::new(Group {
        state: Mutex::new(State {
            generation: 0,
            arrived: 0,
            lens: vec![0; ranks],
            failed: None,
            ended: vec![false; ranks],
        }),
        changed: Condvar::new(),
        deposits: (0..ranks).map(|_| Mutex::new(Vec::new())).collect(),
        sum: RwLock::new(Vec::new()),
    });
    (0..ranks)
        .map(|rank| ThreadRank {
            rank,
            group: group.clone(),
        })
        .collect()
}

/// A lock that a panicking rank left poisoned still guards consistent data: no
/// rank panics while it holds one (only allocation could), and the failure
/// must reach the others rather than a second panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Group {
    /// Fails the group (the first message stays) and wakes every rank; the
    /// group's error.
    fn fail(&self, state: &mut State, message: String) -> Error {
        let first = state.failed.get_or_insert(message).clone();
        self.changed.notify_all();
        Error::Parallel(first)
    }

    /// The error every rank gets once the group failed.
    fn error(state: &State) -> Option<Error> {
        state.failed.as_ref().map(|m| Error::Parallel(m.clone()))
    }

    /// Fails the group when a rank ended while a collective needs it.
    fn check_ended(&self, state: &mut State) -> Result<()> {
        if let Some(r) = state.ended.iter().position(|&e| e) {
            return Err(self.fail(state, format!("rank {r} ended before the collective")));
        }
        Self::error(state).map_or(Ok(()), Err)
    }

    /// The last arrival's work: deposits of equal length summed in rank order.
    fn reduce(&self, state: &mut State) -> Result<()> {
        let n = state.lens[0];
        if state.lens.iter().any(|&l| l != n) {
            let message = format!(
                "all-reduce: the ranks sent different lengths, rank by rank {:?}",
                state.lens
            );
            return Err(self.fail(state, message));
        }
        let mut sum = self.sum.write().unwrap_or_else(|e| e.into_inner());
        sum.clear();
        sum.extend_from_slice(&lock(&self.deposits[0]));
        for deposit in &self.deposits[1..] {
            for (s, d) in sum.iter_mut().zip(lock(deposit).iter()) {
                *s += d;
            }
        }
        Ok(())
    }
}

impl Collective for ThreadRank {
    fn rank(&self) -> usize {
        self.rank
    }

    fn ranks(&self) -> usize {
        self.group.deposits.len()
    }

    fn all_reduce_sum(&mut self, send: &[f32], sum: &mut [f32]) -> Result<()> {
        own(self, check_lengths(send, sum))?;
        let g = &*self.group;
        if let Some(e) = Group::error(&lock(&g.state)) {
            return Err(e);
        }
        {
            let mut deposit = lock(&g.deposits[self.rank]);
            deposit.clear();
            deposit.extend_from_slice(send);
        }
        let mut state = lock(&g.state);
        g.check_ended(&mut state)?;
        let generation = state.generation;
        state.lens[self.rank] = send.len();
        state.arrived += 1;
        if state.arrived == self.ranks() {
            g.reduce(&mut state)?;
            state.arrived = 0;
            state.generation += 1;
            g.changed.notify_all();
        }
        while state.generation == generation {
            g.check_ended(&mut state)?;
            state = g.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        drop(state);
        sum.copy_from_slice(&g.sum.read().unwrap_or_else(|e| e.into_inner()));
        Ok(())
    }

    fn abort(&mut self, message: &str) {
        let mut state = lock(&self.group.state);
        self.group
            .fail(&mut state, format!("rank {} failed: {message}", self.rank));
    }
}

impl Drop for ThreadRank {
    /// A rank that panicked fails the group; one that ended is noted, so a
    /// collective waiting for it fails instead of hanging.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut state = lock(&self.group.state);
            self.group.fail(&mut state, format!("rank {} panicked", self.rank));
        } else {
            let mut state = lock(&self.group.state);
            state.ended[self.rank] = true;
            self.group.changed.notify_all();
        }
    }
}
