//! The cache of decoded image folders: `images-<folder>-<key>.npy` and its
//! `.json` note (the files skipped) in the cache directory. `<folder>` hashes
//! the folder's absolute path and the target size and channels; `<key>`
//! hashes every file's relative path, size and modification time and the
//! conversion's version. A changed folder gets a new key, so a stale cache is
//! never read: it is deleted when the new one is written. Both files are
//! written atomically, the note first: an `.npy` present means its note is too.

use std::path::{Path, PathBuf};

use super::folder::{ImageFile, Skipped};
use super::npy::{npy_bytes, read_npy_images};
use super::ImageSet;
use crate::checkpoint::write_atomically;
use crate::error::{Error, Result};
use crate::gpu::tune::source_hash;

/// Bumped when the conversion changes (filter, crop, colour), so caches
/// written by an older build are decoded anew.
const CONVERSION: &str = "centre-crop,exif-orientation,lanczos3,v1";

/// The files of one cached folder.
pub(super) struct CacheEntry {
    pub npy: PathBuf,
    note: PathBuf,
    dir: PathBuf,
    /// `images-<folder>-`: every cache file of this folder at this size starts with it.
    prefix: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Note {
    images: usize,
    skipped: Vec<Skipped>,
}

impl CacheEntry {
    pub fn new(cache_dir: &Path, folder: &Path, files: &[ImageFile], size: usize, channels: usize) -> CacheEntry {
        let absolute = std::fs::canonicalize(folder).unwrap_or_else(|_| folder.to_path_buf());
        let target = format!("{size}x{channels}");
        let folder_hash = source_hash([absolute.to_string_lossy().as_ref(), &target]);
        let stats: Vec<String> = files
            .iter()
            .map(|f| format!("{}\t{}\t{}", f.relative, f.len, f.modified_ns))
            .collect();
        let key = source_hash(
            [CONVERSION, &target]
                .into_iter()
                .chain(stats.iter().map(String::as_str)),
        );
        let prefix = format!("images-{}-", &folder_hash[..12]);
        let dir = cache_dir.join("images");
        CacheEntry {
            npy: dir.join(format!("{prefix}{key}.npy")),
            note: dir.join(format!("{prefix}{key}.json")),
            dir,
            prefix,
        }
    }

    /// The cached images and skipped files; `None` when there is no cache for
    /// this key, or it cannot be read (then with a note, and decoded anew).
    pub fn load(&self) -> Option<(ImageSet, Vec<Skipped>)> {
        if !self.npy.exists() {
            return None;
        }
        let read = || -> std::result::Result<_, String> {
            let note: Note = serde_json::from_slice(&std::fs::read(&self.note).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
            let images =
                read_npy_images(&std::fs::read(&self.npy).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
            if images.n != note.images {
                return Err(format!("{} images where its note says {}", images.n, note.images));
            }
            Ok((images, note.skipped))
        };
        read()
            .map_err(|why| {
                log::info!(
                    "note: ignoring the image cache {} ({why}); decoding anew",
                    self.npy.display()
                )
            })
            .ok()
    }

    /// Writes the cache (note, then array) and deletes this folder's older ones.
    pub fn store(&self, images: &ImageSet, skipped: &[Skipped]) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::Io {
            path: self.dir.display().to_string(),
            source: e,
        })?;
        let note = Note {
            images: images.n,
            skipped: skipped.to_vec(),
        };
        let json = serde_json::to_vec_pretty(&note).map_err(|e| Error::Input(e.to_string()))?;
        write_atomically(&self.note.to_string_lossy(), &json)?;
        write_atomically(&self.npy.to_string_lossy(), &npy_bytes(images))?;
        self.remove_stale();
        Ok(())
    }

    /// Deletes the caches of this folder at this size under other keys (the
    /// folder has changed since). Another process's temporary files are kept.
    fn remove_stale(&self) {
        let ours = [&self.npy, &self.note].map(|p| p.file_name().map(|n| n.to_os_string()));
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let text = name.to_string_lossy();
            let stale = text.starts_with(&self.prefix)
                && (text.ends_with(".npy") || text.ends_with(".json"))
                && !ours.contains(&Some(name.clone()));
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
