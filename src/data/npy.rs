//! NumPy `.npy` (format 1.0/2.0/3.0) uint8 arrays of shape [N, H, W] or [N, H, W, C], C-order.
//! Bool arrays are refused (their True is 1, not 255), as are images of zero
//! height, width or channels and headers with anything NumPy does not write.

use super::ImageSet;
use crate::error::{Error, Result};

/// What a `.npy` header says about its array.
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A cursor over the header: NumPy writes a Python dict literal
/// `{'descr': '|u1', 'fortran_order': False, 'shape': (N, H, W), }` padded
/// with spaces and a newline. Anything else (unknown or repeated keys, junk
/// after a value or after the dict) is refused rather than guessed around.
struct Parser<'a> {
    rest: &'a str,
}

impl<'a> Parser<'a> {
    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(token) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), String> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(format!("expected `{token}` at {:?}", self.head()))
        }
    }

    fn head(&self) -> &str {
        &self.rest[..self.rest.len().min(20)]
    }

    /// A quoted Python string without escapes (dtype codes and key names).
    fn string(&mut self) -> Result<&'a str, String> {
        self.skip_space();
        let quote = match self.rest.chars().next() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(format!("expected a quoted string at {:?}", self.head())),
        };
        let body = &self.rest[1..];
        let end = body.find(quote).ok_or("an unterminated string")?;
        self.rest = &body[end + 1..];
        Ok(&body[..end])
    }

    fn boolean(&mut self) -> Result<bool, String> {
        if self.eat("True") {
            Ok(true)
        } else if self.eat("False") {
            Ok(false)
        } else {
            Err(format!("expected True or False at {:?}", self.head()))
        }
    }

    /// A tuple of non-negative integers: `()`, `(4,)`, `(2, 3)`, `(2, 3,)`.
    fn shape(&mut self) -> Result<Vec<usize>, String> {
        self.expect("(")?;
        let mut dims = Vec::new();
        loop {
            if self.eat(")") {
                return Ok(dims);
            }
            self.skip_space();
            let digits = self.rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(self.rest.len());
            let dim = self.rest[..digits]
                .parse()
                .map_err(|_| format!("expected a dimension at {:?}", self.head()))?;
            self.rest = &self.rest[digits..];
            dims.push(dim);
            if !self.eat(",") {
                self.expect(")")?;
                return Ok(dims);
            }
        }
    }
}

fn parse_header(text: &str) -> Result<Header, String> {
    let mut p = Parser { rest: text };
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    p.expect("{")?;
    while !p.eat("}") {
        let key = p.string()?;
        p.expect(":")?;
        let repeated = match key {
            "descr" => descr.replace(p.string()?.to_string()).is_some(),
            "fortran_order" => fortran_order.replace(p.boolean()?).is_some(),
            "shape" => shape.replace(p.shape()?).is_some(),
            other => return Err(format!("unknown key '{other}'")),
        };
        if repeated {
            return Err(format!("key '{key}' given twice"));
        }
        if !p.eat(",") {
            p.expect("}")?;
            break;
        }
    }
    if !p.rest.trim().is_empty() {
        return Err(format!("junk after the header's dict: {:?}", p.head()));
    }
    Ok(Header {
        descr: descr.ok_or("no 'descr' key")?,
        fortran_order: fortran_order.ok_or("no 'fortran_order' key")?,
        shape: shape.ok_or("no 'shape' key")?,
    })
}

/// The header of a `.npy` file and where its data starts.
fn read_header(bytes: &[u8]) -> Result<(Header, usize)> {
    let bad = |m: String| Err(Error::Input(m));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return bad("not a .npy file (missing the \\x93NUMPY magic)".into());
    }
    let (header_len, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
        v => return bad(format!("unsupported .npy format version {v}")),
    };
    let Some(header) = bytes
        .get(start..start.saturating_add(header_len))
        .and_then(|h| std::str::from_utf8(h).ok())
    else {
        return bad(".npy header is truncated or not text".into());
    };
    let parsed = parse_header(header).map_err(|e| Error::Input(format!("unreadable .npy header ({e}): {header:?}")))?;
    Ok((parsed, start + header_len))
}

/// The length of the whole file a `.npy` header at the start of `head`
/// states (`usize::MAX` when that overflows), or None when `head` holds no
/// readable header or one of an array whose elements are not one byte (the
/// parser refuses those, saying why).
pub(super) fn stated_len(head: &[u8]) -> Option<usize> {
    let (header, data_start) = read_header(head).ok()?;
    if !["u1", "i1", "b1"].iter().any(|d| header.descr.ends_with(d)) {
        return None;
    }
    let elements = header.shape.iter().try_fold(1usize, |len, &d| len.checked_mul(d));
    Some(elements.and_then(|e| e.checked_add(data_start)).unwrap_or(usize::MAX))
}

