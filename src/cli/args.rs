//! Command-line arguments shared by several commands: the model, a
//! checkpoint on a dataset, the device and the activation precision.

use vdvae::checkpoint;
use vdvae::data::{read_image_folder, read_images, DataFormat, FolderOptions, ImageSet};
use vdvae::gpu::tune::cache_dir;
use vdvae::gpu::{AdapterChoice, GpuContext};
use vdvae::graph::{Precision, Sampling};
use vdvae::model::conditional::BatchRun;
use vdvae::model::evaluate::{fit_images, Device, EvalInput};
use vdvae::model::limits::MAX_BATCH;
use vdvae::model::preprocess::{fixed_binary_images, Normalization, CIFAR10, MNIST};
use vdvae::model::{preset, HParams, PRESETS};

/// `--precision f32|f16`.
#[derive(clap::Args, Clone, Copy)]
pub struct PrecisionArg {
    /// Storage of the activations: f16 halves the memory of the forward activations kept
    /// for the backward pass (kernels compute in f32; weights, gradients, optimizer state
    /// and checkpoints stay f32); needs an adapter with SHADER_F16
    #[arg(long = "precision", value_name = "PRECISION", value_enum, default_value_t = PrecisionValue::F32)]
    pub value: PrecisionValue,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionValue {
    F32,
    F16,
}

impl PrecisionArg {
    pub fn get(self) -> Precision {
        match self.value {
            PrecisionValue::F32 => Precision::F32,
            PrecisionValue::F16 => Precision::F16,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    /// The chosen GPU adapter
    Gpu,
    /// The plain-Rust reference path (slow, exact)
    Cpu,
}

impl DeviceArg {
    /// The GPU context, when the device is the GPU.
    pub fn open(self, choice: &AdapterChoice) -> vdvae::Result<Option<GpuContext>> {
        Ok(match self {
            DeviceArg::Gpu => Some(GpuContext::new(choice)?),
            DeviceArg::Cpu => None,
        })
    }
}

/// The device a command runs on: the opened GPU, or the CPU reference.
pub fn device_of(ctx: &Option<GpuContext>) -> Device<'_> {
    match ctx {
        Some(ctx) => Device::Gpu(ctx),
        None => Device::Cpu,
    }
}

/// A model's weights: what every command that runs a trained model takes.
#[derive(clap::Args)]
pub struct CheckpointArg {
    /// Weights with the official state_dict names: safetensors, or a PyTorch file (.th, .pt,
    /// .pth; torch.save's zip or legacy format, as the official VDVAE publishes its models)
    #[arg(long)]
    pub checkpoint: String,
    /// The entry of the PyTorch file's top-level dict that holds the weights (e.g.
    /// model_state_dict), for a file that saved them beside other things
    #[arg(long, value_name = "NAME")]
    pub checkpoint_key: Option<String>,
}

impl CheckpointArg {
    /// The weights, each checked finite ([`checkpoint::load_weights`]).
    pub fn load(&self) -> vdvae::Result<checkpoint::NamedTensors> {
        checkpoint::load_weights(&self.checkpoint, self.checkpoint_key.as_deref())
    }
}

/// A checkpoint on a dataset: what every command that reads images through a model takes.
#[derive(clap::Args)]
pub struct CheckpointOnData {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub checkpoint: CheckpointArg,
    /// Image file (CIFAR-10 binary batch, MNIST IDX, or .npy uint8 [N,H,W(,C)]), or a
    /// folder of PNG/JPEG files with --format images
    #[arg(long)]
    pub data: String,
    #[arg(long, value_enum)]
    pub format: DataFormat,
    #[command(flatten)]
    pub folder: FolderArgs,
    #[arg(long, value_enum, default_value_t = DeviceArg::Gpu)]
    pub device: DeviceArg,
    /// Seed of the posterior and prior noise
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seed of the fixed binarization of the data (Bernoulli models)
    #[arg(long, default_value_t = 0)]
    pub binarize_seed: u64,
    /// Input normalisation mean [default: CIFAR-10's 120.63838, MNIST's 33.318 for --format mnist]
    #[arg(long, value_parser = finite)]
    pub data_mean: Option<f32>,
    /// Input normalisation std [default: CIFAR-10's 64.16736, MNIST's 78.567 for --format mnist]
    #[arg(long, value_parser = positive_finite)]
    pub data_std: Option<f32>,
}

impl CheckpointOnData {
    pub fn normalization(&self) -> Normalization {
        normalization(Some(self.format), self.data_mean, self.data_std)
    }

    pub fn device(&self, choice: &AdapterChoice) -> vdvae::Result<Option<GpuContext>> {
        self.device.open(choice)
    }

