//! Data-parallel sums among thread ranks: rank-order sums, bit-identical on every
//! rank, step after step; and a failing, panicking or ended rank stops the
//! others instead of leaving them waiting. Every test runs its ranks in threads
//! and waits on a channel with a timeout, so a hang fails the test.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use vdvae::parallel::{thread_group, Buckets, Collective, Single, ThreadRank};

/// Longer than any of these tests needs, short enough to fail a hang quickly.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `body` on each rank in its own thread; the results in rank order, or a
/// panic when a rank does not answer within the timeout.
fn run_ranks<T: Send + 'static>(
    ranks: Vec<ThreadRank>,
    body: impl Fn(ThreadRank) -> T + Send + Sync + Clone + 'static,
) -> Vec<T> {
    let n = ranks.len();
    let (tx, rx) = mpsc::channel();
    for rank in ranks {
        let (tx, body) = (tx.clone(), body.clone());
        thread::spawn(move || {
            let r = rank.rank();
            let out = body(rank);
            tx.send((r, out)).unwrap();
        });
    }
    let mut got: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for _ in 0..n {
        let (r, out) = rx.recv_timeout(TIMEOUT).expect("a rank hung");
        got[r] = Some(out);
    }
    got.into_iter().map(Option::unwrap).collect()
}

/// Rank r's values at a step: different magnitudes so that the order of the
/// additions changes the rounding.
fn contribution(rank: usize, step: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let x = (i * 7 + rank * 13 + step * 3) as f32;
            (x * 0.1).sin() * 10f32.powi(rank as i32 - 1) + 1.0 / (1.0 + x)
        })
        .collect()
}

