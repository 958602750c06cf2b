//! Per-adapter kernel choices. Where a kernel family has several variants for
//! a pass (tile shapes, workgroup sizes, subgroup use), the first time a shape
//! class runs on an adapter the candidates are timed and the fastest is kept,
//! as burn/cubecl do. Choices are cached on disk, one file per adapter, in the
//! user's cache directory (`VDVAE_CACHE` overrides), keyed by the adapter's
//! name, backend, driver and version, the wgpu version, and per choice the hash
//! of the candidates' kernel sources: a file that is corrupt or made for
//! another adapter, or an entry whose kernels changed, is ignored with a note,
//! never trusted. `VDVAE_TUNE=off` uses each family's built-in default.
//!
//! A candidate replaces the default only when it is clearly faster
//! ([`MARGIN`]): timings within noise keep the default, so two processes on
//! one machine make the same choice and runs stay reproducible.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The version of the cache file's layout.
const FORMAT: u32 = 1;
/// The wgpu this build compiles kernels with (Cargo.toml pins naga to its version).
pub const WGPU_VERSION: &str = "30.0.1";
/// A candidate replaces the default only when its time is below this fraction of the default's.
pub const MARGIN: f64 = 0.9;
/// A runner-up within this factor of the fastest is timed again beside it.
const CLOSE: f64 = 1.5;
/// Tuning time after which a note says what is happening.
const QUIET_FOR: Duration = Duration::from_secs(1);

/// Whether choices are tuned (`VDVAE_TUNE`, default on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TuneMode {
    /// Time the candidates the first time a shape class runs; cache the choice.
    Auto,
    /// Every family's built-in default, no timing, no cache (`VDVAE_TUNE=off`).
    Off,
}

impl TuneMode {
    /// From `VDVAE_TUNE`: `off` (or `0`, `false`) turns tuning off; anything
    /// else, or nothing, leaves it on.
    pub fn from_env() -> TuneMode {
        match std::env::var("VDVAE_TUNE").map(|v| v.trim().to_ascii_lowercase()) {
            Ok(v) if v == "off" || v == "0" || v == "false" => TuneMode::Off,
            _ => TuneMode::Auto,
        }
    }
}

/// Which kernel variants run (`--kernels`, `VDVAE_KERNELS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelSet {
    /// Each family's tuned choice for the adapter (or its default, `VDVAE_TUNE=off`).
    #[default]
    Tuned,
    /// The GPU-shaped variants forced (workgroups of 64 or more invocations,
    /// no subgroup-width assumption), on any adapter: how their whole training
    /// step is tested on lavapipe, which would not pick them.
    Gpu,
}

impl KernelSet {
    pub fn name(self) -> &'static str {
        match self {
            KernelSet::Tuned => "tuned",
            KernelSet::Gpu => "gpu",
        }
    }
}

impl std::str::FromStr for KernelSet {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<KernelSet, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tuned" | "auto" | "" => Ok(KernelSet::Tuned),
            "gpu" => Ok(KernelSet::Gpu),
            other => Err(format!("unknown kernel set {other:?}: use tuned or gpu")),
        }
    }
}

static KERNELS: OnceLock<KernelSet> = OnceLock::new();

/// Sets the kernel set every context of this process opens with (the CLI's
/// `--kernels`, a bench's flag); call it before opening one. The first call wins.
pub fn use_kernels(k: KernelSet) {
    let _ = KERNELS.set(k);
}

/// The kernel set a new context opens with: [`use_kernels`]'s, else `VDVAE_KERNELS`'s
/// (an unknown value is a note and the tuned set), else tuned.
pub fn kernels_in_force() -> KernelSet {
    *KERNELS.get_or_init(|| match std::env::var("VDVAE_KERNELS") {
        Ok(v) => v.parse().unwrap_or_else(|e| {
            log::warn!("VDVAE_KERNELS: {e}");
            KernelSet::Tuned
        }),
        Err(_) => KernelSet::Tuned,
    })
}

/// What a cache file is for: it is trusted only when all of it matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterKey {
    pub adapter: String,
    pub backend: String,
    /// The driver's name and version as the adapter reports them.
    pub driver: String,
    pub wgpu: String,
}

/// One tuned choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub variant: String,
    /// Hash of the candidates' kernel sources when it was tuned (hex).
    pub sources: String,
    /// Each candidate's measured milliseconds.
    pub ms: BTreeMap<String, f64>,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    key: AdapterKey,
    choices: BTreeMap<String, Choice>,
}

