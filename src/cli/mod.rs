//! The command line's subcommands: one file each, holding its flags and the
//! body that calls the library. `main.rs` parses and hands the command here.

pub mod args;
mod check;
mod data;
mod diagnose;
mod disentangle;
mod encode;
mod eval;
mod grad;
mod import;
mod info;
mod interpolate;
pub mod logging;
mod plan;
mod profile;
mod reconstruct;
mod sample;
mod train;
mod tune;

use std::process::ExitCode;

use clap::Subcommand;
use vdvae::gpu::AdapterChoice;

#[derive(Subcommand)]
pub enum Command {
    /// List adapters; show the chosen one's features, limits and measured FMA ceiling
    Info(info::InfoArgs),
    /// Run every kernel on the adapter against the CPU reference; non-zero exit on any failure
    Check(check::CheckArgs),
    /// ELBO (nats/dim and bits/dim), distortion, rate and per-level KL of a checkpoint on a dataset
    Eval(eval::EvalArgs),
    /// Gradient of the mean ELBO over all images of a file (one batch), saved under official names
    Grad(grad::GradArgs),
    /// Train on the GPU, with a progress bar, a JSON-lines log, checkpoints (weights, EMA,
    /// optimizer state) and pictures. The default run (the Ladder VAE on the bundled 1,000
    /// MNIST images, 2,000 steps, about 10 minutes on lavapipe) ends with digits in samples.png
    Train(train::TrainArgs),
    /// Samples of a checkpoint as a PNG grid: every level drawn from its prior, or the top
    /// levels fixed to a reference image's posterior (--fix-levels K --reference I --data F)
    Sample(sample::SampleArgs),
    /// Inputs beside their reconstructions: per row, the top K levels from the posterior
    /// mean and the rest from the prior (--levels K1,K2,...)
    Reconstruct(reconstruct::ReconstructArgs),
    /// A strip from one image to another: level L's latent moves between the two posterior
    /// means, the levels above keep the first image's, the levels below come from the prior
    Interpolate(interpolate::InterpolateArgs),
    /// Every level's posterior mean and standard deviation of each image, to safetensors
    Encode(encode::EncodeArgs),
    /// Per-level KL, active units, mutual information and distortion by depth: DIR/report.json and PNG plots
    Diagnose(diagnose::DiagnoseArgs),
    /// MIG, SAP and DCI (disentanglement, completeness, informativeness) of each level's
    /// posterior means, and of all levels together, against labelled factors (`data dsprites`)
    Disentangle(disentangle::DisentangleArgs),
    /// Where a training step's time and FLOPs go: per kernel GPU time, FLOPs, bytes, rates and
    /// share of the FMA ceiling; for the step model FLOPs, pipelined wall time, MFU and GPU-busy time
    Profile(profile::ProfileArgs),
    /// Parameters, latent layers and planned peak memory of a training step; runs nothing
    Plan(plan::PlanArgs),
    /// Time the kernel variants a model's training step needs on this adapter and cache the choices
    Tune(tune::TuneArgs),
    /// Convert data once: `data images DIR --size S --out X.npy` decodes a folder of PNG/JPEG
    /// files as --format images does, into a .npy for --format npy; `data dsprites --out DIR`
    /// draws dSprites-like images with their factors
    Data(data::DataArgs),
    /// Convert a PyTorch checkpoint once: `import FILE.th --out FILE.safetensors` reads the
    /// official VDVAE's torch.save files (which --checkpoint also reads directly)
    Import(import::ImportArgs),
}

/// Runs `command` on the adapter `--adapter` names (its raw value, which a
/// training run's resume command repeats); an error is printed and fails the process.
pub fn run(command: Command, adapter: Option<&str>) -> ExitCode {
    let choice = AdapterChoice::from_flag_or_env(adapter);
    let result = match command {
        Command::Info(a) => info::run(&choice, &a),
        Command::Check(a) => check::run(&choice, &a),
        Command::Plan(a) => plan::run(&choice, &a),
        Command::Tune(a) => tune::run(&choice, &a),
        Command::Profile(a) => profile::run(&choice, &a),
        Command::Reconstruct(a) => reconstruct::run(&choice, &a),
        Command::Interpolate(a) => interpolate::run(&choice, &a),
        Command::Encode(a) => encode::run(&choice, &a),
        Command::Diagnose(a) => diagnose::run(&choice, &a),
        Command::Disentangle(a) => disentangle::run(&choice, &a),
        Command::Sample(a) => sample::run(&choice, &a),
        Command::Train(a) => train::run(&choice, &a, adapter),
        Command::Eval(a) => eval::run(&choice, &a),
        Command::Grad(a) => grad::run(&choice, &a),
        Command::Data(a) => data::run(&a),
        Command::Import(a) => import::run(&a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Creates an output folder and its parents.
fn create_dir(dir: &str) -> vdvae::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| vdvae::Error::Io {
        path: dir.to_string(),
        source: e,
    })
}
