//! CPU reference for resampling: f32 data, f64 arithmetic. Shapes are NHWC and
//! assumed valid (the GPU ops validate them).

fn idx(shape: [usize; 4], n: usize, h: usize, w: usize, c: usize) -> usize {
    ((n * shape[1] + h) * shape[2] + w) * shape[3] + c
}

/// Average of each k×k block of `x` (`shape` = x's `[N, H, W, C]`).
pub fn avg_pool(x: &[f32], shape: [usize; 4], k: usize) -> Vec<f32> {
    let [n, h, w, c] = shape;
    let small = [n, h / k, w / k, c];
    let mut y = Vec::with_capacity(small.iter().product());
    for b in 0..n {
        for oh in 0..h / k {
            for ow in 0..w / k {
                for ch in 0..c {
                    let mut sum = 0f64;
                    for dh in 0..k {
                        for dw in 0..k {
                            sum += x[idx(shape, b, oh * k + dh, ow * k + dw, ch)] as f64;
                        }
                    }
                    y.push((sum / (k * k) as f64) as f32);
                }
            }
        }
    }
    y
}

/// Backward of [`avg_pool`]: each dy spread over its block, divided by k².
pub fn avg_pool_backward(dy: &[f32], shape: [usize; 4], k: usize) -> Vec<f32> {
    let [n, h, w, c] = shape;
    let small = [n, h / k, w / k, c];
    let mut dx = Vec::with_capacity(shape.iter().product());
    for b in 0..n {
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    dx.push((dy[idx(small, b, y / k, x / k, ch)] as f64 / (k * k) as f64) as f32);
                }
            }
        }
    }
    dx
}

/// Nearest-neighbour upsample by k (`shape` = x's `[N, H, W, C]`; y is `[N, H·k, W·k, C]`).
pub fn upsample_nearest(x: &[f32], shape: [usize; 4], k: usize) -> Vec<f32> {
    let [n, h, w, c] = shape;
    let mut y = Vec::with_capacity(x.len() * k * k);
    for b in 0..n {
        for yy in 0..h * k {
            for xx in 0..w * k {
                for ch in 0..c {
                    y.push(x[idx(shape, b, yy / k, xx / k, ch)]);
                }
            }
        }
    }
    y
}

/// Backward of [`upsample_nearest`]: the sum of dy over each k×k block.
pub fn upsample_nearest_backward(dy: &[f32], shape: [usize; 4], k: usize) -> Vec<f32> {
    let [n, h, w, c] = shape;
    let big = [n, h * k, w * k, c];
    let mut dx = Vec::with_capacity(shape.iter().product());
    for b in 0..n {
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let mut sum = 0f64;
                    for dh in 0..k {
                        for dw in 0..k {
                            sum += dy[idx(big, b, y * k + dh, x * k + dw, ch)] as f64;
                        }
                    }
                    dx.push(sum as f32);
                }
            }
        }
    }
    dx
}
