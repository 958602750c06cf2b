//! The `vdvae` command line. Each subcommand calls one library function.

use std::process::ExitCode;

mod cli;

use clap::{Parser, Subcommand};
use cli::args::{device_of, DataArgs, DeviceArg, ModelArgs, OptionalData, PrecisionArg};
use cli::diagnostics::{
    run_diagnose, run_encode, run_interpolate, run_reconstruct, DiagnoseArgs, EncodeArgs, InterpolateArgs,
    ReconstructArgs,
};
use cli::train::{train, TrainArgs};
use vdvae::check::{format_table, CaseSize, Checker};
use vdvae::checkpoint;
use vdvae::gpu::{list_adapters, measure_fma_ceiling, quiet_display_probe_when_headless, AdapterChoice, GpuContext};
use vdvae::graph::Precision;
use vdvae::kernels::run_checks;
use vdvae::model::evaluate::{evaluate, gradient};
use vdvae::model::importance::importance_weighted;
use vdvae::model::report::plan_training;
use vdvae::model::sample::{sample_images, write_grid_png, FixedLevels};
use vdvae::model::temperature::Temperatures;
use vdvae::train::{profile_training, ProfileOptions};

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
        #[arg(long, value_name = "SIZE", value_parser = cli::args::parse_size)]
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
    cli::logging::init();
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