    /// Config, weights and the images (the first `limit`, fitted to the model), each checked.
    pub fn load(&self, limit: Option<usize>) -> vdvae::Result<(HParams, checkpoint::NamedTensors, ImageSet)> {
        let h = self.model.load()?;
        let weights = self.checkpoint.load()?;
        let mut images = self.folder.read(&self.data, self.format, &h)?;
        if let Some(n) = limit {
            if n == 0 {
                return Err(vdvae::Error::Input("--limit must be at least 1".into()));
            }
            images = images.first(n);
        }
        let images = fit_images(&h, images)?;
        Ok((h, weights, images))
    }

    /// The images' batches on the device, `batch` [default: the config's n_batch] at a time.
    pub fn batch_run<'a, 'd>(
        &self,
        ctx: &'d Option<GpuContext>,
        h: &'a HParams,
        weights: &'a checkpoint::NamedTensors,
        images: &'a ImageSet,
        batch: Option<usize>,
    ) -> BatchRun<'a, 'd> {
        BatchRun {
            device: device_of(ctx),
            h,
            weights,
            images,
            norm: self.normalization(),
            batch: batch.unwrap_or(h.n_batch),
            seed: self.seed,
        }
    }

    /// [`CheckpointOnData::load`] with a Bernoulli model's images binarized
    /// once, each keyed by `--binarize-seed` and its index in the file.
    pub fn load_fixed(&self, limit: Option<usize>) -> vdvae::Result<(HParams, checkpoint::NamedTensors, ImageSet)> {
        let (h, weights, images) = self.load(limit)?;
        let images = fixed_binary_images(h.likelihood, images, self.binarize_seed);
        Ok((h, weights, images))
    }
}

/// A checkpoint on a dataset, as eval and grad take it.
#[derive(clap::Args)]
pub struct DataArgs {
    #[command(flatten)]
    pub base: CheckpointOnData,
    /// Use z = mu_q at every level (deterministic) instead of sampling
    #[arg(long)]
    pub posterior_mean: bool,
    /// Only the first N images of the file
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub precision: PrecisionArg,
}

impl DataArgs {
    pub fn sampling(&self) -> Sampling {
        if self.posterior_mean {
            Sampling::PosteriorMean
        } else {
            Sampling::Posterior
        }
    }

    pub fn input<'a>(
        &self,
        h: &'a HParams,
        weights: &'a checkpoint::NamedTensors,
        images: &'a ImageSet,
    ) -> EvalInput<'a> {
        EvalInput {
            h,
            weights,
            images,
            norm: self.base.normalization(),
            sampling: self.sampling(),
            seed: self.base.seed,
            binarize_seed: self.base.binarize_seed,
            precision: self.precision.get(),
        }
    }

    pub fn device(&self, choice: &AdapterChoice) -> vdvae::Result<Option<GpuContext>> {
        self.base.device(choice)
    }

    /// Config, weights and images, each checked.
    pub fn load(&self) -> vdvae::Result<(HParams, checkpoint::NamedTensors, ImageSet)> {
        self.base.load(self.limit)
    }
}

/// Images for a command that may read a dataset (e.g. a reference image).
#[derive(clap::Args)]
pub struct OptionalData {
    /// Image file (CIFAR-10 binary batch, MNIST IDX, or .npy uint8 [N,H,W(,C)]), or a
    /// folder of PNG/JPEG files with --format images
    #[arg(long, requires = "format")]
    pub data: Option<String>,
    #[arg(long, value_enum)]
    pub format: Option<DataFormat>,
    #[command(flatten)]
    pub folder: FolderArgs,
    /// Input normalisation mean [default: CIFAR-10's 120.63838, MNIST's 33.318 for --format mnist]
    #[arg(long, value_parser = finite)]
    pub data_mean: Option<f32>,
    /// Input normalisation std [default: CIFAR-10's 64.16736, MNIST's 78.567 for --format mnist]
    #[arg(long, value_parser = positive_finite)]
    pub data_std: Option<f32>,
    /// Seed of the fixed binarization of the data (Bernoulli models)
    #[arg(long, default_value_t = 0)]
    pub binarize_seed: u64,
}

impl OptionalData {
    pub fn normalization(&self) -> Normalization {
        normalization(self.format, self.data_mean, self.data_std)
    }

    /// The images fitted to the model (binarized once for a Bernoulli model).
    pub fn load(&self, h: &HParams) -> vdvae::Result<ImageSet> {
        let (Some(path), Some(format)) = (&self.data, self.format) else {
            return Err(vdvae::Error::Input("this needs --data FILE --format F".into()));
        };
        let images = fit_images(h, self.folder.read(path, format, h)?)?;
        Ok(fixed_binary_images(h.likelihood, images, self.binarize_seed))
    }
}

/// How `--format images` reads a folder.
#[derive(clap::Args, Clone, Copy)]
pub struct FolderArgs {
    /// With --format images: a PNG/JPEG file that cannot be decoded is an error, not a
    /// warning and a skipped file
    #[arg(long)]
    pub strict: bool,
}

