//! IDX image files (MNIST, Fashion-MNIST): magic 0x00000803, dims N, H, W (big
//! endian u32), then N·H·W uint8 pixels.

use super::ImageSet;
use crate::error::{Error, Result};

/// The length of the whole file an IDX image header at the start of `head`
/// states (`usize::MAX` when that overflows), or None when `head` holds no
/// such header.
pub(super) fn stated_len(head: &[u8]) -> Option<usize> {
    let word = |i: usize| Some(u32::from_be_bytes(head.get(4 * i..4 * i + 4)?.try_into().ok()?) as usize);
    if word(0)? != 0x0803 {
        return None;
    }
    let (n, h, w) = (word(1)?, word(2)?, word(3)?);
    let pixels = n.checked_mul(h).and_then(|v| v.checked_mul(w));
    Some(pixels.and_then(|p| p.checked_add(16)).unwrap_or(usize::MAX))
}

pub fn read_idx_images(bytes: &[u8]) -> Result<ImageSet> {
    let bad = |m: String| Err(Error::Input(m));
    if bytes.len() < 16 {
        return bad(format!(
            "an IDX image file needs a 16-byte header, got {} bytes",
            bytes.len()
        ));
    }
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap()) as usize;
    if word(0) != 0x0803 {
        return bad(format!(
            "not an IDX image file (magic {:#010x}, expected 0x00000803; label files are 0x00000801)",
            word(0)
        ));
    }
    let (n, h, w) = (word(1), word(2), word(3));
    if h == 0 || w == 0 {
        return bad(format!(
            "IDX header says images of {h}x{w} pixels: height and width must be at least 1"
        ));
    }
    let want = n.checked_mul(h).and_then(|v| v.checked_mul(w)).unwrap_or(usize::MAX);
    if bytes.len() - 16 != want {
        return bad(format!(
            "IDX header says {n}x{h}x{w} pixels but the file holds {} bytes",
            bytes.len() - 16
        ));
    }
    Ok(ImageSet {
        n,
        h,
        w,
        c: 1,
        pixels: bytes[16..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(n: u32, h: u32, w: u32, pixels: &[u8]) -> Vec<u8> {
        let mut b: Vec<u8> = [0x803u32, n, h, w].iter().flat_map(|v| v.to_be_bytes()).collect();
        b.extend_from_slice(pixels);
        b
    }

    #[test]
    fn reads_a_small_file() {
        let set = read_idx_images(&idx(2, 1, 2, &[1, 2, 3, 4])).unwrap();
        assert_eq!((set.n, set.h, set.w, set.c), (2, 1, 2, 1));
        assert_eq!(set.image(1), &[3, 4]);
    }

    #[test]
    fn the_stated_length_is_the_header_and_its_pixels() {
        assert_eq!(stated_len(&idx(10, 28, 28, &[])), Some(16 + 10 * 28 * 28));
        // (2^32 - 1)^3 pixels overflow a usize.
        assert_eq!(stated_len(&idx(u32::MAX, u32::MAX, u32::MAX, &[])), Some(usize::MAX));
        assert_eq!(stated_len(&idx(1, 1, 1, &[])[..15]), None);
        let mut labels = idx(1, 1, 1, &[0]);
        labels[3] = 1;
        assert_eq!(stated_len(&labels), None);
    }

    #[test]
    fn truncated_and_label_files_are_errors() {
        assert!(read_idx_images(&idx(2, 1, 2, &[1, 2, 3]))
            .unwrap_err()
            .to_string()
            .contains("holds 3 bytes"));
        let mut labels = idx(1, 1, 1, &[0]);
        labels[3] = 1;
        assert!(read_idx_images(&labels)
            .unwrap_err()
            .to_string()
            .contains("label files"));
        assert!(read_idx_images(&[0; 5]).is_err());
    }

    #[test]
    fn images_of_zero_height_or_width_are_refused() {
        for (h, w) in [(0, 2), (2, 0)] {
            let err = read_idx_images(&idx(3, h, w, &[])).unwrap_err().to_string();
            assert!(err.contains("at least 1"), "{h}x{w}: {err}");
        }
    }
}