/// The choices of one adapter, read from and written to its cache file.
pub struct Tuner {
    mode: TuneMode,
    key: AdapterKey,
    /// None when no cache directory is known: choices live in memory only.
    file: Option<PathBuf>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    choices: BTreeMap<String, Choice>,
    /// Keys tuned by this process, in order: what `vdvae tune` prints.
    tuned: Vec<String>,
    spent: Duration,
    announced: bool,
}

/// The 64-bit FNV-1a hash of `parts` (a stable hash: the file outlives the process).
pub fn source_hash<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The hash of a family's kernel sources, which its cached choices must match.
pub fn kernels_hash(kernels: &[super::KernelSpec]) -> String {
    let texts: Vec<String> = kernels.iter().map(|k| k.source.text()).collect();
    source_hash(texts.iter().map(String::as_str))
}

/// The fastest of the timed variants (`ms` per run), if it beats the default by
/// [`MARGIN`] or the default was not timed; else the default.
fn decide(ms: &BTreeMap<String, f64>, default: &str) -> String {
    let fastest = ms.iter().min_by(|a, b| a.1.total_cmp(b.1));
    match (fastest, ms.get(default)) {
        (Some((v, &t)), Some(&d)) if t < MARGIN * d => v.clone(),
        (Some((v, _)), None) => v.clone(),
        _ => default.to_string(),
    }
}

/// The cache directory: `VDVAE_CACHE`, else `vdvae` in the user's cache directory.
pub fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("VDVAE_CACHE") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => dirs::cache_dir().map(|d| d.join("vdvae")),
    }
}

impl Tuner {
    /// The tuner of the adapter `key`, its file in `dir`, read now: a file
    /// that cannot be read or parsed, or is for another adapter or format, is
    /// ignored with a note (and replaced at the next choice).
    pub fn open(mode: TuneMode, key: AdapterKey, dir: Option<&Path>) -> Tuner {
        let file = dir.map(|d| {
            d.join(format!(
                "tune-{}.json",
                &source_hash([key.adapter.as_str(), &key.driver])[..12]
            ))
        });
        let mut state = State::default();
        if mode == TuneMode::Auto {
            if let Some(path) = &file {
                match read(path, &key) {
                    Ok(choices) => state.choices = choices,
                    Err(why) => log::info!(
                        "note: ignoring the kernel-tuning cache {}: {why}; tuning anew",
                        path.display()
                    ),
                }
            }
        }
        Tuner {
            mode,
            key,
            file,
            state: Mutex::new(state),
        }
    }

    pub fn mode(&self) -> TuneMode {
        self.mode
    }

    /// This adapter's tuner with tuning off (each family's built-in default,
    /// no cache): for comparing builds of different shapes on the same
    /// kernels, where tuning may pick another kernel per shape class.
    pub fn turned_off(&self) -> Tuner {
        Tuner::open(TuneMode::Off, self.key.clone(), None)
    }

    /// The cache file, when there is one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The variant to run for shape class `class`: `default` when tuning is
    /// off or there is one candidate, the cached choice when its sources still
    /// hash to `sources`, else the candidates timed with `time` (seconds per
    /// run; a candidate whose timing fails is left out) and the fastest kept
    /// if it beats the default by [`MARGIN`].
    /// [`Tuner::choose`] over typed variants, `name` giving each its name
    /// in the cache.
    pub fn choose_among<T: Copy>(
        &self,
        class: &str,
        sources: &str,
        candidates: &[T],
        name: fn(T) -> &'static str,
        default: T,
        mut time: impl FnMut(T) -> Result<f64>,
    ) -> T {
        let find = |n: &str| candidates.iter().copied().find(|&c| name(c) == n);
        let names: Vec<&'static str> = candidates.iter().map(|&c| name(c)).collect();
        let chosen = self.choose(class, sources, &names, name(default), |n| {
            time(find(n).expect("a candidate's name"))
        });
        find(chosen).unwrap_or(default)
    }

