//! `--format images`: every PNG and JPEG under a folder (recursively, in
//! sorted path order), centre-cropped to a square, resized to the model's
//! size with a Lanczos3 filter and converted to grey or RGB. Files are decoded
//! on all cores; the result is cached (see [`super::folder_cache`]) so the
//! next run on the same unchanged folder starts at once. A file that cannot
//! be decoded is named in a warning and skipped (an error with `strict`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::folder_cache::CacheEntry;
use super::ImageSet;
use crate::error::{Error, Result};

/// What [`read_image_folder`] makes of the files.
#[derive(Clone, Debug)]
pub struct FolderOptions {
    /// Side of the square images produced, in pixels.
    pub size: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// An unreadable file is an error rather than a warning and a skipped file.
    pub strict: bool,
    /// Where decoded folders are cached; `None` decodes every time.
    pub cache_dir: Option<PathBuf>,
}

/// A file that could not be decoded, and why.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// Where the images came from.
#[derive(Clone, Debug, PartialEq)]
pub enum CacheUse {
    /// No cache directory was given.
    Off,
    /// Read from this cache file: nothing was decoded.
    Hit(PathBuf),
    /// Decoded, and the result saved to this cache file.
    Written(PathBuf),
    /// Decoded, but the cache could not be written (the warning says why).
    Unwritable,
}

/// The folder's images, the files skipped and how the cache was used.
#[derive(Clone, Debug)]
pub struct FolderImages {
    pub images: ImageSet,
    pub skipped: Vec<Skipped>,
    pub cache: CacheUse,
}

/// A PNG or JPEG found under the folder, with what the cache key needs of it.
pub(super) struct ImageFile {
    pub path: PathBuf,
    /// Its path below the folder: the key does not change when the folder moves.
    pub relative: String,
    pub len: u64,
    pub modified_ns: u128,
}

/// Reads every PNG and JPEG under `dir` as described in the module doc.
pub fn read_image_folder(dir: &str, o: &FolderOptions) -> Result<FolderImages> {
    // Far above any model's size; a typo's 100000 would allocate tens of GB per image.
    const MAX_SIZE: usize = 4096;
    if o.size == 0 || o.size > MAX_SIZE {
        return Err(Error::Input(format!(
            "image size {}: give a side of 1 to {MAX_SIZE} pixels",
            o.size
        )));
    }
    if !matches!(o.channels, 1 | 3) {
        return Err(Error::Input(format!(
            "image channels must be 1 (grey) or 3 (RGB), got {}",
            o.channels
        )));
    }
    let files = list_images(dir)?;
    let entry = o
        .cache_dir
        .as_deref()
        .map(|cache| CacheEntry::new(cache, Path::new(dir), &files, o.size, o.channels));
    if let Some((images, skipped)) = entry.as_ref().and_then(|e| e.load()) {
        let path = entry.map(|e| e.npy).unwrap_or_default();
        log::info!(
            "{dir}: {} images of {2}x{2}x{3} read from the cache {} (the folder is unchanged since it was written)",
            images.n,
            path.display(),
            o.size,
            o.channels
        );
        report_skipped(dir, &skipped, files.len(), o.strict)?;
        return Ok(FolderImages {
            images,
            skipped,
            cache: CacheUse::Hit(path),
        });
    }
    let decoded = decode_all(dir, &files, o.size, o.channels);
    let mut pixels = Vec::new();
    let mut skipped = Vec::new();
    for (file, result) in files.iter().zip(decoded) {
        match result {
            Ok(p) => pixels.extend_from_slice(&p),
            Err(reason) => skipped.push(Skipped {
                path: file.path.display().to_string(),
                reason,
            }),
        }
    }
    report_skipped(dir, &skipped, files.len(), o.strict)?;
    let images = ImageSet {
        n: files.len() - skipped.len(),
        h: o.size,
        w: o.size,
        c: o.channels,
        pixels,
    };
    let cache = match entry {
        None => CacheUse::Off,
        Some(e) => match e.store(&images, &skipped) {
            Ok(()) => CacheUse::Written(e.npy),
            Err(err) => {
                log::warn!("{dir}: the decoded images could not be cached ({err}); the next run decodes them again");
                CacheUse::Unwritable
            }
        },
    };
    Ok(FolderImages { images, skipped, cache })
}

/// Warns about each skipped file and sums them up; with `strict`, or when no
/// file was readable, an error instead.
fn report_skipped(dir: &str, skipped: &[Skipped], files: usize, strict: bool) -> Result<()> {
    if let (true, Some(first)) = (strict, skipped.first()) {
        return Err(Error::Input(format!(
            "{}: cannot read this image ({}); {} of the {files} files under {dir} are unreadable. \
             Fix or remove them, or drop --strict to skip them with a warning",
            first.path,
            first.reason,
            skipped.len()
        )));
    }
    if skipped.len() == files {
        return Err(Error::Input(format!(
            "none of the {files} PNG/JPEG files under {dir} could be read (the first, {}: {})",
            skipped[0].path, skipped[0].reason
        )));
    }
    for s in skipped {
        log::warn!("skipping {}: {}", s.path, s.reason);
    }
    if !skipped.is_empty() {
        log::warn!(
            "skipped {} of the {files} image files under {dir} (unreadable); --strict makes this an error",
            skipped.len()
        );
    }
    Ok(())
}

fn is_image_name(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    ["png", "jpg", "jpeg"].iter().any(|x| ext.eq_ignore_ascii_case(x))
}

