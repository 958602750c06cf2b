//! Ranks under `mpirun` sum vectors through `MpiRanks`, one line per result, for
//! `tests/parallel_mpi.rs`:
//!
//! ```text
//! mpirun -np 2 target/release/examples/mpi_allreduce          # sums
//! mpirun -np 2 target/release/examples/mpi_allreduce abort    # rank 1 aborts
//! ```
//!
//! Rank r contributes `(r + 1) / 2 + i + step` at element i: halves and small
//! integers, so every sum is exact and the expected values are easy to compute.

use vdvae::parallel::{Buckets, Collective, MpiRanks};

const LEN: usize = 10;
const TOTAL: usize = 23;
const BUCKET_LEN: usize = 5;

fn contribution(rank: usize, step: usize, i: usize) -> f32 {
    (rank + 1) as f32 * 0.5 + (i + step) as f32
}

fn line(values: &[f32]) -> String {
    values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" ")
}

fn main() -> vdvae::Result<()> {
    // The abort's message is logged.
    env_logger::init();
    let mut ranks = MpiRanks::init()?;
    let r = ranks.rank();
    println!("rank {r} of {} local {}", ranks.ranks(), ranks.local_rank());
    if std::env::args().nth(1).as_deref() == Some("abort") {
        if r == 1 {
            // Let rank 0 reach its collective, which waits for this rank forever.
            std::thread::sleep(std::time::Duration::from_millis(300));
            ranks.abort("deliberate failure");
        }
        let mut sum = [0.0];
        ranks.all_reduce_sum(&[1.0], &mut sum)?;
        println!("rank {r} was not stopped");
        return Ok(());
    }
    let mut buckets = Buckets::new(TOTAL, BUCKET_LEN);
    for step in 0..3 {
        let send: Vec<f32> = (0..LEN).map(|i| contribution(r, step, i)).collect();
        let mut sum = vec![0.0; LEN];
        ranks.all_reduce_sum(&send, &mut sum)?;
        println!("rank {r} step {step} sum {}", line(&sum));

        let ranges: Vec<_> = (0..buckets.count()).map(|k| buckets.range(k)).collect();
        let mut flat = vec![f32::NAN; TOTAL];
        ranks.all_reduce_buckets(
            &mut buckets,
            &mut |k, out| {
                for (o, i) in out.iter_mut().zip(ranges[k].clone()) {
                    *o = contribution(r, step, i);
                }
                Ok(())
            },
            &mut |k, sum| {
                flat[ranges[k].clone()].copy_from_slice(sum);
                Ok(())
            },
        )?;
        println!("rank {r} step {step} buckets {}", line(&flat));
    }
    Ok(())
}
