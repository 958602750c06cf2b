//! The `vdvae` command line. Each subcommand calls one library function.

use std::process::ExitCode;

mod cli;

use clap::{Parser, Subcommand, ValueEnum};
use cli::args::{device_of, DataArgs, DeviceArg, ModelArgs, OptionalData, PrecisionArg};
use cli::diagnostics::{
    run_diagnose, run_encode, run_interpolate, run_reconstruct, DiagnoseArgs, EncodeArgs, InterpolateArgs,
    ReconstructArgs,
};
use vdvae::check::{format_table, CaseSize, Checker};
use vdvae::checkpoint;
use vdvae::data::{read_images, DataFormat};
use vdvae::gpu::{list_adapters, measure_fma_ceiling, quiet_display_probe_when_headless, AdapterChoice, GpuContext};
use vdvae::graph::Precision;
use vdvae::model::evaluate::{evaluate, fit_images, gradient};
use vdvae::model::importance::importance_weighted;
use vdvae::model::preprocess::{CIFAR10, MNIST};
use vdvae::model::sample::{sample_images, write_grid_png, FixedLevels};
use vdvae::model::temperature::Temperatures;
use vdvae::model::{preset, report::plan_training, HParams, PRESETS};
use vdvae::ops::run_checks;
use vdvae::train::{profile_training, shell_command, ProfileOptions, StopSignal, INTERRUPTED_EXIT_CODE};

