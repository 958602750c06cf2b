//! Image datasets as uint8 NHWC arrays: MNIST IDX (gzipped or not), CIFAR-10
//! binary batches, `.npy` arrays, folders of PNG and JPEG files. Every
//! malformed file is an error that names the file and what was wrong (in a
//! folder, a warning and a skipped file unless strict).

mod cifar;
pub mod dsprites;
mod folder;
mod folder_cache;
mod gzip;
mod idx;
mod npy;

pub use cifar::read_cifar10;
pub use folder::{read_image_folder, CacheUse, FolderImages, FolderOptions, Skipped};
pub use idx::read_idx_images;
pub use npy::{index_npy_bytes, npy_bytes, read_npy_images, read_npy_index_table, IndexTable};

use crate::error::{Error, Result};

/// `n` images of `h`x`w`x`c` uint8 pixels, NHWC.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub pixels: Vec<u8>,
}

impl ImageSet {
    pub fn image_len(&self) -> usize {
        self.h * self.w * self.c
    }

    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * self.image_len()..(i + 1) * self.image_len()]
    }

    /// Images `start..start + n` (they must exist).
    pub fn range(&self, start: usize, n: usize) -> ImageSet {
        let len = self.image_len();
        ImageSet {
            n,
            pixels: self.pixels[start * len..(start + n) * len].to_vec(),
            ..*self
        }
    }

    /// The images at `indices`, in that order (repeats allowed); an index past
    /// the end is an input error.
    pub fn select(&self, indices: &[usize]) -> Result<ImageSet> {
        let mut pixels = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            if i >= self.n {
                return Err(Error::Input(format!(
                    "image index {i} is past the end of the data ({} images, indices from 0)",
                    self.n
                )));
            }
            pixels.extend_from_slice(self.image(i));
        }
        Ok(ImageSet {
            n: indices.len(),
            pixels,
            ..*self
        })
    }

    /// The sets one after another (they must all have the same image size).
    pub fn concat(sets: &[ImageSet]) -> Result<ImageSet> {
        let Some(first) = sets.first() else {
            return Err(Error::Input("no images to join".into()));
        };
        let mut pixels = Vec::new();
        for s in sets {
            if (s.h, s.w, s.c) != (first.h, first.w, first.c) {
                return Err(Error::Input(format!(
                    "cannot join {}x{}x{} images with {}x{}x{} ones",
                    s.h, s.w, s.c, first.h, first.w, first.c
                )));
            }
            pixels.extend_from_slice(&s.pixels);
        }
        Ok(ImageSet {
            n: sets.iter().map(|s| s.n).sum(),
            pixels,
            ..*first
        })
    }

    /// The first `n` images, or all of them when there are fewer.
    pub fn first(&self, n: usize) -> ImageSet {
        self.range(0, n.min(self.n))
    }

    /// Zero-pads every image to `size`x`size`, centred (MNIST 28x28 → 32x32).
    pub fn pad_to(&self, size: usize) -> Result<ImageSet> {
        if self.h > size || self.w > size {
            return Err(Error::Input(format!(
                "images of {}x{} do not fit in {size}x{size}",
                self.h, self.w
            )));
        }
        let (top, left) = ((size - self.h) / 2, (size - self.w) / 2);
        let mut pixels = vec![0u8; self.n * size * size * self.c];
        for i in 0..self.n {
            for y in 0..self.h {
                let src = &self.image(i)[y * self.w * self.c..(y + 1) * self.w * self.c];
                let dst = ((i * size + y + top) * size + left) * self.c;
                pixels[dst..dst + src.len()].copy_from_slice(src);
            }
        }
        Ok(ImageSet {
            n: self.n,
            h: size,
            w: size,
            c: self.c,
            pixels,
        })
    }
}

/// File formats `--format` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DataFormat {
    /// CIFAR-10 binary batch: per record 1 label byte then 1024 R, 1024 G, 1024 B bytes.
    Cifar10,
    /// MNIST/Fashion-MNIST IDX images (`*-images-idx3-ubyte`, optionally `.gz`).
    Mnist,
    /// NumPy uint8 array of shape [N, H, W] or [N, H, W, C].
    Npy,
    /// A folder of PNG and JPEG files (searched recursively), centre-cropped and resized
    /// to the model's image size, grey or RGB by its image_channels.
    Images,
}

/// Reads a dataset file in the given format. A folder (`DataFormat::Images`)
/// needs its target size: that is [`read_image_folder`]'s.
pub fn read_images(path: &str, format: DataFormat) -> Result<ImageSet> {
    let parse: fn(&[u8]) -> Result<ImageSet> = match format {
        DataFormat::Cifar10 => read_cifar10,
        DataFormat::Mnist => read_idx_images,
        DataFormat::Npy => read_npy_images,
        DataFormat::Images => {
            return Err(Error::Input(format!(
                "{path}: an image folder is read at a model's size: read it with read_image_folder"
            )))
        }
    };
    let parsed = parse(&read_file(path, format)?);
    parsed.map_err(|e| Error::Input(format!("{path}: {e}")))
}

/// The first 1,000 MNIST test images, built into the binary (assets/), so a
/// default run needs no download.
pub fn bundled_mnist() -> ImageSet {
    const BYTES: &[u8] = include_bytes!("../../assets/mnist-1k-images-idx3-ubyte.gz");
    use std::io::Read;
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(BYTES)
        .read_to_end(&mut raw)
        .expect("the bundled MNIST subset is valid gzip");
    read_idx_images(&raw).expect("the bundled MNIST subset is a valid IDX file")
}

/// The file's bytes, gunzipped (no further than its header states, see
/// [`gzip`]) when it starts with the gzip magic.
fn read_file(path: &str, format: DataFormat) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })?;
    if !gzip::is_gzip(&raw) {
        return Ok(raw);
    }
    gzip::gunzip(&raw, format).map_err(|e| Error::Input(format!("{path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_centres_the_image() {
        let set = ImageSet {
            n: 1,
            h: 2,
            w: 2,
            c: 1,
            pixels: vec![1, 2, 3, 4],
        };
        let p = set.pad_to(4).unwrap();
        assert_eq!(p.pixels, vec![0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 0]);
        assert!(set.pad_to(1).is_err());
    }

    #[test]
    fn the_bundled_mnist_subset_loads() {
        let set = bundled_mnist();
        assert_eq!((set.n, set.h, set.w, set.c), (1000, 28, 28, 1));
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let err = read_images("/no/such/file.bin", DataFormat::Cifar10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/no/such/file.bin"), "{err}");
    }
}