/// The sum in rank order, as the group promises it.
fn rank_order_sum(ranks: usize, step: usize, len: usize) -> Vec<f32> {
    let mut sum = contribution(0, step, len);
    for r in 1..ranks {
        for (s, c) in sum.iter_mut().zip(contribution(r, step, len)) {
            *s += c;
        }
    }
    sum
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn all_reduce_sum_is_the_rank_order_sum_on_every_rank_step_after_step() {
    let (ranks, len) = (3, 1000);
    let sums = run_ranks(thread_group(ranks), move |mut rank| {
        (0..4)
            .map(|step| {
                let send = contribution(rank.rank(), step, len);
                let mut sum = vec![0.0; len];
                rank.all_reduce_sum(&send, &mut sum).unwrap();
                sum
            })
            .collect::<Vec<_>>()
    });
    for step in 0..4 {
        let want = bits(&rank_order_sum(ranks, step, len));
        for (r, rank_sums) in sums.iter().enumerate() {
            assert_eq!(bits(&rank_sums[step]), want, "rank {r}, step {step}");
        }
    }
}

#[test]
fn the_sum_is_not_the_sum_in_another_order() {
    // Guards the test above: these contributions do round differently when
    // added in another order, so bit equality does check the order.
    let (a, b, c) = (
        contribution(0, 0, 1000),
        contribution(1, 0, 1000),
        contribution(2, 0, 1000),
    );
    let other: Vec<f32> = (0..1000).map(|i| (c[i] + b[i]) + a[i]).collect();
    assert_ne!(bits(&other), bits(&rank_order_sum(3, 0, 1000)));
}

#[test]
fn all_reduce_buckets_gives_each_bucket_its_sum_step_after_step() {
    let (ranks, total, bucket_len) = (3, 23, 5);
    let results = run_ranks(thread_group(ranks), move |mut rank| {
        let mut buckets = Buckets::new(total, bucket_len);
        let ranges: Vec<_> = (0..buckets.count()).map(|k| buckets.range(k)).collect();
        let mut steps = Vec::new();
        for step in 0..3 {
            let send = contribution(rank.rank(), step, total);
            let mut flat = vec![f32::NAN; total];
            // Both closures note their calls, so they share it through a RefCell.
            let order = std::cell::RefCell::new(Vec::new());
            rank.all_reduce_buckets(
                &mut buckets,
                &mut |k, out| {
                    order.borrow_mut().push(('f', k));
                    out.copy_from_slice(&send[ranges[k].clone()]);
                    Ok(())
                },
                &mut |k, sum| {
                    order.borrow_mut().push(('d', k));
                    flat[ranges[k].clone()].copy_from_slice(sum);
                    Ok(())
                },
            )
            .unwrap();
            steps.push((flat, order.into_inner()));
        }
        steps
    });
    let in_order: Vec<_> = (0..5).flat_map(|k| [('f', k), ('d', k)]).collect();
    for step in 0..3 {
        let want = bits(&rank_order_sum(ranks, step, total));
        for (r, steps) in results.iter().enumerate() {
            assert_eq!(bits(&steps[step].0), want, "rank {r}, step {step}");
            assert_eq!(steps[step].1, in_order, "rank {r}: fill and drain order");
        }
    }
}

#[test]
fn single_gives_back_its_input() {
    let send = contribution(0, 0, 17);
    let mut sum = vec![0.0; 17];
    let mut single = Single;
    assert_eq!((single.rank(), single.ranks()), (0, 1));
    single.all_reduce_sum(&send, &mut sum).unwrap();
    assert_eq!(bits(&sum), bits(&send));

    let mut buckets = Buckets::new(17, 4);
    let mut flat = vec![0.0; 17];
    let ranges: Vec<_> = (0..buckets.count()).map(|k| buckets.range(k)).collect();
    single
        .all_reduce_buckets(
            &mut buckets,
            &mut |k, out| {
                out.copy_from_slice(&send[ranges[k].clone()]);
                Ok(())
            },
            &mut |k, s| {
                flat[ranges[k].clone()].copy_from_slice(s);
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(bits(&flat), bits(&send));
    assert!(single.all_reduce_sum(&send, &mut [0.0; 3]).is_err(), "lengths differ");
}

/// Every rank but `culprit` calls `all_reduce_sum`; `culprit` runs `misbehave`.
/// The others' errors, in rank order (the culprit's slot empty).
fn others_errors(ranks: usize, culprit: usize, misbehave: fn(ThreadRank)) -> Vec<Option<String>> {
    run_ranks(thread_group(ranks), move |mut rank| {
        if rank.rank() == culprit {
            // Let the others reach their collective first.
            thread::sleep(Duration::from_millis(100));
            // A panicking rank's thread would not report: catch it here.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| misbehave(rank)));
            return None;
        }
        let mut sum = [0.0f32; 4];
        let err = rank.all_reduce_sum(&[1.0; 4], &mut sum).unwrap_err();
        // Later collectives fail too, at once.
        assert!(rank.all_reduce_sum(&[1.0; 4], &mut sum).is_err());
        Some(err.to_string())
    })
}

#[test]
fn abort_stops_the_waiting_ranks_with_the_message() {
    let errors = others_errors(3, 1, |mut rank| rank.abort("out of memory on adapter 1"));
    for r in [0, 2] {
        assert_eq!(
            errors[r].as_deref(),
            Some("rank 1 failed: out of memory on adapter 1"),
            "rank {r}"
        );
    }
}

#[test]
fn a_panicking_rank_stops_the_others() {
    let errors = others_errors(3, 1, |_rank| panic!("deliberate panic in a test"));
    for r in [0, 2] {
        assert_eq!(errors[r].as_deref(), Some("rank 1 panicked"), "rank {r}");
    }
}

#[test]
fn a_rank_that_ended_early_stops_the_waiting_ones() {
    let errors = others_errors(3, 2, drop);
    for r in [0, 1] {
        assert_eq!(
            errors[r].as_deref(),
            Some("rank 2 ended before the collective"),
            "rank {r}"
        );
    }
}

#[test]
fn ranks_that_send_different_lengths_all_fail() {
    let errors = run_ranks(thread_group(2), |mut rank| {
        let len = 3 + rank.rank();
        let mut sum = vec![0.0; len];
        rank.all_reduce_sum(&vec![1.0; len], &mut sum).unwrap_err().to_string()
    });
    assert_eq!(errors[0], errors[1]);
    assert!(errors[0].contains("different lengths"), "{}", errors[0]);
}

#[test]
fn a_failing_fill_stops_the_others() {
    let errors = run_ranks(thread_group(3), |mut rank| {
        let mut buckets = Buckets::new(10, 4);
        let me = rank.rank();
        rank.all_reduce_buckets(
            &mut buckets,
            &mut |k, out| {
                if me == 0 && k == 1 {
                    return Err(vdvae::Error::Gpu("readback failed".into()));
                }
                out.fill(1.0);
                Ok(())
            },
            &mut |_, _| Ok(()),
        )
        .unwrap_err()
        .to_string()
    });
    assert_eq!(errors[0], "GPU error: readback failed");
    for r in [1, 2] {
        assert_eq!(errors[r], "rank 0 failed: GPU error: readback failed", "rank {r}");
    }
}
