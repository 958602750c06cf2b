use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::compile_progress::CompileProgress;
use super::pipeline::PipelineEntry;
use super::tune::{cache_dir, kernels_in_force, AdapterKey, KernelSet, TuneMode, Tuner, WGPU_VERSION};
use crate::error::{Error, Result};

/// Which adapter to use: `--adapter NAME|INDEX` or env `VDVAE_ADAPTER`.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum AdapterChoice {
    /// The high-performance one: discrete > integrated > virtual > CPU.
    #[default]
    HighPerformance,
    Index(usize),
    /// Case-insensitive substring of the adapter name.
    Name(String),
}

impl AdapterChoice {
    pub fn parse(s: &str) -> AdapterChoice {
        let s = s.trim();
        if s.is_empty() {
            AdapterChoice::HighPerformance
        } else if let Ok(i) = s.parse::<usize>() {
            AdapterChoice::Index(i)
        } else {
            AdapterChoice::Name(s.to_string())
        }
    }

    /// `--adapter` if given, else `VDVAE_ADAPTER`, else the default.
    pub fn from_flag_or_env(flag: Option<&str>) -> AdapterChoice {
        match flag {
            Some(s) => AdapterChoice::parse(s),
            None => std::env::var("VDVAE_ADAPTER")
                .map(|s| AdapterChoice::parse(&s))
                .unwrap_or_default(),
        }
    }
}

/// What `vdvae info` prints for each adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
}

fn summary(index: usize, info: &wgpu::AdapterInfo) -> AdapterSummary {
    AdapterSummary {
        index,
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
    }
}

/// Keeps a headless Linux machine from printing `error: XDG_RUNTIME_DIR is
/// invalid or not set in the environment.` at every adapter enumeration.
///
/// wgpu enables the Vulkan Wayland surface extension whenever the driver has
/// it (wgpu-hal lets a program add instance extensions, never remove them);
/// Mesa's device-select layer then asks libwayland for the display's GPU, and
/// libwayland prints that line when `XDG_RUNTIME_DIR` is unset or relative,
/// though nothing failed: a compute engine has no window. With the variable
/// pointing at a directory that does not exist, the lookup finds no
/// compositor and says nothing, which is the truth on a headless machine. A
/// valid `XDG_RUNTIME_DIR` is left alone, so desktop sessions are unchanged.
///
/// Sets an environment variable of this process: call it at the start of
/// `main`, before any thread starts.
pub fn quiet_display_probe_when_headless() {
    #[cfg(all(unix, not(target_os = "macos"), not(target_os = "ios"), not(target_os = "android")))]
    {
        let valid = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| d.to_string_lossy().starts_with('/'));
        if !valid {
            // Debian's conventional never-existing path: only root could create it.
            std::env::set_var("XDG_RUNTIME_DIR", "/nonexistent");
        }
    }
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle())
}

fn enumerate(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
}

/// Every adapter wgpu can see, in enumeration order (the order `--adapter INDEX` uses).
pub fn list_adapters() -> Vec<AdapterSummary> {
    enumerate(&instance())
        .iter()
        .enumerate()
        .map(|(i, a)| summary(i, &a.get_info()))
        .collect()
}

fn performance_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

const NO_ADAPTER_FIX: &str = "install a Vulkan driver (on Debian/Ubuntu: \
`apt-get install mesa-vulkan-drivers`, which provides the lavapipe CPU driver), \
or run on the CPU reference path with `--device cpu`";

