//! The official-model parity fixture (tests/fixtures/official-vdvae): the
//! CPU reference executor computes what the official PyTorch VDVAE computes.

use vdvae::checkpoint::{load, NamedTensors};
use vdvae::data::{read_images, DataFormat};
use vdvae::graph::autodiff::append_backward;
use vdvae::graph::executor::cpu::{run, Noise};
use vdvae::graph::Sampling;
use vdvae::model::assemble::{build_model, ModelGraph};
use vdvae::model::preprocess::CIFAR10;
use vdvae::model::HParams;

fn fixture(file: &str) -> String {
    format!("{}/tests/fixtures/official-vdvae/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn json_number(file: &str, key: &str) -> f64 {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture(file)).unwrap()).unwrap();
    v[key].as_f64().unwrap()
}

/// Runs the fixture batch; returns the model, its values and the loss.
fn run_fixture(
    sampling: Sampling,
    backward: bool,
    seed: u64,
) -> (ModelGraph, vdvae::graph::executor::cpu::Values, f64) {
    let h = HParams::from_json_file(&fixture("tiny.json")).unwrap();
    let images = read_images(&fixture("digits64.bin"), DataFormat::Cifar10).unwrap();
    let mut m = build_model(&h, images.n, sampling).unwrap();
    if backward {
        append_backward(&mut m.graph).unwrap();
    }
    let mut values = m
        .values_from_checkpoint(&load(&fixture("tiny.safetensors")).unwrap(), "tiny")
        .unwrap();
    m.set_images(&mut values, &images, CIFAR10).unwrap();
    run(&m.graph, &mut values, Noise::new(seed, 0)).unwrap();
    let loss = values[m.loss].as_ref().unwrap()[0] as f64;
    (m, values, loss)
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn posterior_mean_elbo_and_gradients_match_the_official_model() {
    let (m, values, elbo) = run_fixture(Sampling::PosteriorMean, true, 0);
    let official = json_number("elbo-posterior-mean.json", "elbo_nats_per_dim");
    println!(
        "posterior-mean ELBO: ours {elbo:.9} official {official:.9} (rel {:.2e})",
        rel(elbo, official)
    );
    assert!(rel(elbo, official) <= 1e-4, "ELBO {elbo} vs official {official}");

    let ours = m.official_grads(&values).unwrap();
    let theirs: NamedTensors = load(&fixture("grad-posterior-mean.safetensors")).unwrap();
    let mut worst = (0.0f64, String::new());
    for (name, t) in &theirs {
        let g = &ours[name];
        let diff: f64 = g
            .data
            .iter()
            .zip(&t.data)
            .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm: f64 = t.data.iter().map(|&b| (b as f64).powi(2)).sum::<f64>().sqrt();
        if norm == 0.0 {
            assert!(diff <= 1e-7, "{name}: official gradient is 0, ours has norm {diff:e}");
            continue;
        }
        let r = diff / norm;
        if r > worst.0 {
            worst = (r, name.clone());
        }
        assert!(
            r <= 1e-3,
            "{name}: relative gradient error {r:.3e} (official norm {norm:.3e})"
        );
    }
    println!("worst gradient relative error: {:.3e} ({})", worst.0, worst.1);
}

#[test]
fn sampled_elbo_is_within_three_standard_deviations_of_the_official_mean() {
    let mean = json_number("elbo-sampled.json", "elbo_nats_per_dim");
    let std = json_number("elbo-sampled.json", "std");
    let (_, _, elbo) = run_fixture(Sampling::Posterior, false, 7);
    println!("sampled ELBO: ours {elbo:.6} official {mean:.6} ± {std:.6}");
    assert!(
        (elbo - mean).abs() <= 3.0 * std,
        "sampled ELBO {elbo} outside {mean} ± 3·{std}"
    );
}
