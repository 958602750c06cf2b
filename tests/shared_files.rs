//! Loaders on the real files in ../shared: MNIST IDX gz, the official parity fixture (images, config, weights).

use vdvae::data::{read_images, DataFormat};

fn shared(path: &str) -> String {
    format!("{}/../shared/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn reads_the_mnist_test_set() {
    let set = read_images(&shared("datasets/mnist/t10k-images-idx3-ubyte.gz"), DataFormat::Mnist).unwrap();
    assert_eq!((set.n, set.h, set.w, set.c), (10_000, 28, 28, 1));
    let mean = set.pixels.iter().map(|&p| p as f64).sum::<f64>() / set.pixels.len() as f64;
    assert!((mean - 33.3).abs() < 1.0, "MNIST mean pixel is about 33.3, got {mean}");
    let padded = set.pad_to(32).unwrap();
    assert_eq!(padded.pixels.len(), 10_000 * 32 * 32);
}

#[test]
fn reads_the_parity_fixture_images() {
    let set = read_images(&shared("fixtures/official-vdvae/digits64.bin"), DataFormat::Cifar10).unwrap();
    assert_eq!((set.n, set.h, set.w, set.c), (64, 32, 32, 3));
}

#[test]
fn a_label_file_is_rejected_with_the_reason() {
    let err = read_images(&shared("datasets/mnist/t10k-labels-idx1-ubyte.gz"), DataFormat::Mnist).unwrap_err();
    assert!(err.to_string().contains("label files"), "{err}");
}

#[test]
fn the_official_fixture_checkpoint_matches_the_tiny_config() {
    let h = vdvae::model::HParams::from_json_file(&shared("fixtures/official-vdvae/tiny.json")).unwrap();
    let specs = vdvae::model::params::param_specs(&h).unwrap();
    let weights = vdvae::checkpoint::load(&shared("fixtures/official-vdvae/tiny.safetensors")).unwrap();
    vdvae::model::params::check_against(&specs, &weights, "tiny.safetensors").unwrap();
    let grads = vdvae::checkpoint::load(&shared("fixtures/official-vdvae/grad-posterior-mean.safetensors")).unwrap();
    vdvae::model::params::check_against(&specs, &grads, "grad-posterior-mean.safetensors").unwrap();
}
