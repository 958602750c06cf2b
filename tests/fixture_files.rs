//! Loaders on real files that ship with the repository: MNIST IDX gz (assets/),
//! a real MNIST label file, the official parity fixture (images, config, weights).
//! The full datasets are read by the `datasets` test target (tests/datasets.rs).

use vdvae::data::{read_images, DataFormat};

fn repo_file(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn fixture(file: &str) -> String {
    repo_file(&format!("tests/fixtures/official-vdvae/{file}"))
}

#[test]
fn reads_the_bundled_mnist_subset_from_its_gz_file() {
    let set = read_images(&repo_file("assets/mnist-1k-images-idx3-ubyte.gz"), DataFormat::Mnist).unwrap();
    assert_eq!((set.n, set.h, set.w, set.c), (1_000, 28, 28, 1));
    let mean = set.pixels.iter().map(|&p| p as f64).sum::<f64>() / set.pixels.len() as f64;
    assert!(
        (mean - 31.18).abs() < 0.01,
        "the first 1,000 MNIST test images average 31.18, got {mean}"
    );
    assert_eq!(
        set.pixels,
        vdvae::data::bundled_mnist().pixels,
        "the file and the built-in copy differ"
    );
    let padded = set.pad_to(32).unwrap();
    assert_eq!(padded.pixels.len(), 1_000 * 32 * 32);
}

#[test]
fn reads_the_parity_fixture_images() {
    let set = read_images(&fixture("digits64.bin"), DataFormat::Cifar10).unwrap();
    assert_eq!((set.n, set.h, set.w, set.c), (64, 32, 32, 3));
}

#[test]
fn a_label_file_is_rejected_with_the_reason() {
    let labels = repo_file("tests/fixtures/mnist/t10k-labels-first16-idx1-ubyte.gz");
    let err = read_images(&labels, DataFormat::Mnist).unwrap_err();
    assert!(err.to_string().contains("label files"), "{err}");
}

#[test]
fn the_official_fixture_checkpoint_matches_the_tiny_config() {
    let h = vdvae::model::HParams::from_json_file(&fixture("tiny.json")).unwrap();
    let specs = vdvae::model::params::param_specs(&h).unwrap();
    let weights = vdvae::checkpoint::load(&fixture("tiny.safetensors")).unwrap();
    vdvae::model::params::check_against(&specs, &weights, "tiny.safetensors").unwrap();
    let grads = vdvae::checkpoint::load(&fixture("grad-posterior-mean.safetensors")).unwrap();
    vdvae::model::params::check_against(&specs, &grads, "grad-posterior-mean.safetensors").unwrap();
}
