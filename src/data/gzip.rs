//! Gzipped dataset files, read so that a small file cannot expand without
//! bound (a gzip bomb): the format's header is decompressed first, then the
//! bytes it states and one more (to tell a longer stream from a whole one),
//! so a header that disagrees with the data fails after reading what it
//! states, not after the whole stream.

use std::io::Read;

use super::{idx, npy, DataFormat};

/// The largest expansion DEFLATE allows: about 1032 bytes out per byte in.
const MAX_RATIO: usize = 1032;
/// Bytes decompressed first, to find the header in: IDX's is 16 bytes, a
/// `.npy` one a few hundred.
const HEAD: usize = 64 * 1024;

/// Whether `raw` starts with the gzip magic.
pub(super) fn is_gzip(raw: &[u8]) -> bool {
    raw.starts_with(&[0x1f, 0x8b])
}

/// Appends at most `n` more decompressed bytes to `out`.
fn read_up_to(decoder: &mut impl Read, n: usize, out: &mut Vec<u8>) -> Result<(), String> {
    decoder
        .take(n as u64)
        .read_to_end(out)
        .map(|_| ())
        .map_err(|e| format!("corrupt gzip data: {e}"))
}

/// The decompressed bytes of the gzip file `raw` holding a file of `format`.
/// A CIFAR-10 batch has no header: it is read to the most its gzip can hold.
pub(super) fn gunzip(raw: &[u8], format: DataFormat) -> Result<Vec<u8>, String> {
    gunzip_from(raw, raw.len(), format)
}

/// [`gunzip`] of the `len` bytes `compressed` yields.
fn gunzip_from(compressed: impl Read, len: usize, format: DataFormat) -> Result<Vec<u8>, String> {
    let mut decoder = flate2::read::GzDecoder::new(compressed);
    let mut out = Vec::new();
    read_up_to(&mut decoder, HEAD, &mut out)?;
    let most = len.saturating_mul(MAX_RATIO);
    let stated = match format {
        DataFormat::Mnist => idx::stated_len(&out),
        DataFormat::Npy => npy::stated_len(&out),
        // A folder is no gzip file; read_images refuses it before this.
        DataFormat::Cifar10 | DataFormat::Images => Some(most),
    };
    // No header to read: the parser says what is wrong with what came first.
    let Some(stated) = stated else {
        return Ok(out);
    };
    if stated > most {
        return Err(format!(
            "the header states a {stated}-byte file, more than this {len}-byte gzip can hold \
             (at most {most} bytes): the header is corrupt"
        ));
    }
    if out.len() <= stated {
        read_up_to(&mut decoder, stated + 1 - out.len(), &mut out)?;
    }
    if out.len() > stated {
        return Err(format!(
            "the decompressed data runs past the {stated} bytes its header states \
             (reading stopped there): the header or the data is wrong"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn idx_header(n: u32, h: u32, w: u32) -> Vec<u8> {
        [0x803u32, n, h, w].iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    /// A reader that counts the bytes the decoder asks of the compressed stream.
    struct Counting<'a> {
        inner: &'a [u8],
        read: std::rc::Rc<std::cell::Cell<usize>>,
    }

    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read.set(self.read.get() + n);
            Ok(n)
        }
    }

    #[test]
    fn a_whole_file_reads_back() {
        let mut file = idx_header(2, 2, 2);
        file.extend([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(gunzip(&gzip(&file), DataFormat::Mnist).unwrap(), file);
    }

    #[test]
    fn a_bomb_behind_a_small_header_stops_after_the_stated_bytes() {
        // A header stating 10 images of 28x28, then 256 MiB of zeros: about 250 KiB of gzip.
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&idx_header(10, 28, 28)).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..256 {
            e.write_all(&zeros).unwrap();
        }
        let gz = e.finish().unwrap();
        let read = std::rc::Rc::new(std::cell::Cell::new(0));
        let counting = Counting {
            inner: &gz,
            read: read.clone(),
        };
        let err = gunzip_from(counting, gz.len(), DataFormat::Mnist).unwrap_err();
        assert!(err.contains("runs past the 7856 bytes its header states"), "{err}");
        // What was read of the stream: the decoder's buffer, not the whole bomb.
        assert!(read.get() < gz.len() / 4, "read {} of {} bytes", read.get(), gz.len());
    }

    #[test]
    fn a_header_stating_more_than_the_gzip_can_hold_fails_at_once() {
        let gz = gzip(&idx_header(60000, 4096, 4096));
        let err = gunzip(&gz, DataFormat::Mnist).unwrap_err();
        assert!(err.contains("more than this") && err.contains("gzip can hold"), "{err}");
    }

    #[test]
    fn a_short_stream_is_left_to_the_parser() {
        let mut file = idx_header(3, 2, 2);
        file.extend([1, 2, 3]);
        let bytes = gunzip(&gzip(&file), DataFormat::Mnist).unwrap();
        let err = idx::read_idx_images(&bytes).unwrap_err().to_string();
        assert!(err.contains("holds 3 bytes"), "{err}");
    }
}