/// The PNG and JPEG files under `dir`, sorted by path. Symbolic links to
/// folders are not followed (a link to a parent would loop); links to files are.
pub(super) fn list_images(dir: &str) -> Result<Vec<ImageFile>> {
    let root = Path::new(dir);
    if !root.is_dir() {
        return Err(Error::Input(format!(
            "{dir}: not a folder: give a folder of PNG/JPEG files \
             (for one array file use --format npy, mnist or cifar10)"
        )));
    }
    let mut paths = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let io = |e| Error::Io {
            path: folder.display().to_string(),
            source: e,
        };
        for entry in std::fs::read_dir(&folder).map_err(io)? {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            if entry.file_type().map_err(io)?.is_dir() {
                folders.push(path);
            } else if is_image_name(&path) {
                paths.push(path);
            }
        }
    }
    if paths.is_empty() {
        return Err(Error::Input(format!(
            "{dir} holds no PNG or JPEG files (looked for .png, .jpg and .jpeg in it and its subfolders): \
             give the folder that holds your images"
        )));
    }
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|path| {
            // A file that cannot be stat'ed keys as empty; its decode fails and names it.
            let meta = std::fs::metadata(&path).ok();
            let modified_ns = meta
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            ImageFile {
                relative: path.strip_prefix(root).unwrap_or(&path).display().to_string(),
                len: meta.map_or(0, |m| m.len()),
                modified_ns,
                path,
            }
        })
        .collect())
}

/// Decodes every file on all cores, in order; shows a bar on a terminal and
/// a log line every few seconds otherwise.
fn decode_all(
    dir: &str,
    files: &[ImageFile],
    size: usize,
    channels: usize,
) -> Vec<std::result::Result<Vec<u8>, String>> {
    let results: Vec<Mutex<Option<_>>> = files.iter().map(|_| Mutex::new(None)).collect();
    let (next, done) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len());
    let mut progress = DecodeProgress::new(dir, files.len());
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(file) = files.get(i) else { break };
                    let r = decode_guarded(&file.path, size as u32, channels);
                    *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                    done.fetch_add(1, Ordering::Relaxed);
                })
            })
            .collect();
        while !workers.iter().all(|w| w.is_finished()) {
            std::thread::sleep(Duration::from_millis(100));
            progress.update(done.load(Ordering::Relaxed));
        }
    });
    progress.finish();
    results
        .into_iter()
        .map(|r| {
            r.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or_else(|| Err("not decoded (a decoding thread stopped)".into()))
        })
        .collect()
}

/// [`decode`], with a decoder's panic on a malformed file turned into that
/// file's error, so one bad file cannot end the run.
fn decode_guarded(path: &Path, size: u32, channels: usize) -> std::result::Result<Vec<u8>, String> {
    std::panic::catch_unwind(|| decode(path, size, channels))
        .unwrap_or_else(|_| Err("the decoder failed on this file (it is probably corrupt)".into()))
}

/// One file as `size`x`size` pixels of `channels` channels: turned upright
/// by its EXIF orientation, the centred square cut out, then resized.
fn decode(path: &Path, size: u32, channels: usize) -> std::result::Result<Vec<u8>, String> {
    use image::ImageDecoder;
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| text(&e))?;
    let mut decoder = reader.into_decoder().map_err(|e| text(&e))?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(|e| text(&e))?;
    img.apply_orientation(orientation);
    let (w, h) = (img.width(), img.height());
    let side = w.min(h);
    if side == 0 {
        return Err(format!("the image is {w}x{h}: nothing to crop"));
    }
    let square = img.crop_imm((w - side) / 2, (h - side) / 2, side, side);
    // Lanczos3: sharp downscaling without the aliasing of nearest or bilinear.
    let filter = image::imageops::FilterType::Lanczos3;
    let resize = |img: image::DynamicImage| {
        if side == size {
            img // already the size: pixels unchanged
        } else {
            img.resize_exact(size, size, filter)
        }
    };
    Ok(match channels {
        1 => resize(image::DynamicImage::ImageLuma8(square.to_luma8()))
            .into_luma8()
            .into_raw(),
        _ => resize(image::DynamicImage::ImageRgb8(square.to_rgb8()))
            .into_rgb8()
            .into_raw(),
    })
}

/// Decoding's progress: a bar on a terminal, else a log line every 5 s (quiet
/// for a folder decoded in less).
struct DecodeProgress {
    bar: Option<indicatif::ProgressBar>,
    dir: String,
    total: usize,
    started: Instant,
    last_line: Instant,
}

impl DecodeProgress {
    const EVERY: Duration = Duration::from_secs(5);

    fn new(dir: &str, total: usize) -> DecodeProgress {
        let bar = std::io::stderr().is_terminal().then(|| {
            indicatif::ProgressBar::new(total as u64).with_style(
                indicatif::ProgressStyle::with_template(
                    "decode {bar:40} {pos}/{len} images [{elapsed_precise}<{eta_precise}]",
                )
                .expect("a valid progress template"),
            )
        });
        DecodeProgress {
            bar,
            dir: dir.into(),
            total,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    fn update(&mut self, done: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
        } else if self.last_line.elapsed() >= Self::EVERY {
            self.last_line = Instant::now();
            log::info!("{}: decoded {done}/{} images", self.dir, self.total);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        log::info!(
            "{}: decoded {} image files in {:.1} s",
            self.dir,
            self.total,
            self.started.elapsed().as_secs_f64()
        );
    }
}