pub fn read_npy_images(bytes: &[u8]) -> Result<ImageSet> {
    let bad = |m: String| Err(Error::Input(m));
    let (
        Header {
            descr,
            fortran_order,
            shape,
        },
        data_start,
    ) = read_header(bytes)?;
    if descr == "|b1" {
        // Read as bytes, True would be intensity 1 of 255: a black image.
        return bad(
            "the array is bool (descr '|b1'), refused: its 1s would be near-black pixels; \
             save it as uint8 0/255, e.g. np.save(path, a.astype(np.uint8) * 255)"
                .into(),
        );
    }
    if !matches!(descr.as_str(), "|u1" | "u1" | "<u1" | ">u1" | "=u1") {
        return bad(format!("the array must be uint8 (descr '|u1'), got '{descr}'"));
    }
    if fortran_order {
        return bad("Fortran-ordered arrays are not supported; save with np.ascontiguousarray".into());
    }
    let (n, h, w, c) = match shape[..] {
        [n, h, w] => (n, h, w, 1),
        [n, h, w, c] => (n, h, w, c),
        _ => {
            return bad(format!(
                "expected an array of shape [N, H, W] or [N, H, W, C], got {shape:?}"
            ))
        }
    };
    if h == 0 || w == 0 || c == 0 {
        return bad(format!(
            "the .npy array's images are {h}x{w}x{c} (shape {shape:?}): height, width and channels must be at least 1"
        ));
    }
    // A forged shape's product can wrap around usize: then no file holds it.
    let Some(want) = [h, w, c].iter().try_fold(n, |len, &d| len.checked_mul(d)) else {
        return bad(format!(
            "the .npy header's shape {shape:?} has more elements than any file can hold"
        ));
    };
    let data = &bytes[data_start..];
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

/// The images as a `.npy` file [`read_npy_images`] reads back unchanged:
/// uint8, C order, shape [N, H, W] for one channel (as MNIST is usually
/// kept) and [N, H, W, C] otherwise.
pub fn npy_bytes(set: &ImageSet) -> Vec<u8> {
    let shape: &[usize] = if set.c == 1 {
        &[set.n, set.h, set.w]
    } else {
        &[set.n, set.h, set.w, set.c]
    };
    npy_file("|u1", shape, &set.pixels)
}

/// A `.npy` file of `data` (already in `descr`'s byte order), C order: the
/// header padded so the data starts on a 64-byte boundary, as NumPy writes it.
fn npy_file(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    // Python's tuple syntax: a one-element tuple keeps its comma.
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    // Shape text of a few integers: far below format 1.0's 65,535-byte limit.
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A table of non-negative integers, `rows` x `cols`, row-major: labels such
/// as `vdvae data dsprites`' factor indices.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexTable {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<usize>,
}

/// The table as a `.npy` file of int64 (NumPy's default integer), shape [rows, cols].
pub fn index_npy_bytes(table: &IndexTable) -> Vec<u8> {
    let data: Vec<u8> = table.values.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect();
    npy_file("<i8", &[table.rows, table.cols], &data)
}

/// A 2-D `.npy` array of integers (uint8, or little-endian int16/32/64 or
/// uint16/32/64), C order, every value non-negative.
pub fn read_npy_index_table(bytes: &[u8]) -> Result<IndexTable> {
    let bad = |m: String| Err(Error::Input(m));
    let (header, data_start) = read_header(bytes)?;
    if header.fortran_order {
        return bad("Fortran-ordered arrays are not supported; save with np.ascontiguousarray".into());
    }
    let [rows, cols] = header.shape[..] else {
        return bad(format!(
            "expected a 2-D array [N, factors], got shape {:?}",
            header.shape
        ));
    };
    let descr = header.descr.as_str();
    let (width, signed) = match descr {
        "|u1" | "u1" | "<u1" | "=u1" | "|i1" | "i1" | "<i1" | "=i1" => (1, descr.contains('i')),
        "<i2" | "<u2" => (2, descr.contains('i')),
        "<i4" | "<u4" => (4, descr.contains('i')),
        "<i8" | "<u8" => (8, descr.contains('i')),
        other => {
            return bad(format!(
                "the array must hold integers (e.g. descr '<i8', NumPy's int64), got '{other}'"
            ))
        }
    };
    let Some(want) = rows.checked_mul(cols).and_then(|e| e.checked_mul(width)) else {
        return bad(format!(
            "the shape {:?} has more elements than any file can hold",
            header.shape
        ));
    };
    let data = &bytes[data_start..];
    if data.len() != want {
        return bad(format!(
            "the .npy header says {:?} ({want} bytes) but {} bytes follow",
            header.shape,
            data.len()
        ));
    }
    let mut values = Vec::with_capacity(rows * cols);
    for (i, chunk) in data.chunks_exact(width).enumerate() {
        let mut word = [0u8; 8];
        word[..width].copy_from_slice(chunk);
        // Sign-extend a negative signed value so the check below sees it as negative.
        if signed && chunk[width - 1] & 0x80 != 0 {
            word[width..].fill(0xff);
        }
        let v = i64::from_le_bytes(word);
        // A uint64 past i64::MAX reads negative here too: no dataset has that many classes.
        if v < 0 {
            return bad(format!(
                "value {i} (row {}, column {}) is negative or too large: indices must be 0 or more",
                i / cols.max(1),
                i % cols.max(1)
            ));
        }
        values.push(v as usize);
    }
    Ok(IndexTable { rows, cols, values })
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

    #[test]
    fn bool_arrays_and_empty_images_are_refused() {
        let err = read_npy_images(&npy("|b1", "(1, 2, 2)", &[0, 1, 1, 0]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bool") && err.contains("255"), "{err}");
        for shape in ["(2, 0, 3)", "(2, 3, 0)", "(2, 3, 3, 0)"] {
            let err = read_npy_images(&npy("|u1", shape, &[])).unwrap_err().to_string();
            assert!(err.contains("at least 1"), "{shape}: {err}");
        }
    }

    #[test]
    fn the_stated_length_counts_the_header_and_one_byte_an_element() {
        let file = npy("|u1", "(3, 2, 2)", &[0; 12]);
        assert_eq!(stated_len(&file[..file.len() - 12]), Some(file.len()));
        assert_eq!(
            stated_len(&npy("|u1", "(18446744073709551615, 2, 2)", &[])),
            Some(usize::MAX)
        );
        assert_eq!(stated_len(b"\x93NUMPY"), None);
        assert_eq!(stated_len(&npy("<f4", "(3, 2, 2)", &[])), None);
    }

    #[test]
    fn a_header_with_junk_is_refused() {
        for (descr, shape) in [
            ("|u1", "(1, 2, 2)xyz"),
            ("|u1", "(1, 2, 2) (3,)"),
            ("|u1", "(1, 2 2)"),
            ("|u1", "(1, -2, 2)"),
            ("|u1' junk '", "(1, 2, 2)"),
        ] {
            let err = read_npy_images(&npy(descr, shape, &[0; 4])).unwrap_err().to_string();
            assert!(err.contains("unreadable .npy header"), "{descr} {shape}: {err}");
        }
        // NumPy's own spellings parse: no trailing comma, double quotes, a trailing comma in the tuple.
        let header = "{\"descr\": \"|u1\", \"fortran_order\": False, \"shape\": (1, 2, 2,)}";
        let h = parse_header(header).unwrap();
        assert_eq!(
            (h.descr.as_str(), h.fortran_order, h.shape),
            ("|u1", false, vec![1, 2, 2])
        );
    }

    #[test]
    fn written_arrays_read_back_unchanged() {
        for c in [1, 3] {
            let set = ImageSet {
                n: 2,
                h: 3,
                w: 2,
                c,
                pixels: (0..2 * 3 * 2 * c as u8).collect(),
            };
            let bytes = npy_bytes(&set);
            assert_eq!(bytes.len() % 64, set.pixels.len() % 64, "data starts 64-byte aligned");
            assert_eq!(read_npy_images(&bytes).unwrap(), set);
        }
    }

    #[test]
    fn index_tables_read_back_unchanged_and_negatives_are_refused() {
        let table = IndexTable {
            rows: 2,
            cols: 3,
            values: vec![0, 1, 2, 39, 31, 5],
        };
        let bytes = index_npy_bytes(&table);
        assert_eq!(read_npy_index_table(&bytes).unwrap(), table);
        let small = read_npy_index_table(&npy("|u1", "(2, 2)", &[1, 2, 3, 4])).unwrap();
        assert_eq!(small.values, vec![1, 2, 3, 4]);
        let err = read_npy_index_table(&npy("<i2", "(1, 2)", &[1, 0, 0xff, 0xff]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("negative") && err.contains("column 1"), "{err}");
        let err = read_npy_index_table(&npy("<f4", "(1, 1)", &[0; 4]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("integers"), "{err}");
        let err = read_npy_index_table(&npy("|u1", "(4,)", &[0; 4]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("2-D"), "{err}");
    }
}
