//! The persistent host buffers of a bucketed all-reduce.

use std::ops::Range;

/// Persistent host buffers for a bucketed all-reduce: per bucket, what this rank
/// sends and where the sum arrives. Allocated once (no allocation per step).
pub struct Buckets {
    pub(crate) send: Vec<Vec<f32>>,
    pub(crate) sum: Vec<Vec<f32>>,
    total: usize,
    bucket_len: usize,
}

impl Buckets {
    /// `total` elements cut into buckets of at most `bucket_len` elements (the last shorter).
    ///
    /// Panics when `bucket_len` is 0 and `total` is not (no cut would cover it).
    pub fn new(total: usize, bucket_len: usize) -> Buckets {
        assert!(
            bucket_len > 0 || total == 0,
            "Buckets::new: bucket_len 0 for {total} elements"
        );
        let count = if total == 0 { 0 } else { total.div_ceil(bucket_len) };
        let len = |k: usize| bucket_len.min(total - k * bucket_len);
        Buckets {
            send: (0..count).map(|k| vec![0.0; len(k)]).collect(),
            sum: (0..count).map(|k| vec![0.0; len(k)]).collect(),
            total,
            bucket_len,
        }
    }

    pub fn count(&self) -> usize {
        self.send.len()
    }

    /// Element range of bucket k in the flat vector.
    pub fn range(&self, k: usize) -> Range<usize> {
        assert!(k < self.count(), "bucket {k} of {}", self.count());
        let start = k * self.bucket_len;
        start..start + self.send[k].len()
    }

    /// The number of elements over all buckets.
    pub fn total(&self) -> usize {
        self.total
    }

    /// The longest bucket's length, as given to `new`.
    pub fn bucket_len(&self) -> usize {
        self.bucket_len
    }

    /// Bucket k's send and sum buffers, for an implementation of
    /// [`Collective::all_reduce_buckets`](super::Collective::all_reduce_buckets).
    pub fn pair(&mut self, k: usize) -> (&mut [f32], &mut [f32]) {
        (&mut self.send[k], &mut self.sum[k])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ranges of every bucket, in order.
    fn ranges(b: &Buckets) -> Vec<Range<usize>> {
        (0..b.count()).map(|k| b.range(k)).collect()
    }

    #[test]
    fn a_total_not_a_multiple_ends_with_a_shorter_bucket() {
        let b = Buckets::new(23, 5);
        assert_eq!(ranges(&b), vec![0..5, 5..10, 10..15, 15..20, 20..23]);
        assert_eq!((b.total(), b.bucket_len()), (23, 5));
    }

    #[test]
    fn a_multiple_cuts_into_equal_buckets() {
        assert_eq!(ranges(&Buckets::new(12, 4)), vec![0..4, 4..8, 8..12]);
    }

    #[test]
    fn a_bucket_longer_than_the_total_is_one_bucket() {
        assert_eq!(ranges(&Buckets::new(7, 100)), vec![0..7]);
        assert_eq!(ranges(&Buckets::new(1, 1)), vec![0..1]);
    }

    #[test]
    fn nothing_to_sum_is_no_bucket() {
        assert_eq!(Buckets::new(0, 8).count(), 0);
        assert_eq!(Buckets::new(0, 0).count(), 0);
    }

    #[test]
    fn buffers_match_their_ranges() {
        let mut b = Buckets::new(10, 4);
        for k in 0..b.count() {
            let len = b.range(k).len();
            let (send, sum) = b.pair(k);
            assert_eq!((send.len(), sum.len()), (len, len));
        }
    }

    #[test]
    #[should_panic(expected = "bucket_len 0")]
    fn a_zero_bucket_length_is_refused() {
        Buckets::new(3, 0);
    }
}