fn choose(adapters: Vec<wgpu::Adapter>, choice: &AdapterChoice) -> Result<(usize, wgpu::Adapter)> {
    if adapters.is_empty() {
        return Err(Error::NoAdapter(format!("wgpu found none; {NO_ADAPTER_FIX}")));
    }
    let names = || {
        adapters
            .iter()
            .enumerate()
            .map(|(i, a)| format!("  [{i}] {}", a.get_info().name))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let index = match choice {
        AdapterChoice::HighPerformance => (0..adapters.len())
            .min_by_key(|&i| performance_rank(adapters[i].get_info().device_type))
            .unwrap(),
        AdapterChoice::Index(i) if *i < adapters.len() => *i,
        AdapterChoice::Index(i) => {
            return Err(Error::NoAdapter(format!(
                "adapter index {i} does not exist; the adapters are:\n{}",
                names()
            )))
        }
        AdapterChoice::Name(n) => {
            let needle = n.to_lowercase();
            match adapters
                .iter()
                .position(|a| a.get_info().name.to_lowercase().contains(&needle))
            {
                Some(i) => i,
                None => {
                    return Err(Error::NoAdapter(format!(
                        "no adapter name contains {n:?}; the adapters are:\n{}",
                        names()
                    )))
                }
            }
        }
    };
    Ok((index, adapters.into_iter().nth(index).unwrap()))
}

/// Whether kernels on this adapter take their params struct (the WGSL
/// `var<uniform>`) from a read-only storage buffer instead: on Mesa's lavapipe.
///
/// Lavapipe "inlines uniforms": for a pipeline whose loops or branches depend
/// on values in a uniform buffer, each dispatch clones the shader, folds the
/// values in as constants and, when that shrinks the shader enough (so it
/// depends on the values: the Ladder VAE at batch 32 had none, at batch 256
/// 40 per step), JIT-compiles the result on its queue thread. Mesa 22.3
/// (Debian 12's) caches none of these variants and deletes none while the
/// pipeline lives: every such dispatch compiled a new shader and kept it, so
/// training grew by 5.6 MB a step at batch 256 until the OOM killer came.
/// Lavapipe inlines only from uniform buffers (and push constants), never
/// from storage buffers, and the params struct has the same layout in both,
/// so the pipeline builder moves it to a storage binding
/// (`GpuContext::pipeline_with_f16`) and dispatches upload it as one.
/// Other adapters keep the uniform (a GPU's constant cache serves it best).
fn params_in_storage(info: &wgpu::AdapterInfo) -> bool {
    info.driver.to_lowercase().contains("llvmpipe") || info.name.to_lowercase().starts_with("llvmpipe")
}

/// Optional features used when the adapter has them.
pub const OPTIONAL_FEATURES: wgpu::Features = wgpu::Features::TIMESTAMP_QUERY
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS)
    .union(wgpu::Features::SHADER_F16)
    .union(wgpu::Features::SUBGROUP);

/// A device on the chosen adapter, with a cache of compiled pipelines.
pub struct GpuContext {
    /// Whether the adapter is a CPU (lavapipe): it runs one workgroup per thread at a time.
    pub is_cpu: bool,
    /// Whether kernels read their params struct from a read-only storage
    /// buffer instead of a uniform buffer: on lavapipe (why: `params_in_storage`).
    pub params_in_storage: bool,
    pub adapter_index: usize,
    pub adapter: AdapterSummary,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub features: wgpu::Features,
    pub limits: wgpu::Limits,
    /// Subgroup size range reported by the adapter (0 when subgroups are absent).
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    pipelines: Mutex<HashMap<String, Arc<PipelineEntry>>>,
    pub(crate) compile_progress: CompileProgress,
    /// Kernel variants tuned for this adapter (see [`super::tune`]).
    pub tuner: Tuner,
    /// The tuned variants, or the GPU-shaped ones forced.
    pub kernels: KernelSet,
    buffers_created: AtomicUsize,
    submits: AtomicUsize,
}

/// How many buffers and submits a context has made: benchmarks read these
/// around a steady-state loop to show it allocates nothing and submits once a step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuCounters {
    pub buffers_created: usize,
    pub submits: usize,
}

impl GpuContext {
    /// Picks an adapter and opens a device with the adapter's own limits and the
    /// optional features it has.
    pub fn new(choice: &AdapterChoice) -> Result<GpuContext> {
        let instance = instance();
        let (adapter_index, adapter) = choose(enumerate(&instance), choice)?;
        let features = adapter.features() & OPTIONAL_FEATURES;
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("vdvae"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::Gpu(format!("the adapter refused a device: {e}")))?;
        let info = adapter.get_info();
        let key = AdapterKey {
            adapter: info.name.clone(),
            backend: format!("{:?}", info.backend),
            driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
            wgpu: WGPU_VERSION.to_string(),
        };
        let tuner = Tuner::open(TuneMode::from_env(), key, cache_dir().as_deref());
        Ok(GpuContext {
            is_cpu: info.device_type == wgpu::DeviceType::Cpu,
            params_in_storage: params_in_storage(&info),
            adapter_index,
            adapter: summary(adapter_index, &info),
            device,
            queue,
            features,
            limits,
            subgroup_min_size: info.subgroup_min_size,
            subgroup_max_size: info.subgroup_max_size,
            pipelines: Mutex::new(HashMap::new()),
            compile_progress: CompileProgress::new(),
            tuner,
            kernels: kernels_in_force(),
            buffers_created: AtomicUsize::new(0),
            submits: AtomicUsize::new(0),
        })
    }

