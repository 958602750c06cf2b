//! CPU reference for the elementwise ops: f32 data, f64 arithmetic.

use std::f64::consts::{FRAC_1_SQRT_2, PI};

use super::ChannelRange;

pub fn gelu_f64(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x * FRAC_1_SQRT_2))
}

pub fn gelu_grad_f64(x: f64) -> f64 {
    0.5 * (1.0 + libm::erf(x * FRAC_1_SQRT_2)) + x * (-0.5 * x * x).exp() / (2.0 * PI).sqrt()
}

pub fn gelu(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| gelu_f64(v as f64) as f32).collect()
}

pub fn gelu_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
    x.iter()
        .zip(dy)
        .map(|(&v, &g)| (g as f64 * gelu_grad_f64(v as f64)) as f32)
        .collect()
}

/// `x if x > 0 else slope · x`.
pub fn leaky_relu(x: &[f32], slope: f32) -> Vec<f32> {
    x.iter()
        .map(|&v| if v > 0.0 { v } else { (slope as f64 * v as f64) as f32 })
        .collect()
}

/// `dy if x > 0 else slope · dy`.
pub fn leaky_relu_backward(x: &[f32], dy: &[f32], slope: f32) -> Vec<f32> {
    x.iter()
        .zip(dy)
        .map(|(&v, &g)| if v > 0.0 { g } else { (slope as f64 * g as f64) as f32 })
        .collect()
}

/// `x if x > 0 else exp(x) − 1`.
pub fn elu(x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|&v| if v > 0.0 { v } else { (v as f64).exp_m1() as f32 })
        .collect()
}

/// `dy if x > 0 else dy · exp(x)`.
pub fn elu_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
    x.iter()
        .zip(dy)
        .map(|(&v, &g)| {
            if v > 0.0 {
                g
            } else {
                (g as f64 * (v as f64).exp()) as f32
            }
        })
        .collect()
}

pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(&x, &y)| (x as f64 + y as f64) as f32).collect()
}

/// `(da, db)` of `y = a + b`: both are dy.
pub fn add_backward(dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    (dy.to_vec(), dy.to_vec())
}

/// `y = x * gain[c] + bias[c]`, NHWC with `C = gain.len()`.
pub fn affine(x: &[f32], gain: &[f32], bias: &[f32]) -> Vec<f32> {
    let c = gain.len();
    x.iter()
        .enumerate()
        .map(|(i, &v)| (v as f64 * gain[i % c] as f64 + bias[i % c] as f64) as f32)
        .collect()
}

/// `(dx, dgain, dbias)` of [`affine`].
pub fn affine_backward(x: &[f32], dy: &[f32], gain: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let c = gain.len();
    let mut dgain = vec![0f64; c];
    let mut dbias = vec![0f64; c];
    let mut dx = Vec::with_capacity(x.len());
    for (i, (&v, &g)) in x.iter().zip(dy).enumerate() {
        dx.push((g as f64 * gain[i % c] as f64) as f32);
        dgain[i % c] += g as f64 * v as f64;
        dbias[i % c] += g as f64;
    }
    let f = |v: Vec<f64>| v.into_iter().map(|s| s as f32).collect();
    (dx, f(dgain), f(dbias))
}

/// Channels `start..end` of a `[rows, channels]` tensor.
pub fn slice_channels(x: &[f32], channels: usize, start: usize, end: usize) -> Vec<f32> {
    x.chunks(channels)
        .flat_map(|row| row[start..end].iter().copied())
        .collect()
}

/// `a + x[.., start..start + C]` for a with C channels (x with `channels`).
pub fn add_channels(a: &[f32], x: &[f32], channels: usize, start: usize) -> Vec<f32> {
    let c = a.len() / (x.len() / channels).max(1);
    a.chunks(c.max(1))
        .zip(x.chunks(channels))
        .flat_map(|(ra, rx)| ra.iter().zip(&rx[start..start + c]).map(|(p, q)| p + q))
        .collect()
}

/// Backward of [`slice_channels`]: dy placed at `start..end`, zeros elsewhere.
pub fn slice_channels_backward(dy: &[f32], channels: usize, start: usize, end: usize) -> Vec<f32> {
    let width = end - start;
    let mut dx = vec![0f32; dy.len() / width.max(1) * channels];
    for (row, g) in dx.chunks_mut(channels).zip(dy.chunks(width)) {
        row[start..end].copy_from_slice(g);
    }
    dx
}

/// `dst[.., dst_range] = src[.., src_range]` for every row (N·H·W position);
/// other channels of dst untouched.
pub fn copy_channels(src: &[f32], src_range: ChannelRange, dst: &mut [f32], dst_range: ChannelRange) {
    let width = src_range.width();
    assert_eq!(width, dst_range.width(), "copy_channels: ranges differ in width");
    for (s, d) in src.chunks(src_range.channels).zip(dst.chunks_mut(dst_range.channels)) {
        d[dst_range.start..dst_range.end].copy_from_slice(&s[src_range.start..src_range.end]);
    }
}

/// `cat[a, b]` along channels.
pub fn concat_channels(a: &[f32], ca: usize, b: &[f32], cb: usize) -> Vec<f32> {
    a.chunks(ca)
        .zip(b.chunks(cb))
        .flat_map(|(ra, rb)| ra.iter().chain(rb).copied())
        .collect()
}

/// `(y[.., ..ca], y[.., ca..])`; also the backward of [`concat_channels`].
pub fn split_channels(y: &[f32], ca: usize, cb: usize) -> (Vec<f32>, Vec<f32>) {
    let c = ca + cb;
    (slice_channels(y, c, 0, ca), slice_channels(y, c, ca, c))
}
