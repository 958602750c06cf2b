//! `vdvae train`: its flags, and how a run is spread over ranks: one
//! process, threads over several adapters (`--adapters`), or MPI processes.

use std::process::ExitCode;

use clap::ValueEnum;
use vdvae::data::{DataFormat, ImageSet};
use vdvae::gpu::{AdapterChoice, GpuContext};
use vdvae::graph::Precision;
use vdvae::model::evaluate::fit_images;
use vdvae::model::preprocess::{CIFAR10, MNIST};
use vdvae::model::temperature::Temperatures;
use vdvae::model::{preset, HParams, PRESETS};
use vdvae::parallel::launched_by_mpirun;
use vdvae::train::{shell_command, train_threads, StopSignal, TrainOptions, TrainOutcome, INTERRUPTED_EXIT_CODE};

use super::args::{FolderArgs, PrecisionArg};

#[derive(clap::Args)]
pub struct TrainArgs {
    /// A named configuration (ignored with --config)
    #[arg(long, default_value = "ladder-mnist", value_parser = clap::builder::PossibleValuesParser::new(PRESETS))]
    preset: String,
    /// A JSON file of official VDVAE hyperparameters instead of a preset
    #[arg(long)]
    config: Option<String>,
    /// Image file, or a folder of PNG/JPEG files with --format images [default: the
    /// bundled MNIST subset]
    #[arg(long, requires = "format")]
    data: Option<String>,
    #[arg(long, value_enum)]
    format: Option<DataFormat>,
    #[command(flatten)]
    folder: FolderArgs,
    /// Training steps to run (on top of a resumed run's)
    #[arg(long, default_value_t = 2000)]
    steps: u32,
    /// Images per step [default: the config's n_batch]
    #[arg(long, value_parser = super::args::batch_size)]
    batch: Option<usize>,
    /// Run directory: checkpoints and log.jsonl [default: runs/<preset>]
    #[arg(long, value_parser = super::args::non_empty_path)]
    out: Option<String>,
    /// Write a checkpoint every this many steps (and always at the end); 0 = only at the end
    #[arg(long, default_value_t = 100)]
    save_every: u32,
    /// Continue the run in --out from its checkpoint
    #[arg(long)]
    resume: bool,
    /// Start a new run in --out even if it holds one, deleting that run's checkpoints and
    /// log.jsonl first (without --resume or --overwrite, a directory holding a run is refused)
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Seed of the initial weights, batch order and noise [default: the config's]
    #[arg(long)]
    seed: Option<u64>,
    /// Recompute blocks in the backward pass until the step's planned memory fits
    /// (e.g. 6GiB, 512MiB, 6000000000)
    #[arg(long, value_name = "SIZE", value_parser = super::args::parse_size)]
    memory_budget: Option<usize>,
    #[command(flatten)]
    precision: PrecisionArg,
    /// Write samples.png (16 samples of the EMA weights, 4x4) and reconstructions.png (the
    /// first 8 training images above their reconstructions from the EMA weights' posterior
    /// means) into the run directory every N steps of the run and at its end; 0 = never
    #[arg(long, default_value_t = 500, value_name = "N")]
    image_every: u32,
    /// Prior temperature of the samples in samples.png: one value, or one per level top
    /// first, or T:N for N levels (as sample --temperature)
    #[arg(long, default_value = "0.8", value_name = "T[,T|T:N...]", allow_hyphen_values = true)]
    image_temperature: Temperatures,
    /// Held-out images: the EMA weights' ELBO on them goes to log.jsonl and above the
    /// progress bar every --eval-every steps and at the end of the run
    #[arg(long, value_name = "FILE")]
    eval_data: Option<String>,
    /// Format of --eval-data [default: --format, or mnist with the bundled data]
    #[arg(long, value_enum, requires = "eval_data")]
    eval_format: Option<DataFormat>,
    /// Evaluate the held-out ELBO every N steps of the run (and at its end); 0 = only at the end
    #[arg(long, default_value_t = 500, value_name = "N")]
    eval_every: u32,
    /// Evaluate on the first N images of --eval-data, in batches of --batch
    #[arg(long, default_value_t = 1000, value_name = "N")]
    eval_limit: usize,
    /// Data-parallel training in this process: one thread per adapter (indices or
    /// names as --adapter; one may repeat: two devices on it), each taking --batch
    /// images of a global batch of (adapters x --batch). Under mpirun, do not use
    /// this: each MPI process is one rank (see README)
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    adapters: Vec<String>,
    /// Data-parallel runs: MiB of gradient summed among the ranks at a time; the sum
    /// of one bucket overlaps the copy of the next
    #[arg(long, default_value_t = 16.0, value_name = "MIB")]
    bucket_mib: f64,
    /// Stop with an error after N updates in a row were skipped (gradient norm at or
    /// above skip_threshold, or NaN): such a run learns nothing. A warning comes at 10;
    /// 0 = never stop
    #[arg(long, default_value_t = vdvae::train::DEFAULT_MAX_SKIPS_IN_A_ROW, value_name = "N")]
    max_skips_in_a_row: u32,
}

impl TrainArgs {
    /// The command that continues this run in `out_dir` for `steps` more steps.
    fn resume_command(&self, out_dir: &str, steps: u32, adapter: Option<&str>) -> Vec<String> {
        let mut flags: Vec<(&str, String)> = Vec::new();
        match &self.config {
            Some(config) => flags.push(("config", config.clone())),
            None => flags.push(("preset", self.preset.clone())),
        }
        let format_name = |f: DataFormat| f.to_possible_value().expect("no hidden formats").get_name().to_string();
        if let (Some(data), Some(format)) = (&self.data, self.format) {
            flags.push(("data", data.clone()));
            flags.push(("format", format_name(format)));
        }
        flags.push(("steps", steps.to_string()));
        if let Some(batch) = self.batch {
            flags.push(("batch", batch.to_string()));
        }
        flags.push(("out", out_dir.to_string()));
        flags.push(("save-every", self.save_every.to_string()));
        if let Some(seed) = self.seed {
            flags.push(("seed", seed.to_string()));
        }
        if let Some(bytes) = self.memory_budget {
            flags.push(("memory-budget", bytes.to_string()));
        }
        if self.precision.get() != Precision::F32 {
            flags.push(("precision", self.precision.get().to_string()));
        }
        flags.push(("image-every", self.image_every.to_string()));
        flags.push(("image-temperature", self.image_temperature.to_string()));
        if let Some(eval_data) = &self.eval_data {
            flags.push(("eval-data", eval_data.clone()));
            if let Some(format) = self.eval_format {
                flags.push(("eval-format", format_name(format)));
            }
            flags.push(("eval-every", self.eval_every.to_string()));
            flags.push(("eval-limit", self.eval_limit.to_string()));
        }
        if let Some(adapter) = adapter {
            flags.push(("adapter", adapter.to_string()));
        }
        if !self.adapters.is_empty() {
            flags.push(("adapters", self.adapters.join(",")));
        }
        let program = std::env::args().next().unwrap_or_else(|| "vdvae".into());
        [program, "train".into()]
            .into_iter()
            .chain(flags.into_iter().flat_map(|(name, value)| [format!("--{name}"), value]))
            .chain(self.folder.strict.then(|| "--strict".into()))
            .chain(["--resume".into()])
            .collect()
    }
}

/// Ctrl-C and SIGTERM ask `vdvae train` to stop after the current step and
/// save; a second one ends the process at once (the previous checkpoint
/// stays whole: files are renamed into place only when complete).
fn stop_on_signals() -> StopSignal {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = StopSignal::new();
    for (signal, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")] {
        let s = stop.clone();
        let action = move || {
            if s.request() {
                signal_hook::low_level::exit(INTERRUPTED_EXIT_CODE);
            }
        };
        // SAFETY: the action is async-signal-safe: atomics and `_exit` only.
        if let Err(e) = unsafe { signal_hook::low_level::register(signal, action) } {
            eprintln!("warning: no {name} handler ({e}); stopping the run loses the steps since its last checkpoint");
        }
    }
    stop
}

pub fn run(choice: &AdapterChoice, a: &TrainArgs, adapter: Option<&str>) -> vdvae::Result<ExitCode> {
    let stop = stop_on_signals();
    let mut h = match &a.config {
        Some(c) => HParams::from_json_file(c)?,
        None => preset(&a.preset)?,
    };
    if let Some(seed) = a.seed {
        h.seed = seed;
    }
    let (images, format) = match (&a.data, a.format) {
        (Some(path), Some(format)) => (a.folder.read(path, format, &h)?, format),
        _ => (vdvae::data::bundled_mnist(), DataFormat::Mnist),
    };
    let images = fit_images(&h, images)?;
    let norm = if format == DataFormat::Mnist { MNIST } else { CIFAR10 };
    // Flags are checked and held-out images read before any step, so a mistake costs no training.
    if let Err(e) = a.image_temperature.per_level(h.latent_levels()?) {
        return Err(vdvae::Error::Input(format!(
            "--image-temperature {}: {e}",
            a.image_temperature
        )));
    }
    let eval_images = match &a.eval_data {
        Some(path) => {
            if a.eval_limit == 0 {
                return Err(vdvae::Error::Input("--eval-limit must be at least 1".into()));
            }
            let images = a.folder.read(path, a.eval_format.unwrap_or(format), &h)?;
            Some(fit_images(&h, images.first(a.eval_limit))?)
        }
        None => None,
    };
    let name = a
        .config
        .as_deref()
        .map_or(a.preset.as_str(), |c| c.trim_end_matches(".json"));
    let out_dir = a
        .out
        .clone()
        .unwrap_or_else(|| format!("runs/{}", name.rsplit('/').next().unwrap_or(name)));
    if !(a.bucket_mib > 0.0 && a.bucket_mib.is_finite()) {
        return Err(vdvae::Error::Input(format!(
            "--bucket-mib {}: give a positive size",
            a.bucket_mib
        )));
    }
    if let (true, Some(seed)) = (a.resume, a.seed) {
        note_other_seed(&out_dir, seed);
    }
    let options = vdvae::train::TrainOptions {
        steps: a.steps,
        batch: a.batch.unwrap_or(h.n_batch),
        out_dir: out_dir.clone(),
        save_every: a.save_every,
        norm,
        resume: a.resume,
        overwrite: a.overwrite,
        memory_budget: a.memory_budget,
        precision: a.precision.get(),
        image_every: a.image_every,
        image_temperature: a.image_temperature.clone(),
        eval_images,
        eval_every: a.eval_every,
        bucket_len: ((a.bucket_mib * (1 << 20) as f64 / 4.0) as usize).max(64),
        max_skips_in_a_row: a.max_skips_in_a_row,
    };
    let run = Run {
        h: &h,
        images: &images,
        options: &options,
        stop: &stop,
        precision: a.precision.get(),
    };
    let Some(outcome) = run.on_ranks(choice, &a.adapters)? else {
        return Ok(ExitCode::SUCCESS); // a rank other than 0: rank 0 reports
    };
    if let Some(s) = outcome.last {
        println!(
            "step {}: ELBO {:.4} nats/dim, {:.2} nats/image (distortion {:.4}, rate {:.4}), grad norm {:.2}, skipped steps {}",
            s.iteration,
            s.elbo,
            s.elbo * images.image_len() as f64,
            s.distortion,
            s.rate,
            s.grad_norm,
            s.skips
        );
        if !s.beta_per_level.is_empty() {
            let betas: Vec<String> = s.beta_per_level.iter().map(|b| format!("{b:.3}")).collect();
            println!("β per level (top first): {}", betas.join(" "));
        }
    }
    let checkpoint =
        format!("checkpoint: {out_dir}/model.safetensors (EMA: model-ema.safetensors, optimizer: opt.safetensors)");
    if !outcome.stopped {
        println!("{checkpoint}");
        return Ok(ExitCode::SUCCESS);
    }
    let left = a.steps - outcome.steps_run;
    eprintln!(
        "stopped on request after {} of {} steps (the run has trained {} steps in all)",
        outcome.steps_run, a.steps, outcome.iteration
    );
    eprintln!("{checkpoint}");
    eprintln!(
        "resume the {left} steps left with:\n  {}",
        shell_command(&a.resume_command(&out_dir, left, adapter))
    );
    Ok(ExitCode::from(INTERRUPTED_EXIT_CODE as u8))
}

/// Says so when `--resume --seed S` gives the run another seed than its
/// checkpoint's: its batches and noise then differ from an uninterrupted run's.
fn note_other_seed(out_dir: &str, seed: u64) {
    let saved = vdvae::checkpoint::load_metadata(&format!("{out_dir}/opt.safetensors"))
        .ok()
        .and_then(|meta| serde_json::from_str::<serde_json::Value>(meta.get("config")?).ok())
        .and_then(|config| config["seed"].as_u64());
    // No readable checkpoint: the resume itself says what is wrong.
    if let Some(saved) = saved.filter(|&s| s != seed) {
        eprintln!(
            "note: --seed {seed} replaces the run's seed {saved}: its batch order and noise streams from here \
             on differ from those of an uninterrupted run (drop --seed to continue it exactly)"
        );
    }
}

/// What every rank of a run trains.
struct Run<'a> {
    h: &'a HParams,
    images: &'a ImageSet,
    options: &'a TrainOptions,
    stop: &'a StopSignal,
    precision: Precision,
}