    /// Workgroups one dispatch should offer to keep the adapter busy: a CPU
    /// adapter runs one per thread at a time (two per thread balance uneven
    /// ones), a GPU wants hundreds in flight.
    pub fn busy_workgroups(&self) -> usize {
        if self.is_cpu {
            2 * std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            256
        }
    }

    /// The default adapter, honouring `VDVAE_ADAPTER`.
    pub fn from_env() -> Result<GpuContext> {
        GpuContext::new(&AdapterChoice::from_flag_or_env(None))
    }

    pub fn has(&self, feature: wgpu::Features) -> bool {
        self.features.contains(feature)
    }

    /// The storage buffers a kernel with `bindings` takes on this adapter: its
    /// storage bindings, and its params too where they live in storage (see
    /// [`GpuContext::params_in_storage`]). For checks against
    /// `limits.max_storage_buffers_per_shader_stage`.
    pub fn storage_buffers(&self, bindings: &[crate::gpu::Access]) -> usize {
        bindings
            .iter()
            .filter(|&&a| a != crate::gpu::Access::Uniform || self.params_in_storage)
            .count()
    }

    pub(crate) fn cached_pipeline(&self, key: &str) -> Option<Arc<PipelineEntry>> {
        self.pipelines.lock().unwrap().get(key).cloned()
    }

    pub(crate) fn store_pipeline(&self, key: String, entry: PipelineEntry) -> Arc<PipelineEntry> {
        let entry = Arc::new(entry);
        self.pipelines.lock().unwrap().insert(key, entry.clone());
        entry
    }

    /// Every buffer the engine makes goes through here (so it can be counted).
    pub fn create_buffer(&self, desc: &wgpu::BufferDescriptor<'_>) -> wgpu::Buffer {
        self.buffers_created.fetch_add(1, Ordering::Relaxed);
        self.device.create_buffer(desc)
    }

    /// Every submit the engine makes goes through here (so it can be counted).
    pub fn submit(&self, cmd: wgpu::CommandBuffer) -> wgpu::SubmissionIndex {
        self.submits.fetch_add(1, Ordering::Relaxed);
        self.compile_progress.submitting();
        self.queue.submit([cmd])
    }

    pub fn counters(&self) -> GpuCounters {
        GpuCounters {
            buffers_created: self.buffers_created.load(Ordering::Relaxed),
            submits: self.submits.load(Ordering::Relaxed),
        }
    }

    /// Number of distinct compiled pipelines (for tests of the cache).
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.lock().unwrap().len()
    }

    /// Records the dispatches into one compute pass, submits once and waits.
    pub fn run(&self, dispatches: &[&crate::gpu::Dispatch]) -> Result<()> {
        let mut encoder = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        self.submit(encoder.finish());
        self.wait()
    }

    /// Runs the dispatches `reps` times in one submit; returns seconds per repetition.
    pub fn time(&self, dispatches: &[&crate::gpu::Dispatch], reps: usize) -> Result<f64> {
        let mut encoder = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for _ in 0..reps {
                for d in dispatches {
                    d.record(&mut pass);
                }
            }
        }
        let cmd = encoder.finish();
        let start = Instant::now();
        self.submit(cmd);
        self.wait()?;
        Ok(start.elapsed().as_secs_f64() / reps as f64)
    }

    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU failed: {e}")))
    }
}

impl Drop for GpuContext {
    fn drop(&mut self) {
        self.compile_progress.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_choice_parses_index_name_and_default() {
        assert_eq!(AdapterChoice::parse("1"), AdapterChoice::Index(1));
        assert_eq!(AdapterChoice::parse("llvmpipe"), AdapterChoice::Name("llvmpipe".into()));
        assert_eq!(AdapterChoice::parse("  "), AdapterChoice::HighPerformance);
    }

    #[test]
    fn no_adapter_error_names_the_fix() {
        let err = choose(Vec::new(), &AdapterChoice::HighPerformance)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("mesa-vulkan-drivers") && err.contains("--device cpu"),
            "{err}"
        );
    }

    #[test]
    fn unknown_adapter_name_lists_the_adapters() {
        let adapters = enumerate(&instance());
        let n = adapters.len();
        assert!(n > 0, "these tests need an adapter (install mesa-vulkan-drivers)");
        let err = choose(adapters, &AdapterChoice::Name("no-such-gpu".into()))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no-such-gpu") && err.contains("[0]"), "{err}");
        let err = choose(enumerate(&instance()), &AdapterChoice::Index(n))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }
}