    pub fn choose(
        &self,
        class: &str,
        sources: &str,
        candidates: &[&'static str],
        default: &'static str,
        mut time: impl FnMut(&str) -> Result<f64>,
    ) -> &'static str {
        if self.mode == TuneMode::Off || candidates.len() < 2 {
            return default;
        }
        let mut state = self.state.lock().unwrap();
        if let Some(c) = state.choices.get(class) {
            if c.sources == sources {
                if let Some(v) = candidates.iter().find(|v| **v == c.variant) {
                    return v;
                }
            }
        }
        let started = Instant::now();
        let mut ms = BTreeMap::new();
        for &v in candidates {
            match time(v) {
                Ok(s) => {
                    ms.insert(v.to_string(), s * 1e3);
                }
                Err(e) => log::warn!("tuning {class}: variant {v} failed, left out: {e}"),
            }
        }
        // The two fastest when close, and a win over the default, are timed
        // again, alternately, each keeping its best: a burst of load from
        // another process during one candidate's timing (most felt by the
        // smallest shapes) must not decide for good.
        let mut again: Vec<String> = Vec::new();
        let mut order: Vec<(&String, &f64)> = ms.iter().collect();
        order.sort_by(|a, b| a.1.total_cmp(b.1));
        if let [(first, &t1), (second, &t2), ..] = order[..] {
            if t2 < CLOSE * t1 {
                again.extend([second.clone(), first.clone()]);
            }
        }
        let chosen = decide(&ms, default);
        if chosen != default && ms.contains_key(default) {
            for v in [default.to_string(), chosen] {
                if !again.contains(&v) {
                    again.push(v);
                }
            }
        }
        for v in again {
            if let Ok(s) = time(&v) {
                let best = ms.get_mut(&v).expect("timed before");
                *best = best.min(s * 1e3);
            }
        }
        let chosen = decide(&ms, default);
        let chosen = candidates.iter().find(|v| **v == chosen).copied().unwrap_or(default);
        state.choices.insert(
            class.to_string(),
            Choice {
                variant: chosen.to_string(),
                sources: sources.to_string(),
                ms,
            },
        );
        state.tuned.push(class.to_string());
        state.spent += started.elapsed();
        if state.spent > QUIET_FOR && !state.announced {
            state.announced = true;
            let place = self
                .file
                .as_ref()
                .map_or("memory only".to_string(), |f| f.display().to_string());
            log::info!("tuning kernels for this adapter, once per shape (cached in {place})");
        }
        if let Some(path) = &self.file {
            if let Err(e) = write(path, &self.key, &state.choices) {
                log::warn!("the kernel-tuning cache could not be saved: {e}");
            }
        }
        chosen
    }

    /// The choices this process tuned, in order, with their classes.
    pub fn tuned(&self) -> Vec<(String, Choice)> {
        let state = self.state.lock().unwrap();
        state
            .tuned
            .iter()
            .filter_map(|k| Some((k.clone(), state.choices.get(k)?.clone())))
            .collect()
    }

    /// Every choice known (cached or tuned), by class.
    pub fn choices(&self) -> BTreeMap<String, Choice> {
        self.state.lock().unwrap().choices.clone()
    }
}

/// The choices in `path`, or why the file is not to be trusted.
fn read(path: &Path, key: &AdapterKey) -> std::result::Result<BTreeMap<String, Choice>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e.to_string()),
    };
    let file: CacheFile = serde_json::from_slice(&bytes).map_err(|e| format!("it is not a tuning cache ({e})"))?;
    if file.format != FORMAT {
        return Err(format!("it has format {}, this build writes {FORMAT}", file.format));
    }
    if file.key != *key {
        return Err(format!(
            "it was made for {} ({}, driver {:?}, wgpu {})",
            file.key.adapter, file.key.backend, file.key.driver, file.key.wgpu
        ));
    }
    Ok(file.choices)
}

