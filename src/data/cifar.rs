//! CIFAR-10 binary batches: records of 1 label byte then 1024 R, 1024 G and
//! 1024 B bytes (row-major 32x32 planes). Returned as NHWC.

use super::ImageSet;
use crate::error::{Error, Result};

const PLANE: usize = 32 * 32;
const RECORD: usize = 1 + 3 * PLANE;

pub fn read_cifar10(bytes: &[u8]) -> Result<ImageSet> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(Error::Input(format!(
            "a CIFAR-10 binary file holds whole {RECORD}-byte records; this one has {} bytes",
            bytes.len()
        )));
    }
    let n = bytes.len() / RECORD;
    let mut pixels = Vec::with_capacity(n * 3 * PLANE);
    for record in bytes.chunks_exact(RECORD) {
        let planes = &record[1..];
        for p in 0..PLANE {
            pixels.extend_from_slice(&[planes[p], planes[PLANE + p], planes[2 * PLANE + p]]);
        }
    }
    Ok(ImageSet {
        n,
        h: 32,
        w: 32,
        c: 3,
        pixels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_become_channels_last() {
        let mut rec = vec![7u8];
        rec.extend((0..3 * PLANE).map(|i| (i / PLANE) as u8 * 10 + (i % 2) as u8));
        let set = read_cifar10(&rec).unwrap();
        assert_eq!(set.n, 1);
        assert_eq!(&set.pixels[..6], &[0, 10, 20, 1, 11, 21]);
        assert!(read_cifar10(&rec[..100]).unwrap_err().to_string().contains("3073-byte"));
    }
}