#[derive(Parser)]
#[command(
    name = "vdvae",
    version,
    about = "Very Deep VAEs trained on the GPU through wgpu, every kernel checked against a CPU reference"
)]
struct Cli {
    /// GPU adapter to use: an index from `vdvae info` or part of its name
    /// [default: the high-performance one]
    #[arg(long, global = true, env = "VDVAE_ADAPTER")]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List adapters; show the chosen one's features, limits and measured FMA ceiling
    Info {
        /// Seconds to spend measuring the FMA ceiling
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
    /// Run every kernel on the adapter against the CPU reference; non-zero exit on any failure
    Check {
        /// Only this kernel family (e.g. matmul, conv2d, rng)
        #[arg(long)]
        kernel: Option<String>,
        /// Also run the large shapes (the biggest tensor one binding holds); slower
        #[arg(long)]
        full: bool,
        /// Corrupt one element of every GPU result, to prove the check catches it
        #[arg(long, hide = true)]
        perturb: bool,
    },
    /// ELBO (nats/dim and bits/dim), distortion, rate and per-level KL of a checkpoint on a dataset
    Eval {
        #[command(flatten)]
        args: DataArgs,
        /// Images per forward pass [default: the config's n_batch]
        #[arg(long)]
        batch: Option<usize>,
        /// Print one JSON object (elbo_nats_per_dim, elbo_nats_per_image, bits_per_dim, distortion,
        /// rate, kl_per_level; with --iw also iw_k, iw_nll_nats_per_image, iw_nll_bits_per_dim)
        #[arg(long)]
        json: bool,
        /// Also the importance-weighted NLL with K posterior samples per image (Burda et al. 2015)
        #[arg(long, value_name = "K")]
        iw: Option<usize>,
        /// Rows (image samples) per forward pass of --iw
        #[arg(long, default_value_t = 1000, value_name = "ROWS")]
        iw_rows: usize,
    },
    /// Gradient of the mean ELBO over all images of a file (one batch), saved under official names
    Grad {
        #[command(flatten)]
        args: DataArgs,
        /// Output safetensors file (written atomically)
        #[arg(long)]
        out: String,
    },
    /// Train on the GPU, with a progress bar, a JSON-lines log, checkpoints (weights, EMA,
    /// optimizer state) and pictures. The default run (the Ladder VAE on the bundled 1,000
    /// MNIST images, 2,000 steps, about 10 minutes on lavapipe) ends with digits in samples.png
    Train {
        #[command(flatten)]
        args: TrainArgs,
    },
    /// Samples of a checkpoint as a PNG grid: every level drawn from its prior, or the top
    /// levels fixed to a reference image's posterior (--fix-levels K --reference I --data F)
    Sample {
        #[command(flatten)]
        args: SampleArgs,
    },
    /// Inputs beside their reconstructions: per row, the top K levels from the posterior
    /// mean and the rest from the prior (--levels K1,K2,...)
    Reconstruct {
        #[command(flatten)]
        args: ReconstructArgs,
    },
    /// A strip from one image to another: level L's latent moves between the two posterior
    /// means, the levels above keep the first image's, the levels below come from the prior
    Interpolate {
        #[command(flatten)]
        args: InterpolateArgs,
    },
    /// Every level's posterior mean and standard deviation of each image, to safetensors
    Encode {
        #[command(flatten)]
        args: EncodeArgs,
    },
    /// Per-level KL, active units and distortion by depth: DIR/report.json and PNG plots
    Diagnose {
        #[command(flatten)]
        args: DiagnoseArgs,
    },
    /// Where a training step's time and FLOPs go: per kernel GPU time, FLOPs, bytes, rates and
    /// share of the FMA ceiling; for the step model FLOPs, pipelined wall time, MFU and GPU-busy time
    Profile {
        #[command(flatten)]
        args: ProfileArgs,
    },
    /// Parameters, latent layers and planned peak memory of a training step; runs nothing
    Plan {
        #[command(flatten)]
        model: ModelArgs,
        /// Images per step [default: the config's n_batch]
        #[arg(long)]
        batch: Option<usize>,
        /// Recompute blocks in the backward pass until the planned memory fits
        /// (e.g. 6GiB, 512MiB, 6000000000); prints the recompute FLOPs
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        memory_budget: Option<usize>,
        #[command(flatten)]
        precision: PrecisionArg,
    },
}

#[derive(clap::Args)]
struct ProfileArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Images per step [default: the config's n_batch]
    #[arg(long)]
    batch: Option<usize>,
    /// Pipelined steps timed for the wall time (after 2 warm-up steps)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    steps: u32,
    /// Also write the step as Chrome trace-event JSON (Perfetto, chrome://tracing), atomically
    #[arg(long, value_name = "FILE.json")]
    trace: Option<String>,
    /// Print the report as one JSON object instead of the table
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    precision: PrecisionArg,
}

fn main() -> ExitCode {
    // Before any thread starts: it may set an environment variable.
    quiet_display_probe_when_headless();
    let cli = Cli::parse();
    let choice = AdapterChoice::from_flag_or_env(cli.adapter.as_deref());
    let result = match cli.command {
        Command::Info { seconds } => info(&choice, seconds),
        Command::Check { kernel, full, perturb } => check(&choice, kernel.as_deref(), full, perturb),
        Command::Plan {
            model,
            batch,
            memory_budget,
            precision,
        } => plan(&choice, &model, batch, memory_budget, precision.get()),
        Command::Profile { args } => profile(&choice, &args),
        Command::Reconstruct { args } => run_reconstruct(&choice, &args),
        Command::Interpolate { args } => run_interpolate(&choice, &args),
        Command::Encode { args } => run_encode(&choice, &args),
        Command::Diagnose { args } => run_diagnose(&choice, &args),
        Command::Sample { args } => sample(&choice, &args),
        Command::Train { args } => train(&choice, &args, cli.adapter.as_deref()),
        Command::Eval {
            args,
            batch,
            json,
            iw,
            iw_rows,
        } => eval(&choice, &args, batch, json, iw.map(|k| (k, iw_rows))),
        Command::Grad { args, out } => grad(&choice, &args, &out),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn info(choice: &AdapterChoice, seconds: f64) -> vdvae::Result<ExitCode> {
    println!("adapters:");
    for a in list_adapters() {
        println!(
            "  [{}] {} ({}, {}) {}",
            a.index, a.name, a.backend, a.device_type, a.driver
        );
    }
    let ctx = GpuContext::new(choice)?;
    println!("chosen: [{}] {}", ctx.adapter_index, ctx.adapter.name);
    println!("features used: {:?}", ctx.features);
    if ctx.has(wgpu::Features::SUBGROUP) {
        println!("subgroup size: {}..{}", ctx.subgroup_min_size, ctx.subgroup_max_size);
    }
    let l = &ctx.limits;
    println!("limits:");
    println!(
        "  max_storage_buffer_binding_size   {} bytes",
        l.max_storage_buffer_binding_size
    );
    println!("  max_buffer_size                   {} bytes", l.max_buffer_size);
    println!(
        "  max_storage_buffers_per_stage     {}",
        l.max_storage_buffers_per_shader_stage
    );
    println!(
        "  max_compute_workgroup_storage     {} bytes",
        l.max_compute_workgroup_storage_size
    );
    println!(
        "  max_compute_invocations_per_wg    {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "  max_compute_workgroups_per_dim    {}",
        l.max_compute_workgroups_per_dimension
    );
    println!(
        "  min_storage_buffer_offset_align   {} bytes",
        l.min_storage_buffer_offset_alignment
    );
    let c = measure_fma_ceiling(&ctx, seconds)?;
    println!(
        "FMA ceiling: {:.1} GFLOP/s (register-only kernel, measured for {:.2} s)",
        c.gflops, c.seconds
    );
    Ok(ExitCode::SUCCESS)
}

fn check(choice: &AdapterChoice, kernel: Option<&str>, full: bool, perturb: bool) -> vdvae::Result<ExitCode> {
    let ctx = GpuContext::new(choice)?;
    println!("adapter: [{}] {}", ctx.adapter_index, ctx.adapter.name);
    let mut checker = Checker::new(&ctx, if full { CaseSize::Full } else { CaseSize::Quick });
    checker.perturb = perturb;
    run_checks(&mut checker, kernel)?;
    print!("{}", format_table(&checker.rows));
    for (family, kernels, why) in &checker.skipped {
        println!("not checked: {family} {kernels}: {why}");
    }
    let failed = checker.failures();
    println!("{} passed, {} failed", checker.rows.len() - failed, failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A `--memory-budget` value in bytes.
fn parse_size(s: &str) -> Result<usize, String> {
    vdvae::graph::budget::parse_size(s).map_err(|e| e.to_string())
}

fn plan(
    choice: &AdapterChoice,
    model: &ModelArgs,
    batch: Option<usize>,
    memory_budget: Option<usize>,
    precision: Precision,
) -> vdvae::Result<ExitCode> {
    let h = model.load()?;
    let ctx = match GpuContext::new(choice) {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            eprintln!("note: {e}\nnote: planning without an adapter (no dispatch count)");
            None
        }
    };
    let report = plan_training(&h, batch.unwrap_or(h.n_batch), precision, ctx.as_ref(), memory_budget)?;
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// `iw`: samples per image and rows per pass of the importance-weighted NLL.
fn eval(
    choice: &AdapterChoice,
    args: &DataArgs,
    batch: Option<usize>,
    json: bool,
    iw: Option<(usize, usize)>,
) -> vdvae::Result<ExitCode> {
    if iw.is_some() && args.posterior_mean {
        return Err(vdvae::Error::Input(
            "--iw draws z from the posterior; it cannot be combined with --posterior-mean".into(),
        ));
    }
    let (h, weights, images) = args.load()?;
    let device = args.device(choice)?;
    let batch = batch.unwrap_or(h.n_batch);
    let input = args.input(&h, &weights, &images);
    let mut r = evaluate(device_of(&device), &input, batch)?;
    if let Some((k, rows)) = iw {
        let e = importance_weighted(device_of(&device), &input, k, rows)?;
        r.iw_k = Some(e.k);
        r.iw_nll_nats_per_image = Some(e.nll_nats_per_image);
        r.iw_nll_bits_per_dim = Some(e.nll_nats_per_image / images.image_len() as f64 / std::f64::consts::LN_2);
    }
    if json {
        println!("{}", serde_json::to_string(&r).expect("a report serialises"));
        return Ok(ExitCode::SUCCESS);
    }
    println!("images:        {}", r.images);
    println!(
        "ELBO:          {:.6} nats/dim  ({:.6} bits/dim)",
        r.elbo_nats_per_dim, r.bits_per_dim
    );
    println!("ELBO:          {:.4} nats/image", r.elbo_nats_per_image);
    if let (Some(k), Some(nll), Some(bpd)) = (r.iw_k, r.iw_nll_nats_per_image, r.iw_nll_bits_per_dim) {
        println!("IW NLL (K={k}): {nll:.4} nats/image  ({bpd:.6} bits/dim)");
    }
    println!("distortion:    {:.6} nats/dim", r.distortion);
    println!("rate:          {:.6} nats/dim", r.rate);
    println!("KL per level (nats/dim, top first):");
    for (i, kl) in r.kl_per_level.iter().enumerate() {
        println!("  {i:>3}  {kl:.6e}");
    }
    Ok(ExitCode::SUCCESS)
}

fn grad(choice: &AdapterChoice, args: &DataArgs, out: &str) -> vdvae::Result<ExitCode> {
    let (h, weights, images) = args.load()?;
    let device = args.device(choice)?;
    let grads = gradient(device_of(&device), &args.input(&h, &weights, &images))?;
    checkpoint::save(out, &grads, None)?;
    println!(
        "wrote {} gradient tensors of the mean ELBO over {} images to {out}",
        grads.len(),
        images.n
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
struct TrainArgs {
    /// A named configuration (ignored with --config)
    #[arg(long, default_value = "ladder-mnist", value_parser = clap::builder::PossibleValuesParser::new(PRESETS))]
    preset: String,
    /// A JSON file of official VDVAE hyperparameters instead of a preset
    #[arg(long)]
    config: Option<String>,
    /// Image file [default: the bundled MNIST subset]
    #[arg(long, requires = "format")]
    data: Option<String>,
    #[arg(long, value_enum)]
    format: Option<DataFormat>,
    /// Training steps to run (on top of a resumed run's)
    #[arg(long, default_value_t = 2000)]
    steps: u32,
    /// Images per step [default: the config's n_batch]
    #[arg(long)]
    batch: Option<usize>,
    /// Run directory: checkpoints and log.jsonl [default: runs/<preset>]
    #[arg(long)]
    out: Option<String>,
    /// Write a checkpoint every this many steps (and always at the end); 0 = only at the end
    #[arg(long, default_value_t = 100)]
    save_every: u32,
    /// Continue the run in --out from its checkpoint
    #[arg(long)]
    resume: bool,
    /// Seed of the initial weights, batch order and noise [default: the config's]
    #[arg(long)]
    seed: Option<u64>,
    /// Recompute blocks in the backward pass until the step's planned memory fits
    /// (e.g. 6GiB, 512MiB, 6000000000)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
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
        let program = std::env::args().next().unwrap_or_else(|| "vdvae".into());
        [program, "train".into()]
            .into_iter()
            .chain(flags.into_iter().flat_map(|(name, value)| [format!("--{name}"), value]))
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

fn train(choice: &AdapterChoice, a: &TrainArgs, adapter: Option<&str>) -> vdvae::Result<ExitCode> {
    let stop = stop_on_signals();
    let mut h = match &a.config {
        Some(c) => HParams::from_json_file(c)?,
        None => preset(&a.preset)?,
    };
    if let Some(seed) = a.seed {
        h.seed = seed;
    }
    let (images, format) = match (&a.data, a.format) {
        (Some(path), Some(format)) => (read_images(path, format)?, format),
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
            let images = read_images(path, a.eval_format.unwrap_or(format))?;
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
    let ctx = GpuContext::new(choice)?;
    let options = vdvae::train::TrainOptions {
        steps: a.steps,
        batch: a.batch.unwrap_or(h.n_batch),
        out_dir: out_dir.clone(),
        save_every: a.save_every,
        norm,
        resume: a.resume,
        memory_budget: a.memory_budget,
        precision: a.precision.get(),
        image_every: a.image_every,
        image_temperature: a.image_temperature.clone(),
        eval_images,
        eval_every: a.eval_every,
    };
    eprintln!(
        "training on {} ({} images, activations stored as {}), run directory {out_dir}",
        ctx.adapter.name,
        images.n,
        a.precision.get()
    );
    let outcome = vdvae::train::train(&ctx, &h, &images, &options, &stop)?;
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

fn profile(choice: &AdapterChoice, a: &ProfileArgs) -> vdvae::Result<ExitCode> {
    let h = a.model.load()?;
    let ctx = GpuContext::new(choice)?;
    let mut options = ProfileOptions::new(a.batch.unwrap_or(h.n_batch));
    options.timed_steps = a.steps as usize;
    options.precision = a.precision.get();
    let report = profile_training(&ctx, &h, &options)?;
    if let Some(path) = &a.trace {
        report.write_trace(path)?;
        eprintln!("wrote {} trace events to {path}", report.dispatches.len());
    }
    if a.json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
struct SampleArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Weights: safetensors with the official state_dict names (e.g. a run's model-ema.safetensors)
    #[arg(long)]
    checkpoint: String,
    /// Number of images
    #[arg(long, default_value_t = 16)]
    n: usize,
    /// Prior temperature (official: logsig_p += ln t; 0 gives the prior means): one value, or
    /// one per level top first (0.9,0.9,0.8), or T:N for N levels (1.0:16,0.8); the last
    /// value holds for the levels left
    #[arg(long, default_value = "1.0", value_name = "T[,T|T:N...]", allow_hyphen_values = true)]
    temperature: Temperatures,
    /// Fix the top K levels to the posterior mean of the --reference image
    #[arg(long, value_name = "K", requires = "reference")]
    fix_levels: Option<usize>,
    /// Index of the reference image in --data (from 0)
    #[arg(long, value_name = "INDEX", requires_all = ["fix_levels", "data"])]
    reference: Option<usize>,
    #[command(flatten)]
    data: OptionalData,
    /// Seed of the prior and pixel noise
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images per row of the grid [default: about the square root of n]
    #[arg(long)]
    cols: Option<usize>,
    /// Output PNG (written atomically)
    #[arg(long, default_value = "samples.png")]
    out: String,
    #[arg(long, value_enum, default_value_t = DeviceArg::Gpu)]
    device: DeviceArg,
}

fn sample(choice: &AdapterChoice, a: &SampleArgs) -> vdvae::Result<ExitCode> {
    let h = a.model.load()?;
    let weights = checkpoint::load(&a.checkpoint)?;
    let temperatures = a.temperature.per_level(h.latent_levels()?)?;
    let reference = match (a.fix_levels, a.reference) {
        (Some(_), Some(i)) => Some(a.data.load(&h)?.select(&[i])?),
        _ => None,
    };
    let fixed = reference.as_ref().map(|reference| FixedLevels {
        reference,
        levels: a.fix_levels.unwrap_or(0),
        norm: a.data.normalization(),
    });
    let ctx = a.device.open(choice)?;
    let images = sample_images(
        device_of(&ctx),
        &h,
        &weights,
        a.n,
        &temperatures,
        a.seed,
        fixed.as_ref(),
    )?;
    let cols = a.cols.unwrap_or_else(|| (a.n as f64).sqrt().ceil() as usize);
    write_grid_png(&a.out, &images, cols)?;
    match &fixed {
        Some(f) => println!(
            "wrote {} samples at temperature {}, the top {} levels fixed to image {} of the data, to {}",
            a.n,
            a.temperature,
            f.levels,
            a.reference.unwrap_or(0),
            a.out
        ),
        None => println!("wrote {} samples at temperature {} to {}", a.n, a.temperature, a.out),
    }
    Ok(ExitCode::SUCCESS)
}