impl FolderArgs {
    /// The images of `path` in `format`: a folder is decoded at the model's
    /// size and channels, through the cache in `VDVAE_CACHE`.
    pub fn read(&self, path: &str, format: DataFormat, h: &HParams) -> vdvae::Result<ImageSet> {
        if format != DataFormat::Images {
            return read_images(path, format);
        }
        let options = FolderOptions {
            size: h.image_size,
            channels: h.image_channels,
            strict: self.strict,
            cache_dir: cache_dir(),
        };
        Ok(read_image_folder(path, &options)?.images)
    }
}

/// The normalisation of a data format, with the flags' overrides.
pub fn normalization(format: Option<DataFormat>, mean: Option<f32>, std: Option<f32>) -> Normalization {
    let base = if format == Some(DataFormat::Mnist) {
        MNIST
    } else {
        CIFAR10
    };
    Normalization {
        mean: mean.unwrap_or(base.mean),
        std: std.unwrap_or(base.std),
    }
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct ModelArgs {
    /// A named configuration
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(PRESETS))]
    pub preset: Option<String>,
    /// A JSON file of official VDVAE hyperparameters (width, zdim, enc_blocks, ...)
    #[arg(long)]
    pub config: Option<String>,
}

impl ModelArgs {
    pub fn load(&self) -> vdvae::Result<HParams> {
        match (&self.preset, &self.config) {
            (Some(p), _) => preset(p),
            (None, Some(c)) => HParams::from_json_file(c),
            (None, None) => unreachable!("clap requires --preset or --config"),
        }
    }
}

/// A `--memory-budget` value in bytes: a whole number of bytes (`6000000000`),
/// or a number with a binary (`KiB` … `TiB`) or decimal (`kB` … `TB`) unit or
/// `B` (`6GiB`, `1.5 GiB`, `512MiB`), units in any case.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let bytes = s.trim().parse::<bytesize::ByteSize>().ok();
    bytes.and_then(|b| usize::try_from(b.as_u64()).ok()).ok_or_else(|| {
        format!(
            "invalid size {s:?}: give bytes (6000000000) or a number with a unit \
             (6GiB, 512MiB, 1.5GB; units B, KiB, MiB, GiB, TiB, kB, MB, GB, TB)"
        )
    })
}

/// An `--out` path: an empty one would resolve against `/` for the files
/// written under it (`""` + `/model.safetensors`), so it is refused.
pub fn non_empty_path(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("an empty path: give a file or folder name (e.g. `.` for the current folder)".into());
    }
    Ok(s.to_string())
}

/// A `--data-mean`: a NaN or infinite one makes every input NaN, and the
/// error that follows would blame the checkpoint's weights.
pub fn finite(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a finite number")),
    }
}

/// A `--data-std`: the input is divided by it, so it must be finite and above 0.
pub fn positive_finite(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a finite number above 0 (the input is divided by it)"
        )),
    }
}

/// A count of images or rows per pass: 0 would run nothing (or divide by it).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number of at least 1")),
    }
}

/// Images (or rows) per pass, as `--batch` overrides a config's `n_batch`:
/// at least 1 and at most the limit on `n_batch`, since the buffers of a pass
/// grow with it and a huge one would fail only in a huge allocation.
pub fn batch_size(s: &str) -> Result<usize, String> {
    let n = at_least_one(s)?;
    if n > MAX_BATCH {
        return Err(format!(
            "{n} is too large: the limit is {MAX_BATCH}, as for a config's n_batch"
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::{batch_size, finite, parse_size, positive_finite};

    #[test]
    fn a_batch_is_at_least_one_and_at_most_the_n_batch_limit() {
        assert_eq!(batch_size("65536"), Ok(65536));
        assert!(batch_size("0").unwrap_err().contains("at least 1"));
        let e = batch_size("65537").unwrap_err();
        assert!(e.contains("65537 is too large: the limit is 65536"), "{e}");
    }

    #[test]
    fn normalisation_flags_must_be_finite_and_the_std_above_zero() {
        assert_eq!(finite("-3.5"), Ok(-3.5));
        assert_eq!(positive_finite("64.2"), Ok(64.2));
        for bad in ["NaN", "inf", "-inf", "x", ""] {
            assert!(finite(bad).unwrap_err().contains("not a finite number"), "{bad}");
        }
        for bad in ["0", "-1", "NaN", "inf", "1e-46"] {
            assert!(positive_finite(bad).unwrap_err().contains("above 0"), "{bad}");
        }
    }

    #[test]
    fn sizes_parse_with_and_without_units() {
        assert_eq!(parse_size("6GiB").unwrap(), 6 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("6000000000").unwrap(), 6_000_000_000);
        assert_eq!(parse_size("1.5 GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("6gb").unwrap(), 6_000_000_000);
        assert_eq!(parse_size("100B").unwrap(), 100);
        assert_eq!(parse_size("2KiB").unwrap(), 2048);
        for bad in ["", "GiB", "6 GiBs", "-1GiB", "six", "1.5", "6e9", "1.2.3GiB"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.contains("invalid size") && e.contains("GiB"), "{bad:?}: {e}");
        }
    }
}
