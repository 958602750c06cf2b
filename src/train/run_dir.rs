//! The run directory a training run writes into. A new run never lands on
//! an old one by accident: a directory that holds a run is continued
//! (`resume`), replaced (`overwrite`), or refused, since the first save
//! would replace its checkpoints and the log would lose its lines. One run
//! holds a directory at a time: the second fails at once, naming the first.

use std::fs::{File, TryLockError};
use std::io::{Read, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// The files of a run: a directory holding any of them holds a run.
const RUN_FILES: [&str; 4] = [
    "model.safetensors",
    "model-ema.safetensors",
    "opt.safetensors",
    "log.jsonl",
];

fn io(path: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_string(),
        source: e,
    }
}

/// The pictures a run draws; they and [`RUN_FILES`] are each written
/// through a temporary file beside them.
const PICTURES: [&str; 2] = ["samples.png", "reconstructions.png"];

/// Deletes the temporary files of a run killed while saving (`FILE.<pid>.tmp`,
/// or `FILE.tmp` from older builds): with the directory held no one writes
/// them, and on a full disk they hold the space the next save needs.
fn remove_stale_tmp(dir: &str) -> Result<()> {
    let ours = |name: &str| {
        RUN_FILES
            .iter()
            .chain(&PICTURES)
            .any(|f| name.starts_with(&format!("{f}.")))
    };
    let stale = |name: &str| name.ends_with(".tmp") && ours(name);
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(stale) {
            ::log::info!(
                "note: deleting {}, left by a run that did not finish saving",
                path.display()
            );
            std::fs::remove_file(&path).map_err(|e| Error::Io {
                path: path.display().to_string(),
                source: e,
            })?;
        }
    }
    Ok(())
}

/// A run directory held by this process until it is dropped. The hold is an
/// OS advisory lock on `DIR/train.lock`, which the OS releases when the
/// process ends, however it ends: a crash leaves no stale lock. The file
/// holds the holder's PID (the last holder's once it has ended).
#[derive(Debug)]
#[must_use = "the directory is held only while this lives"]
pub struct RunDir {
    _lock: File,
}

/// Takes the lock of `dir` (which exists), or says which process holds it.
fn lock(dir: &str) -> Result<File> {
    let path = format!("{dir}/train.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false) // the holder's PID stays until the lock is ours
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            // Empty in the instant between the holder's lock and its write.
            let holder = match pid.trim() {
                "" => "another process".to_string(),
                pid => format!("the process with PID {pid}"),
            };
            return Err(Error::Input(format!(
                "{dir} is in use by another training run ({holder} holds {path}): \
                 wait for it to end, or choose another --out"
            )));
        }
        Err(TryLockError::Error(e)) => return Err(io(&path)(e)),
    }
    file.set_len(0).map_err(io(&path))?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(io(&path))?;
    Ok(file)
}

/// Makes `dir` ready for a run and holds it (see [`RunDir`]): created for a
/// new run; for a new run over an old one with `overwrite`, the old run's
/// files deleted; without `resume` or `overwrite` over an old one, an error
/// that says what to pass. A resume needs the directory to exist.
pub fn prepare(dir: &str, resume: bool, overwrite: bool) -> Result<RunDir> {
    if resume && !Path::new(dir).is_dir() {
        // Creating it would only fail later, with a missing checkpoint file.
        return Err(Error::Input(format!(
            "--resume: {dir} does not exist, so there is no run to continue: \
             check --out, or drop --resume to start a new run there"
        )));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let held = RunDir { _lock: lock(dir)? };
    remove_stale_tmp(dir)?;
    if resume {
        return Ok(held);
    }
    let found: Vec<&str> = RUN_FILES
        .into_iter()
        .filter(|f| Path::new(dir).join(f).exists())
        .collect();
    if found.is_empty() {
        return Ok(held);
    }
    if !overwrite {
        return Err(Error::Input(format!(
            "{dir} holds a run ({}): pass --resume to continue it, --overwrite to replace it \
             (its checkpoints and log.jsonl are deleted), or choose another --out",
            found.join(", ")
        )));
    }
    for file in found {
        let path = format!("{dir}/{file}");
        std::fs::remove_file(&path).map_err(io(&path))?;
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> String {
        let dir = std::env::temp_dir().join(format!("vdvae-rundir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.to_string_lossy().into_owned()
    }

    #[test]
    fn a_new_run_over_an_old_one_needs_resume_or_overwrite() {
        let d = dir("old");
        drop(prepare(&d, false, false).unwrap());
        std::fs::write(format!("{d}/log.jsonl"), "{\"step\":0}\n").unwrap();
        std::fs::write(format!("{d}/opt.safetensors"), "x").unwrap();
        let err = prepare(&d, false, false).unwrap_err().to_string();
        assert!(
            err.contains("opt.safetensors, log.jsonl") && err.contains("--resume") && err.contains("--overwrite"),
            "{err}"
        );
        assert!(
            Path::new(&format!("{d}/log.jsonl")).exists(),
            "a refusal deletes nothing"
        );
        drop(prepare(&d, true, false).unwrap());
        assert!(Path::new(&format!("{d}/log.jsonl")).exists(), "a resume keeps the run");
        drop(prepare(&d, false, true).unwrap());
        assert!(!Path::new(&format!("{d}/log.jsonl")).exists());
        assert!(!Path::new(&format!("{d}/opt.safetensors")).exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_held_directory_is_refused_naming_the_holder_until_it_is_released() {
        let d = dir("held");
        let first = prepare(&d, false, false).unwrap();
        let pid = std::fs::read_to_string(format!("{d}/train.lock")).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        // An advisory lock conflicts with another open of the file, in this process too.
        let err = prepare(&d, true, false).unwrap_err().to_string();
        assert!(
            err.contains("in use by another training run") && err.contains(&format!("PID {}", std::process::id())),
            "{err}"
        );
        drop(first);
        drop(prepare(&d, true, false).expect("free once the holder is gone"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn stale_temporary_files_of_the_run_are_deleted_and_others_kept() {
        let d = dir("stale");
        std::fs::create_dir_all(&d).unwrap();
        for f in [
            "opt.safetensors.4242.tmp",
            "model.safetensors.tmp",
            "notes.tmp",
            "model.safetensors",
        ] {
            std::fs::write(format!("{d}/{f}"), "x").unwrap();
        }
        drop(prepare(&d, true, false).unwrap());
        let mut left: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["model.safetensors", "notes.tmp", "train.lock"]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn resuming_in_a_missing_directory_is_refused_and_creates_nothing() {
        let d = dir("missing");
        let err = prepare(&d, true, false).unwrap_err().to_string();
        assert!(err.contains("does not exist") && err.contains("drop --resume"), "{err}");
        assert!(!Path::new(&d).exists());
    }
}
