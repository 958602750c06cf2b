//! Loaders on the full datasets, which do not ship with the repository.
//!
//! Not part of `cargo test --workspace`; run it with the dataset folder (holding
//! `mnist/` and `fashion-mnist/`, gzipped IDX files, the standard splits) named by
//! `VDVAE_DATASETS`, a path absolute or relative to the repository root:
//!
//! ```sh
//! VDVAE_DATASETS=path/to/datasets cargo test --release --test datasets
//! ```
//!
//! Without the variable every test fails and says what to set.

use std::path::PathBuf;
use vdvae::data::{bundled_mnist, read_images, DataFormat, ImageSet};

/// A file of the dataset folder named by `VDVAE_DATASETS`; panics with what to set when it is missing.
fn dataset_file(path: &str) -> String {
    let Some(root) = std::env::var_os("VDVAE_DATASETS") else {
        panic!(
            "the datasets tests need the dataset folder: set VDVAE_DATASETS to the folder holding \
             mnist/ and fashion-mnist/ (e.g. VDVAE_DATASETS=path/to/datasets cargo test --release --test datasets)"
        );
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(root);
    let file = root.join(path);
    assert!(
        file.is_file(),
        "VDVAE_DATASETS is {}, which has no {path}",
        root.display()
    );
    file.to_string_lossy().into_owned()
}

fn read(path: &str) -> ImageSet {
    read_images(&dataset_file(path), DataFormat::Mnist).unwrap()
}

fn mean_pixel(set: &ImageSet) -> f64 {
    set.pixels.iter().map(|&p| p as f64).sum::<f64>() / set.pixels.len() as f64
}

/// A 28x28 greyscale split: its image count and mean pixel (to 0.01).
fn read_split(file: &str, n: usize, mean: f64) -> ImageSet {
    let set = read(file);
    assert_eq!((set.n, set.h, set.w, set.c), (n, 28, 28, 1), "{file}");
    assert!(
        (mean_pixel(&set) - mean).abs() < 0.01,
        "{file}: mean pixel {}",
        mean_pixel(&set)
    );
    set
}

#[test]
fn reads_the_mnist_splits() {
    for (file, n, mean) in [
        ("mnist/t10k-images-idx3-ubyte.gz", 10_000, 33.79),
        ("mnist/train-images-idx3-ubyte.gz", 60_000, 33.32),
    ] {
        let set = read_split(file, n, mean);
        assert_eq!(set.pad_to(32).unwrap().pixels.len(), n * 32 * 32);
    }
}

#[test]
fn reads_the_fashion_mnist_splits() {
    for (file, n, mean) in [
        ("fashion-mnist/t10k-images-idx3-ubyte.gz", 10_000, 73.15),
        ("fashion-mnist/train-images-idx3-ubyte.gz", 60_000, 72.94),
    ] {
        read_split(file, n, mean);
    }
}

#[test]
fn the_bundled_subset_is_the_first_1000_mnist_test_images() {
    let test_set = read("mnist/t10k-images-idx3-ubyte.gz");
    let bundled = bundled_mnist();
    assert_eq!(bundled.n, 1_000);
    assert_eq!(bundled.pixels[..], test_set.pixels[..1_000 * 28 * 28]);
}

#[test]
fn the_full_label_files_are_rejected_with_the_reason() {
    for file in [
        "mnist/t10k-labels-idx1-ubyte.gz",
        "fashion-mnist/train-labels-idx1-ubyte.gz",
    ] {
        let err = read_images(&dataset_file(file), DataFormat::Mnist).unwrap_err();
        assert!(err.to_string().contains("label files"), "{file}: {err}");
    }
}