/// Writes the cache whole, through a temporary file renamed over it.
fn write(path: &Path, key: &AdapterKey, choices: &BTreeMap<String, Choice>) -> Result<()> {
    let io = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        source: e,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let file = CacheFile {
        format: FORMAT,
        key: key.clone(),
        choices: choices.clone(),
    };
    let text = serde_json::to_string_pretty(&file).map_err(|e| Error::Input(e.to_string()))?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(adapter: &str) -> AdapterKey {
        AdapterKey {
            adapter: adapter.into(),
            backend: "Vulkan".into(),
            driver: "llvmpipe 1".into(),
            wgpu: WGPU_VERSION.into(),
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vdvae-tune-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// Times: "fast" takes 1 ms, "slow" 2 ms, "close" 0.95 ms; counts calls.
    fn timer(calls: &mut usize) -> impl FnMut(&str) -> Result<f64> + '_ {
        move |v| {
            *calls += 1;
            Ok(match v {
                "fast" => 1e-3,
                "close" => 0.95e-3 * 2.0,
                _ => 2e-3,
            })
        }
    }

    #[test]
    fn the_fastest_is_kept_and_read_back_without_timing() {
        let d = dir("keep");
        let mut calls = 0;
        let t = Tuner::open(TuneMode::Auto, key("a"), Some(&d));
        assert_eq!(
            t.choose("c", "h1", &["slow", "fast"], "slow", timer(&mut calls)),
            "fast"
        );
        assert_eq!(calls, 4, "each timed once, then the win confirmed against the default");
        let again = Tuner::open(TuneMode::Auto, key("a"), Some(&d));
        assert_eq!(
            again.choose("c", "h1", &["slow", "fast"], "slow", timer(&mut calls)),
            "fast"
        );
        assert_eq!(calls, 4, "a cached choice is not timed again");
        // Changed kernels: the entry is stale and tuned anew.
        assert_eq!(
            again.choose("c", "h2", &["slow", "fast"], "slow", timer(&mut calls)),
            "fast"
        );
        assert_eq!(calls, 8);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_default_slowed_once_by_load_is_timed_again() {
        let t = Tuner::open(TuneMode::Auto, key("a"), None);
        // The default's first timing caught a burst of load (5 ms, then 1 ms).
        let mut default_runs = 0;
        let time = |v: &str| -> Result<f64> {
            Ok(if v == "default" {
                default_runs += 1;
                if default_runs == 1 {
                    5e-3
                } else {
                    1e-3
                }
            } else {
                2e-3
            })
        };
        assert_eq!(t.choose("c", "h", &["default", "other"], "default", time), "default");
    }

    #[test]
    fn a_close_runner_up_slowed_once_by_load_is_timed_again() {
        let t = Tuner::open(TuneMode::Auto, key("a"), None);
        // The default takes 1 ms; the other's first timing caught a burst of
        // load (1.2 ms, within 1.5x of the default), then 0.5 ms.
        let mut other_runs = 0;
        let time = |v: &str| -> Result<f64> {
            Ok(if v == "other" {
                other_runs += 1;
                if other_runs == 1 {
                    1.2e-3
                } else {
                    0.5e-3
                }
            } else {
                1e-3
            })
        };
        assert_eq!(t.choose("c", "h", &["default", "other"], "default", time), "other");
    }

    #[test]
    fn a_choice_within_the_margin_keeps_the_default() {
        let mut calls = 0;
        let t = Tuner::open(TuneMode::Auto, key("a"), None);
        // "close" at 1.9 ms against the default's 2 ms: not clearly faster.
        assert_eq!(
            t.choose("c", "h", &["slow", "close"], "slow", timer(&mut calls)),
            "slow"
        );
    }

    #[test]
    fn off_uses_the_default_and_times_nothing() {
        let mut calls = 0;
        let t = Tuner::open(TuneMode::Off, key("a"), None);
        assert_eq!(t.choose("c", "h", &["slow", "fast"], "slow", timer(&mut calls)), "slow");
        assert_eq!(calls, 0);
    }

    #[test]
    fn corrupt_and_foreign_files_are_ignored() {
        let d = dir("bad");
        let mut calls = 0;
        let t = Tuner::open(TuneMode::Auto, key("a"), Some(&d));
        t.choose("c", "h", &["slow", "fast"], "slow", timer(&mut calls));
        let file = t.file().unwrap().to_path_buf();
        assert!(read(&file, &key("a")).is_ok());
        let other = read(&file, &key("b")).unwrap_err();
        assert!(other.contains("made for a"), "{other}");
        std::fs::write(&file, b"{ not json").unwrap();
        assert!(read(&file, &key("a")).unwrap_err().contains("not a tuning cache"));
        // Opening it anyway tunes anew and rewrites a good file.
        let t = Tuner::open(TuneMode::Auto, key("a"), Some(&d));
        assert_eq!(t.choose("c", "h", &["slow", "fast"], "slow", timer(&mut calls)), "fast");
        assert_eq!(calls, 8, "tuned twice: nothing was read from the corrupt file");
        assert!(read(&file, &key("a")).unwrap().contains_key("c"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_wgpu_version_is_the_locked_one() {
        let lock = include_str!("../../Cargo.lock");
        let at = lock.find("name = \"wgpu\"\n").expect("wgpu in Cargo.lock");
        let version = lock[at..].lines().nth(1).unwrap();
        assert_eq!(version, format!("version = \"{WGPU_VERSION}\""));
    }

    #[test]
    fn the_source_hash_is_stable() {
        assert_eq!(source_hash(["a", "b"]), source_hash(["a", "b"]));
        assert_ne!(source_hash(["ab"]), source_hash(["a", "b"]));
        assert_eq!(source_hash([]), "cbf29ce484222325");
    }
}
