//! `vdvae eval --iw K`: the importance-weighted estimate of the negative
//! log-likelihood (Burda et al. 2015),
//!
//! ```text
//! log p̂(x) = logsumexp_k [log p(x | z_k) + log p(z_k) − log q(z_k | x)] − log K,   z_k ~ q(z | x)
//! ```
//!
//! Each pass runs the model in `Sampling::Importance` on a batch of images
//! repeated `s` times: the likelihood gives −log p(x | z_k) per row and every
//! level the single-sample log q − log p, so a row's −log w_k is its NLL plus
//! its levels' sums. The K log-weights of an image arrive in chunks of `s` and
//! are folded into a max-shifted running logsumexp. The noise step of a pass
//! is its index, so the same K, seed and rows per pass give the same draws on
//! the CPU and the GPU.

use super::evaluate::{fit_batch_graph, run_batch, Device, EvalInput};
use super::preprocess::Binarization;
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::graph::{Sampling, TensorId};

/// A max-shifted logsumexp of any number of values, added in any grouping.
#[derive(Clone, Copy, Debug)]
pub struct LogSumExp {
    max: f64,
    /// Σ exp(v − max) over the values added.
    sum: f64,
    count: usize,
}

impl Default for LogSumExp {
    fn default() -> LogSumExp {
        LogSumExp {
            max: f64::NEG_INFINITY,
            sum: 0.0,
            count: 0,
        }
    }
}

impl LogSumExp {
    pub fn add(&mut self, v: f64) {
        self.count += 1;
        if v <= self.max {
            self.sum += (v - self.max).exp();
        } else {
            // Rescale what was summed to the new maximum.
            self.sum = self.sum * (self.max - v).exp() + 1.0;
            self.max = v;
        }
    }

    /// log Σ exp(v); −∞ with nothing added.
    pub fn value(&self) -> f64 {
        self.max + self.sum.ln()
    }

    /// log of the mean of exp(v): the IW bound's log p̂.
    pub fn log_mean(&self) -> f64 {
        self.value() - (self.count as f64).ln()
    }
}

/// What `--iw K` reports.
#[derive(Clone, Debug)]
pub struct IwEstimate {
    pub k: usize,
    /// Mean over the images of −log p̂(x), nats per image.
    pub nll_nats_per_image: f64,
}

/// Rows of each pass: `samples` draws of each of `images` images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IwChunks {
    pub samples: usize,
    pub images: usize,
}

impl IwChunks {
    /// At most `rows` rows per pass: all K samples of several images when K
    /// fits, else `rows` samples of one image per pass.
    pub fn new(k: usize, rows: usize) -> IwChunks {
        let samples = k.min(rows.max(1));
        IwChunks {
            samples,
            images: (rows / samples).max(1),
        }
    }
}

/// Each image repeated `s` times in a row.
fn repeat_rows(data: &[f32], images: usize, s: usize) -> Vec<f32> {
    let per = data.len() / images.max(1);
    let mut out = Vec::with_capacity(data.len() * s);
    for image in data.chunks(per) {
        for _ in 0..s {
            out.extend_from_slice(image);
        }
    }
    out
}

/// The IW estimate of −log p(x) with `k` samples per image, `rows` rows per pass.
pub fn importance_weighted(device: Device<'_>, input: &EvalInput<'_>, k: usize, rows: usize) -> Result<IwEstimate> {
    let EvalInput {
        images,
        norm,
        binarize_seed,
        ..
    } = *input;
    if k == 0 {
        return Err(Error::Input("--iw needs at least 1 sample per image".into()));
    }
    if images.n == 0 {
        return Err(Error::Input("the dataset holds no images".into()));
    }
    let chunks = IwChunks::new(k, rows);
    let passes_per_image_chunk = k.div_ceil(chunks.samples);
    let iw = EvalInput {
        sampling: Sampling::Importance,
        ..*input
    };
    let progress = indicatif::ProgressBar::new((images.n * k) as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "iw {bar:40} {pos}/{len} samples [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .expect("a valid progress template"),
    );
    let mut graph = None;
    let mut total = 0.0f64;
    let mut start = 0;
    let mut pass = 0u32;
    while start < images.n {
        let n = chunks.images.min(images.n - start);
        let rows = n * chunks.samples;
        let (m, forward) = fit_batch_graph(device, &iw, rows, &mut graph)?;
        let chunk: ImageSet = images.range(start, n);
        let binarization = Binarization::Fixed {
            seed: binarize_seed,
            first_image: start,
        };
        // Encode (and binarize) each image once, then repeat its rows.
        let encoded = super::builder::encode_images(m.likelihood, &chunk, norm, binarization);
        let data: Vec<(TensorId, Vec<f32>)> = m
            .data_inputs()
            .into_iter()
            .zip(encoded)
            .map(|(t, d)| (t, repeat_rows(&d, n, chunks.samples)))
            .collect();
        let mut lse = vec![LogSumExp::default(); n];
        for c in 0..passes_per_image_chunk {
            let (nll, kls) = run_batch(m, forward, &data, pass)?;
            pass += 1;
            // The last pass may hold more draws than K needs: use the first ones.
            let used = chunks.samples.min(k - c * chunks.samples);
            for (i, acc) in lse.iter_mut().enumerate() {
                for j in 0..used {
                    let row = i * chunks.samples + j;
                    let neg_log_w = nll[row] as f64 + kls.iter().map(|kl| kl[row] as f64).sum::<f64>();
                    acc.add(-neg_log_w);
                }
            }
            progress.inc((n * used) as u64);
        }
        for acc in &lse {
            let log_p = acc.log_mean();
            if !log_p.is_finite() {
                return Err(Error::Input(format!(
                    "the importance-weighted log-likelihood is not finite ({log_p}): the checkpoint's weights produce NaN or inf"
                )));
            }
            total -= log_p;
        }
        start += n;
        progress.set_message(format!("{:.3} nats/image so far", total / start as f64));
    }
    progress.finish_and_clear();
    Ok(IwEstimate {
        k,
        nll_nats_per_image: total / images.n as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_logsumexp_equals_the_direct_one_in_any_order() {
        let v = [-1000.0, -999.5, -1003.0, -998.0, -1001.25];
        let direct = {
            let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
        };
        for order in [[0, 1, 2, 3, 4], [3, 4, 0, 2, 1], [2, 0, 4, 1, 3]] {
            let mut acc = LogSumExp::default();
            order.iter().for_each(|&i| acc.add(v[i]));
            assert!((acc.value() - direct).abs() < 1e-12, "{} vs {direct}", acc.value());
            assert!((acc.log_mean() - (direct - 5f64.ln())).abs() < 1e-12);
        }
    }

    #[test]
    fn passes_hold_at_most_the_rows_asked() {
        assert_eq!(
            IwChunks::new(5000, 1000),
            IwChunks {
                samples: 1000,
                images: 1
            }
        );
        assert_eq!(
            IwChunks::new(10, 1000),
            IwChunks {
                samples: 10,
                images: 100
            }
        );
        assert_eq!(IwChunks::new(3, 2), IwChunks { samples: 2, images: 1 });
        assert_eq!(
            repeat_rows(&[1.0, 2.0, 3.0, 4.0], 2, 2),
            vec![1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0]
        );
    }
}
