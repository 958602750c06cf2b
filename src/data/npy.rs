//! NumPy `.npy` (format 1.0/2.0/3.0) uint8 arrays of shape [N, H, W] or [N, H, W, C], C-order.

use super::ImageSet;
use crate::error::{Error, Result};

fn header_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}'])?
    };
    Some(rest[..end].trim())
}

pub fn read_npy_images(bytes: &[u8]) -> Result<ImageSet> {
    let bad = |m: String| Err(Error::Input(m));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return bad("not a .npy file (missing the \\x93NUMPY magic)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
        v => return bad(format!("unsupported .npy format version {v}")),
    };
    let Some(header) = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
    else {
        return bad(".npy header is truncated or not text".into());
    };
    let descr = header_value(header, "descr").unwrap_or("");
    if !matches!(descr, "'|u1'" | "'u1'" | "'<u1'" | "'|b1'") {
        return bad(format!("the array must be uint8 (descr '|u1'), got {descr}"));
    }
    if header_value(header, "fortran_order") != Some("False") {
        return bad("Fortran-ordered arrays are not supported; save with np.ascontiguousarray".into());
    }
    let shape: Vec<usize> = header_value(header, "shape")
        .unwrap_or("")
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| Error::Input(format!("unreadable .npy shape in header {header:?}")))?;
    let (n, h, w, c) = match shape[..] {
        [n, h, w] => (n, h, w, 1),
        [n, h, w, c] => (n, h, w, c),
        _ => {
            return bad(format!(
                "expected an array of shape [N, H, W] or [N, H, W, C], got {shape:?}"
            ))
        }
    };
    // A forged shape's product can wrap around usize: then no file holds it.
    let Some(want) = [h, w, c].iter().try_fold(n, |len, &d| len.checked_mul(d)) else {
        return bad(format!(
            "the .npy header's shape {shape:?} has more elements than any file can hold"
        ));
    };
    let data = &bytes[start + header_len..];
    if data.len() != want {
        return bad(format!(
            "the .npy header says {shape:?} ({want} bytes) but {} bytes follow",
            data.len()
        ));
    }
    Ok(ImageSet {
        n,
        h,
        w,
        c,
        pixels: data.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn reads_nhwc_and_nhw_arrays() {
        let set = read_npy_images(&npy("|u1", "(2, 1, 1, 3)", &[1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!((set.n, set.h, set.w, set.c), (2, 1, 1, 3));
        let set = read_npy_images(&npy("|u1", "(1, 2, 2)", &[1, 2, 3, 4])).unwrap();
        assert_eq!((set.n, set.c), (1, 1));
    }

    #[test]
    fn wrong_dtype_shape_or_length_are_errors() {
        assert!(read_npy_images(&npy("<f4", "(1, 1, 1)", &[0; 4]))
            .unwrap_err()
            .to_string()
            .contains("uint8"));
        assert!(read_npy_images(&npy("|u1", "(4,)", &[0; 4]))
            .unwrap_err()
            .to_string()
            .contains("shape"));
        assert!(read_npy_images(&npy("|u1", "(1, 2, 2)", &[0; 3]))
            .unwrap_err()
            .to_string()
            .contains("bytes follow"));
        assert!(read_npy_images(b"garbage").is_err());
    }

    #[test]
    fn a_shape_whose_size_wraps_around_is_an_error_not_a_panic() {
        // 2^32 * 2^32 * 1 * 1 wraps to 0 in a u64: it must not match the 0 bytes that follow.
        let err = read_npy_images(&npy("|u1", "(4294967296, 4294967296, 1, 1)", &[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("more elements than any file can hold"), "{err}");
        let err = read_npy_images(&npy("|u1", "(18446744073709551615, 2, 2)", &[0; 4]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("more elements"), "{err}");
    }
}