impl Run<'_> {
    /// Trains in one process, in threads over `adapters`, or as this MPI
    /// process's rank; returns rank 0's outcome (None on the other MPI ranks).
    fn on_ranks(&self, choice: &AdapterChoice, adapters: &[String]) -> vdvae::Result<Option<TrainOutcome>> {
        if launched_by_mpirun() {
            if !adapters.is_empty() {
                return Err(vdvae::Error::Input(
                    "--adapters runs ranks as threads of one process; under mpirun each process is a rank: \
                     drop --adapters (use --adapter to pick each process's adapter)"
                        .into(),
                ));
            }
            return self.mpi(choice);
        }
        let o = self.options;
        if adapters.len() > 1 {
            let choices: Vec<AdapterChoice> = adapters.iter().map(|s| AdapterChoice::parse(s)).collect();
            eprintln!(
                "training on {} adapters in one process ({}), {} images a step ({} x --batch {}), {} images, run directory {}",
                adapters.len(),
                adapters.join(","),
                adapters.len() * o.batch,
                adapters.len(),
                o.batch,
                self.images.n,
                o.out_dir
            );
            return train_threads(&choices, self.h, self.images, o, self.stop).map(Some);
        }
        let choice = adapters.first().map_or(choice.clone(), |s| AdapterChoice::parse(s));
        let ctx = GpuContext::new(&choice)?;
        eprintln!(
            "training on {} ({} images, activations stored as {}), run directory {}",
            ctx.adapter.name, self.images.n, self.precision, o.out_dir
        );
        vdvae::train::train(&ctx, self.h, self.images, o, self.stop).map(Some)
    }

    #[cfg(not(feature = "mpi"))]
    fn mpi(&self, _: &AdapterChoice) -> vdvae::Result<Option<TrainOutcome>> {
        Err(vdvae::Error::Input(
            "started by mpirun, but this vdvae was built without MPI: \
             build it with `cargo build --release --features mpi` (needs Open MPI: libopenmpi-dev)"
                .into(),
        ))
    }

    /// One rank per MPI process, on `--adapter` or else on adapter (local
    /// rank mod adapters), so the processes of one machine spread over its GPUs.
    #[cfg(feature = "mpi")]
    fn mpi(&self, choice: &AdapterChoice) -> vdvae::Result<Option<TrainOutcome>> {
        use vdvae::parallel::{Collective, MpiRanks};
        let mut world = MpiRanks::init()?;
        let choice = match choice {
            AdapterChoice::HighPerformance if std::env::var_os("VDVAE_ADAPTER").is_none() => {
                AdapterChoice::Index(world.local_rank() % vdvae::gpu::list_adapters().len().max(1))
            }
            other => other.clone(),
        };
        let (rank, ranks, o) = (world.rank(), world.ranks(), self.options);
        if rank == 0 {
            eprintln!(
                "training on {ranks} MPI ranks, {} images a step ({ranks} x --batch {}), {} images, run directory {}",
                ranks * o.batch,
                o.batch,
                self.images.n,
                o.out_dir
            );
        }
        let outcome = vdvae::train::train_mpi(&mut world, &choice, self.h, self.images, o, self.stop)?;
        Ok((rank == 0).then_some(outcome))
    }
}
