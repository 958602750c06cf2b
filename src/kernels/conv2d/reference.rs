//! CPU reference for conv2d (stride 1, "same" padding k/2): f32 data, f64 accumulation.
//! Layouts: x `[N,H,W,Cin]`, w `[Cout,K,K,Cin]` (OHWI), y `[N,H,W,Cout]`.

use super::Conv2dShape;
use crate::kernels::elementwise::reference::{gelu_f64, gelu_grad_f64};

/// The conv's input after the optional GELU, in f64.
fn activation(s: &Conv2dShape, x: &[f32]) -> Vec<f64> {
    x.iter()
        .map(|&v| if s.gelu_input { gelu_f64(v as f64) } else { v as f64 })
        .collect()
}

/// Input pixel (ih, iw) feeding output (oh, ow) through tap (kh, kw), if inside the image.
fn source(s: &Conv2dShape, oh: usize, ow: usize, kh: usize, kw: usize) -> Option<(usize, usize)> {
    let pad = s.k / 2;
    let ih = (oh + kh).checked_sub(pad).filter(|&v| v < s.h)?;
    let iw = (ow + kw).checked_sub(pad).filter(|&v| v < s.w)?;
    Some((ih, iw))
}

/// `y = conv(act(x), w) + bias + residual`.
pub fn forward(s: &Conv2dShape, x: &[f32], w: &[f32], bias: Option<&[f32]>, residual: Option<&[f32]>) -> Vec<f32> {
    let a = activation(s, x);
    let (k, cin, cout) = (s.k, s.cin, s.cout);
    let mut y = vec![0f32; s.n * s.h * s.w * cout];
    for n in 0..s.n {
        for oh in 0..s.h {
            for ow in 0..s.w {
                let pix = (n * s.h + oh) * s.w + ow;
                for co in 0..cout {
                    let mut acc = bias.map_or(0.0, |b| b[co] as f64);
                    if let Some(r) = residual {
                        acc += r[pix * cout + co] as f64;
                    }
                    for kh in 0..k {
                        for kw in 0..k {
                            let Some((ih, iw)) = source(s, oh, ow, kh, kw) else {
                                continue;
                            };
                            let xi = ((n * s.h + ih) * s.w + iw) * cin;
                            let wi = ((co * k + kh) * k + kw) * cin;
                            for ci in 0..cin {
                                acc += a[xi + ci] * w[wi + ci] as f64;
                            }
                        }
                    }
                    y[pix * cout + co] = acc as f32;
                }
            }
        }
    }
    y
}

/// `dx = conv_transpose(dy, w) * act'(x)`.
pub fn backward_input(s: &Conv2dShape, x: &[f32], w: &[f32], dy: &[f32]) -> Vec<f32> {
    let (k, cin, cout) = (s.k, s.cin, s.cout);
    let mut dx = vec![0f64; s.x_len()];
    for n in 0..s.n {
        for oh in 0..s.h {
            for ow in 0..s.w {
                let yi = ((n * s.h + oh) * s.w + ow) * cout;
                for kh in 0..k {
                    for kw in 0..k {
                        let Some((ih, iw)) = source(s, oh, ow, kh, kw) else {
                            continue;
                        };
                        let xi = ((n * s.h + ih) * s.w + iw) * cin;
                        for co in 0..cout {
                            let g = dy[yi + co] as f64;
                            let wi = ((co * k + kh) * k + kw) * cin;
                            for ci in 0..cin {
                                dx[xi + ci] += g * w[wi + ci] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    dx.iter()
        .zip(x)
        .map(|(&g, &v)| {
            let d = if s.gelu_input { gelu_grad_f64(v as f64) } else { 1.0 };
            (g * d) as f32
        })
        .collect()
}

/// `dw[co,kh,kw,ci] = Σ_{n,oh,ow} dy[n,oh,ow,co] * act(x)[n, oh+kh-pad, ow+kw-pad, ci]`.
pub fn backward_weight(s: &Conv2dShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let a = activation(s, x);
    let (k, cin, cout) = (s.k, s.cin, s.cout);
    let mut dw = vec![0f64; s.w_len()];
    for n in 0..s.n {
        for oh in 0..s.h {
            for ow in 0..s.w {
                let yi = ((n * s.h + oh) * s.w + ow) * cout;
                for kh in 0..k {
                    for kw in 0..k {
                        let Some((ih, iw)) = source(s, oh, ow, kh, kw) else {
                            continue;
                        };
                        let xi = ((n * s.h + ih) * s.w + iw) * cin;
                        for co in 0..cout {
                            let g = dy[yi + co] as f64;
                            let wi = ((co * k + kh) * k + kw) * cin;
                            for ci in 0..cin {
                                dw[wi + ci] += g * a[xi + ci];
                            }
                        }
                    }
                }
            }
        }
    }
    dw.iter().map(|&v| v as f32).collect()
}

/// `db[co] = Σ_{n,h,w} dy[n,h,w,co]`.
pub fn backward_bias(s: &Conv2dShape, dy: &[f32]) -> Vec<f32> {
    let mut db = vec![0f64; s.cout];
    for (i, &g) in dy.iter().enumerate() {
        db[i % s.cout] += g as f64;
    }
    db.iter().map(|&v| v as f32).collect()
}

/// The weights of dx = conv(dy, ·): `wt[ci, t, co] = w[co, k² - 1 - t, ci]`
/// (taps reversed, input and output channels swapped).
pub fn flip_transpose(s: &Conv2dShape, w: &[f32]) -> Vec<f32> {
    let kk = s.k * s.k;
    let mut wt = vec![0.0; w.len()];
    for co in 0..s.cout {
        for t in 0..kk {
            for ci in 0..s.cin {
                wt[(ci * kk + t) * s.cout + co] = w[(co * kk + (kk - 1 - t)) * s.cin + ci];
            }
        }
    }
    wt
}
